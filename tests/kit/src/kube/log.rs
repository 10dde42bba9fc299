//! The request log tests assert on: every request the fake received, with
//! what it answered, in arrival order.

use std::time::SystemTime;

use serde_json::Value;

use crate::net::http::{query_param, Request};

/// A request body as logged.
#[derive(Debug, Clone, PartialEq)]
pub enum LoggedBody {
    Empty,
    /// The body parsed as JSON.
    Json(Value),
    /// A body that is not JSON, decoded lossily as UTF-8.
    Raw(String),
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    /// The path as sent (percent-encoded), without the query.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    /// The label of the extra token it carried (see
    /// `FakeKube::issue_token`), if it carried one.
    pub client: Option<String>,
    pub body: LoggedBody,
    /// The HTTP status answered; `None` while unanswered or when the connection was reset.
    pub status: Option<u16>,
    /// When it arrived (wall clock), before any injected delay.
    pub received_at: SystemTime,
    /// When its answer was ready, after the change it made (if any) was
    /// stored; `None` while unanswered or when the connection was reset.
    pub answered_at: Option<SystemTime>,
}

impl LoggedRequest {
    pub(crate) fn new(req: &Request, status: Option<u16>) -> LoggedRequest {
        let body = if req.body.is_empty() {
            LoggedBody::Empty
        } else {
            match serde_json::from_slice(&req.body) {
                Ok(v) => LoggedBody::Json(v),
                Err(_) => LoggedBody::Raw(String::from_utf8_lossy(&req.body).into_owned()),
            }
        };
        LoggedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            content_type: req.header("content-type").map(String::from),
            user_agent: req.header("user-agent").map(String::from),
            client: None,
            body,
            status,
            received_at: SystemTime::now(),
            answered_at: None,
        }
    }

    /// POST, PUT, PATCH or DELETE.
    pub fn is_write(&self) -> bool {
        matches!(self.method.as_str(), "POST" | "PUT" | "PATCH" | "DELETE")
    }

    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(&self.query, name)
    }

    /// The body, if it was JSON.
    pub fn json(&self) -> Option<&Value> {
        match &self.body {
            LoggedBody::Json(v) => Some(v),
            _ => None,
        }
    }
}
