//! What the fake answers to one request, in Relay's order: the route
//! (`{path}/api/{project_id}/envelope/`, 404 otherwise; POST only, 405),
//! the project id in the path (400 unless a number), the auth (401/400,
//! [`super::auth`]), the body's encoding and type (the fake's own checks),
//! an empty body (400), the envelope (400, [`super::envelope`]), a `dsn`
//! header that disagrees with the auth (400), the key and project (403
//! unless this fake's), the event item (400, the fake's own checks,
//! [`super::events`]), rate limits (429, [`super::ratelimit`]), and
//! finally 200 `{"id": "<event_id>"}` with the envelope stored.

use serde_json::{json, Value};

use super::auth;
use super::envelope::{self, Envelope, Item};
use super::errors::{self, SentryError};
use super::events::{self, StoredEnvelope, StoredItem};
use super::ratelimit::{self, RateLimit};
use super::state::{Config, Shared, State};
use crate::net::http::{Request, Response};

/// Body types the envelope docs accept ("HTTP Headers"); none at all
/// implies the first.
const ACCEPTED_TYPES: [&str; 4] = [
    "application/x-sentry-envelope",
    "text/plain",
    "multipart/form-data",
    "application/x-www-form-urlencoded",
];

/// One answer and what the log records of it.
pub(crate) struct Answer {
    pub resp: Response,
    /// The `detail` of an error answer.
    pub detail: Option<String>,
    /// The `id` of a 200.
    pub event_id: Option<String>,
}

impl From<SentryError> for Answer {
    fn from(e: SentryError) -> Answer {
        Answer {
            resp: e.response(),
            detail: Some(e.detail),
            event_id: None,
        }
    }
}

/// The raw project id segment of an envelope path, if `path` is one.
fn project_segment<'a>(cfg: &Config, path: &'a str) -> Option<&'a str> {
    path.strip_prefix(cfg.path.as_str())?
        .strip_prefix("/api/")?
        .strip_suffix("/envelope/")
        .filter(|id| !id.contains('/'))
}

/// The answer to `req`.
pub(crate) fn handle(shared: &Shared, req: &Request) -> Answer {
    let Some(segment) = project_segment(&shared.cfg, &req.path) else {
        return errors::not_found(&req.path).into();
    };
    if req.method != "POST" {
        return Answer {
            resp: errors::method_not_allowed(),
            detail: None,
            event_id: None,
        };
    }
    match envelope_endpoint(shared, req, segment) {
        Ok((resp, event_id)) => Answer {
            resp,
            detail: None,
            event_id,
        },
        Err(e) => e.into(),
    }
}

/// Only documented body types, and nothing the fake would have to decode.
fn check_body_headers(req: &Request) -> Result<(), SentryError> {
    if let Some(enc) = req.header("content-encoding") {
        if !enc.trim().eq_ignore_ascii_case("identity") {
            return Err(errors::unsupported_encoding(enc));
        }
    }
    match req.media_type() {
        Some(t) if !ACCEPTED_TYPES.contains(&t.as_str()) => Err(errors::unsupported_media_type(
            req.header("content-type").unwrap_or(""),
        )),
        _ => Ok(()),
    }
}

