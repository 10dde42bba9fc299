//! What the workloads on this node say about themselves: the last heartbeat
//! of each, and how long each was healthy in the current report window.
//!
//! Time here is monotonic only, so a wall-clock jump changes no uptime. The
//! table is bounded: once the desired set is known only its names are kept,
//! and before that at most [`MAX_WORKLOADS`] names.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

/// Most workloads tracked at once.
pub const MAX_WORKLOADS: usize = 1024;
/// Longest heartbeat message kept, in bytes.
pub const MAX_MESSAGE: usize = 256;

/// A status a workload reports about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reported {
    Healthy,
    Degraded,
    Unhealthy,
}

impl Reported {
    pub fn parse(s: &str) -> Option<Reported> {
        match s {
            "healthy" => Some(Reported::Healthy),
            "degraded" => Some(Reported::Degraded),
            "unhealthy" => Some(Reported::Unhealthy),
            _ => None,
        }
    }
}

/// A workload's health as the manager sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    Healthy,
    Degraded,
    Unhealthy,
    /// Heard from before, silent for longer than the heartbeat timeout.
    Unresponsive,
    /// Never heard from.
    Unknown,
}

impl Health {
    pub const ALL: [Health; 5] = [
        Health::Healthy,
        Health::Degraded,
        Health::Unhealthy,
        Health::Unresponsive,
        Health::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Health::Healthy => "healthy",
            Health::Degraded => "degraded",
            Health::Unhealthy => "unhealthy",
            Health::Unresponsive => "unresponsive",
            Health::Unknown => "unknown",
        }
    }
}

impl From<Reported> for Health {
    fn from(r: Reported) -> Health {
        match r {
            Reported::Healthy => Health::Healthy,
            Reported::Degraded => Health::Degraded,
            Reported::Unhealthy => Health::Unhealthy,
        }
    }
}

/// The last heartbeat of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    pub status: Reported,
    pub message: String,
    pub at: Instant,
    pub at_wall: SystemTime,
}

/// One workload's entry.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    pub heartbeat: Option<Heartbeat>,
    /// Healthy time in the current window, up to `accounted_until`.
    healthy: Duration,
    accounted_until: Option<Instant>,
}

/// Why a heartbeat was not recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The desired set is known and does not name this workload.
    Unknown,
    /// The table is full of workloads that are still talking.
    Full,
}

/// All workloads' heartbeat state.
#[derive(Debug)]
pub struct Workloads {
    entries: BTreeMap<String, Workload>,
    desired: Option<BTreeSet<String>>,
    timeout: Duration,
    window_start: Instant,
}

impl Workloads {
    pub fn new(timeout: Duration, now: Instant) -> Workloads {
        Workloads {
            entries: BTreeMap::new(),
            desired: None,
            timeout,
            window_start: now,
        }
    }

    /// Records a heartbeat; the message is cut to [`MAX_MESSAGE`] bytes.
    pub fn record(
        &mut self,
        name: &str,
        status: Reported,
        message: &str,
        now: Instant,
        wall: SystemTime,
    ) -> Result<(), Refused> {
        if let Some(desired) = &self.desired {
            if !desired.contains(name) {
                return Err(Refused::Unknown);
            }
        }
        if !self.entries.contains_key(name)
            && self.entries.len() >= MAX_WORKLOADS
            && !self.evict_one(now)
        {
            return Err(Refused::Full);
        }
        let timeout = self.timeout;
        let window_start = self.window_start;
        let w = self.entries.entry(name.to_string()).or_default();
        w.accrue(now, timeout, window_start);
        w.heartbeat = Some(Heartbeat {
            status,
            message: crate::text::truncate(message, MAX_MESSAGE),
            at: now,
            at_wall: wall,
        });
        Ok(())
    }

    /// A workload's health at `now`.
    pub fn health(&self, name: &str, now: Instant) -> Health {
        self.entries
            .get(name)
            .map_or(Health::Unknown, |w| w.health(now, self.timeout))
    }

    /// Sets the desired workloads; entries for other names are dropped.
    pub fn set_desired(&mut self, names: BTreeSet<String>, now: Instant) {
        self.entries.retain(|name, _| names.contains(name));
        for name in &names {
            self.entries
                .entry(name.clone())
                .or_insert_with(|| Workload {
                    accounted_until: Some(now),
                    ..Workload::default()
                });
        }
        self.desired = Some(names);
    }

