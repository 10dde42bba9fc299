//! The scheduler: when each periodic job runs next.
//!
//! It owns all timing decisions and nothing else: jobs report how they ended
//! ([`Next`]) and the scheduler turns that into a deadline, with random jitter
//! so a fleet of nodes does not call the backend in lock-step, and capped
//! exponential backoff after failures. It never reads a clock itself.

use std::time::{Duration, Instant};

/// The manager's periodic jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum JobId {
    /// Make the cluster match the desired state.
    Sync,
    /// Send a health report.
    Report,
    /// Look for a newer manager release.
    UpdateCheck,
    /// Hold or watch the leader-election Lease.
    Lease,
}

impl JobId {
    pub const ALL: [JobId; 4] = [JobId::Sync, JobId::Report, JobId::UpdateCheck, JobId::Lease];

    /// Only the leader runs this job.
    pub fn leader_only(self) -> bool {
        self != JobId::Lease
    }

    pub fn name(self) -> &'static str {
        match self {
            JobId::Sync => "sync",
            JobId::Report => "report",
            JobId::UpdateCheck => "update-check",
            JobId::Lease => "lease",
        }
    }
}

/// What a finished run asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Succeeded: run again after the regular interval.
    Regular,
    /// Failed: back off exponentially.
    Backoff,
    /// Failed: back off exponentially, but run again within this long at
    /// the latest (the report job's next window falls due then).
    BackoffWithin(Duration),
    /// The other side asked us to wait (Retry-After); counts as a failure.
    /// The wait is what was asked (at most [`RETRY_AFTER_CAP`]) plus up to
    /// half of it again, at random.
    After(Duration),
    /// Succeeded, but something is in motion: look again sooner than the
    /// interval (never later).
    Recheck(Duration),
}

impl Next {
    /// A failed run: what the other side asked for, else backoff.
    pub fn failed(retry_after: Option<Duration>) -> Next {
        retry_after.map_or(Next::Backoff, Next::After)
    }
}

/// First backoff step after a failure.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Backoff never waits longer than this (nor longer than the job's interval).
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// No failed run comes back sooner than this.
pub const MIN_WAIT: Duration = Duration::from_millis(100);
/// A Retry-After longer than this is not believed.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// How a job's runs are spread in time.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub interval: Duration,
    /// The first run comes at a random point in `[0, first_within)`.
    pub first_within: Duration,
    /// Each regular wait is `interval` ± this fraction, at random.
    pub spread: f64,
}

#[derive(Debug)]
struct Entry {
    id: JobId,
    timing: Timing,
    due: Instant,
    failures: u32,
    /// A paused job is never due (a follower's leader-only jobs).
    paused: bool,
    /// The job runs in its own phase: false after failures, and after a
    /// start whose first run came early (`first_within` under the interval).
    settled: bool,
}

/// The schedule of all jobs.
#[derive(Debug)]
pub struct Scheduler {
    entries: Vec<Entry>,
    rng: Rng,
}

impl Scheduler {
    pub fn new(seed: u64) -> Scheduler {
        Scheduler {
            entries: Vec::new(),
            rng: Rng::new(seed),
        }
    }

    /// Adds a job; its first run is jittered within `timing.first_within` from `now`.
    pub fn add(&mut self, id: JobId, timing: Timing, now: Instant) {
        let first = self.rng.below(timing.first_within);
        self.entries.push(Entry {
            id,
            timing,
            due: now + first,
            failures: 0,
            paused: false,
            settled: timing.first_within >= timing.interval,
        });
    }

    /// Stops `id` from coming due until [`Scheduler::resume`].
    pub fn pause(&mut self, id: JobId) {
        if let Some(e) = self.entry(id) {
            e.paused = true;
        }
    }

    /// Lets a paused `id` run again, first within its `first_within` of
    /// `now`, as after a start. A job not paused keeps its deadline.
    pub fn resume(&mut self, id: JobId, now: Instant) {
        let Some(idx) = self.entries.iter().position(|e| e.id == id && e.paused) else {
            return;
        };
        let first = self.rng.below(self.entries[idx].timing.first_within);
        let e = &mut self.entries[idx];
        e.paused = false;
        e.failures = 0;
        e.settled = e.timing.first_within >= e.timing.interval;
        e.due = now + first;
    }

