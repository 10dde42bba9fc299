//! What tests assert on: every request the fake received, in arrival
//! order, with every byte it sent (headers and body), how it claimed to
//! authenticate, what it was answered, and whether it arrived inside a
//! rate limit that covered it (a client that honours limits never sends
//! such a request).

use super::auth::{AuthMethod, Claim};
use super::faults::FaultKind;
use crate::net::http::Request;

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    /// The path as sent (percent-encoded), without the query.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Every header, names lower-cased, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body as received (empty when it was over the cap and left unread).
    pub body: Vec<u8>,
    /// Where the request carried its auth.
    pub auth: AuthMethod,
    /// `sentry_key` as claimed (header or query), if any.
    pub public_key: Option<String>,
    /// `sentry_client` as claimed, if any.
    pub sentry_client: Option<String>,
    /// `sentry_version` as claimed, if any.
    pub sentry_version: Option<String>,
    /// The HTTP status answered; `None` while unanswered or when the connection was reset.
    pub status: Option<u16>,
    /// The `detail` of an error answer.
    pub detail: Option<String>,
    /// The `id` of a 200 answer.
    pub event_id: Option<String>,
    /// Whether a live rate limit covered this request when it arrived (a
    /// limit on all categories, or one on the category of one of its
    /// items); a client that honours `Retry-After` and
    /// `X-Sentry-Rate-Limits` never sends such a request.
    pub in_rate_limit: bool,
    /// The injected fault it met, if any.
    pub fault: Option<FaultKind>,
    /// When it arrived, milliseconds on the fake's clock.
    pub received_at_ms: i64,
}

impl LoggedRequest {
    pub(crate) fn new(
        req: &Request,
        claim: &Claim,
        in_rate_limit: bool,
        fault: Option<FaultKind>,
        received_at_ms: i64,
    ) -> LoggedRequest {
        let claimed = |k: &str| claim.get(k).map(str::to_string);
        LoggedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            headers: req
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            body: req.body.clone(),
            auth: claim.method,
            public_key: claimed("sentry_key"),
            sentry_client: claimed("sentry_client"),
            sentry_version: claimed("sentry_version"),
            status: None,
            detail: None,
            event_id: None,
            in_rate_limit,
            fault,
            received_at_ms,
        }
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Every byte of the request as text: the request line, the headers
    /// and the body (for "this secret appears nowhere" checks).
    pub fn all_text(&self) -> String {
        let mut out = format!("{} {}", self.method, self.path);
        if !self.query.is_empty() {
            out.push('?');
            out.push_str(&self.query);
        }
        out.push('\n');
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\n"));
        }
        out.push('\n');
        out.push_str(&self.text());
        out
    }
}
