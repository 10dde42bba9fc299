//! The Sentry client: the DSN, events written as envelopes, and one POST to
//! the envelope endpoint under the outbound rules of every other call
//! (timeout, no proxy, size caps). Sentry's rate limits are read from
//! `X-Sentry-Rate-Limits` (else a 429's `Retry-After`) and kept by the
//! caller. Nothing secret goes into an event: see [`Scrubber`].

use std::time::{Duration, SystemTime};

use serde_json::json;

use crate::events::{Event, Level};

/// A Sentry answer is small; more is not read.
const MAX_ANSWER: u64 = 16 * 1024;
/// An event's text is cut to this many bytes.
const MAX_MESSAGE: usize = 4096;
/// A 429 without any header: wait this long.
const DEFAULT_RETRY: Duration = Duration::from_secs(60);

/// `https://<public key>@<host>[:port][/<path>]/<project id>`.
#[derive(Clone, PartialEq, Eq)]
pub struct Dsn {
    /// `<scheme>://<host>[:port][/<path>]/api/<project id>/envelope/`.
    endpoint: String,
    public_key: String,
}

impl std::fmt::Debug for Dsn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Dsn(<redacted>)")
    }
}

impl Dsn {
    /// Parses a DSN; the error never repeats it (it names a project's key).
    pub fn parse(s: &str) -> Result<Dsn, String> {
        let s = s.trim();
        let (scheme, rest) = s
            .split_once("://")
            .ok_or("not a URL (expected https://<public key>@<host>/<project id>)")?;
        if scheme != "https" && scheme != "http" {
            return Err("the scheme must be https (or http)".into());
        }
        let (key, rest) = rest
            .split_once('@')
            .ok_or("no public key (expected https://<public key>@<host>/<project id>)")?;
        // A legacy `public:secret` pair: the secret is neither needed nor sent.
        let public_key = key.split(':').next().unwrap_or_default();
        let hexish = |c: char| c.is_ascii_alphanumeric();
        if public_key.is_empty() || !public_key.chars().all(hexish) {
            return Err("the public key is empty or not alphanumeric".into());
        }
        let (host, path) = rest.split_once('/').ok_or("no project id after the host")?;
        let host_ok = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
        if host.is_empty() || !host.chars().all(host_ok) {
            return Err("the host is empty or not a host name".into());
        }
        let path = path.trim_end_matches('/');
        let (prefix, project) = match path.rsplit_once('/') {
            Some((prefix, project)) => (format!("/{prefix}"), project),
            None => (String::new(), path),
        };
        if project.is_empty() || !project.chars().all(|c| c.is_ascii_digit()) {
            return Err("the project id (the last part of the path) is not a number".into());
        }
        let path_ok = |c: char| c.is_ascii_alphanumeric() || "/-_.".contains(c);
        if !prefix.chars().all(path_ok) {
            return Err("the path has characters a URL path cannot".into());
        }
        Ok(Dsn {
            endpoint: format!("{scheme}://{host}{prefix}/api/{project}/envelope/"),
            public_key: public_key.to_string(),
        })
    }

    /// The DSN's public key (sent only in the auth header).
    pub fn public_key(&self) -> &str {
        &self.public_key
    }

    /// The `X-Sentry-Auth` header.
    fn auth(&self) -> String {
        format!(
            "Sentry sentry_version=7, sentry_key={}, sentry_client=workload-manager/{}",
            self.public_key,
            env!("CARGO_PKG_VERSION")
        )
    }
}

/// What an event says about where it comes from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The node's Ethereum address: the event's server name.
    pub node_address: String,
    pub namespace: String,
    pub pod: String,
}

/// How a send went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Accepted; Sentry may still ask for a pause before the next one.
    Accepted { pause: Option<Duration> },
    /// Not accepted now: wait this long (429, or a rate limit on errors).
    Limited(Duration),
    /// Refused for good (4xx): the event is dropped.
    Refused(String),
    /// No answer, or a 5xx: worth another try later.
    Failed(String),
}

pub struct Sentry {
    dsn: Dsn,
    agent: ureq::Agent,
}

