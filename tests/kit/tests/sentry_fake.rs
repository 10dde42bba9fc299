//! The fake Sentry: envelopes written here by hand from the develop docs'
//! examples (accepted and stored), every refusal with Relay's status and
//! `{"detail"}` body, the three ways to authenticate, rate limits on the
//! fake's clock (no sleeping), faults, reachability, framing, and the
//! request log with every byte sent.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wm_testkit::sentry::{AuthMethod, FakeSentry, Fault, FaultKind};

/// The event id of the docs' examples.
const DOCS_ID: &str = "9ec79c33ec9942ab8353589fcb2e04dc";
/// The public key of the docs' example DSN.
const DOCS_KEY: &str = "e12d836b15bb49d7bbf99e64295d995b";

/// Request headers, name and value.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// One answer: status, headers (names lower-cased), body as text.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// Asserts Relay's JSON error with this status and `detail`; the body.
    fn error(&self, status: u16, detail: &str) -> Value {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let v = self.json();
        assert_eq!(v["detail"], detail, "{self:?}");
        v
    }

    /// The error's first cause.
    fn cause(&self) -> String {
        self.json()["causes"][0]
            .as_str()
            .unwrap_or_else(|| panic!("no cause: {self:?}"))
            .to_string()
    }
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(timeout))
        .build()
        .new_agent()
}

/// Sends `method url` with exactly these headers and body.
fn send_with(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Reply, ureq::Error> {
    let mut req = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let mut resp = agent.run(req.body(body.to_vec()).expect("a valid request"))?;
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string()?;
    Ok(Reply {
        status,
        headers,
        text,
    })
}

fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    send_with(&agent(Duration::from_secs(20)), "POST", url, headers, body)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// `X-Sentry-Auth` as the develop docs spell it.
fn auth(key: &str) -> String {
    format!("Sentry sentry_version=7, sentry_client=wm-test/0.1.0, sentry_key={key}")
}

/// POSTs `body` to the fake's envelope endpoint with its key and the envelope type.
fn send(sentry: &FakeSentry, body: &[u8]) -> Reply {
    let auth = auth(sentry.public_key());
    post(
        &sentry.envelope_url(),
        &[
            ("X-Sentry-Auth", &auth),
            ("Content-Type", "application/x-sentry-envelope"),
        ],
        body,
    )
}

/// An envelope with this header line and `(type, payload)` items, each with
/// its `length`.
fn envelope(header: &str, items: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = format!("{header}\n").into_bytes();
    for (ty, payload) in items {
        out.extend_from_slice(
            format!("{{\"type\":\"{ty}\",\"length\":{}}}\n", payload.len()).as_bytes(),
        );
        out.extend_from_slice(payload);
        out.push(b'\n');
    }
    out
}

/// An envelope carrying one event with this id (header and payload).
fn event_envelope(id: &str, message: &str) -> Vec<u8> {
    let payload = json!({"event_id": id, "message": message, "level": "error"}).to_string();
    envelope(
        &format!("{{\"event_id\":\"{id}\"}}"),
        &[("event", payload.as_bytes())],
    )
}

fn id(n: u8) -> String {
    format!(
        "{:032x}",
        u128::from(n) + 0xfc6d_8c0c_43fc_4630_ad85_0ee5_18f1_b9d0
    )
}

/// Sends raw bytes and reads until the server closes (or 10 s pass).
fn raw(sentry: &FakeSentry, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", sentry.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn the_dsn_names_a_random_key_and_project_on_loopback() {
    let a = FakeSentry::start();
    let b = FakeSentry::start();
    let dsn = a.dsn();
    assert_eq!(
        dsn,
        format!(
            "http://{}@127.0.0.1:{}/{}",
            a.public_key(),
            a.port(),
            a.project_id()
        )
    );
    assert_eq!(a.public_key().len(), 32);
    assert!(a.public_key().bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(a.public_key(), b.public_key());
    assert_eq!(
        a.envelope_url(),
        format!(
            "http://127.0.0.1:{}/api/{}/envelope/",
            a.port(),
            a.project_id()
        )
    );
}

#[test]
fn the_docs_envelope_written_byte_by_byte_is_accepted_and_stored() {
    let sentry = FakeSentry::start();
    let dsn = sentry.dsn();
    // "Envelope with 2 Items" from the develop docs, with this fake's DSN,
    // and the event payload carrying its required event_id.
    let mut body: Vec<u8> = Vec::new();
    body.extend_from_slice(b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"");
    body.extend_from_slice(dsn.as_bytes());
    body.extend_from_slice(b"\"}\n");
    body.extend_from_slice(
        b"{\"type\":\"attachment\",\"length\":10,\"content_type\":\"text/plain\",\"filename\":\"hello.txt\"}\n",
    );
    body.extend_from_slice(b"\xef\xbb\xbfHello\r\n\n");
    body.extend_from_slice(
        b"{\"type\":\"event\",\"length\":87,\"content_type\":\"application/json\",\"filename\":\"application.log\"}\n",
    );
    let event = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"message\":\"hello world\",\"level\":\"error\"}";
    assert_eq!(event.len(), 87);
    body.extend_from_slice(event);
    body.extend_from_slice(b"\n");

    let mark = sentry.mark();
    let r = send(&sentry, &body);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"id": DOCS_ID}));

    assert_eq!(
        sentry.events(),
        [json!({"event_id": DOCS_ID, "message": "hello world", "level": "error"})]
    );
    let stored = sentry.envelopes();
    assert_eq!(stored.len(), 1);
    let env = &stored[0];
    assert_eq!(env.body, body);
    assert_eq!(env.event_id.as_deref(), Some(DOCS_ID));
    assert_eq!(env.envelope_header["dsn"], dsn);
    assert_eq!(
        env.auth_header.as_deref(),
        Some(&auth(sentry.public_key())[..])
    );
    assert_eq!(
        env.header("content-type"),
        Some("application/x-sentry-envelope")
    );
    let types: Vec<&str> = env.items.iter().map(|i| i.item_type.as_str()).collect();
    assert_eq!(types, ["attachment", "event"]);
    assert_eq!(env.items[0].payload, b"\xef\xbb\xbfHello\r\n");
    assert_eq!(env.items[0].headers["filename"], "hello.txt");
    assert!(env.text().contains("hello world"));

    let log = sentry.requests_since(mark);
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, Some(200));
    assert_eq!(log[0].event_id.as_deref(), Some(DOCS_ID));
    assert_eq!(log[0].auth, AuthMethod::SentryAuthHeader);
    assert!(!log[0].in_rate_limit);
}

