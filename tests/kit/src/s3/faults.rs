//! Fault injection: the next N requests (optionally only those with a given
//! method and/or path prefix) get an S3 error, a delay, or a TCP reset. A
//! fault hits before authentication, as a failing front end would.

use std::time::Duration;

use super::errors::{self, S3Error};

/// What a faulty request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// 500 `InternalError` (`We encountered an internal error. Please try again.`).
    InternalError,
    /// 503 `SlowDown` (`Please reduce your request rate.`).
    SlowDown,
    /// 403 `AccessDenied` (`Access Denied`).
    AccessDenied,
    /// Any status with this S3 error code and message.
    Error {
        status: u16,
        code: String,
        message: String,
    },
    /// Waits this long, then answers the request normally.
    Hang(Duration),
    /// Resets the connection (RST, via `SO_LINGER` 0) without answering.
    Reset,
}

/// A fault for the next `count` matching requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Only requests with this method (e.g. `"GET"`); any if `None`.
    pub method: Option<String>,
    /// Only requests whose raw path starts with this; any if `None`.
    pub path_prefix: Option<String>,
    /// How many more requests it hits.
    pub count: usize,
}

impl Fault {
    /// The fault for the next single request.
    pub fn new(kind: FaultKind) -> Fault {
        Fault {
            kind,
            method: None,
            path_prefix: None,
            count: 1,
        }
    }

    /// Hits the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Fault {
        self.count = n;
        self
    }

    /// Only requests with this method.
    pub fn method(mut self, method: &str) -> Fault {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests whose raw path starts with `prefix`.
    pub fn path_prefix(mut self, prefix: &str) -> Fault {
        self.path_prefix = Some(prefix.to_string());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.count > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
    }
}

/// What the server does with a faulty request.
pub(crate) enum Action {
    Fail(S3Error),
    Hang(Duration),
    Reset,
}

/// Consumes one hit of the first matching fault.
pub(crate) fn take(faults: &mut Vec<Fault>, method: &str, path: &str) -> Option<Action> {
    let i = faults.iter().position(|f| f.matches(method, path))?;
    faults[i].count -= 1;
    let kind = faults[i].kind.clone();
    faults.retain(|f| f.count > 0);
    Some(match kind {
        FaultKind::InternalError => Action::Fail(errors::internal_error()),
        FaultKind::SlowDown => Action::Fail(errors::slow_down()),
        FaultKind::AccessDenied => Action::Fail(errors::access_denied()),
        FaultKind::Error {
            status,
            code,
            message,
        } => Action::Fail(S3Error::new(status, &code, &message)),
        FaultKind::Hang(d) => Action::Hang(d),
        FaultKind::Reset => Action::Reset,
    })
}
