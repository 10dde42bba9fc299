//! Fault injection: the next N requests (optionally only those with a given
//! method and/or path) get an error status, a delay or a TCP reset. A
//! fault hits before authentication, as a failing load balancer in front
//! of Relay would. Rate limits are not faults: they are
//! [`super::FakeSentry::rate_limit`], which answers as Relay does.

use std::time::Duration;

use crate::net;

use super::errors::SentryError;
use crate::net::http::Response;

/// What a faulty request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// 500 `{"detail": "internal server error"}`.
    InternalError,
    /// 502 `{"detail": "bad gateway"}`, as a proxy in front of a dead Relay answers.
    BadGateway,
    /// 503 `{"detail": "the service is overloaded"}`, Relay's `ServiceUnavailable`.
    ServiceUnavailable,
    /// Any status with this `detail`.
    Error { status: u16, detail: String },
    /// Waits this long, then answers the request normally.
    Hang(Duration),
    /// Resets the connection (RST, via `SO_LINGER` 0) without answering.
    Reset,
}

/// A fault for the next `count` matching requests (see [`crate::net::faults::Fault`]).
pub type Fault = net::faults::Fault<FaultKind>;

/// What the server does with a faulty request.
pub(crate) enum Action {
    Respond(Response),
    Hang(Duration),
    Reset,
}

/// Consumes one hit of the first matching fault: what it was and what to do.
pub(crate) fn take(
    faults: &mut Vec<Fault>,
    method: &str,
    path: &str,
) -> Option<(FaultKind, Action)> {
    let kind = net::faults::take(faults, method, path, |_| true)?;
    let fail =
        |status: u16, detail: &str| Action::Respond(SentryError::new(status, detail).response());
    let action = match kind.clone() {
        FaultKind::InternalError => fail(500, "internal server error"),
        FaultKind::BadGateway => fail(502, "bad gateway"),
        FaultKind::ServiceUnavailable => fail(503, "the service is overloaded"),
        FaultKind::Error { status, detail } => fail(status, &detail),
        FaultKind::Hang(d) => Action::Hang(d),
        FaultKind::Reset => Action::Reset,
    };
    Some((kind, action))
}
