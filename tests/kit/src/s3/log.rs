//! The request log tests assert on: every request the fake received, how it
//! was signed and by which key, and what it answered, in arrival order.

use super::sigv4;
use crate::net::http::{parse_query, query_param, Request};

/// How a request claimed to be authenticated (whether the claim held is in
/// [`LoggedRequest::status`] and [`LoggedRequest::error_code`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    /// Neither an `Authorization` header nor `X-Amz-*` query parameters.
    Unsigned,
    /// `Authorization: AWS4-HMAC-SHA256 Credential=KEY/...` (empty `access_key`
    /// when the header names none).
    Header { access_key: String },
    /// Presigned: `X-Amz-Credential=KEY/...` (empty `access_key` when absent).
    Presigned { access_key: String },
}

impl Auth {
    pub(crate) fn of(req: &Request, pairs: &[(String, String)]) -> Auth {
        let key = |credential: &str| credential.split('/').next().unwrap_or("").to_string();
        if let Some(h) = req.header("authorization") {
            let access_key = sigv4::parse_auth_header(h)
                .map(|a| key(&a.credential))
                .unwrap_or_default();
            return Auth::Header { access_key };
        }
        if pairs
            .iter()
            .any(|(k, _)| k.starts_with("X-Amz-") && k != "X-Amz-Content-Sha256")
        {
            let access_key = pairs
                .iter()
                .find(|(k, _)| k == "X-Amz-Credential")
                .map(|(_, v)| key(v))
                .unwrap_or_default();
            return Auth::Presigned { access_key };
        }
        Auth::Unsigned
    }

    pub fn is_signed(&self) -> bool {
        !matches!(self, Auth::Unsigned)
    }

    /// The access key the request was signed with, if signed.
    pub fn access_key(&self) -> Option<&str> {
        match self {
            Auth::Unsigned => None,
            Auth::Header { access_key } | Auth::Presigned { access_key } => Some(access_key),
        }
    }
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedRequest {
    pub method: String,
    /// The path as sent (percent-encoded), without the query.
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// The decoded bucket and key of a path-style `/{bucket}/{key}` (empty
    /// strings where the path has none; both empty if it does not decode).
    pub bucket: String,
    pub key: String,
    /// Every header, names lower-cased, in the order sent.
    pub headers: Vec<(String, String)>,
    pub auth: Auth,
    /// The HTTP status answered; `None` when the connection was reset.
    pub status: Option<u16>,
    /// The S3 error code of an error answer (`NoSuchKey`, `SlowDown`, ...).
    pub error_code: Option<String>,
    /// The `x-amz-request-id` answered (also in error bodies).
    pub request_id: String,
}

impl LoggedRequest {
    pub(crate) fn new(
        req: &Request,
        status: Option<u16>,
        error_code: Option<String>,
        request_id: &str,
    ) -> LoggedRequest {
        let pairs = parse_query(&req.query).unwrap_or_default();
        let (bucket, key) = super::api::split_path(&req.path).unwrap_or_default();
        LoggedRequest {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            bucket,
            key,
            headers: req
                .headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
            auth: Auth::of(req, &pairs),
            status,
            error_code,
            request_id: request_id.to_string(),
        }
    }

    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        query_param(&self.query, name)
    }
}
