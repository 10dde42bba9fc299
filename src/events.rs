//! Error events for Sentry, decided here and sent by the agent: which
//! errors become events (a job run that failed, a panic, a self-update
//! rolled back, reports dropped), how repeats are held back (a distinct
//! error is sent the first time, then at most once an hour while it
//! repeats; a recovery ends the repetition), and the bounded queue with
//! Sentry's pause. Pure: no I/O, times passed in.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

/// At most this many events wait; past that the oldest is dropped.
pub const QUEUE: usize = 32;
/// A repeated error is sent again at most this often.
pub const REPEAT_EVERY: Duration = Duration::from_secs(3600);
/// A send that failed is tried again after this, doubling, at most [`RETRY_CAP`].
const RETRY_BASE: Duration = Duration::from_secs(10);
const RETRY_CAP: Duration = Duration::from_secs(600);
/// An event that failed to send this many times is dropped.
const ATTEMPTS: u32 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Fatal,
    Error,
    Warning,
}

/// One event, before it is written as an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub level: Level,
    /// What raised it (`sync`, `panic`, `self-update`, …): the fingerprint's first part.
    pub source: &'static str,
    /// The error with its changing parts (numbers) taken out, so repeats group.
    pub key: String,
    pub message: String,
    /// The job it comes from, if any (a tag).
    pub job: Option<&'static str>,
    /// Where a panic happened (`src/x.rs:10:5`).
    pub location: Option<String>,
    pub at: SystemTime,
}

impl Event {
    /// An event of `message`; its key is the message without its numbers.
    pub fn new(level: Level, source: &'static str, message: &str, at: SystemTime) -> Event {
        Event {
            level,
            source,
            key: key_of(message),
            message: message.to_string(),
            job: None,
            location: None,
            at,
        }
    }
}

/// The events waiting, what was held back, and Sentry's pause.
#[derive(Debug, Default)]
pub struct Events {
    queue: VecDeque<Event>,
    /// The last key sent per source, and when.
    sent: BTreeMap<&'static str, (String, Instant)>,
    /// No send before this (Sentry's rate limit or a retry after a failure).
    not_before: Option<Instant>,
    failures: u32,
    pub delivered: u64,
    pub dropped: u64,
    /// Events not raised because the same error was sent within the hour.
    pub held_back: u64,
}

impl Events {
    /// Raises `event`, unless the same error (by key) from the same source
    /// was sent less than [`REPEAT_EVERY`] ago.
    pub fn raise(&mut self, event: Event, now: Instant) {
        if let Some((last, at)) = self.sent.get(event.source) {
            if *last == event.key && now.saturating_duration_since(*at) < REPEAT_EVERY {
                self.held_back += 1;
                return;
            }
        }
        self.sent.insert(event.source, (event.key.clone(), now));
        if self.queue.len() >= QUEUE {
            self.queue.pop_front();
            self.dropped += 1;
        }
        self.queue.push_back(event);
    }

    /// A job run that failed: an error event, repeats held back.
    pub fn job_failed(&mut self, job: &'static str, detail: &str, now: Instant, wall: SystemTime) {
        let mut event = Event::new(Level::Error, job, &format!("{job} failed: {detail}"), wall);
        event.job = Some(job);
        self.raise(event, now);
    }

    /// A job run that went well ends the repetition of its last error: the
    /// next failure is sent at once, even the same one.
    pub fn job_recovered(&mut self, job: &'static str) {
        self.sent.remove(job);
    }

    /// The event to send now, if one waits and no pause holds.
    pub fn next(&self, now: Instant) -> Option<&Event> {
        if self.not_before.is_some_and(|t| now < t) {
            return None;
        }
        self.queue.front()
    }

    /// The front event was accepted; `pause`: Sentry asks for one.
    pub fn accepted(&mut self, pause: Option<Duration>, now: Instant) {
        self.queue.pop_front();
        self.delivered += 1;
        self.failures = 0;
        self.not_before = pause.map(|p| now + p);
    }

    /// Sentry asked to wait: the front event waits too.
    pub fn limited(&mut self, pause: Duration, now: Instant) {
        self.not_before = Some(now + pause.min(crate::scheduler::RETRY_AFTER_CAP));
    }

    /// The front event was refused for good.
    pub fn refused(&mut self) {
        self.queue.pop_front();
        self.dropped += 1;
    }

    /// The send failed: tried again later, a few times.
    pub fn failed(&mut self, now: Instant) {
        self.failures += 1;
        if self.failures >= ATTEMPTS {
            self.queue.pop_front();
            self.dropped += 1;
            self.failures = 0;
            self.not_before = None;
            return;
        }
        let wait = RETRY_BASE
            .saturating_mul(1 << (self.failures - 1))
            .min(RETRY_CAP);
        self.not_before = Some(now + wait);
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// The events waiting, oldest first.
    pub fn waiting(&self) -> impl Iterator<Item = &Event> {
        self.queue.iter()
    }
}

/// An error's identity: its text with every run of digits as `N`, so
/// "3 report(s) queued" and "4 report(s) queued" are the same error.
fn key_of(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(256));
    let mut in_digits = false;
    for c in message.chars().take(256) {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// Panics caught anywhere (a request handler, a thread), waiting for the
/// main loop to turn them into events: message and location.
static PANICS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
const PANICS_KEPT: usize = 8;

/// Keeps every panic's message and location for [`take_panics`], then
/// lets the default hook print it as before.
pub fn catch_panics() {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        let location = info
            .location()
            .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column()))
            .unwrap_or_default();
        if let Ok(mut panics) = PANICS.lock() {
            if panics.len() < PANICS_KEPT {
                panics.push((crate::text::truncate(&message, 1024), location));
            }
        }
        previous(info);
    }));
}

