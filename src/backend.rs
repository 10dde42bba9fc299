//! The Node System backend client: signed requests, bounded in time and size.
//!
//! Every request carries the node's address, a timestamp and an EIP-191
//! signature of `METHOD\nPATH_AND_QUERY\nTIMESTAMP\nhex(sha256(body))` (see the
//! README's "Backend API"). Statuses are never turned into transport errors,
//! so a 429/503's `Retry-After` reaches the scheduler; response bodies are
//! capped, so a huge or endless answer is an error and not an out-of-memory.
//! A desired state that does not parse or validate is an error: only a
//! well-formed list, possibly empty, is ever handed on.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

use crate::clock::unix_secs;
use crate::identity::NodeIdentity;
use crate::names::is_dns_label;

/// Largest desired-state or error body read.
pub const MAX_BODY: u64 = 1024 * 1024;
/// Largest manifest read.
pub const MAX_MANIFEST: u64 = 1024 * 1024;
/// Longest version string accepted.
pub const MAX_VERSION: usize = 128;

/// A failed backend call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// No HTTP answer: refused, reset, timed out, TLS failure, body cut off.
    Unreachable(String),
    /// The backend asked us to wait (429 or 503 with `Retry-After`).
    RetryAfter { code: u16, after: Duration },
    /// Any other non-success status.
    Status {
        code: u16,
        error: String,
        message: String,
    },
    /// A success whose body breaks the contract.
    Invalid(String),
    /// Not sent: the Lease may have lapsed (see `outbound::Fence`).
    Fenced(crate::outbound::Fenced),
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackendError::Unreachable(m) => write!(f, "backend unreachable: {m}"),
            BackendError::Fenced(e) => write!(f, "{e}"),
            BackendError::RetryAfter { code, after } => {
                write!(
                    f,
                    "backend answered {code}; retrying after {}s as asked",
                    after.as_secs()
                )
            }
            BackendError::Status {
                code,
                error,
                message,
            } => write!(f, "backend answered {code} {error}: {message}"),
            BackendError::Invalid(m) => write!(f, "backend answer breaks the contract: {m}"),
        }
    }
}

impl BackendError {
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            BackendError::RetryAfter { after, .. } => Some(*after),
            _ => None,
        }
    }
}

/// One workload the backend wants on this node.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DesiredWorkload {
    pub name: String,
    pub version: String,
}

/// The answer to a desired-state fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Desired {
    /// 304: what we have is current.
    Unchanged,
    Changed {
        workloads: Vec<DesiredWorkload>,
        etag: Option<String>,
    },
}

pub struct Backend {
    base_url: String,
    base_path: String,
    agent: ureq::Agent,
    identity: NodeIdentity,
    /// Every backend call is leader-only.
    fence: crate::outbound::Fence,
}

/// Manifests by workload and version. A version's manifest never changes,
/// so each is fetched once; versions no longer desired are forgotten. They
/// are kept as compact JSON text (a parsed tree costs several times more) and
/// parsed when used.
#[derive(Debug, Default)]
pub struct ManifestCache {
    entries: BTreeMap<(String, String), Box<str>>,
}

impl ManifestCache {
    /// The manifest of `name` at `version`, fetched on first use.
    pub fn fetch(
        &mut self,
        backend: &Backend,
        name: &str,
        version: &str,
        wall: SystemTime,
    ) -> Result<serde_json::Value, BackendError> {
        if let Some(m) = self.get(name, version) {
            return Ok(m);
        }
        let manifest = backend.fetch_manifest(name, version, wall)?;
        let key = (name.to_string(), version.to_string());
        self.entries
            .insert(key, manifest.to_string().into_boxed_str());
        Ok(manifest)
    }

    /// Whether the manifest of `name` at `version` is cached.
    pub fn contains(&self, name: &str, version: &str) -> bool {
        self.entries
            .contains_key(&(name.to_string(), version.to_string()))
    }

    /// The cached manifest of `name` at `version`, if fetched before.
    pub fn get(&self, name: &str, version: &str) -> Option<serde_json::Value> {
        let text = self.entries.get(&(name.to_string(), version.to_string()))?;
        serde_json::from_str(text).ok()
    }

