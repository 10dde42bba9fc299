//! Whether a node value (CPU, memory or disk use) has stayed high long
//! enough to report `warning` or `critical`.
//!
//! A level holds when every sample since a given time was above its
//! threshold, so a [`Judge`] keeps no history: only, per level, when the
//! latest sample that was not above it came. The manager's start counts as
//! such a sample, so a manager that has run less than a level's duration
//! never reports that level. Time comes from the caller; nothing here reads
//! a clock.

use std::time::{Duration, Instant};

/// How a node value stands, as the REPORT's `status` field says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// No sample yet, or this window's value could not be read.
    Unknown,
    Healthy,
    Warning,
    Critical,
}

impl Level {
    /// The REPORT's spelling: `unknown`, `healthy`, `warning`, `critical`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Unknown => "unknown",
            Level::Healthy => "healthy",
            Level::Warning => "warning",
            Level::Critical => "critical",
        }
    }
}

/// When a value counts as `warning` and as `critical`: above a percentage
/// (strictly) in every sample for at least a duration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub warning_above: f64,
    pub warning_for: Duration,
    pub critical_above: f64,
    pub critical_for: Duration,
}

const MINUTE: u64 = 60;

/// CPU: above 80 % for 60 minutes, above 90 % for 30 minutes.
pub const CPU: Thresholds = Thresholds {
    warning_above: 80.0,
    warning_for: Duration::from_secs(60 * MINUTE),
    critical_above: 90.0,
    critical_for: Duration::from_secs(30 * MINUTE),
};

/// Memory: as CPU.
pub const MEMORY: Thresholds = CPU;

/// Disk: above 80 % for 30 minutes, above 90 % for 10 minutes.
pub const DISK: Thresholds = Thresholds {
    warning_above: 80.0,
    warning_for: Duration::from_secs(30 * MINUTE),
    critical_above: 90.0,
    critical_for: Duration::from_secs(10 * MINUTE),
};

/// Judges one value, fed one sample per report window. Constant memory
/// whatever the window.
#[derive(Debug, Clone)]
pub struct Judge {
    thresholds: Thresholds,
    /// The latest sample not above `warning_above` (at first: the start).
    warning_broken: Instant,
    /// The latest sample not above `critical_above` (at first: the start).
    critical_broken: Instant,
    level: Level,
}

impl Judge {
    /// A judge for a manager that started at `started`.
    pub fn new(thresholds: Thresholds, started: Instant) -> Judge {
        Judge {
            thresholds,
            warning_broken: started,
            critical_broken: started,
            level: Level::Unknown,
        }
    }

    /// Takes this window's sample (`None`: it could not be read) and
    /// returns the level to report for the window. A missing sample is
    /// reported `unknown` and breaks both levels, as a low one does.
    pub fn observe(&mut self, used_percent: Option<f64>, now: Instant) -> Level {
        let t = self.thresholds;
        // Strictly above; NaN is above nothing.
        let above = |limit: f64| used_percent.is_some_and(|v| v > limit);
        if !above(t.warning_above) {
            self.warning_broken = now;
        }
        if !above(t.critical_above) {
            self.critical_broken = now;
        }
        self.level = match used_percent {
            None => Level::Unknown,
            Some(_) if held(self.critical_broken, t.critical_for, now) => Level::Critical,
            Some(_) if held(self.warning_broken, t.warning_for, now) => Level::Warning,
            Some(_) => Level::Healthy,
        };
        self.level
    }

    /// The level [`Judge::observe`] returned last; `unknown` before the
    /// first sample.
    pub fn level(&self) -> Level {
        self.level
    }
}