    /// The heartbeat timeout: silent longer, a workload is unresponsive.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether the desired set is known (heartbeats for other names get 404).
    pub fn desired_known(&self) -> bool {
        self.desired.is_some()
    }

    /// One workload's entry.
    pub fn get(&self, name: &str) -> Option<&Workload> {
        self.entries.get(name)
    }

    /// Every entry, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Workload)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How long the current report window has been open.
    pub fn window_age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.window_start)
    }

    /// Healthy time of each workload in the window so far, without closing it.
    pub fn healthy_so_far(&self, name: &str, now: Instant) -> Duration {
        self.entries
            .get(name)
            .map_or(Duration::ZERO, |w| self.healthy_of(w, now))
    }

    /// The same for a workload in hand (from [`Workloads::iter`]).
    pub fn healthy_of(&self, w: &Workload, now: Instant) -> Duration {
        w.healthy + w.unaccounted(now, self.timeout, self.window_start)
    }

    /// The first instant after `now` at which anything status shows of `w`
    /// in whole seconds or as a health changes by time alone: its
    /// heartbeat's age, its healthy time, its timing out.
    pub fn next_change_of(&self, w: &Workload, now: Instant) -> Option<Instant> {
        let h = w.heartbeat.as_ref()?;
        let times_out = h.at + self.timeout;
        let mut next = next_second(h.at, now);
        if now <= times_out {
            next = next.min(times_out + Duration::from_nanos(1));
            if h.status == Reported::Healthy {
                let healthy = self.healthy_of(w, now);
                let whole = Duration::from_secs(healthy.as_secs() + 1);
                next = next.min(now + (whole - healthy));
            }
        }
        Some(next)
    }

    /// Closes the report window at `now`: the window's length and each
    /// workload's healthy time in it; a new window starts.
    pub fn close_window(&mut self, now: Instant) -> (Duration, Vec<(String, Duration)>) {
        let (timeout, start) = (self.timeout, self.window_start);
        let healthy = self
            .entries
            .iter_mut()
            .map(|(name, w)| {
                w.accrue(now, timeout, start);
                (name.clone(), std::mem::take(&mut w.healthy))
            })
            .collect();
        self.window_start = now;
        (now.saturating_duration_since(start), healthy)
    }

    /// Drops the workload silent the longest, if it is unresponsive and not desired.
    fn evict_one(&mut self, now: Instant) -> bool {
        let stale = self
            .entries
            .iter()
            .filter(|(_, w)| w.health(now, self.timeout) == Health::Unresponsive)
            .min_by_key(|(_, w)| w.heartbeat.as_ref().map(|h| h.at))
            .map(|(name, _)| name.clone());
        match stale {
            Some(name) => self.entries.remove(&name).is_some(),
            None => false,
        }
    }
}

impl Workload {
    pub fn health(&self, now: Instant, timeout: Duration) -> Health {
        match &self.heartbeat {
            None => Health::Unknown,
            Some(h) if now.saturating_duration_since(h.at) > timeout => Health::Unresponsive,
            Some(h) => h.status.into(),
        }
    }

    /// Adds the healthy time between the last accounting and `now`: a healthy
    /// heartbeat counts until the next one, or until it times out.
    fn accrue(&mut self, now: Instant, timeout: Duration, window_start: Instant) {
        self.healthy += self.unaccounted(now, timeout, window_start);
        self.accounted_until = Some(now);
    }

    /// Healthy time between the last accounting and `now`, not yet added.
    fn unaccounted(&self, now: Instant, timeout: Duration, window_start: Instant) -> Duration {
        let from = self.accounted_until.unwrap_or(now).max(window_start);
        match self
            .heartbeat
            .as_ref()
            .filter(|h| h.status == Reported::Healthy)
        {
            Some(h) => now
                .min(h.at + timeout)
                .saturating_duration_since(from.max(h.at)),
            None => Duration::ZERO,
        }
    }
}