    /// Keeps only the manifests of the desired versions.
    pub fn retain(&mut self, desired: &BTreeMap<String, String>) {
        self.entries
            .retain(|(name, version), _| desired.get(name) == Some(version));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// One request to make.
struct Call<'a> {
    method: &'a str,
    path: &'a str,
    body: Option<&'a [u8]>,
    if_none_match: Option<&'a str>,
    limit: u64,
    timeout: Option<Duration>,
}

impl<'a> Call<'a> {
    fn get(path: &'a str, limit: u64) -> Call<'a> {
        Call {
            method: "GET",
            path,
            body: None,
            if_none_match: None,
            limit,
            timeout: None,
        }
    }

    fn send(method: &'a str, path: &'a str, body: &'a [u8]) -> Call<'a> {
        Call {
            method,
            body: Some(body),
            ..Call::get(path, MAX_BODY)
        }
    }
}

struct Answer {
    code: u16,
    etag: Option<String>,
    body: Vec<u8>,
}

impl Backend {
    pub fn new(base_url: &str, identity: NodeIdentity, timeout: Duration) -> Backend {
        let config = crate::outbound::config(timeout).max_redirects(0).build();
        Backend {
            base_url: base_url.trim_end_matches('/').to_string(),
            base_path: base_path(base_url),
            agent: ureq::Agent::new_with_config(config),
            identity,
            fence: crate::outbound::Fence::open(),
        }
    }

    /// Sends nothing once `fence` closes.
    pub fn with_fence(mut self, fence: crate::outbound::Fence) -> Backend {
        self.fence = fence;
        self
    }

    pub fn address(&self) -> &str {
        self.identity.address()
    }

    /// `GET /v1/nodes/{address}/workloads`, conditional on `etag`.
    pub fn fetch_workloads(
        &self,
        etag: Option<&str>,
        wall: SystemTime,
    ) -> Result<Desired, BackendError> {
        let path = format!("/v1/nodes/{}/workloads", self.address());
        let answer = self.call(
            Call {
                if_none_match: etag,
                ..Call::get(&path, MAX_BODY)
            },
            wall,
        )?;
        match answer.code {
            304 => Ok(Desired::Unchanged),
            200 => Ok(Desired::Changed {
                workloads: parse_desired(&answer.body)?,
                etag: answer.etag,
            }),
            code => Err(unexpected(code, &answer.body)),
        }
    }

    /// `GET /v1/workloads/{name}/versions/{version}/manifest`: the Deployment, as JSON.
    pub fn fetch_manifest(
        &self,
        name: &str,
        version: &str,
        wall: SystemTime,
    ) -> Result<serde_json::Value, BackendError> {
        let path = format!("/v1/workloads/{name}/versions/{}/manifest", encode(version));
        let answer = self.call(Call::get(&path, MAX_MANIFEST), wall)?;
        match answer.code {
            200 => serde_json::from_slice(&answer.body).map_err(|e| {
                BackendError::Invalid(format!("manifest of {name} {version} is not JSON: {e}"))
            }),
            code => Err(unexpected(code, &answer.body)),
        }
    }

    /// `PUT /v1/nodes/{address}/workloads/{name}/version`.
    pub fn put_version(
        &self,
        name: &str,
        version: &str,
        applied_at: &str,
        wall: SystemTime,
    ) -> Result<(), BackendError> {
        let path = format!("/v1/nodes/{}/workloads/{name}/version", self.address());
        let body = serde_json::json!({ "version": version, "appliedAt": applied_at }).to_string();
        let answer = self.call(Call::send("PUT", &path, body.as_bytes()), wall)?;
        match answer.code {
            200..=299 => Ok(()),
            code => Err(unexpected(code, &answer.body)),
        }
    }

    /// `POST /v1/nodes/{address}/health` with a ready `{"reports":[…]}` body;
    /// returns how many reports the backend counted as new. `within` bounds
    /// the call more tightly than `WM_HTTP_TIMEOUT` (the flush at shutdown).
    pub fn post_health(
        &self,
        body: &str,
        within: Option<Duration>,
        wall: SystemTime,
    ) -> Result<u64, BackendError> {
        #[derive(Deserialize)]
        struct Accepted {
            accepted: u64,
        }
        let path = format!("/v1/nodes/{}/health", self.address());
        let answer = self.call(
            Call {
                timeout: within,
                ..Call::send("POST", &path, body.as_bytes())
            },
            wall,
        )?;
        match answer.code {
            200..=299 => serde_json::from_slice::<Accepted>(&answer.body)
                .map(|a| a.accepted)
                .map_err(|e| {
                    BackendError::Invalid(format!("health answer without \"accepted\": {e}"))
                }),
            code => Err(unexpected(code, &answer.body)),
        }
    }

    fn call(&self, call: Call<'_>, wall: SystemTime) -> Result<Answer, BackendError> {
        let Call {
            method,
            path,
            body,
            if_none_match,
            limit,
            timeout,
        } = call;
        let signed = self.identity.sign_request(
            method,
            &format!("{}{path}", self.base_path),
            unix_secs(wall),
            body.unwrap_or_default(),
        );
        let uri = format!("{}{path}", self.base_url);
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(&uri)
            .header("Accept", "application/json");
        let mut request = signed
            .pairs()
            .into_iter()
            .fold(request, |r, (k, v)| r.header(k, v));
        if let Some(etag) = if_none_match {
            request = request.header("If-None-Match", etag);
        }
        let result = match body {
            Some(b) => request
                .header("Content-Type", "application/json")
                .body(b.to_vec())
                .map_err(|e| BackendError::Invalid(e.to_string()))
                .and_then(|r| self.send(r, timeout)),
            None => request
                .body(())
                .map_err(|e| BackendError::Invalid(e.to_string()))
                .and_then(|r| self.send(r, timeout)),
        };
        let mut response = result?;
        let code = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let etag = header("ETag");
        let wait = asked_to_wait(code, header("Retry-After").as_deref());
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| {
                BackendError::Unreachable(format!("reading the answer to {method} {path}: {e}"))
            })?;
        if let Some(after) = wait {
            return Err(BackendError::RetryAfter { code, after });
        }
        Ok(Answer { code, etag, body })
    }
}

impl Backend {
    /// Sends a request, within `timeout` instead of the agent's when given.
    fn send<S: ureq::AsSendBody>(
        &self,
        request: ureq::http::Request<S>,
        timeout: Option<Duration>,
    ) -> Result<ureq::http::Response<ureq::Body>, BackendError> {
        self.fence.check().map_err(BackendError::Fenced)?;
        let request = match timeout {
            Some(t) => self
                .agent
                .configure_request(request)
                .timeout_global(Some(t))
                .timeout_connect(Some(t / 3))
                .build(),
            None => request,
        };
        self.agent.run(request).map_err(unreachable)
    }
}

fn unreachable(e: ureq::Error) -> BackendError {
    BackendError::Unreachable(e.to_string())
}

/// A non-success status, with the contract's error body when there is one.
fn unexpected(code: u16, body: &[u8]) -> BackendError {
    #[derive(Deserialize)]
    struct ErrorBody {
        #[serde(default)]
        error: String,
        #[serde(default)]
        message: String,
    }
    match serde_json::from_slice::<ErrorBody>(body) {
        Ok(e) => BackendError::Status {
            code,
            error: e.error,
            message: e.message,
        },
        Err(_) => BackendError::Status {
            code,
            error: String::new(),
            message: crate::text::printable(
                String::from_utf8_lossy(&body[..body.len().min(200)]).trim(),
            ),
        },
    }
}

/// The wait an answer asks for: a `429` or `503` with `Retry-After` in
/// seconds. Any other answer, or a value that is not a number of seconds,
/// asks for nothing (the caller backs off on its own).
pub fn asked_to_wait(code: u16, retry_after: Option<&str>) -> Option<Duration> {
    match code {
        429 | 503 => retry_after?
            .trim()
            .parse::<u64>()
            .ok()
            .map(Duration::from_secs),
        _ => None,
    }
}

/// Parses and validates a desired-state body: JSON, DNS-1123 names, no
/// duplicates, plain version strings.
pub fn parse_desired(body: &[u8]) -> Result<Vec<DesiredWorkload>, BackendError> {
    #[derive(Deserialize)]
    struct List {
        workloads: Vec<DesiredWorkload>,
    }
    let list: List = serde_json::from_slice(body).map_err(|e| {
        BackendError::Invalid(format!(
            "desired state is not {{\"workloads\": [{{name, version}}]}}: {e}"
        ))
    })?;
    let mut seen = BTreeSet::new();
    for w in &list.workloads {
        if !is_dns_label(&w.name) {
            return Err(BackendError::Invalid(format!(
                "workload name {:?} is not a DNS-1123 label",
                w.name
            )));
        }
        if !seen.insert(w.name.as_str()) {
            return Err(BackendError::Invalid(format!(
                "workload {} is listed twice",
                w.name
            )));
        }
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+');
        if w.version.is_empty() || w.version.len() > MAX_VERSION || !w.version.chars().all(plain) {
            return Err(BackendError::Invalid(format!(
                "workload {} has an unusable version {:?}",
                w.name, w.version
            )));
        }
    }
    Ok(list.workloads)
}

/// The path part of a base URL: `https://h/api/` → `/api`.
fn base_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.find('/') {
        Some(i) => rest[i..].trim_end_matches('/').to_string(),
        None => String::new(),
    }
}

/// Versions are plain (`[A-Za-z0-9._+-]`); `+` is the one that needs escaping in a path.
fn encode(version: &str) -> String {
    version.replace('+', "%2B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_429_and_503_with_seconds_ask_for_a_wait() {
        let secs = Duration::from_secs;
        assert_eq!(asked_to_wait(503, Some("30")), Some(secs(30)));
        assert_eq!(asked_to_wait(429, Some(" 7 ")), Some(secs(7)));
        assert_eq!(asked_to_wait(503, None), None);
        assert_eq!(asked_to_wait(500, Some("30")), None);
        assert_eq!(
            asked_to_wait(429, Some("Wed, 21 Oct 2026 07:28:00 GMT")),
            None
        );
        assert_eq!(asked_to_wait(429, Some("-1")), None);
    }

    #[test]
    fn base_paths() {
        assert_eq!(base_path("https://ns.example/api"), "/api");
        assert_eq!(base_path("https://ns.example/api/v2/"), "/api/v2");
        assert_eq!(base_path("http://127.0.0.1:8080"), "");
    }

    #[test]
    fn desired_state_is_validated_whole() {
        let ok = parse_desired(br#"{"workloads":[{"name":"web","version":"1.4.0"},{"name":"db","version":"v2+build.7","extra":1}]}"#).unwrap();
        assert_eq!(
            ok[1],
            DesiredWorkload {
                name: "db".into(),
                version: "v2+build.7".into()
            }
        );
        assert_eq!(
            parse_desired(br#"{"workloads":[]}"#).unwrap(),
            vec![],
            "an empty list is a real answer"
        );
        for bad in [
            &br#"{"workloads":[{"name":"web","version":"1.4.0"}"#[..],
            br#"{}"#,
            br#"{"workloads":null}"#,
            br#"[]"#,
            br#"{"workloads":[{"name":"Web","version":"1"}]}"#,
            br#"{"workloads":[{"name":"web","version":"1"},{"name":"web","version":"2"}]}"#,
            br#"{"workloads":[{"name":"web","version":""}]}"#,
            br#"{"workloads":[{"name":"web","version":"1/../../x"}]}"#,
            br#"{"workloads":[{"name":"web"}]}"#,
        ] {
            assert!(
                matches!(parse_desired(bad), Err(BackendError::Invalid(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn error_bodies_are_read() {
        let e = unexpected(404, br#"{"error":"not_found","message":"no such version"}"#);
        assert_eq!(
            e.to_string(),
            "backend answered 404 not_found: no such version"
        );
        let e = unexpected(502, b"<html>\x1b[2J bad gateway</html>");
        assert!(!e.to_string().contains('\x1b'));
    }
}