/// Whether every sample since `broken` was above: `for_` has passed since.
fn held(broken: Instant, for_: Duration, now: Instant) -> bool {
    now.saturating_duration_since(broken) >= for_
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, VirtualClock};

    const WINDOW: Duration = Duration::from_secs(60);

    fn minutes(n: u64) -> Duration {
        Duration::from_secs(n * MINUTE)
    }

    /// A judge started at a virtual instant, fed one sample per minute.
    struct Run {
        judge: Judge,
        now: Instant,
    }

    impl Run {
        fn new(thresholds: Thresholds) -> Run {
            let started = VirtualClock::new(0).now();
            Run {
                judge: Judge::new(thresholds, started),
                now: started,
            }
        }

        /// `n` windows of `value`; the level after each.
        fn feed(&mut self, value: Option<f64>, n: u64) -> Vec<Level> {
            (0..n)
                .map(|_| {
                    self.now += WINDOW;
                    self.judge.observe(value, self.now)
                })
                .collect()
        }

        /// `n` windows of `value`; the level after the last.
        fn last(&mut self, value: Option<f64>, n: u64) -> Level {
            self.feed(value, n).pop().unwrap_or(self.judge.level())
        }
    }

    #[test]
    fn spells_levels_as_the_report_does() {
        let all = [
            Level::Unknown,
            Level::Healthy,
            Level::Warning,
            Level::Critical,
        ];
        let names: Vec<_> = all.iter().map(|l| l.as_str()).collect();
        assert_eq!(names, ["unknown", "healthy", "warning", "critical"]);
    }

    #[test]
    fn unknown_before_the_first_sample() {
        let run = Run::new(CPU);
        assert_eq!(run.judge.level(), Level::Unknown);
    }

    #[test]
    fn a_manager_that_has_run_less_than_the_duration_is_healthy() {
        let mut run = Run::new(CPU);
        let levels = run.feed(Some(95.0), 29);
        assert!(levels.iter().all(|&l| l == Level::Healthy), "{levels:?}");
        assert_eq!(run.last(Some(95.0), 1), Level::Critical, "at 30 minutes");
    }

    #[test]
    fn twenty_minutes_at_95_is_healthy() {
        let mut run = Run::new(CPU);
        assert_eq!(run.last(Some(95.0), 20), Level::Healthy);
    }

    #[test]
    fn above_90_for_30_minutes_is_critical_and_stays_so() {
        let mut run = Run::new(CPU);
        assert_eq!(run.last(Some(95.0), 30), Level::Critical);
        let levels = run.feed(Some(95.0), 60);
        assert!(levels.iter().all(|&l| l == Level::Critical), "{levels:?}");
    }

    #[test]
    fn above_80_for_60_minutes_is_warning_and_not_before() {
        let mut run = Run::new(CPU);
        let levels = run.feed(Some(85.0), 59);
        assert!(levels.iter().all(|&l| l == Level::Healthy), "{levels:?}");
        assert_eq!(run.last(Some(85.0), 1), Level::Warning);
        assert_eq!(
            run.last(Some(85.0), 100),
            Level::Warning,
            "85 % is never critical"
        );
    }

    #[test]
    fn critical_falls_back_to_warning_when_only_the_higher_threshold_breaks() {
        let mut run = Run::new(CPU);
        assert_eq!(run.last(Some(95.0), 60), Level::Critical);
        assert_eq!(run.last(Some(85.0), 1), Level::Warning);
        assert_eq!(run.last(Some(95.0), 29), Level::Warning);
        assert_eq!(run.last(Some(95.0), 1), Level::Critical);
    }

    #[test]
    fn one_low_sample_resets_both_levels() {
        let mut run = Run::new(CPU);
        assert_eq!(run.last(Some(95.0), 90), Level::Critical);
        assert_eq!(run.last(Some(50.0), 1), Level::Healthy);
        assert_eq!(run.last(Some(95.0), 29), Level::Healthy);
        assert_eq!(run.last(Some(95.0), 1), Level::Critical);
        assert_eq!(run.last(Some(50.0), 1), Level::Healthy);
        assert_eq!(run.last(Some(85.0), 59), Level::Healthy);
        assert_eq!(run.last(Some(85.0), 1), Level::Warning);
    }

    #[test]
    fn a_missing_sample_is_unknown_and_resets_both_levels() {
        let mut run = Run::new(CPU);
        assert_eq!(run.last(Some(95.0), 90), Level::Critical);
        assert_eq!(run.last(None, 1), Level::Unknown);
        assert_eq!(run.judge.level(), Level::Unknown);
        assert_eq!(run.last(Some(95.0), 29), Level::Healthy);
        assert_eq!(run.last(Some(95.0), 1), Level::Critical);
    }

    #[test]
    fn a_nan_sample_counts_as_not_above() {
        let mut run = Run::new(CPU);
        assert_eq!(run.last(Some(95.0), 40), Level::Critical);
        assert_eq!(run.last(Some(f64::NAN), 1), Level::Healthy);
    }

    #[test]
    fn disk_holds_for_10_and_30_minutes() {
        let mut run = Run::new(DISK);
        assert_eq!(run.last(Some(95.0), 9), Level::Healthy);
        assert_eq!(run.last(Some(95.0), 1), Level::Critical);

        let mut run = Run::new(DISK);
        assert_eq!(run.last(Some(85.0), 29), Level::Healthy);
        assert_eq!(run.last(Some(85.0), 1), Level::Warning);
    }

    #[test]
    fn memory_is_judged_as_cpu() {
        assert_eq!(MEMORY, CPU);
    }

    #[test]
    fn exactly_at_a_threshold_is_not_above() {
        let mut run = Run::new(CPU);
        assert_eq!(run.last(Some(90.0), 60), Level::Warning);
        let mut run = Run::new(CPU);
        assert_eq!(run.last(Some(80.0), 120), Level::Healthy);
        let mut run = Run::new(CPU);
        assert_eq!(run.last(Some(90.000_001), 30), Level::Critical);
    }

    #[test]
    fn a_sample_exactly_the_duration_after_the_last_low_one_counts() {
        let started = VirtualClock::new(0).now();
        let mut judge = Judge::new(DISK, started);
        let low = started + Duration::from_secs(7);
        assert_eq!(judge.observe(Some(10.0), low), Level::Healthy);
        let just_before = low + minutes(10) - Duration::from_millis(1);
        assert_eq!(judge.observe(Some(95.0), just_before), Level::Healthy);
        assert_eq!(
            judge.observe(Some(95.0), low + minutes(10)),
            Level::Critical
        );
    }

    #[test]
    fn a_short_report_interval_needs_no_more_memory_and_judges_the_same() {
        let started = VirtualClock::new(0).now();
        let mut judge = Judge::new(DISK, started);
        let mut now = started;
        let mut level = Level::Unknown;
        for _ in 0..(10 * MINUTE - 1) {
            now += Duration::from_secs(1);
            level = judge.observe(Some(99.0), now);
        }
        assert_eq!(level, Level::Healthy);
        assert_eq!(
            judge.observe(Some(99.0), now + Duration::from_secs(1)),
            Level::Critical
        );
    }

    #[test]
    fn a_time_before_the_start_holds_nothing() {
        let started = VirtualClock::new(0).now() + minutes(60);
        let mut judge = Judge::new(CPU, started);
        assert_eq!(
            judge.observe(Some(99.0), started - minutes(1)),
            Level::Healthy
        );
    }
}
