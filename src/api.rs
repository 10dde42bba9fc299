//! Our HTTP API, as a pure function from a request to a response.
//!
//! The routes and codes are the contract in the README's "HTTP API" section.
//! Handling never does I/O and never waits: the server hands in a request
//! whose body is already in memory and capped, and writes the response.

use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;

use crate::names::is_dns_label;
use crate::state::{Route, State};
use crate::workloads::{Refused, Reported};
use crate::{metrics, status};

/// Largest body we accept (the server refuses larger ones before we see them).
pub const MAX_BODY: usize = 64 * 1024;
/// `/healthz` fails when the main loop has not turned for this long.
pub const LIVENESS: Duration = Duration::from_secs(60);

/// A request, as the handler sees it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query, as sent.
    pub url: &'a str,
    pub content_type: Option<&'a str>,
    pub accept: Option<&'a str>,
    pub body: &'a [u8],
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// The `Allow` header of a 405.
    pub allow: Option<&'static str>,
}

impl Response {
    fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            body,
            allow: None,
        }
    }

    fn text(status: u16, content_type: &'static str, body: String) -> Response {
        Response {
            status,
            content_type,
            body,
            allow: None,
        }
    }

    /// The error body of the contract: `{"error": code, "message": text}`.
    pub fn error(status: u16, code: &str, message: &str) -> Response {
        let body = serde_json::json!({ "error": code, "message": message }).to_string();
        Response::json(status, body)
    }

    fn empty(status: u16) -> Response {
        Response {
            status,
            content_type: "application/json",
            body: String::new(),
            allow: None,
        }
    }
}

enum Matched<'a> {
    Heartbeat(&'a str),
    Status,
    Healthz,
    Readyz,
    Metrics,
    Sync,
    NotFound,
}

impl Matched<'_> {
    fn route(&self) -> Route {
        match self {
            Matched::Heartbeat(_) => Route::Heartbeat,
            Matched::Status => Route::Status,
            Matched::Healthz => Route::Healthz,
            Matched::Readyz => Route::Readyz,
            Matched::Metrics => Route::Metrics,
            Matched::Sync => Route::Sync,
            Matched::NotFound => Route::Other,
        }
    }

    /// The methods the route takes, as an `Allow` header.
    fn allow(&self) -> &'static str {
        match self {
            Matched::Heartbeat(_) | Matched::Sync => "POST",
            _ => "GET, HEAD",
        }
    }
}

fn route(path: &str) -> Matched<'_> {
    match path {
        "/v1/status" => Matched::Status,
        "/healthz" => Matched::Healthz,
        "/readyz" => Matched::Readyz,
        "/metrics" => Matched::Metrics,
        "/v1/sync" => Matched::Sync,
        _ => match path
            .strip_prefix("/v1/workloads/")
            .and_then(|rest| rest.strip_suffix("/health"))
        {
            Some(name) if !name.contains('/') => Matched::Heartbeat(name),
            _ => Matched::NotFound,
        },
    }
}