impl Sentry {
    pub fn new(dsn: Dsn, timeout: Duration) -> Sentry {
        let config = crate::outbound::config(timeout).max_redirects(0).build();
        Sentry {
            dsn,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// One POST of one envelope.
    pub fn send(&self, envelope: &str) -> Sent {
        let result = self
            .agent
            .post(&self.dsn.endpoint)
            .header("X-Sentry-Auth", &self.dsn.auth())
            .header("Content-Type", "application/x-sentry-envelope")
            .send(envelope);
        let mut response = match result {
            Ok(r) => r,
            Err(e) => return Sent::Failed(format!("Sentry unreachable: {e}")),
        };
        let code = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let limits = header("X-Sentry-Rate-Limits");
        let retry_after = header("Retry-After");
        // Read (a little of) the answer so the connection can be reused.
        let _ = response
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_vec();
        let pause = limits.as_deref().and_then(error_limit);
        match code {
            200..=299 => Sent::Accepted { pause },
            429 => Sent::Limited(
                pause
                    .or_else(|| retry_after.as_deref().and_then(seconds))
                    .unwrap_or(DEFAULT_RETRY),
            ),
            400..=499 => Sent::Refused(format!("Sentry refused the event ({code})")),
            _ => Sent::Failed(format!("Sentry answered {code}")),
        }
    }
}

/// The longest pause `X-Sentry-Rate-Limits` asks of events (category
/// `error`, or every category): `<seconds>:<categories>:<scope>…, …`.
pub fn error_limit(header: &str) -> Option<Duration> {
    header
        .split(',')
        .filter_map(|limit| {
            let mut parts = limit.trim().split(':');
            let secs = seconds(parts.next()?)?;
            let categories = parts.next().unwrap_or_default();
            let applies = categories.is_empty()
                || categories
                    .split(';')
                    .any(|c| c == "error" || c == "default");
            applies.then_some(secs)
        })
        .max()
}

fn seconds(s: &str) -> Option<Duration> {
    let secs: f64 = s.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// Removes what must never leave the node, whatever text carries it: the
/// node key, bearer tokens, request signatures, presigned URLs'
/// credentials, and any other secret the configuration names.
#[derive(Clone, Default)]
pub struct Scrubber {
    secrets: Vec<String>,
}

impl Scrubber {
    /// `secrets`: exact values to remove (empty and short ones are ignored).
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Scrubber {
        Scrubber {
            secrets: secrets.into_iter().filter(|s| s.len() >= 8).collect(),
        }
    }

    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            out = out.replace(s.as_str(), "<redacted>");
        }
        let words: Vec<String> = out.split(' ').map(scrub_word).collect();
        words.join(" ")
    }
}

/// One space-separated word with secret-shaped parts removed.
fn scrub_word(word: &str) -> String {
    let lower = word.to_ascii_lowercase();
    // A presigned URL or a signed query: keep the path, drop the query.
    if lower.contains("x-amz-") || lower.contains("signature=") || lower.contains("token=") {
        let kept = word.split('?').next().unwrap_or_default();
        return format!("{kept}?<redacted>");
    }
    // JWTs (Kubernetes tokens) and long hex runs (keys: 64, signatures: 130).
    if word.contains("eyJ") {
        return "<redacted>".into();
    }
    let mut out = String::with_capacity(word.len());
    let mut run = String::new();
    for c in word.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() >= 64 {
            out.push_str("<redacted>");
        } else {
            out.push_str(&run);
        }
        run.clear();
        if c != ' ' {
            out.push(c);
        }
    }
    out
}

