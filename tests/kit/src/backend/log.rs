//! What tests assert on: every request the fake received (with whether it
//! authenticated and what it answered), in arrival order, and the delivery
//! log of health POSTs with the report ids each carried.

use serde_json::Value;

use super::faults::FaultKind;
use crate::net::http::Request;

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    /// The path as sent (percent-encoded, base path included), without the query.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// Every header, names lower-cased, in the order sent.
    pub headers: Vec<(String, String)>,
    /// The body as received (empty when it was over the cap and left unread).
    pub body: Vec<u8>,
    /// The HTTP status answered; `None` while unanswered or when the connection was reset.
    pub status: Option<u16>,
    /// Whether the request authenticated: the signature recovered to
    /// `X-Node-Address` and the timestamp was within 300 s.
    pub verified: bool,
    /// Why it did not authenticate (the 401's message), if it did not.
    pub auth_error: Option<String>,
    /// The injected fault it met, if any.
    pub fault: Option<FaultKind>,
    /// The answer could not be written whole: the connection was cut (the
    /// backend went down) or closed by the client first. Whatever the
    /// request changed, the client never learnt it.
    pub answer_lost: bool,
}

impl LoggedRequest {
    pub(crate) fn new(
        req: &Request,
        auth: &Result<String, String>,
        status: Option<u16>,
        fault: Option<FaultKind>,
    ) -> LoggedRequest {
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
            status,
            verified: auth.is_ok(),
            auth_error: auth.as_ref().err().cloned(),
            fault,
            answer_lost: false,
        }
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn if_none_match(&self) -> Option<&str> {
        self.header("if-none-match")
    }

    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// `X-Node-Address` as sent.
    pub fn address(&self) -> Option<&str> {
        self.header("x-node-address")
    }

    /// `X-Node-Timestamp` as sent.
    pub fn timestamp(&self) -> Option<&str> {
        self.header("x-node-timestamp")
    }

    /// `X-Node-Signature` as sent.
    pub fn signature(&self) -> Option<&str> {
        self.header("x-node-signature")
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// One `POST …/health`, whatever it was answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The `{address}` of the path, as sent.
    pub node: String,
    /// The `id` of each report in the body, in body order (those that are
    /// strings; empty if the body is not a report batch).
    pub ids: Vec<String>,
    /// The HTTP status answered; `None` while unanswered or when the connection was reset.
    pub status: Option<u16>,
    /// How many reports were new (the 202's `accepted`); `None` unless 202.
    pub accepted: Option<usize>,
}

impl Delivery {
    /// The delivery record of `req` if it is a health POST under `base_path`.
    pub(crate) fn of(
        base_path: &str,
        req: &Request,
        status: Option<u16>,
        accepted: Option<usize>,
    ) -> Option<Delivery> {
        let rest = req.path.strip_prefix(base_path)?;
        let node = rest
            .strip_prefix("/v1/nodes/")?
            .strip_suffix("/health")
            .filter(|n| !n.contains('/'))?;
        if req.method != "POST" {
            return None;
        }
        let ids = serde_json::from_slice::<Value>(&req.body)
            .ok()
            .and_then(|v| {
                v.get("reports")?.as_array().map(|reports| {
                    reports
                        .iter()
                        .filter_map(|r| r.get("id")?.as_str().map(str::to_string))
                        .collect()
                })
            })
            .unwrap_or_default();
        Some(Delivery {
            node: node.to_string(),
            ids,
            status,
            accepted,
        })
    }
}
