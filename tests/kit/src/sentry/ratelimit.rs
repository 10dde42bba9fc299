//! Rate limits as Relay announces them (develop docs, "Rate Limiting";
//! Relay's `format_rate_limits`): a limit covers a list of data categories
//! (empty: all of them) until a time on the fake's clock; a request is
//! limited when a live limit covers one of its items' categories, and the
//! answer is 429 with `Retry-After: <seconds>` (the longest, rounded up)
//! and `X-Sentry-Rate-Limits: <seconds>:<cat;cat>:key, …`. Items map to
//! categories as Relay counts them at the endpoint (`event` is `error`).

/// One announced limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RateLimit {
    /// Data categories; empty covers every category.
    pub categories: Vec<String>,
    /// When it ends, milliseconds on the fake's clock.
    pub until_ms: i64,
}

impl RateLimit {
    /// A limit of `secs` from `now_ms` on `categories` (`;`-separated, as
    /// in the header; empty for all).
    pub fn new(secs: u64, categories: &str, now_ms: i64) -> RateLimit {
        let ms = i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        RateLimit {
            categories: categories
                .split(';')
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect(),
            until_ms: now_ms.saturating_add(ms),
        }
    }

    pub fn is_live(&self, now_ms: i64) -> bool {
        now_ms < self.until_ms
    }

    /// Whether it applies to an item of this category (`None`: an item
    /// Relay counts in no category, covered only by limits on all).
    pub fn covers(&self, category: Option<&str>) -> bool {
        self.categories.is_empty()
            || category.is_some_and(|c| self.categories.iter().any(|l| l == c))
    }

    /// Whole seconds left, rounded up, as Relay's `remaining_seconds`.
    pub fn remaining_secs(&self, now_ms: i64) -> u64 {
        let ms = self.until_ms.saturating_sub(now_ms).max(0) as u64;
        ms.div_ceil(1000)
    }

    /// `<seconds>:<cat;cat>:key`.
    fn header_part(&self, now_ms: i64) -> String {
        format!(
            "{}:{}:key",
            self.remaining_secs(now_ms),
            self.categories.join(";")
        )
    }
}

/// `X-Sentry-Rate-Limits` for these limits, comma-and-space separated.
pub(crate) fn header(limits: &[&RateLimit], now_ms: i64) -> String {
    limits
        .iter()
        .map(|l| l.header_part(now_ms))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `Retry-After`: the longest of these limits, in seconds.
pub(crate) fn retry_after(limits: &[&RateLimit], now_ms: i64) -> u64 {
    limits
        .iter()
        .map(|l| l.remaining_secs(now_ms))
        .max()
        .unwrap_or(0)
}

/// The data category Relay counts an item of this type in, if any.
pub(crate) fn category(item_type: &str) -> Option<&'static str> {
    Some(match item_type {
        "event" => "error",
        "transaction" => "transaction",
        "security" | "raw_security" => "security",
        "attachment" => "attachment",
        "session" | "sessions" => "session",
        "check_in" => "monitor",
        "span" => "span",
        "log" => "log_item",
        "profile" => "profile",
        "profile_chunk" => "profile_chunk",
        "replay_event" | "replay_recording" | "replay_video" => "replay",
        "user_report" | "feedback" => "feedback",
        "trace_metric" => "trace_metric",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_relay() {
        let now = 1_000_000;
        let a = RateLimit::new(60, "transaction", now);
        let b = RateLimit::new(2700, "default;error;security", now);
        let all = RateLimit::new(30, "", now);
        assert_eq!(
            header(&[&a, &b], now),
            "60:transaction:key, 2700:default;error;security:key"
        );
        assert_eq!(header(&[&all], now), "30::key");
        assert_eq!(retry_after(&[&a, &b], now), 2700);
        // Rounded up, as Relay does: 59.001 s left is 60.
        assert_eq!(a.remaining_secs(now + 999), 60);
        assert_eq!(a.remaining_secs(now + 1000), 59);
        assert!(a.is_live(now + 59_999));
        assert!(!a.is_live(now + 60_000));
        assert_eq!(a.remaining_secs(now + 70_000), 0);
    }

    #[test]
    fn categories_decide_what_a_limit_covers() {
        let errors = RateLimit::new(60, "error", 0);
        let all = RateLimit::new(60, " ", 0);
        assert!(errors.covers(category("event")));
        assert!(!errors.covers(category("transaction")));
        assert!(!errors.covers(category("client_report")));
        assert!(all.covers(category("client_report")));
        assert!(all.covers(category("event")));
        assert_eq!(RateLimit::new(u64::MAX, "", 5).until_ms, i64::MAX);
    }
}