/// Answers one request; also returns its route, for metrics.
pub fn handle(
    req: &Request<'_>,
    state: &mut State,
    now: Instant,
    wall: SystemTime,
) -> (Route, Response) {
    let (path, query) = req.url.split_once('?').unwrap_or((req.url, ""));
    if req.method != "GET" && req.method != "HEAD" {
        state.changed();
    }
    let matched = route(path);
    let route = matched.route();
    let allow = matched.allow();
    let response = if let Matched::NotFound = matched {
        Response::error(
            404,
            "not_found",
            "no such route; see the README's HTTP API section",
        )
    } else if !allow.split(", ").any(|m| m == req.method) {
        Response {
            allow: Some(allow),
            ..Response::error(
                405,
                "method_not_allowed",
                &format!("this route takes {allow}"),
            )
        }
    } else {
        match matched {
            Matched::Heartbeat(name) => heartbeat(name, req, state, now, wall),
            Matched::Status => status_page(query, req.accept, state, now, wall),
            Matched::Healthz => liveness(state.last_turn, now),
            Matched::Readyz => readyz(state),
            Matched::Metrics => Response::text(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                metrics::render(state, now, wall),
            ),
            Matched::Sync => {
                state.sync_requested = true;
                Response::json(202, r#"{"message":"sync scheduled"}"#.into())
            }
            Matched::NotFound => unreachable!("handled above"),
        }
    };
    (route, response)
}

#[derive(Deserialize)]
struct HeartbeatBody {
    status: String,
    #[serde(default)]
    message: Option<String>,
}

fn heartbeat(
    name: &str,
    req: &Request<'_>,
    state: &mut State,
    now: Instant,
    wall: SystemTime,
) -> Response {
    if !is_dns_label(name) {
        return Response::error(
            400,
            "bad_name",
            "workload names are DNS-1123 labels: 1-63 of a-z, 0-9 and '-', starting and ending with a letter or digit",
        );
    }
    if !is_json(req.content_type) {
        return Response::error(
            415,
            "unsupported_media_type",
            "send the heartbeat as Content-Type: application/json",
        );
    }
    if req.body.len() > MAX_BODY {
        return Response::error(413, "body_too_large", "request body is over 64 KiB");
    }
    // An object only: serde would also read a struct from a JSON array.
    let parsed = serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(req.body)
        .and_then(|object| HeartbeatBody::deserialize(serde_json::Value::Object(object)));
    let body = match parsed {
        Ok(b) => b,
        Err(e) => {
            let message = format!("body must be a JSON object like {{\"status\": \"healthy\", \"message\": \"ok\"}}: {e}");
            return Response::error(400, "bad_json", &message);
        }
    };
    let Some(status) = Reported::parse(&body.status) else {
        return Response::error(
            422,
            "unknown_status",
            "status must be one of healthy, degraded, unhealthy",
        );
    };
    let message = body.message.unwrap_or_default();
    let before = state.workloads.health(name, now);
    match state.workloads.record(name, status, &message, now, wall) {
        Ok(()) => {
            let after = state.workloads.health(name, now);
            if after != before {
                // {:?} escapes control characters: one event, one line.
                log::info!(
                    "workload {name}: {} -> {} {:?}",
                    before.as_str(),
                    after.as_str(),
                    message
                );
            }
            Response::empty(204)
        }
        Err(Refused::Unknown) => Response::error(
            404,
            "unknown_workload",
            "this node's desired state has no workload of that name",
        ),
        Err(Refused::Full) => Response::error(
            503,
            "too_many_workloads",
            "the manager tracks at most 1024 workloads; try again later",
        ),
    }
}

/// `application/json` or any `+json` type, parameters ignored.
fn is_json(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return false };
    let media = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    media == "application/json" || (media.starts_with("application/") && media.ends_with("+json"))
}

fn status_page(
    query: &str,
    accept: Option<&str>,
    state: &mut State,
    now: Instant,
    wall: SystemTime,
) -> Response {
    let wants_text = match query.split('&').find_map(|kv| kv.strip_prefix("format=")) {
        Some(f) => f == "text",
        None => accept.is_some_and(|a| a.contains("text/plain") && !a.contains("application/json")),
    };
    if wants_text {
        Response::text(
            200,
            "text/plain; charset=utf-8",
            status::text(state, now, wall),
        )
    } else {
        Response::json(200, status::json_cached(state, now, wall))
    }
}

/// The `/healthz` answer when the main loop last turned at `last_turn`.
pub fn liveness(last_turn: Instant, now: Instant) -> Response {
    if now.saturating_duration_since(last_turn) <= LIVENESS {
        Response::text(200, "text/plain; charset=utf-8", "ok".into())
    } else {
        Response::error(
            503,
            "stalled",
            "the main loop has not turned for over a minute",
        )
    }
}