/// The envelope of one event, as the envelope endpoint takes it: a header
/// line, an item header with the payload's length, the payload.
pub fn envelope(event: &Event, origin: &Origin, event_id: &str, sent_at: SystemTime) -> String {
    let level = match event.level {
        Level::Fatal => "fatal",
        Level::Error => "error",
        Level::Warning => "warning",
    };
    let message = crate::text::truncate(&event.message, MAX_MESSAGE);
    let mut tags = json!({"namespace": origin.namespace, "pod": origin.pod});
    if let Some(job) = event.job {
        tags["job"] = json!(job);
    }
    let mut payload = json!({
        "event_id": event_id,
        "timestamp": crate::clock::rfc3339(event.at),
        "platform": "other",
        "level": level,
        "logger": "workload-manager",
        "release": concat!("workload-manager@", env!("CARGO_PKG_VERSION")),
        "server_name": origin.node_address,
        "environment": "production",
        "message": {"formatted": message},
        "tags": tags,
        "fingerprint": ["workload-manager", event.source, event.key],
        "sdk": {"name": "workload-manager", "version": env!("CARGO_PKG_VERSION")},
    });
    if let Some(location) = &event.location {
        payload["exception"] = json!({"values": [{
            "type": "panic",
            "value": format!("{message} at {location}"),
            "mechanism": {"type": "panic", "handled": true},
        }]});
        payload["tags"]["location"] = json!(location);
    }
    let payload = payload.to_string();
    let header = json!({"event_id": event_id, "sent_at": crate::clock::rfc3339(sent_at)});
    let item =
        json!({"type": "event", "length": payload.len(), "content_type": "application/json"});
    format!("{header}\n{item}\n{payload}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dsn_gives_the_envelope_endpoint_and_the_auth_header() {
        let d = Dsn::parse("https://abc123@o1.ingest.sentry.io/42").unwrap();
        assert_eq!(d.endpoint, "https://o1.ingest.sentry.io/api/42/envelope/");
        assert!(d.auth().starts_with(
            "Sentry sentry_version=7, sentry_key=abc123, sentry_client=workload-manager/"
        ));
        let d = Dsn::parse("http://k:legacysecret@127.0.0.1:9000/sentry/7/").unwrap();
        assert_eq!(d.endpoint, "http://127.0.0.1:9000/sentry/api/7/envelope/");
        assert!(!d.auth().contains("legacysecret"));
        assert_eq!(format!("{d:?}"), "Dsn(<redacted>)");
    }

    #[test]
    fn a_bad_dsn_is_an_error_that_does_not_repeat_it() {
        for bad in [
            "",
            "sentry.io/42",
            "ftp://k@h/1",
            "https://h/1",
            "https://@h/1",
            "https://k@h",
            "https://k@h/",
            "https://k@h/project",
            "https://k@/1",
            "https://k y@h/1",
            "https://k@h/a b/1",
        ] {
            let e = Dsn::parse(bad).expect_err(bad);
            assert!(bad.len() < 8 || !e.contains(bad), "{e}");
        }
    }

    #[test]
    fn rate_limits_for_errors_are_read_from_the_header() {
        assert_eq!(error_limit("60:error:key"), Some(Duration::from_secs(60)));
        assert_eq!(
            error_limit("60::organization"),
            Some(Duration::from_secs(60))
        );
        assert_eq!(error_limit("60:transaction:key"), None);
        assert_eq!(
            error_limit("10:transaction:key, 2700:default;error:organization"),
            Some(Duration::from_secs(2700))
        );
        assert_eq!(error_limit("garbage"), None);
        assert_eq!(error_limit("-5:error"), None);
    }

    #[test]
    fn the_scrubber_removes_keys_tokens_signatures_and_named_secrets() {
        let key = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
        let s = Scrubber::new(["s3-secret-value".to_string(), String::new()]);
        let text = format!(
            "key {key} sig 0x{}{} token eyJhbGciOiJSUzI1NiJ9.e30.sig url https://s3/b/k?X-Amz-Signature=abc&X-Amz-Credential=AKIA s3-secret-value ok 0x2c7536E3605D9C16a7a3D7b1898e529396a65c23",
            key, key
        );
        let out = s.scrub(&text);
        for secret in [key, "eyJ", "X-Amz-Signature=abc", "AKIA", "s3-secret-value"] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(
            out.contains("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"),
            "an address is not a secret: {out}"
        );
        assert!(out.contains("https://s3/b/k?<redacted>"), "{out}");
    }

    #[test]
    fn an_envelope_has_a_header_an_item_header_with_the_length_and_the_event() {
        let event = Event {
            level: Level::Error,
            source: "sync",
            key: "Kubernetes API unreachable".into(),
            message: "sync failed: Kubernetes API unreachable".into(),
            job: Some("sync"),
            location: None,
            at: std::time::UNIX_EPOCH + Duration::from_secs(1_795_867_200),
        };
        let origin = Origin {
            node_address: "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23".into(),
            namespace: "edge".into(),
            pod: "wm-0".into(),
        };
        let id = "9ec79c33ec9942ab8353589fcb2e04dc";
        let text = envelope(&event, &origin, id, event.at);
        let lines: Vec<&str> = text.trim_end_matches('\n').split('\n').collect();
        assert_eq!(lines.len(), 3, "{text}");
        let header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(header["event_id"], id);
        let item: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(item["type"], "event");
        assert_eq!(item["length"], lines[2].len());
        let e: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
        assert_eq!(e["event_id"], id);
        assert_eq!(e["level"], "error");
        assert_eq!(e["timestamp"], "2026-11-28T12:00:00Z");
        assert_eq!(e["server_name"], origin.node_address);
        assert_eq!(
            e["tags"],
            json!({"namespace": "edge", "pod": "wm-0", "job": "sync"})
        );
        assert_eq!(
            e["fingerprint"],
            json!(["workload-manager", "sync", "Kubernetes API unreachable"])
        );
        assert!(e["release"]
            .as_str()
            .unwrap()
            .starts_with("workload-manager@"));
        assert!(e.get("exception").is_none());
    }
}
