//! Fault injection: the next N requests (optionally only those with a given
//! method and/or path prefix) get an S3 error, a delay, or a TCP reset. A
//! fault hits before authentication, as a failing front end would.

use std::time::Duration;

use crate::net;

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

/// A fault for the next `count` matching requests (see [`crate::net::faults::Fault`]).
pub type Fault = net::faults::Fault<FaultKind>;

/// What the server does with a faulty request.
pub(crate) enum Action {
    Fail(S3Error),
    Hang(Duration),
    Reset,
}

/// Consumes one hit of the first matching fault.
pub(crate) fn take(faults: &mut Vec<Fault>, method: &str, path: &str) -> Option<Action> {
    Some(match net::faults::take(faults, method, path, |_| true)? {
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