    /// The earliest deadline of the jobs `which` picks, if any is scheduled.
    pub fn next_due(&self, which: impl Fn(JobId) -> bool) -> Option<Instant> {
        self.entries
            .iter()
            .filter(|e| !e.paused && which(e.id))
            .map(|e| e.due)
            .min()
    }

    /// Of the jobs `which` picks, the one whose deadline has passed first.
    pub fn due(&self, now: Instant, which: impl Fn(JobId) -> bool) -> Option<JobId> {
        self.entries
            .iter()
            .filter(|e| !e.paused && e.due <= now && which(e.id))
            .min_by_key(|e| e.due)
            .map(|e| e.id)
    }

    /// Makes `id` due at once (`POST /v1/sync`).
    pub fn run_now(&mut self, id: JobId, now: Instant) {
        if let Some(e) = self.entry(id) {
            e.due = e.due.min(now);
        }
    }

    /// Consecutive failures of `id` so far.
    pub fn failures(&self, id: JobId) -> u32 {
        self.entries
            .iter()
            .find(|e| e.id == id)
            .map_or(0, |e| e.failures)
    }

    /// Records how a run of `id` ended at `now` and sets its next deadline;
    /// returns how long until then.
    pub fn finished(&mut self, id: JobId, next: Next, now: Instant) -> Duration {
        let Some(idx) = self.entries.iter().position(|e| e.id == id) else {
            return Duration::MAX;
        };
        let entry = &self.entries[idx];
        let (timing, failures) = (entry.timing, entry.failures);
        let regular = if !entry.settled && timing.spread > 0.0 {
            // The first run came soon after a start, or this is the first
            // success after failures: on every node of a fleet that started
            // or failed together, at about the same time. The next run is
            // anywhere in a whole interval, so they fall out of step at once
            // rather than over hours of jitter, and no wait is longer than a
            // regular one.
            let width = timing.interval.mul_f64(timing.spread.min(1.0));
            width + self.rng.below(timing.interval)
        } else {
            self.rng.spread(timing.interval, timing.spread)
        };
        let (wait, failures) = match next {
            Next::Regular => (regular, 0),
            Next::Backoff => {
                let failures = failures.saturating_add(1);
                (self.backoff(failures, timing.interval), failures)
            }
            Next::BackoffWithin(latest) => {
                // The deadline bounds the wait, so the steps may grow past
                // the interval: a long outage costs one call per deadline.
                let failures = failures.saturating_add(1);
                let latest = latest.max(MIN_WAIT);
                (self.backoff(failures, Duration::MAX).min(latest), failures)
            }
            Next::Recheck(d) => (d.min(regular), 0),
            Next::After(d) => {
                let failures = failures.saturating_add(1);
                // Plus up to half again, at random: a loaded backend tells
                // every node the same value in the same second, and taken
                // exactly, the whole fleet would come back in one second.
                let asked = d.min(RETRY_AFTER_CAP).max(self.backoff(1, timing.interval));
                (asked + self.rng.below(asked / 2), failures)
            }
        };
        let e = &mut self.entries[idx];
        e.failures = failures;
        e.settled = failures == 0;
        e.due = now + wait;
        wait
    }

    /// "Equal jitter": half the exponential step fixed, half random.
    fn backoff(&mut self, failures: u32, interval: Duration) -> Duration {
        let cap = BACKOFF_CAP.min(interval);
        let step = BACKOFF_BASE
            .saturating_mul(1u32 << failures.saturating_sub(1).min(16))
            .min(cap);
        step / 2 + self.rng.below(step / 2)
    }

    fn entry(&mut self, id: JobId) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.id == id)
    }
}

