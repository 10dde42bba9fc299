//! Time as the fakes see and spell it: a clock the test can shift (wall
//! time plus an offset), and the calendar math behind RFC 3339 timestamps
//! (formatted and parsed) and HTTP-dates.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall-clock time shifted by an offset the test sets or advances.
#[derive(Default)]
pub(crate) struct Clock {
    offset_secs: AtomicI64,
}

impl Clock {
    /// Seconds since the Unix epoch, as the fake sees it.
    pub fn now(&self) -> i64 {
        unix_now().saturating_add(self.offset_secs.load(Ordering::SeqCst))
    }

    /// Milliseconds since the Unix epoch, as the fake sees it (for windows
    /// that whole seconds would blur, such as a rate limit's end).
    pub fn now_ms(&self) -> i64 {
        let offset = self.offset_secs.load(Ordering::SeqCst).saturating_mul(1000);
        unix_now_ms().saturating_add(offset)
    }

    /// Moves the clock `secs` forward.
    pub fn advance(&self, secs: i64) {
        self.offset_secs.fetch_add(secs, Ordering::SeqCst);
    }

    /// From now on the clock is wall time plus `secs` (negative: behind).
    pub fn set_offset(&self, secs: i64) {
        self.offset_secs.store(secs, Ordering::SeqCst);
    }
}

/// Wall-clock seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn unix_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Howard Hinnant's days-from-civil.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Howard Hinnant's civil-from-days: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// (year, month, day, hour, minute, second) of a Unix time.
fn parts(secs: i64) -> (i64, i64, i64, i64, i64, i64) {
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    (y, mo, d, s / 3600, s / 60 % 60, s % 60)
}

/// `2015-10-21T07:28:00Z`: RFC 3339 in UTC, whole seconds.
pub(crate) fn rfc3339(secs: i64) -> String {
    let (y, mo, d, h, mi, s) = parts(secs);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// `Wed, 21 Oct 2015 07:28:00 GMT` (RFC 7231 IMF-fixdate).
pub(crate) fn http_date(secs: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, mo, d, h, mi, s) = parts(secs);
    let weekday = DAYS[secs.div_euclid(86_400).rem_euclid(7) as usize];
    let month = MONTHS[(mo - 1) as usize];
    format!("{weekday}, {d:02} {month} {y:04} {h:02}:{mi:02}:{s:02} GMT")
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Parses an RFC 3339 `date-time` (`2026-11-28T12:00:00Z`, optional
/// fraction, `Z` or a `±HH:MM` offset) to Unix seconds; `None` unless it
/// is exactly that shape with in-range fields.
pub(crate) fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |from: usize, len: usize| -> Option<i64> {
        let t = s.get(from..from + len)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    if !matches!(b[10], b'T' | b't') {
        return None;
    }
    let (y, mo, d) = (digits(0, 4)?, digits(5, 2)?, digits(8, 2)?);
    let (h, mi, sec) = (digits(11, 2)?, digits(14, 2)?, digits(17, 2)?);
    if !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
        return None;
    }
    if h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if b[i] == b'.' {
        let frac = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
        if frac == 0 {
            return None;
        }
        i += 1 + frac;
    }
    let offset = match b.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (digits(i + 1, 2)?, digits(i + 4, 2)?);
            if oh > 23 || om > 59 {
                return None;
            }
            let off = oh * 3600 + om * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_735_725_600), "2025-01-01T10:00:00Z");
        assert_eq!(http_date(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(http_date(1_445_412_480), "Wed, 21 Oct 2015 07:28:00 GMT");
    }

    #[test]
    fn parses_rfc3339_date_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2000-02-29T00:00:00Z"), Some(951_782_400));
        assert_eq!(
            parse_rfc3339("2000-02-29t00:00:00.123456z"),
            Some(951_782_400)
        );
        assert_eq!(
            parse_rfc3339("2000-02-29T02:30:00+02:30"),
            Some(951_782_400)
        );
        assert_eq!(
            parse_rfc3339("2000-02-28T21:00:00-03:00"),
            Some(951_782_400)
        );
        for bad in [
            "",
            "2000-02-29",
            "2000-02-29T00:00:00",
            "2001-02-29T00:00:00Z",
            "2000-13-01T00:00:00Z",
            "2000-01-01 00:00:00Z",
            "2000-01-01T24:00:00Z",
            "2000-01-01T00:00:00.Z",
            "2000-01-01T00:00:00+0100",
            "2000-01-01T00:00:00+01:00x",
            "+000-01-01T00:00:00Z",
            "2000-01-01T00:00:00ZZ",
            "yesterday at noon, roughly",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn offset_shifts_the_clock() {
        let c = Clock::default();
        let before = c.now();
        c.set_offset(-1000);
        assert!((before - 1000 - c.now()).abs() <= 1);
        c.set_offset(0);
        assert!((c.now() - before).abs() <= 1);
        c.advance(60);
        assert!((c.now_ms() - (before + 60) * 1000).abs() <= 2000);
    }
}