#[test]
fn the_docs_examples_verbatim_parse_and_the_event_rules_are_the_docs() {
    // The docs' own DSN: key e12d…995b, project 42.
    let sentry = FakeSentry::builder()
        .public_key(DOCS_KEY)
        .project_id(42)
        .start();
    // The docs' example event has no event_id: Relay would fill one in,
    // the fake holds the client to the payload docs.
    let docs = b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42\"}\n\
{\"type\":\"attachment\",\"length\":10,\"content_type\":\"text/plain\",\"filename\":\"hello.txt\"}\n\
\xef\xbb\xbfHello\r\n\n\
{\"type\":\"event\",\"length\":41,\"content_type\":\"application/json\",\"filename\":\"application.log\"}\n\
{\"message\":\"hello world\",\"level\":\"error\"}\n";
    let r = send(&sentry, docs);
    r.error(400, "invalid event payload");
    assert!(r.cause().contains("no event_id"), "{r:?}");
    // The docs' envelopes without events, with and without the last newline.
    for body in [
        &b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\",\"length\":0}\n\n{\"type\":\"attachment\",\"length\":0}\n\n"[..],
        b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\",\"length\":0}\n\n{\"type\":\"attachment\",\"length\":0}\n",
        b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\"}\nhelloworld\n",
        b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\"}\nhelloworld",
    ] {
        let r = send(&sentry, body);
        assert_eq!(r.status, 200, "{r:?}");
        assert_eq!(r.json(), json!({"id": DOCS_ID}));
    }
    // Without an event id, Relay's 200 has no id.
    let r = send(
        &sentry,
        b"{}\n{\"type\":\"session\"}\n{\"started\": \"2020-02-07T14:16:00Z\",\"attrs\":{\"release\":\"sentry-test@1.0.0\"}}",
    );
    assert_eq!((r.status, r.json()), (200, json!({})), "{r:?}");
    assert!(sentry.events().is_empty());
    assert_eq!(sentry.envelopes().len(), 5);
    // A header-only envelope is answered and dropped, as Relay does.
    let r = send(
        &sentry,
        b"{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(sentry.envelopes().len(), 5);
}

#[test]
fn auth_by_query_authorization_or_envelope_header_is_accepted() {
    let sentry = FakeSentry::start();
    let key = sentry.public_key().to_string();
    let ty = ("Content-Type", "application/x-sentry-envelope");
    let url = sentry.envelope_url();

    let q = format!("{url}?sentry_key={key}&sentry_version=7&sentry_client=wm-test%2F0.1");
    assert_eq!(post(&q, &[ty], &event_envelope(&id(1), "q")).status, 200);
    let authz = auth(&key);
    let r = post(
        &url,
        &[ty, ("Authorization", &authz)],
        &event_envelope(&id(2), "a"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    // Without request auth, the envelope header's dsn authenticates.
    let header = format!(
        "{{\"event_id\":\"{}\",\"dsn\":\"{}\"}}",
        id(3),
        sentry.dsn()
    );
    let payload = json!({"event_id": id(3)}).to_string();
    let body = envelope(&header, &[("event", payload.as_bytes())]);
    assert_eq!(post(&url, &[ty], &body).status, 200);
    // No Content-Type at all implies the envelope type; text/plain is
    // tolerated for CORS.
    let authz = auth(&key);
    let r = post(
        &url,
        &[("X-Sentry-Auth", &authz)],
        &event_envelope(&id(4), "n"),
    );
    assert_eq!(r.status, 200, "{r:?}");
    let r = post(
        &url,
        &[
            ("X-Sentry-Auth", &authz),
            ("Content-Type", "text/plain;charset=UTF-8"),
        ],
        &event_envelope(&id(5), "t"),
    );
    assert_eq!(r.status, 200, "{r:?}");

    let methods: Vec<AuthMethod> = sentry.log().iter().map(|r| r.auth).collect();
    assert_eq!(
        methods,
        [
            AuthMethod::Query,
            AuthMethod::AuthorizationHeader,
            AuthMethod::None,
            AuthMethod::SentryAuthHeader,
            AuthMethod::SentryAuthHeader
        ]
    );
    assert_eq!(
        sentry.log()[0].sentry_client.as_deref(),
        Some("wm-test/0.1")
    );
    assert_eq!(sentry.events().len(), 5);
}

#[test]
fn bad_auth_keys_and_projects_get_relays_codes() {
    let sentry = FakeSentry::start();
    let key = sentry.public_key().to_string();
    let url = sentry.envelope_url();
    let body = event_envelope(&id(1), "m");
    let ty = ("Content-Type", "application/x-sentry-envelope");
    let other_key = "0123456789abcdef0123456789abcdef";
    let other_project = format!("{}/api/{}/envelope/", sentry.url(), sentry.project_id() + 1);
    let good = auth(&key);
    let wrong = auth(other_key);
    let short = auth("abc");
    let v8 = format!("Sentry sentry_version=8, sentry_key={key}");
    let no_version = format!("Sentry sentry_key={key}, sentry_client=wm/1");
    let no_key = "Sentry sentry_version=7, sentry_client=wm/1".to_string();
    let with_query = format!("{url}?sentry_key={key}&sentry_version=7");

    let cases: Vec<(String, Headers, u16, &str)> = vec![
        // No auth anywhere: Relay tries the envelope header's dsn.
        (
            url.clone(),
            vec![ty],
            401,
            "bad envelope authentication header",
        ),
        (
            url.clone(),
            vec![ty, ("X-Sentry-Auth", "Bearer x")],
            401,
            "bad envelope authentication header",
        ),
        (
            url.clone(),
            vec![ty, ("X-Sentry-Auth", &no_key)],
            401,
            "bad x-sentry-auth header",
        ),
        (
            url.clone(),
            vec![ty, ("X-Sentry-Auth", &no_version)],
            401,
            "bad x-sentry-auth header",
        ),
        (
            with_query,
            vec![ty, ("X-Sentry-Auth", &good)],
            401,
            "multiple authorization payloads detected",
        ),
        (
            url.clone(),
            vec![ty, ("X-Sentry-Auth", &short)],
            400,
            "bad sentry DSN public key",
        ),
        (
            url.clone(),
            vec![ty, ("X-Sentry-Auth", &v8)],
            400,
            "unsupported protocol version (8)",
        ),
        (
            url.clone(),
            vec![ty, ("X-Sentry-Auth", &wrong)],
            403,
            "event submission rejected with_reason: ProjectId",
        ),
        (
            other_project,
            vec![ty, ("X-Sentry-Auth", &good)],
            403,
            "event submission rejected with_reason: ProjectId",
        ),
        (
            format!("{}/api/abc/envelope/", sentry.url()),
            vec![ty, ("X-Sentry-Auth", &good)],
            400,
            "bad project path parameter",
        ),
    ];
    for (url, headers, status, detail) in cases {
        let r = post(&url, &headers, &body);
        r.error(status, detail);
    }
    let r = post(&url, &[ty, ("X-Sentry-Auth", &no_version)], &body);
    assert!(r.cause().contains("sentry_version"), "{r:?}");
    // The envelope header's dsn must name the key the request authenticates with.
    let other_dsn = format!(
        "http://{other_key}@127.0.0.1:{}/{}",
        sentry.port(),
        sentry.project_id()
    );
    let header = format!("{{\"event_id\":\"{}\",\"dsn\":\"{other_dsn}\"}}", id(1));
    let payload = json!({"event_id": id(1)}).to_string();
    let r = send(
        &sentry,
        &envelope(&header, &[("event", payload.as_bytes())]),
    );
    r.error(400, "invalid event envelope");
    assert_eq!(
        r.cause(),
        "public key header mismatch between envelope and request"
    );
    // Other paths and methods.
    post(
        &format!("{}/api/{}/store/", sentry.url(), sentry.project_id()),
        &[("X-Sentry-Auth", &good)],
        &body,
    )
    .error(
        404,
        &format!("no such endpoint: /api/{}/store/", sentry.project_id()),
    );
    let r = post(
        url.trim_end_matches('/'),
        &[("X-Sentry-Auth", &good)],
        &body,
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = send_with(&agent(Duration::from_secs(20)), "GET", &url, &[], b"").unwrap();
    assert_eq!((r.status, r.header("allow")), (405, Some("POST")), "{r:?}");

    assert!(sentry.events().is_empty());
    assert!(sentry.envelopes().is_empty());
    assert!(sentry.log().iter().all(|r| r.status != Some(200)));
}

#[test]
fn malformed_envelopes_and_events_get_400_with_relays_causes() {
    let sentry = FakeSentry::start();
    let h = format!("{{\"event_id\":\"{}\"}}", id(1));
    let ev = json!({"event_id": id(1), "message": "m"}).to_string();
    let other = json!({"event_id": id(2)}).to_string();
    let upper = json!({"event_id": id(1).to_ascii_uppercase()}).to_string();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (b"".to_vec(), "empty request body", ""),
        (
            b"{\"event_id\":\"nope\"}\n".to_vec(),
            "invalid event envelope",
            "invalid envelope header",
        ),
        (
            b"not json\n".to_vec(),
            "invalid event envelope",
            "invalid envelope header",
        ),
        (
            format!("{h} \n").into_bytes(),
            "invalid event envelope",
            "missing newline after header or payload",
        ),
        (
            b"{\"sent_at\":\"2026-13-01T00:00:00Z\"}\n".to_vec(),
            "invalid event envelope",
            "invalid envelope header",
        ),
        // `length` longer than what follows.
        (
            format!("{h}\n{{\"type\":\"event\",\"length\":999}}\n{ev}\n").into_bytes(),
            "invalid event envelope",
            "unexpected end of file",
        ),
        // `length` shorter than the payload.
        (
            format!("{h}\n{{\"type\":\"event\",\"length\":5}}\n{ev}\n").into_bytes(),
            "invalid event envelope",
            "missing newline after header or payload",
        ),
        (
            format!("{h}\n{{\"length\":3}}\nabc\n").into_bytes(),
            "invalid event envelope",
            "invalid item header",
        ),
        (
            format!("{h}\n{{\"type\":\"event\"}}\n{ev}\n\n").into_bytes(),
            "invalid event envelope",
            "unexpected end of file",
        ),
        (
            envelope(&h, &[("event", other.as_bytes())]),
            "invalid event payload",
            "",
        ),
        (
            envelope(&h, &[("event", upper.as_bytes())]),
            "invalid event payload",
            "",
        ),
        (
            envelope("{}", &[("event", ev.as_bytes())]),
            "invalid event payload",
            "",
        ),
        (
            envelope(&h, &[("event", b"[]")]),
            "invalid event payload",
            "",
        ),
        (
            envelope(&h, &[("event", ev.as_bytes()), ("event", ev.as_bytes())]),
            "invalid event payload",
            "",
        ),
    ];
    for (body, detail, cause) in cases {
        let r = send(&sentry, &body);
        r.error(400, detail);
        if !cause.is_empty() {
            assert_eq!(r.cause(), cause, "{r:?}");
        }
    }
    // The event-id rules say why.
    let r = send(&sentry, &envelope(&h, &[("event", other.as_bytes())]));
    assert!(
        r.cause().contains("differs from the envelope header"),
        "{r:?}"
    );
    // Body types and encodings the fake does not take.
    let authz = auth(sentry.public_key());
    let body = event_envelope(&id(3), "m");
    let r = post(
        &sentry.envelope_url(),
        &[
            ("X-Sentry-Auth", &authz),
            ("Content-Type", "application/json"),
        ],
        &body,
    );
    assert_eq!(r.status, 415, "{r:?}");
    let r = post(
        &sentry.envelope_url(),
        &[("X-Sentry-Auth", &authz), ("Content-Encoding", "gzip")],
        &body,
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(sentry.events().is_empty());
    // And a good one still goes through.
    assert_eq!(send(&sentry, &body).status, 200);
}

#[test]
fn a_rate_limit_answers_429_until_the_fake_clock_passes_it() {
    let sentry = FakeSentry::start();
    sentry.rate_limit(60, "error");
    let r = send(&sentry, &event_envelope(&id(1), "limited"));
    r.error(429, "Sentry dropped data due to a quota or internal rate limit being reached. This will not affect your application. See https://docs.sentry.io/product/accounts/quotas/ for more information.");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((59..=60).contains(&retry), "{r:?}");
    assert_eq!(
        r.header("x-sentry-rate-limits"),
        Some(&format!("{retry}:error:key")[..])
    );
    // Another category is not limited.
    let session = envelope(
        "{}",
        &[("session", b"{\"started\":\"2026-01-01T00:00:00Z\"}")],
    );
    assert_eq!(send(&sentry, &session).status, 200);

    let log = sentry.log();
    assert_eq!(
        log.iter()
            .map(|r| (r.status, r.in_rate_limit))
            .collect::<Vec<_>>(),
        [(Some(429), true), (Some(200), false)]
    );
    assert!(sentry.events().is_empty());

    sentry.advance_clock(Duration::from_secs(30));
    let r = send(&sentry, &event_envelope(&id(2), "still"));
    assert_eq!(r.status, 429);
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((29..=30).contains(&retry), "{r:?}");
    sentry.advance_clock(Duration::from_secs(31));
    let mark = sentry.mark();
    assert_eq!(send(&sentry, &event_envelope(&id(3), "after")).status, 200);
    assert!(!sentry.requests_since(mark)[0].in_rate_limit);
    assert_eq!(sentry.events().len(), 1);

    // A limit on all categories, and clearing it without waiting.
    sentry.rate_limit(3600, "");
    let r = send(&sentry, &session);
    assert_eq!(r.status, 429);
    assert!(
        r.header("x-sentry-rate-limits").unwrap().ends_with("::key"),
        "{r:?}"
    );
    assert!(sentry.log().last().unwrap().in_rate_limit);
    sentry.clear_rate_limits();
    assert_eq!(send(&sentry, &session).status, 200);
}

#[test]
fn a_limit_on_one_item_keeps_the_others_and_still_answers_429() {
    let sentry = FakeSentry::start();
    sentry.rate_limit(60, "attachment;transaction");
    let h = format!("{{\"event_id\":\"{}\"}}", id(1));
    let ev = json!({"event_id": id(1)}).to_string();
    let body = envelope(&h, &[("event", ev.as_bytes()), ("attachment", b"log")]);
    let r = send(&sentry, &body);
    assert_eq!(r.status, 429, "{r:?}");
    assert!(r
        .header("x-sentry-rate-limits")
        .unwrap()
        .ends_with(":attachment;transaction:key"));
    // As Relay does, the event is kept, the attachment dropped.
    assert_eq!(sentry.events().len(), 1);
    let stored = sentry.envelopes();
    assert_eq!(stored[0].items.len(), 1);
    assert_eq!(stored[0].items[0].item_type, "event");
}

#[test]
fn a_rate_limit_announced_on_a_200_then_holds() {
    let sentry = FakeSentry::start();
    sentry.rate_limit_header_on_success(120, "error;default");
    let r = send(&sentry, &event_envelope(&id(1), "first"));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.header("x-sentry-rate-limits"),
        Some("120:error;default:key")
    );
    assert_eq!(r.json(), json!({"id": id(1)}));
    let r = send(&sentry, &event_envelope(&id(2), "second"));
    assert_eq!(r.status, 429, "{r:?}");
    let log = sentry.log();
    assert!(!log[0].in_rate_limit);
    assert!(log[1].in_rate_limit);
    sentry.advance_clock(Duration::from_secs(121));
    let r = send(&sentry, &event_envelope(&id(3), "third"));
    assert_eq!((r.status, r.header("x-sentry-rate-limits")), (200, None));
    assert_eq!(sentry.events().len(), 2);
}

#[test]
fn injected_errors_hang_and_reset() {
    let sentry = FakeSentry::start();
    let body = event_envelope(&id(1), "m");
    sentry.inject(Fault::new(FaultKind::InternalError));
    send(&sentry, &body).error(500, "internal server error");
    sentry.inject(Fault::new(FaultKind::ServiceUnavailable).times(2));
    send(&sentry, &body).error(503, "the service is overloaded");
    send(&sentry, &body).error(503, "the service is overloaded");
    sentry.inject(Fault::new(FaultKind::Error {
        status: 502,
        detail: "upstream gone".into(),
    }));
    send(&sentry, &body).error(502, "upstream gone");
    assert!(sentry.events().is_empty());
    assert_eq!(sentry.log()[0].fault, Some(FaultKind::InternalError));

    sentry.inject(Fault::new(FaultKind::Hang(Duration::from_millis(300))));
    let started = Instant::now();
    assert_eq!(send(&sentry, &body).status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    sentry.inject(Fault::new(FaultKind::Reset));
    let authz = auth(sentry.public_key());
    let sent = send_with(
        &agent(Duration::from_secs(5)),
        "POST",
        &sentry.envelope_url(),
        &[("X-Sentry-Auth", &authz)],
        &body,
    );
    assert!(sent.is_err(), "{sent:?}");
    assert_eq!(sentry.log().last().unwrap().status, None);

    // hang(true) holds every request until hang(false).
    sentry.hang(true);
    let mark = sentry.mark();
    let sent = send_with(
        &agent(Duration::from_millis(500)),
        "POST",
        &sentry.envelope_url(),
        &[("X-Sentry-Auth", &authz)],
        &event_envelope(&id(2), "held"),
    );
    assert!(sent.is_err(), "{sent:?}");
    let held = sentry.requests_since(mark);
    assert_eq!((held.len(), held[0].status), (1, None));
    sentry.hang(false);
    let answered = sentry.wait_for_request(mark, Duration::from_secs(5), |r| r.status.is_some());
    assert_eq!(answered.and_then(|r| r.status), Some(200));
    assert_eq!(send(&sentry, &event_envelope(&id(3), "after")).status, 200);
}

#[test]
fn unreachable_refuses_connections_then_serves_again_on_the_same_port() {
    let sentry = FakeSentry::start();
    let dsn = sentry.dsn();
    assert_eq!(send(&sentry, &event_envelope(&id(1), "a")).status, 200);
    sentry.set_reachable(false);
    assert!(TcpStream::connect(("127.0.0.1", sentry.port())).is_err());
    sentry.set_reachable(true);
    assert_eq!(sentry.dsn(), dsn);
    assert_eq!(send(&sentry, &event_envelope(&id(2), "b")).status, 200);
    assert!(sentry.wait_for_events(2, Duration::from_secs(1)));
}

#[test]
fn the_request_log_holds_every_byte_sent() {
    let sentry = FakeSentry::start();
    let secret = "s3cr3t-node-key-do-not-leak";
    assert_eq!(send(&sentry, &event_envelope(&id(1), "clean")).status, 200);
    let mark = sentry.mark();
    let body = event_envelope(&id(2), &format!("oops {secret}"));
    assert_eq!(send(&sentry, &body).status, 200);
    assert_eq!(send(&sentry, b"{\"event_id\":\"x\"}\n").status, 400);

    let all = sentry.log();
    assert_eq!(all.len(), 3);
    let since = sentry.requests_since(mark);
    assert_eq!(since.len(), 2);
    let r = &since[0];
    assert_eq!((r.method.as_str(), r.status), ("POST", Some(200)));
    assert_eq!(r.path, format!("/api/{}/envelope/", sentry.project_id()));
    assert_eq!(r.body, body);
    assert_eq!(r.public_key.as_deref(), Some(sentry.public_key()));
    assert_eq!(r.sentry_version.as_deref(), Some("7"));
    assert_eq!(r.sentry_client.as_deref(), Some("wm-test/0.1.0"));
    assert_eq!(
        r.header("X-Sentry-Auth"),
        Some(&auth(sentry.public_key())[..])
    );
    assert_eq!(r.event_id, Some(id(2)));
    assert!(r.received_at_ms <= sentry.now_ms());
    assert_eq!(since[1].status, Some(400));
    assert_eq!(since[1].detail.as_deref(), Some("invalid event envelope"));
    // "No secret in any event" is a search over every byte of every request.
    let leaks: Vec<_> = all
        .iter()
        .filter(|r| r.all_text().contains(secret))
        .collect();
    assert_eq!(leaks.len(), 1);
    assert!(!all[0].all_text().contains(secret));
    assert!(all[0]
        .all_text()
        .contains("x-sentry-auth: Sentry sentry_version=7"));
}

#[test]
fn bodies_over_the_cap_get_413_and_the_fake_survives() {
    let sentry = FakeSentry::start();
    let mut body = event_envelope(&id(1), "big");
    body.resize(wm_testkit::sentry::DEFAULT_MAX_BODY + 1, b' ');
    let r = send(&sentry, &body);
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(
        r.text,
        "Failed to buffer the request body: length limit exceeded"
    );
    let last = sentry.log().pop().unwrap();
    assert_eq!((last.status, last.body.len()), (Some(413), 0));
    assert_eq!(send(&sentry, &event_envelope(&id(2), "small")).status, 200);
}

#[test]
fn a_dsn_path_moves_the_endpoint() {
    let sentry = FakeSentry::builder().path("sentry/").project_id(7).start();
    assert_eq!(
        sentry.dsn(),
        format!(
            "http://{}@127.0.0.1:{}/sentry/7",
            sentry.public_key(),
            sentry.port()
        )
    );
    assert!(sentry.envelope_url().ends_with("/sentry/api/7/envelope/"));
    assert_eq!(send(&sentry, &event_envelope(&id(1), "p")).status, 200);
    let authz = auth(sentry.public_key());
    let r = post(
        &format!("{}/api/7/envelope/", sentry.url()),
        &[("X-Sentry-Auth", &authz)],
        b"{}",
    );
    assert_eq!(r.status, 404, "{r:?}");
}

#[test]
fn framing_chunked_bodies_and_garbage() {
    let sentry = FakeSentry::start();
    let body = event_envelope(&id(1), "chunked");
    let (a, b) = body.split_at(body.len() / 2);
    let mut req = format!(
        "POST /api/{}/envelope/ HTTP/1.1\r\nHost: x\r\nX-Sentry-Auth: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        sentry.project_id(),
        auth(sentry.public_key())
    )
    .into_bytes();
    for part in [a, b] {
        req.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
        req.extend_from_slice(part);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let answer = raw(&sentry, &req);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(
        answer.ends_with(&format!("{{\"id\":\"{}\"}}", id(1))),
        "{answer}"
    );
    let answer = raw(&sentry, b"\x16\x03\x01 not http\r\n\r\n");
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert_eq!(send(&sentry, &event_envelope(&id(2), "ok")).status, 200);
    assert_eq!(sentry.events().len(), 2);
}