fn readyz(state: &State) -> Response {
    if state.kube_answered {
        Response::text(200, "text/plain; charset=utf-8", "ok".into())
    } else {
        Response::error(503, "not_ready", "the Kubernetes API has not answered yet")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Identity;
    use crate::workloads::Health;
    use std::collections::BTreeSet;
    use std::time::UNIX_EPOCH;

    fn state() -> (State, Instant) {
        let now = Instant::now();
        let identity = Identity {
            version: "0.1.0",
            namespace: "edge".into(),
            pod_name: "wm-0".into(),
            node_address: None,
        };
        (State::new(identity, Duration::from_secs(30), now), now)
    }

    fn req<'a>(method: &'a str, url: &'a str, body: &'a str) -> Request<'a> {
        Request {
            method,
            url,
            content_type: Some("application/json"),
            accept: None,
            body: body.as_bytes(),
        }
    }

    fn call(state: &mut State, now: Instant, r: Request<'_>) -> Response {
        handle(&r, state, now, UNIX_EPOCH).1
    }

    fn error_code(r: &Response) -> String {
        let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()));
        v["error"].as_str().unwrap().to_string()
    }

    #[test]
    fn heartbeat_is_recorded() {
        let (mut s, now) = state();
        let r = call(
            &mut s,
            now,
            req(
                "POST",
                "/v1/workloads/web/health",
                r#"{"status":"healthy","message":"ok","x":1}"#,
            ),
        );
        assert_eq!((r.status, r.body.as_str()), (204, ""));
        assert_eq!(s.workloads.health("web", now), Health::Healthy);
        let r = call(
            &mut s,
            now,
            req(
                "POST",
                "/v1/workloads/web/health?x=1",
                r#"{"status":"degraded"}"#,
            ),
        );
        assert_eq!(r.status, 204);
        assert_eq!(s.workloads.health("web", now), Health::Degraded);
    }

    #[test]
    fn heartbeat_errors_follow_the_contract() {
        let (mut s, now) = state();
        let cases: &[(Request<'_>, u16, &str)] = &[
            (
                req(
                    "POST",
                    "/v1/workloads/Web/health",
                    r#"{"status":"healthy"}"#,
                ),
                400,
                "bad_name",
            ),
            (
                req(
                    "POST",
                    "/v1/workloads/a%0d%0ab/health",
                    r#"{"status":"healthy"}"#,
                ),
                400,
                "bad_name",
            ),
            (
                req("POST", "/v1/workloads//health", r#"{"status":"healthy"}"#),
                400,
                "bad_name",
            ),
            (
                req("POST", "/v1/workloads/web/health", r#"{"status":"healthy""#),
                400,
                "bad_json",
            ),
            (
                req(
                    "POST",
                    "/v1/workloads/web/health",
                    r#"{"message":"no status"}"#,
                ),
                400,
                "bad_json",
            ),
            (
                req("POST", "/v1/workloads/web/health", r#"{"status":3}"#),
                400,
                "bad_json",
            ),
            (
                req(
                    "POST",
                    "/v1/workloads/web/health",
                    r#"{"status":"healthy","message":7}"#,
                ),
                400,
                "bad_json",
            ),
            (req("POST", "/v1/workloads/web/health", ""), 400, "bad_json"),
            (
                req("POST", "/v1/workloads/web/health", r#"["healthy"]"#),
                400,
                "bad_json",
            ),
            (
                req("POST", "/v1/workloads/web/health", r#"{"status":"fine"}"#),
                422,
                "unknown_status",
            ),
            (
                Request {
                    content_type: Some("text/plain"),
                    ..req("POST", "/v1/workloads/web/health", "{}")
                },
                415,
                "unsupported_media_type",
            ),
            (
                Request {
                    content_type: None,
                    ..req("POST", "/v1/workloads/web/health", "{}")
                },
                415,
                "unsupported_media_type",
            ),
            (
                req("GET", "/v1/workloads/web/health", ""),
                405,
                "method_not_allowed",
            ),
            (
                req("POST", "/v1/workloads/a/b/health", ""),
                404,
                "not_found",
            ),
            (req("GET", "/nope", ""), 404, "not_found"),
            (req("GET", "/v1/status/", ""), 404, "not_found"),
            (req("DELETE", "/v1/status", ""), 405, "method_not_allowed"),
            (req("GET", "/v1/sync", ""), 405, "method_not_allowed"),
        ];
        for (r, status, code) in cases {
            let resp = call(&mut s, now, *r);
            assert_eq!(
                (resp.status, error_code(&resp).as_str()),
                (*status, *code),
                "{} {}",
                r.method,
                r.url
            );
            assert_eq!(resp.content_type, "application/json");
        }
        assert!(s.workloads.is_empty(), "no refused heartbeat was recorded");
        let r = call(&mut s, now, req("PUT", "/v1/workloads/web/health", ""));
        assert_eq!(r.allow, Some("POST"));
        let r = call(&mut s, now, req("POST", "/metrics", ""));
        assert_eq!(r.allow, Some("GET, HEAD"));
    }

    #[test]
    fn json_content_types() {
        assert!(is_json(Some("application/json")));
        assert!(is_json(Some("Application/JSON; charset=utf-8")));
        assert!(is_json(Some("application/health+json")));
        assert!(!is_json(Some("text/json")));
        assert!(!is_json(Some("application/x-www-form-urlencoded")));
        assert!(!is_json(None));
    }

    #[test]
    fn unknown_workloads_are_404_once_the_desired_set_is_known() {
        let (mut s, now) = state();
        s.workloads
            .set_desired(BTreeSet::from(["web".to_string()]), now);
        let r = call(
            &mut s,
            now,
            req("POST", "/v1/workloads/db/health", r#"{"status":"healthy"}"#),
        );
        assert_eq!(
            (r.status, error_code(&r).as_str()),
            (404, "unknown_workload")
        );
        let r = call(
            &mut s,
            now,
            req(
                "POST",
                "/v1/workloads/web/health",
                r#"{"status":"healthy"}"#,
            ),
        );
        assert_eq!(r.status, 204);
    }

    #[test]
    fn sync_is_scheduled() {
        let (mut s, now) = state();
        let r = call(&mut s, now, req("POST", "/v1/sync", ""));
        assert_eq!(r.status, 202);
        assert!(s.sync_requested);
    }

    #[test]
    fn readiness_waits_for_kubernetes() {
        let (mut s, now) = state();
        let r = call(&mut s, now, req("GET", "/readyz", ""));
        assert_eq!((r.status, error_code(&r).as_str()), (503, "not_ready"));
        s.kube_answered = true;
        let r = call(&mut s, now, req("GET", "/readyz", ""));
        assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    }

    #[test]
    fn liveness_follows_the_loop() {
        let (mut s, now) = state();
        assert_eq!(call(&mut s, now, req("GET", "/healthz", "")).status, 200);
        let late = now + LIVENESS + Duration::from_secs(1);
        assert_eq!(call(&mut s, late, req("HEAD", "/healthz", "")).status, 503);
    }

    #[test]
    fn status_negotiates_text() {
        let (mut s, now) = state();
        let json = call(&mut s, now, req("GET", "/v1/status", ""));
        assert_eq!(json.content_type, "application/json");
        serde_json::from_str::<serde_json::Value>(&json.body).unwrap();
        let text = call(&mut s, now, req("GET", "/v1/status?format=text", ""));
        assert!(text.content_type.starts_with("text/plain"));
        let accept = Request {
            accept: Some("text/plain"),
            ..req("GET", "/v1/status", "")
        };
        assert!(call(&mut s, now, accept)
            .content_type
            .starts_with("text/plain"));
        let curl = Request {
            accept: Some("*/*"),
            ..req("GET", "/v1/status", "")
        };
        assert_eq!(call(&mut s, now, curl).content_type, "application/json");
    }

    #[test]
    fn each_request_names_its_route_for_metrics() {
        let (mut s, now) = state();
        let r = req("GET", "/nope", "");
        let (route, resp) = handle(&r, &mut s, now, UNIX_EPOCH);
        assert_eq!((route, resp.status), (Route::Other, 404));
        let (route, _) = handle(
            &req("GET", "/v1/status?format=text", ""),
            &mut s,
            now,
            UNIX_EPOCH,
        );
        assert_eq!(route, Route::Status);
    }
}