/// A small xorshift generator: jitter needs spread, not cryptography.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A seed that differs between processes and nodes.
    pub fn seed_from_os() -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// Uniform in `[0, max)`; zero when `max` is zero.
    pub fn below(&mut self, max: Duration) -> Duration {
        let nanos = max.as_nanos().min(u128::from(u64::MAX)) as u64;
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.next_u64() % nanos)
    }

    /// `d` ± `fraction` of it, uniform.
    pub fn spread(&mut self, d: Duration, fraction: f64) -> Duration {
        let width = d.mul_f64(fraction.clamp(0.0, 1.0));
        d - width + self.below(width * 2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every job.
    const ANY: fn(JobId) -> bool = |_| true;

    const MIN: Duration = Duration::from_secs(60);

    fn timing(interval: Duration) -> Timing {
        Timing {
            interval,
            first_within: Duration::ZERO,
            spread: 0.1,
        }
    }

    #[test]
    fn first_runs_are_spread_across_the_window() {
        let t0 = Instant::now();
        let firsts: Vec<Duration> = (0..200)
            .map(|seed| {
                let mut s = Scheduler::new(seed);
                s.add(
                    JobId::Report,
                    Timing {
                        first_within: MIN,
                        ..timing(MIN)
                    },
                    t0,
                );
                s.next_due(ANY).unwrap() - t0
            })
            .collect();
        assert!(firsts.iter().all(|d| *d < MIN));
        let early = firsts.iter().filter(|d| **d < MIN / 2).count();
        assert!(
            (60..140).contains(&early),
            "about half in the first half, got {early}"
        );
    }

    #[test]
    fn regular_runs_keep_the_interval_with_jitter() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(7);
        s.add(JobId::Sync, timing(MIN * 10), t0);
        assert_eq!(s.due(t0, ANY), Some(JobId::Sync));
        let first = s.finished(JobId::Sync, Next::Regular, t0);
        assert!(first >= MIN && first <= MIN * 11, "{first:?}");
        for _ in 0..100 {
            let wait = s.finished(JobId::Sync, Next::Regular, t0);
            assert!(wait >= MIN * 9 && wait <= MIN * 11, "{wait:?}");
            assert_eq!(s.due(t0 + wait - Duration::from_millis(1), ANY), None);
            assert_eq!(s.due(t0 + wait, ANY), Some(JobId::Sync));
        }
    }

    #[test]
    fn a_fleet_started_together_is_out_of_step_from_its_second_run() {
        let t0 = Instant::now();
        let interval = MIN * 10;
        let mut per_minute = [0u32; 11];
        for seed in 0..2200 {
            let mut s = Scheduler::new(seed);
            s.add(JobId::Sync, timing(interval), t0);
            let first = s.finished(JobId::Sync, Next::Regular, t0);
            assert!(
                first >= interval / 10 && first < interval * 11 / 10,
                "{first:?}"
            );
            per_minute[(first.as_secs() / 60) as usize] += 1;
            // Later runs keep the interval with its jitter.
            let later = s.finished(JobId::Sync, Next::Regular, t0 + first);
            assert!(later >= MIN * 9 && later <= MIN * 11, "{later:?}");
        }
        assert_eq!(per_minute[0], 0, "never sooner than the jitter's width");
        assert!(
            per_minute[1..].iter().all(|n| (140..260).contains(n)),
            "spread evenly over a whole interval: {per_minute:?}"
        );
        // A job whose first run was already spread over its interval, and
        // one without jitter (the Lease), keep their regular wait.
        let mut s = Scheduler::new(3);
        let spread_first = Timing {
            first_within: interval,
            ..timing(interval)
        };
        s.add(JobId::UpdateCheck, spread_first, t0);
        let wait = s.finished(JobId::UpdateCheck, Next::Regular, t0);
        assert!(wait >= MIN * 9 && wait <= MIN * 11, "{wait:?}");
        let exact = Timing {
            spread: 0.0,
            ..timing(Duration::from_secs(5))
        };
        s.add(JobId::Lease, exact, t0);
        assert_eq!(
            s.finished(JobId::Lease, Next::Regular, t0),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn the_first_success_after_failures_lands_anywhere_in_an_interval() {
        let t0 = Instant::now();
        let interval = MIN * 10;
        let spread_first = Timing {
            first_within: interval,
            ..timing(interval)
        };
        let waits: Vec<Duration> = (0..400)
            .map(|seed| {
                let mut s = Scheduler::new(seed);
                s.add(JobId::Sync, spread_first, t0);
                s.finished(JobId::Sync, Next::Backoff, t0);
                s.finished(JobId::Sync, Next::Backoff, t0);
                s.finished(JobId::Sync, Next::Regular, t0)
            })
            .collect();
        assert!(waits.iter().all(|w| *w >= MIN && *w < MIN * 11));
        let early = waits.iter().filter(|w| **w < MIN * 6).count();
        assert!(
            (140..260).contains(&early),
            "{early} of 400 in the first half"
        );
    }

    #[test]
    fn failures_back_off_exponentially_up_to_the_cap() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(3);
        s.add(JobId::Sync, timing(MIN * 10), t0);
        let mut waits = Vec::new();
        for n in 1..=12u32 {
            let wait = s.finished(JobId::Sync, Next::Backoff, t0);
            let step = (BACKOFF_BASE * 2u32.pow(n - 1)).min(BACKOFF_CAP);
            assert!(
                wait >= step / 2 && wait <= step,
                "failure {n}: {wait:?} outside [{:?}, {step:?}]",
                step / 2
            );
            waits.push(wait);
        }
        assert_eq!(s.failures(JobId::Sync), 12);
        assert!(waits[11] >= BACKOFF_CAP / 2);
        s.finished(JobId::Sync, Next::Regular, t0);
        assert_eq!(s.failures(JobId::Sync), 0, "success resets the backoff");
    }

    #[test]
    fn backoff_never_exceeds_a_short_interval() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(9);
        s.add(JobId::Report, timing(Duration::from_secs(5)), t0);
        for _ in 0..10 {
            assert!(s.finished(JobId::Report, Next::Backoff, t0) <= Duration::from_secs(5));
        }
    }

    #[test]
    fn retry_after_is_honoured_capped_and_spread() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(5);
        s.add(JobId::Report, timing(MIN), t0);
        let asked = Duration::from_secs(42);
        let waits: Vec<Duration> = (0..200)
            .map(|_| s.finished(JobId::Report, Next::After(asked), t0))
            .collect();
        assert!(
            waits.iter().all(|w| *w >= asked && *w < asked * 3 / 2),
            "never sooner than asked, at most half again: {waits:?}"
        );
        let late = waits.iter().filter(|w| **w >= asked * 5 / 4).count();
        assert!(
            (60..140).contains(&late),
            "spread evenly: {late} of 200 in the upper half"
        );
        let long = s.finished(JobId::Report, Next::After(Duration::from_secs(86_400)), t0);
        assert!(
            long >= RETRY_AFTER_CAP && long < RETRY_AFTER_CAP * 3 / 2,
            "{long:?}"
        );
        let tiny = s.finished(JobId::Report, Next::After(Duration::ZERO), t0);
        assert!(
            tiny >= BACKOFF_BASE / 2,
            "Retry-After: 0 does not become a busy loop: {tiny:?}"
        );
    }

    #[test]
    fn nodes_told_the_same_retry_after_do_not_come_back_together() {
        let t0 = Instant::now();
        let asked = Duration::from_secs(30);
        let mut per_second = [0u32; 45];
        for seed in 0..3000 {
            let mut s = Scheduler::new(seed);
            s.add(JobId::Report, timing(MIN), t0);
            let wait = s.finished(JobId::Report, Next::After(asked), t0);
            per_second[wait.as_secs() as usize] += 1;
        }
        let busiest = per_second.iter().max().copied().unwrap_or(0);
        assert!(
            busiest < 3000 / 10,
            "3000 nodes answered in one second come back over 15 s: {per_second:?}"
        );
    }

    #[test]
    fn a_failure_waits_as_asked_or_backs_off() {
        assert_eq!(Next::failed(None), Next::Backoff);
        assert_eq!(
            Next::failed(Some(Duration::from_secs(7))),
            Next::After(Duration::from_secs(7))
        );
    }

    #[test]
    fn a_backoff_within_a_deadline_never_waits_past_it() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(8);
        s.add(JobId::Report, timing(MIN), t0);
        let first = s.finished(JobId::Report, Next::BackoffWithin(MIN), t0);
        assert!(
            first >= BACKOFF_BASE / 2 && first <= BACKOFF_BASE,
            "{first:?}"
        );
        for _ in 0..10 {
            let wait = s.finished(
                JobId::Report,
                Next::BackoffWithin(Duration::from_secs(20)),
                t0,
            );
            assert!(wait <= Duration::from_secs(20), "{wait:?}");
        }
        assert_eq!(
            s.finished(
                JobId::Report,
                Next::BackoffWithin(Duration::from_secs(20)),
                t0
            ),
            Duration::from_secs(20),
            "the backoff has grown past the deadline"
        );
        assert_eq!(s.failures(JobId::Report), 12);
        assert_eq!(
            s.finished(JobId::Report, Next::BackoffWithin(Duration::ZERO), t0),
            MIN_WAIT,
            "never a busy loop"
        );
    }

    #[test]
    fn a_recheck_comes_sooner_and_is_no_failure() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(4);
        s.add(JobId::Sync, timing(MIN * 10), t0);
        s.finished(JobId::Sync, Next::Backoff, t0);
        assert_eq!(
            s.finished(JobId::Sync, Next::Recheck(Duration::from_secs(15)), t0),
            Duration::from_secs(15)
        );
        assert_eq!(s.failures(JobId::Sync), 0);
        let long = s.finished(JobId::Sync, Next::Recheck(MIN * 60), t0);
        assert!(long <= MIN * 11, "never later than the interval: {long:?}");
    }

    #[test]
    fn run_now_moves_the_deadline_forward_only() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(1);
        s.add(JobId::Sync, timing(MIN * 10), t0);
        s.add(JobId::Report, timing(MIN), t0);
        s.finished(JobId::Sync, Next::Regular, t0);
        s.finished(JobId::Report, Next::Regular, t0);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(s.due(later, ANY), None);
        s.run_now(JobId::Sync, later);
        assert_eq!(s.due(later, ANY), Some(JobId::Sync));
        assert_eq!(s.next_due(ANY), Some(later));
    }

    #[test]
    fn a_paused_job_is_never_due_and_resumes_as_after_a_start() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(1);
        s.add(JobId::Sync, timing(MIN * 10), t0);
        s.add(JobId::Lease, timing(Duration::from_secs(5)), t0);
        s.pause(JobId::Sync);
        assert_eq!(s.due(t0, ANY), Some(JobId::Lease));
        s.finished(JobId::Lease, Next::Regular, t0);
        let lease_due = s.next_due(ANY).unwrap();
        assert!(lease_due > t0, "the paused sync does not count as due");
        s.run_now(JobId::Sync, t0);
        assert_eq!(
            s.due(t0 + MIN, ANY),
            Some(JobId::Lease),
            "run-now does not unpause"
        );
        let later = t0 + MIN * 30;
        s.pause(JobId::Lease);
        s.resume(JobId::Sync, later);
        assert_eq!(
            s.due(later, ANY),
            Some(JobId::Sync),
            "first_within is zero here"
        );
        // Resuming a job that is not paused keeps its deadline.
        s.finished(JobId::Sync, Next::Regular, later);
        s.resume(JobId::Sync, later);
        assert_eq!(s.due(later, ANY), None);
        assert!(s.next_due(ANY).unwrap() >= later + MIN * 9);
    }

    #[test]
    fn the_earliest_due_job_goes_first() {
        let t0 = Instant::now();
        let mut s = Scheduler::new(1);
        s.add(JobId::Sync, timing(MIN * 10), t0);
        s.add(JobId::Report, timing(MIN), t0);
        s.finished(JobId::Sync, Next::After(Duration::from_secs(30)), t0);
        s.finished(JobId::Report, Next::After(Duration::from_secs(20)), t0);
        assert_eq!(
            s.due(t0 + Duration::from_secs(40), ANY),
            Some(JobId::Report)
        );
    }
}