/// `POST {path}/api/{segment}/envelope/`: the answer and the event id.
fn envelope_endpoint(
    shared: &Shared,
    req: &Request,
    segment: &str,
) -> Result<(Response, Option<String>), SentryError> {
    let path_project: u64 = Some(segment)
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(errors::bad_project_path)?;
    let (public_key, stated_project) = match auth::from_request(req)? {
        Some(key) => (key, path_project),
        None => {
            let dsn = auth::from_envelope_header(&req.body)?;
            (dsn.public_key, dsn.project_id)
        }
    };
    check_body_headers(req)?;
    if req.body.is_empty() {
        return Err(errors::empty_body());
    }
    let env = envelope::parse(&req.body).map_err(|e| errors::invalid_envelope(&e))?;
    env.check_dsn(&public_key, stated_project)
        .map_err(|e| errors::invalid_envelope(&e))?;
    let cfg = &shared.cfg;
    let ours = |project: u64| project == cfg.project_id;
    if public_key != cfg.public_key || !ours(stated_project) || !ours(path_project) {
        return Err(errors::rejected_project_id());
    }
    events::check(&env).map_err(errors::invalid_event)?;
    if env.items.is_empty() {
        // Relay answers an empty envelope with 200 and drops it.
        return Ok((id_response(&env.event_id), env.event_id));
    }
    let now = shared.clock.now_ms();
    let mut st = shared.lock();
    let live = st.live_limits(now).to_vec();
    let (kept, applied) = apply_limits(&env.items, &live);
    if !kept.is_empty() {
        store(&mut st, req, &env, kept);
    }
    if !applied.is_empty() {
        return Err(rate_limited(&applied, now));
    }
    let mut resp = id_response(&env.event_id);
    if !st.announcements.is_empty() {
        let a = st.announcements.remove(0);
        let limit = RateLimit::new(a.secs, &a.categories, now);
        resp = resp.with_header("X-Sentry-Rate-Limits", &ratelimit::header(&[&limit], now));
        st.limits.push(limit);
    }
    Ok((resp, env.event_id.clone()))
}

/// Relay's 200: `{"id": "<event_id>"}`, or `{}` without an event id.
fn id_response(event_id: &Option<String>) -> Response {
    let body = match event_id {
        Some(id) => json!({ "id": id }),
        None => json!({}),
    };
    Response::json(200, &body)
}

/// The items no live limit covers, and the limits that covered the others.
fn apply_limits<'a>(
    items: &'a [Item],
    live: &'a [RateLimit],
) -> (Vec<&'a Item>, Vec<&'a RateLimit>) {
    let mut kept = Vec::new();
    let mut applied: Vec<&RateLimit> = Vec::new();
    for item in items {
        let category = ratelimit::category(&item.ty);
        let covering: Vec<&RateLimit> = live.iter().filter(|l| l.covers(category)).collect();
        if covering.is_empty() {
            kept.push(item);
        }
        for l in covering {
            if !applied.iter().any(|a| std::ptr::eq(*a, l)) {
                applied.push(l);
            }
        }
    }
    (kept, applied)
}

/// Relay's 429 with `Retry-After` and `X-Sentry-Rate-Limits`.
fn rate_limited(applied: &[&RateLimit], now_ms: i64) -> SentryError {
    SentryError::new(429, errors::RATE_LIMITED)
        .with_header(
            "Retry-After",
            &ratelimit::retry_after(applied, now_ms).to_string(),
        )
        .with_header("X-Sentry-Rate-Limits", &ratelimit::header(applied, now_ms))
}

/// Keeps an accepted envelope (with the items not rate limited).
fn store(st: &mut State, req: &Request, env: &Envelope, kept: Vec<&Item>) {
    let items: Vec<StoredItem> = kept
        .into_iter()
        .map(|i| StoredItem {
            item_type: i.ty.clone(),
            headers: Value::Object(i.headers.clone()),
            payload: i.payload.clone(),
        })
        .collect();
    let stored = StoredEnvelope {
        body: req.body.clone(),
        headers: req
            .headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect(),
        auth_header: req.header("x-sentry-auth").map(str::to_string),
        query: req.query.clone(),
        envelope_header: Value::Object(env.headers.clone()),
        event_id: env.event_id.clone(),
        items,
    };
    st.events.extend(stored.events());
    st.envelopes.push(stored);
}

/// The data categories of `body`'s items (none if it is not an envelope),
/// for [`in_rate_limit`].
pub(crate) fn item_categories(body: &[u8]) -> Vec<Option<&'static str>> {
    envelope::parse(body)
        .map(|e| e.items.iter().map(|i| ratelimit::category(&i.ty)).collect())
        .unwrap_or_default()
}

/// Whether a live limit covers a request with items of these categories
/// as it arrives: one on all categories, or one on the category of one of
/// its items.
pub(crate) fn in_rate_limit(st: &mut State, categories: &[Option<&str>], now_ms: i64) -> bool {
    st.live_limits(now_ms)
        .iter()
        .any(|l| l.categories.is_empty() || categories.iter().any(|&c| l.covers(c)))
}
