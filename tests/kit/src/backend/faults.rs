//! Fault injection: the next N requests (optionally only those with a given
//! method and/or a path containing a substring) get an error status, a
//! delay, a TCP reset, a broken or oversized 200 body, or a manifest of the
//! wrong kind or namespace. Status and body faults hit before
//! authentication, as a failing front end would; manifest faults change
//! what an authenticated manifest request would have received.

use std::time::Duration;

use crate::net;

use super::errors::ApiError;
use crate::net::http::Response;

/// What a faulty request gets.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultKind {
    /// 500 `internal_error`.
    InternalError,
    /// 502 `bad_gateway`, as a proxy in front of a dead backend answers.
    BadGateway,
    /// 503 `unavailable` with `Retry-After: retry_after`.
    Unavailable { retry_after: u64 },
    /// 429 `too_many_requests` with `Retry-After: retry_after`.
    TooManyRequests { retry_after: u64 },
    /// Any status with this error code and message, `Retry-After` if given.
    Error {
        status: u16,
        error: String,
        message: String,
        retry_after: Option<u64>,
    },
    /// Waits this long, then answers the request normally.
    Hang(Duration),
    /// Resets the connection (RST, via `SO_LINGER` 0) without answering.
    Reset,
    /// 200 `application/json` whose body is cut off mid-document.
    MalformedJson,
    /// 200 with `Content-Length` of this many bytes, all sent (unless the
    /// client hangs up first); a JSON document that never closes.
    HugeBody(u64),
    /// 200 with a chunked body that never ends: the client must cut it off
    /// (the fake gives up after a minute).
    EndlessBody,
    /// The real answer, written one byte every this long (a slow drip):
    /// a client without an overall deadline waits for minutes.
    Drip(Duration),
    /// Manifest requests only: the manifest comes back with this `kind`
    /// (e.g. `Service`, with `apiVersion: v1`).
    ManifestKind(String),
    /// Manifest requests only: the manifest comes back with
    /// `metadata.namespace` set to this.
    ManifestNamespace(String),
}

impl FaultKind {
    fn manifest_only(&self) -> bool {
        matches!(
            self,
            FaultKind::ManifestKind(_) | FaultKind::ManifestNamespace(_)
        )
    }
}

/// A fault for the next `count` matching requests (see [`crate::net::faults::Fault`]).
pub type Fault = net::faults::Fault<FaultKind>;

/// How a manifest fault changes the manifest.
pub(crate) enum Rewrite {
    Kind(String),
    Namespace(String),
}

/// What the server does with a faulty request.
pub(crate) enum Action {
    Respond(Response),
    Hang(Duration),
    Reset,
    /// The real answer, one byte every this long.
    Drip(Duration),
    /// A streamed 200 body: `Some(len)` bytes, or endless.
    Stream(Option<u64>),
    Manifest(Rewrite),
}

/// Consumes one hit of the first matching fault: what it was and what to do.
pub(crate) fn take(
    faults: &mut Vec<Fault>,
    method: &str,
    path: &str,
) -> Option<(FaultKind, Action)> {
    let manifest = method == "GET" && path.ends_with("/manifest");
    let kind = net::faults::take(faults, method, path, |k| manifest || !k.manifest_only())?;
    let fail = |status: u16, error: &str, message: &str, retry_after: Option<u64>| {
        let mut e = ApiError::new(status, error, message);
        e.retry_after = retry_after;
        Action::Respond(e.response())
    };
    let action = match kind.clone() {
        FaultKind::InternalError => fail(500, "internal_error", "injected internal error", None),
        FaultKind::BadGateway => fail(
            502,
            "bad_gateway",
            "the upstream backend is unreachable",
            None,
        ),
        FaultKind::Unavailable { retry_after } => fail(
            503,
            "unavailable",
            "the backend is temporarily unavailable",
            Some(retry_after),
        ),
        FaultKind::TooManyRequests { retry_after } => fail(
            429,
            "too_many_requests",
            "too many requests; slow down",
            Some(retry_after),
        ),
        FaultKind::Error {
            status,
            error,
            message,
            retry_after,
        } => fail(status, &error, &message, retry_after),
        FaultKind::Hang(d) => Action::Hang(d),
        FaultKind::Drip(every) => Action::Drip(every),
        FaultKind::Reset => Action::Reset,
        FaultKind::MalformedJson => Action::Respond(
            Response::new(
                200,
                br#"{"workloads": [{"name": "web", "version": "1.4"#.to_vec(),
            )
            .with_header("Content-Type", "application/json"),
        ),
        FaultKind::HugeBody(len) => Action::Stream(Some(len)),
        FaultKind::EndlessBody => Action::Stream(None),
        FaultKind::ManifestKind(kind) => Action::Manifest(Rewrite::Kind(kind)),
        FaultKind::ManifestNamespace(ns) => Action::Manifest(Rewrite::Namespace(ns)),
    };
    Some((kind, action))
}
