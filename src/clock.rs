//! Time, made explicit: the one place that reads the system clocks.
//!
//! Everything that decides by time takes an [`Instant`] (monotonic: timeouts,
//! schedules, uptime), a boot time (monotonic but counting time the machine
//! was suspended: whether a Lease is still held) or a [`SystemTime`] (wall:
//! timestamps shown to people and sent to the backend) from a [`Clock`].
//! Tests use [`VirtualClock`], which only moves when told to, so no test
//! sleeps and a wall-clock jump or a suspend can be staged.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of monotonic and wall time.
pub trait Clock {
    /// Monotonic now: never jumps, used for every interval and timeout.
    fn now(&self) -> Instant;
    /// Wall-clock now: only for timestamps.
    fn wall(&self) -> SystemTime;
    /// Time since the machine booted, suspended time included
    /// (`CLOCK_BOOTTIME`): `now()` stands still while a machine is
    /// suspended, so a Lease judged by it would look fresh after a resume.
    fn boot(&self) -> Duration;
}

/// The real clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn wall(&self) -> SystemTime {
        SystemTime::now()
    }
    fn boot(&self) -> Duration {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes one timespec we own. CLOCK_BOOTTIME
        // exists on every Linux since 2.6.39; should it fail, the monotonic
        // clock is the best there is.
        if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
            return BOOT_FALLBACK.with(|origin| origin.elapsed());
        }
        Duration::new(
            ts.tv_sec.max(0) as u64,
            ts.tv_nsec.clamp(0, 999_999_999) as u32,
        )
    }
}

thread_local! {
    static BOOT_FALLBACK: Instant = Instant::now();
}

/// A clock that moves only when a test says so. Clones share the same time.
#[derive(Debug, Clone)]
pub struct VirtualClock {
    origin: Instant,
    elapsed: Rc<Cell<Duration>>,
    suspended: Rc<Cell<Duration>>,
    wall: Rc<Cell<SystemTime>>,
}

impl VirtualClock {
    /// Starts at wall time `wall_secs` (Unix seconds).
    pub fn new(wall_secs: u64) -> VirtualClock {
        VirtualClock {
            origin: Instant::now(),
            elapsed: Rc::new(Cell::new(Duration::ZERO)),
            suspended: Rc::new(Cell::new(Duration::ZERO)),
            wall: Rc::new(Cell::new(UNIX_EPOCH + Duration::from_secs(wall_secs))),
        }
    }

    /// Moves both clocks forward by `by`.
    pub fn advance(&self, by: Duration) {
        self.elapsed.set(self.elapsed.get() + by);
        self.wall.set(self.wall.get() + by);
    }

    /// The machine sleeps for `by`: boot and wall time move on, monotonic
    /// time does not (as `CLOCK_MONOTONIC` on Linux).
    pub fn suspend(&self, by: Duration) {
        self.suspended.set(self.suspended.get() + by);
        self.wall.set(self.wall.get() + by);
    }

    /// Sets the wall clock alone, as an NTP step or an operator would.
    pub fn set_wall(&self, wall_secs: u64) {
        self.wall.set(UNIX_EPOCH + Duration::from_secs(wall_secs));
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Instant {
        self.origin + self.elapsed.get()
    }
    fn wall(&self) -> SystemTime {
        self.wall.get()
    }
    fn boot(&self) -> Duration {
        // An arbitrary uptime at the start, as a real machine has.
        Duration::from_secs(1000) + self.elapsed.get() + self.suspended.get()
    }
}

/// Unix seconds of a wall time (0 before 1970).
pub fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// Unix milliseconds of a wall time (0 before 1970).
pub fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// RFC 3339 UTC with whole seconds: `2026-11-28T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let mut out = String::with_capacity(20);
    push_rfc3339(&mut out, t);
    out
}

/// Appends [`rfc3339`] of `t` to `out`, without formatting machinery (the
/// status document writes one per workload).
pub fn push_rfc3339(out: &mut String, t: SystemTime) {
    let secs = unix_secs(t);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let y = y.clamp(0, 9999) as u32;
    let mut b = *b"0000-00-00T00:00:00Z";
    let mut put = |at: usize, width: usize, mut v: u32| {
        for i in (at..at + width).rev() {
            b[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, y);
    put(5, 2, m);
    put(8, 2, d);
    put(11, 2, (rem / 3600) as u32);
    put(14, 2, (rem % 3600 / 60) as u32);
    put(17, 2, (rem % 60) as u32);
    // Only ASCII digits and separators were written.
    out.push_str(std::str::from_utf8(&b).unwrap_or_default());
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A duration for people: `0s`, `950ms`, `42s`, `3m12s`, `5h3m`, `2d4h`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 if d.as_millis() == 0 => "0s".to_string(),
        0 => format!("{}ms", d.as_millis()),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{}h", s / 86_400, s % 86_400 / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_795_867_200);
        assert_eq!(rfc3339(t), "2026-11-28T12:00:00Z");
        // a leap day
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400 + 3661);
        assert_eq!(rfc3339(t), "2000-02-29T01:01:01Z");
        let t = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
        assert_eq!(rfc3339(t), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn virtual_clock_moves_only_when_told() {
        let clock = VirtualClock::new(1_795_867_200);
        let (t0, w0) = (clock.now(), clock.wall());
        assert_eq!(clock.now(), t0);
        clock.clone().advance(Duration::from_secs(5));
        assert_eq!(clock.now() - t0, Duration::from_secs(5));
        assert_eq!(
            clock.wall().duration_since(w0).unwrap(),
            Duration::from_secs(5)
        );
        clock.set_wall(0);
        assert_eq!(
            clock.now() - t0,
            Duration::from_secs(5),
            "a wall jump leaves monotonic time alone"
        );
    }

    #[test]
    fn a_suspend_moves_boot_and_wall_time_but_not_monotonic_time() {
        let clock = VirtualClock::new(1_795_867_200);
        let (t0, b0, w0) = (clock.now(), clock.boot(), clock.wall());
        clock.advance(Duration::from_secs(2));
        assert_eq!(clock.boot() - b0, Duration::from_secs(2));
        clock.suspend(Duration::from_secs(30));
        assert_eq!(clock.now() - t0, Duration::from_secs(2));
        assert_eq!(clock.boot() - b0, Duration::from_secs(32));
        assert_eq!(
            clock.wall().duration_since(w0).unwrap(),
            Duration::from_secs(32)
        );
    }

    #[test]
    fn the_system_boot_clock_runs_with_the_monotonic_clock() {
        let (b0, t0) = (SystemClock.boot(), Instant::now());
        assert!(b0 > Duration::ZERO);
        std::thread::sleep(Duration::from_millis(20));
        let (db, dt) = (SystemClock.boot() - b0, t0.elapsed());
        assert!(db >= Duration::from_millis(20), "{db:?}");
        // Nothing suspends the machine during a test.
        assert!(db <= dt + Duration::from_secs(1), "{db:?} vs {dt:?}");
    }

    #[test]
    fn humanizes_durations() {
        assert_eq!(human(Duration::from_millis(950)), "950ms");
        assert_eq!(human(Duration::ZERO), "0s", "as its neighbours in a table");
        assert_eq!(human(Duration::from_secs(42)), "42s");
        assert_eq!(human(Duration::from_secs(192)), "3m12s");
        assert_eq!(human(Duration::from_secs(5 * 3600 + 180)), "5h3m");
        assert_eq!(human(Duration::from_secs(2 * 86_400 + 4 * 3600)), "2d4h");
    }
}