/// The first instant after `now` at which whole seconds since `base` change.
pub fn next_second(base: Instant, now: Instant) -> Instant {
    base + Duration::from_secs(now.saturating_duration_since(base).as_secs() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    const S: Duration = Duration::from_secs(1);

    fn table() -> (Workloads, Instant) {
        let t0 = Instant::now();
        (Workloads::new(S * 30, t0), t0)
    }

    fn beat(w: &mut Workloads, name: &str, status: Reported, at: Instant) {
        w.record(name, status, "", at, UNIX_EPOCH).unwrap();
    }

    #[test]
    fn health_follows_heartbeats_and_times_out() {
        let (mut w, t0) = table();
        assert_eq!(w.health("web", t0), Health::Unknown);
        beat(&mut w, "web", Reported::Degraded, t0);
        assert_eq!(w.health("web", t0 + S * 30), Health::Degraded);
        assert_eq!(w.health("web", t0 + S * 31), Health::Unresponsive);
        beat(&mut w, "web", Reported::Healthy, t0 + S * 40);
        assert_eq!(w.health("web", t0 + S * 41), Health::Healthy);
    }

    #[test]
    fn healthy_seconds_count_only_healthy_and_responsive_time() {
        let (mut w, t0) = table();
        // healthy every 10 s for 30 s, then degraded at 30 s, healthy again at 40 s,
        // then silent: healthy until 40 + 30 = 70 s.
        for s in [0, 10, 20] {
            beat(&mut w, "web", Reported::Healthy, t0 + S * s);
        }
        beat(&mut w, "web", Reported::Degraded, t0 + S * 30);
        beat(&mut w, "web", Reported::Healthy, t0 + S * 40);
        let (window, healthy) = w.close_window(t0 + S * 90);
        assert_eq!(window, S * 90);
        assert_eq!(healthy, vec![("web".to_string(), S * 30 + S * 30)]);
    }

    #[test]
    fn windows_split_a_healthy_stretch() {
        let (mut w, t0) = table();
        beat(&mut w, "web", Reported::Healthy, t0 + S * 50);
        let (_, first) = w.close_window(t0 + S * 60);
        assert_eq!(first[0].1, S * 10);
        beat(&mut w, "web", Reported::Healthy, t0 + S * 75);
        let (window, second) = w.close_window(t0 + S * 120);
        assert_eq!(window, S * 60);
        assert_eq!(
            second[0].1,
            S * 15 + S * 30,
            "60..75 from the first beat, 75..105 from the second"
        );
        let (_, third) = w.close_window(t0 + S * 180);
        assert_eq!(third[0].1, Duration::ZERO, "silent all window long");
    }

    #[test]
    fn healthy_so_far_does_not_close_the_window() {
        let (mut w, t0) = table();
        beat(&mut w, "web", Reported::Healthy, t0);
        assert_eq!(w.healthy_so_far("web", t0 + S * 20), S * 20);
        assert_eq!(w.close_window(t0 + S * 25).1[0].1, S * 25);
    }

    #[test]
    fn desired_set_limits_names() {
        let (mut w, t0) = table();
        beat(&mut w, "old", Reported::Healthy, t0);
        w.set_desired(BTreeSet::from(["web".to_string()]), t0);
        assert_eq!(
            w.record("old", Reported::Healthy, "", t0, UNIX_EPOCH),
            Err(Refused::Unknown)
        );
        assert_eq!(w.iter().map(|(n, _)| n).collect::<Vec<_>>(), ["web"]);
        assert_eq!(w.health("web", t0), Health::Unknown);
        beat(&mut w, "web", Reported::Healthy, t0);
    }

    #[test]
    fn the_table_is_bounded_and_evicts_only_the_silent() {
        let (mut w, t0) = table();
        for i in 0..MAX_WORKLOADS {
            beat(&mut w, &format!("w{i}"), Reported::Healthy, t0);
        }
        let later = t0 + S * 10;
        assert_eq!(
            w.record("new", Reported::Healthy, "", later, UNIX_EPOCH),
            Err(Refused::Full)
        );
        assert_eq!(w.len(), MAX_WORKLOADS);
        let much_later = t0 + S * 31;
        beat(&mut w, "w5", Reported::Healthy, much_later);
        w.record("new", Reported::Healthy, "", much_later, UNIX_EPOCH)
            .unwrap();
        assert_eq!(w.len(), MAX_WORKLOADS);
        assert_eq!(
            w.health("w5", much_later),
            Health::Healthy,
            "the one still talking stays"
        );
    }

    #[test]
    fn messages_are_capped_at_a_char_boundary() {
        let (mut w, t0) = table();
        let long = "é".repeat(200);
        w.record("web", Reported::Healthy, &long, t0, UNIX_EPOCH)
            .unwrap();
        let kept = &w
            .iter()
            .next()
            .unwrap()
            .1
            .heartbeat
            .as_ref()
            .unwrap()
            .message;
        assert_eq!(kept.len(), MAX_MESSAGE);
    }
}