/// The panics caught since the last call.
pub fn take_panics() -> Vec<(String, String)> {
    PANICS
        .lock()
        .map(|mut p| std::mem::take(&mut *p))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(t0: Instant, secs: u64) -> Instant {
        t0 + Duration::from_secs(secs)
    }

    #[test]
    fn a_distinct_error_is_sent_once_then_hourly_and_a_recovery_resets() {
        let t0 = Instant::now();
        let mut e = Events::default();
        e.job_failed(
            "sync",
            "Kubernetes API unreachable: timed out after 10s",
            t0,
            UNIX_EPOCH,
        );
        e.job_failed(
            "sync",
            "Kubernetes API unreachable: timed out after 12s",
            at(t0, 60),
            UNIX_EPOCH,
        );
        assert_eq!(
            (e.queued(), e.held_back),
            (1, 1),
            "a repeat (numbers aside) is held back"
        );
        e.job_failed("sync", "backend answered 500", at(t0, 120), UNIX_EPOCH);
        assert_eq!(e.queued(), 2, "a different error is sent");
        e.job_failed("report", "backend answered 500", at(t0, 130), UNIX_EPOCH);
        assert_eq!(e.queued(), 3, "another job's error is its own");
        e.job_failed(
            "sync",
            "backend answered 500",
            at(t0, 120 + 3599),
            UNIX_EPOCH,
        );
        assert_eq!(e.queued(), 3, "within the hour");
        e.job_failed(
            "sync",
            "backend answered 500",
            at(t0, 120 + 3600),
            UNIX_EPOCH,
        );
        assert_eq!(e.queued(), 4, "an hour later, once more");
        e.job_recovered("sync");
        e.job_failed(
            "sync",
            "backend answered 500",
            at(t0, 120 + 3601),
            UNIX_EPOCH,
        );
        assert_eq!(e.queued(), 5, "after a recovery the first failure is sent");
        assert_eq!(
            e.next(t0).map(|ev| ev.key.as_str()),
            Some("sync failed: Kubernetes API unreachable: timed out after Ns")
        );
    }

    #[test]
    fn the_queue_is_bounded_and_sentrys_pause_is_kept() {
        let t0 = Instant::now();
        let mut e = Events::default();
        for i in 0..(QUEUE + 3) {
            let message = format!("bug {}", "x".repeat(i));
            e.raise(Event::new(Level::Error, "panic", &message, UNIX_EPOCH), t0);
        }
        assert_eq!((e.queued(), e.dropped), (QUEUE, 3));
        e.limited(Duration::from_secs(60), t0);
        assert!(e.next(at(t0, 59)).is_none());
        assert!(e.next(at(t0, 60)).is_some());
        e.accepted(Some(Duration::from_secs(5)), at(t0, 60));
        assert!(
            e.next(at(t0, 64)).is_none(),
            "a pause asked for with an acceptance"
        );
        assert!(e.next(at(t0, 65)).is_some());
        assert_eq!(e.delivered, 1);
    }

    #[test]
    fn a_failing_send_is_retried_with_backoff_then_dropped() {
        let t0 = Instant::now();
        let mut e = Events::default();
        let dropped = Event::new(Level::Warning, "outbox", "dropped 3 reports", UNIX_EPOCH);
        e.raise(dropped, t0);
        e.failed(t0);
        assert!(e.next(at(t0, 9)).is_none() && e.next(at(t0, 10)).is_some());
        e.failed(at(t0, 10));
        assert!(e.next(at(t0, 29)).is_none() && e.next(at(t0, 30)).is_some());
        e.failed(at(t0, 30));
        e.failed(at(t0, 70));
        assert_eq!((e.queued(), e.dropped), (0, 1));
    }

    #[test]
    fn a_panic_is_caught_with_its_message_and_location() {
        catch_panics();
        // The store is the process's: other tests' panics may fill it and
        // agent tests take from it, so a few tries may be needed.
        let (_, location) = (0..50)
            .find_map(|_| {
                take_panics();
                let _ = std::panic::catch_unwind(|| panic!("a bug: {}", 42));
                take_panics().into_iter().find(|(m, _)| m == "a bug: 42")
            })
            .expect("the panic was kept");
        assert!(location.starts_with("src/events.rs:"), "{location}");
        assert!(
            take_panics().iter().all(|(m, _)| m != "a bug: 42"),
            "taken once"
        );
    }
}
