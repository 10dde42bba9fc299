//! The envelope format, parsed the way Relay parses it
//! (`relay-server/src/envelope`): a header line holding one JSON object,
//! then items until the body ends, each an item-header line (a JSON object
//! with a string `type` and an optional `length`) and a payload: exactly
//! `length` bytes followed by `\n` or the end, or without `length` the
//! bytes up to the next `\n`. JSON headers must be followed by `\n` or the
//! end, nothing else; a `\r` belongs to the line it ends. Known envelope
//! headers are typed: `event_id` a UUID (32 hex digits, or 36 with
//! dashes), `dsn` a DSN, `sent_at` an RFC 3339 date-time; each at most
//! once. Unknown item types and headers are kept. Nothing here panics on
//! client input.

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::dsn::{self, Dsn};
use crate::net::time::parse_rfc3339;

/// Envelope headers whose type Relay checks, and which may occur only once.
const TYPED_HEADERS: [&str; 3] = ["event_id", "dsn", "sent_at"];

/// Why a body is not an envelope: Relay's `EnvelopeError`, whose
/// `Display` strings these are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EnvelopeError {
    UnexpectedEof,
    MissingHeader,
    MissingNewline,
    /// The header line is not a JSON object of the right shape (why).
    InvalidHeader(String),
    /// `"project id"` or `"public key"`: the `dsn` header disagrees with
    /// the request's auth.
    HeaderMismatch(&'static str),
    /// An item header is not a JSON object of the right shape (why).
    InvalidItemHeader(String),
}

impl fmt::Display for EnvelopeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvelopeError::UnexpectedEof => f.write_str("unexpected end of file"),
            EnvelopeError::MissingHeader => f.write_str("missing envelope header"),
            EnvelopeError::MissingNewline => f.write_str("missing newline after header or payload"),
            EnvelopeError::InvalidHeader(_) => f.write_str("invalid envelope header"),
            EnvelopeError::HeaderMismatch(what) => {
                write!(f, "{what} header mismatch between envelope and request")
            }
            EnvelopeError::InvalidItemHeader(_) => f.write_str("invalid item header"),
        }
    }
}

impl EnvelopeError {
    /// The error and its source, as Relay lists them in `causes`.
    pub fn causes(&self) -> Vec<String> {
        match self {
            EnvelopeError::InvalidHeader(why) | EnvelopeError::InvalidItemHeader(why) => {
                vec![self.to_string(), why.clone()]
            }
            _ => vec![self.to_string()],
        }
    }
}

/// One parsed item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Item {
    /// The item header as sent (unknown attributes included).
    pub headers: Map<String, Value>,
    pub ty: String,
    pub payload: Vec<u8>,
}

/// One parsed envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    /// The envelope header as sent (unknown attributes included).
    pub headers: Map<String, Value>,
    /// `event_id`, as 32 lower-case hex digits.
    pub event_id: Option<String>,
    pub dsn: Option<Dsn>,
    /// `sent_at`, Unix seconds.
    pub sent_at: Option<i64>,
    pub items: Vec<Item>,
}

impl Envelope {
    /// Relay's `EnvelopeHeaders::complete`: a `dsn` header must name the
    /// request's project and key.
    pub fn check_dsn(&self, public_key: &str, project_id: u64) -> Result<(), EnvelopeError> {
        match &self.dsn {
            Some(d) if d.project_id != project_id => {
                Err(EnvelopeError::HeaderMismatch("project id"))
            }
            Some(d) if d.public_key != public_key => {
                Err(EnvelopeError::HeaderMismatch("public key"))
            }
            _ => Ok(()),
        }
    }
}

/// A JSON object with its keys in order, duplicates kept (a plain `Map`
/// would silently keep the last).
struct Pairs(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Pairs, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    pairs.push(entry);
                }
                Ok(Pairs(pairs))
            }
        }
        d.deserialize_map(PairsVisitor)
    }
}

impl Pairs {
    /// The object, or the first of `unique` that occurs twice.
    fn into_map(self, unique: &[&str]) -> Result<Map<String, Value>, String> {
        for key in unique {
            if self.0.iter().filter(|(k, _)| k == key).count() > 1 {
                return Err(format!("duplicate field `{key}`"));
            }
        }
        Ok(self.0.into_iter().collect())
    }
}

/// Reads one JSON object at the start of `bytes` (leading whitespace
/// allowed, as serde's stream reader allows it); `None` if there is no
/// value at all, else the object (or why not) and where it ends.
fn json_object(bytes: &[u8]) -> Option<(Result<Pairs, String>, usize)> {
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Pairs>();
    let first = stream.next()?;
    Some((first.map_err(|e| e.to_string()), stream.byte_offset()))
}

/// Each JSON header ends in `\n` or at the end of the body.
fn require_termination(bytes: &[u8], at: usize) -> Result<(), EnvelopeError> {
    match bytes.get(at) {
        Some(b'\n') | None => Ok(()),
        Some(_) => Err(EnvelopeError::MissingNewline),
    }
}

/// `event_id` as 32 lower-case hex digits, if it is a UUID as the docs
/// spell them: 32 hex digits, or 8-4-4-4-12 with dashes.
pub(crate) fn normalize_uuid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let dashed = b.len() == 36 && [8, 13, 18, 23].iter().all(|&i| b[i] == b'-');
    let hex: String = match (b.len(), dashed) {
        (32, _) => s.to_string(),
        (36, true) => s.chars().filter(|&c| c != '-').collect(),
        _ => return None,
    };
    (hex.len() == 32 && hex.bytes().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// An envelope (without items yet) of these headers, the typed ones
/// checked (`null` counts as absent, as Relay's `Option` fields read it).
fn with_headers(headers: Map<String, Value>) -> Result<Envelope, String> {
    let present = |k: &str| headers.get(k).filter(|v| !v.is_null());
    let event_id = present("event_id")
        .map(|v| {
            v.as_str().and_then(normalize_uuid).ok_or_else(|| {
                format!("event_id {v} is not a UUID (32 hex digits, or 36 with dashes)")
            })
        })
        .transpose()?;
    let dsn = present("dsn")
        .map(|v| match v.as_str() {
            Some(s) => dsn::parse(s).map_err(|e| format!("dsn: {e}")),
            None => Err(format!("dsn {v} is not a string")),
        })
        .transpose()?;
    let sent_at = present("sent_at")
        .map(|v| {
            v.as_str()
                .and_then(parse_rfc3339)
                .ok_or_else(|| format!("sent_at {v} is not an RFC 3339 date-time string"))
        })
        .transpose()?;
    Ok(Envelope {
        headers,
        event_id,
        dsn,
        sent_at,
        items: Vec::new(),
    })
}

/// Parses the envelope header line; the envelope and where its items start.
fn parse_header(bytes: &[u8]) -> Result<(Envelope, usize), EnvelopeError> {
    let (pairs, end) = json_object(bytes).ok_or(EnvelopeError::MissingHeader)?;
    let envelope = pairs
        .and_then(|p| p.into_map(&TYPED_HEADERS))
        .and_then(with_headers)
        .map_err(EnvelopeError::InvalidHeader)?;
    require_termination(bytes, end)?;
    Ok((envelope, end + 1))
}

/// Parses one item at the start of `bytes`; the item and how many bytes it
/// took (its terminating newline included).
fn parse_item(bytes: &[u8]) -> Result<(Item, usize), EnvelopeError> {
    let (pairs, headers_end) = json_object(bytes).ok_or(EnvelopeError::UnexpectedEof)?;
    let headers = pairs
        .and_then(|p| p.into_map(&["type", "length"]))
        .map_err(EnvelopeError::InvalidItemHeader)?;
    let ty = match headers.get("type") {
        Some(Value::String(t)) => t.clone(),
        Some(v) => {
            return Err(EnvelopeError::InvalidItemHeader(format!(
                "type {v} is not a string"
            )))
        }
        None => {
            return Err(EnvelopeError::InvalidItemHeader(
                "missing field `type`".into(),
            ))
        }
    };
    let length = match headers.get("length") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|&n| n <= u64::from(u32::MAX))
                .ok_or_else(|| {
                    EnvelopeError::InvalidItemHeader(format!("length {v} is not a u32"))
                })? as usize,
        ),
    };
    require_termination(bytes, headers_end)?;
    // The last header needs no newline, so the payload may start at the end.
    let start = (headers_end + 1).min(bytes.len());
    let end = match length {
        Some(len) => {
            let end = start
                .checked_add(len)
                .filter(|&e| e <= bytes.len())
                .ok_or(EnvelopeError::UnexpectedEof)?;
            require_termination(bytes, end)?;
            end
        }
        None => bytes[start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(bytes.len(), |i| start + i),
    };
    let item = Item {
        headers,
        ty,
        payload: bytes[start..end].to_vec(),
    };
    Ok((item, end + 1))
}

/// Parses a whole envelope body.
pub(crate) fn parse(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
    let (mut envelope, mut offset) = parse_header(bytes)?;
    while offset < bytes.len() {
        let (item, used) = parse_item(&bytes[offset..])?;
        offset += used;
        envelope.items.push(item);
    }
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = r#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","dsn":"https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42"}"#;

    fn lens(env: &Envelope) -> Vec<(String, usize)> {
        env.items
            .iter()
            .map(|i| (i.ty.clone(), i.payload.len()))
            .collect()
    }

    #[test]
    fn parses_the_docs_full_examples() {
        // "Envelope with 2 Items", with and without the last newline.
        let mut body = format!("{HEADER}\n").into_bytes();
        body.extend_from_slice(
            br#"{"type":"attachment","length":10,"content_type":"text/plain","filename":"hello.txt"}"#,
        );
        body.extend_from_slice(b"\n\xef\xbb\xbfHello\r\n\n");
        body.extend_from_slice(
            br#"{"type":"event","length":41,"content_type":"application/json","filename":"application.log"}"#,
        );
        body.extend_from_slice(b"\n{\"message\":\"hello world\",\"level\":\"error\"}\n");
        for b in [&body[..], &body[..body.len() - 1]] {
            let env = parse(b).unwrap();
            assert_eq!(
                lens(&env),
                [("attachment".into(), 10), ("event".into(), 41)]
            );
            assert_eq!(env.items[0].payload, b"\xef\xbb\xbfHello\r\n");
            assert_eq!(
                env.event_id.as_deref(),
                Some("9ec79c33ec9942ab8353589fcb2e04dc")
            );
            assert_eq!(env.dsn.as_ref().map(|d| d.project_id), Some(42));
        }
        // Two empty attachments, with and without the last newline.
        let empty = "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n\
                     {\"type\":\"attachment\",\"length\":0}\n\n\
                     {\"type\":\"attachment\",\"length\":0}\n";
        for b in [empty, &empty[..empty.len() - 1]] {
            let env = parse(b.as_bytes()).unwrap();
            assert_eq!(
                lens(&env),
                [("attachment".into(), 0), ("attachment".into(), 0)]
            );
        }
        // Implicit length, ended by a newline or by the end.
        for b in [
            "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\"}\nhelloworld\n",
            "{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\"}\n{\"type\":\"attachment\"}\nhelloworld",
        ] {
            assert_eq!(
                lens(&parse(b.as_bytes()).unwrap()),
                [("attachment".into(), 10)]
            );
        }
        // No headers, implicit length, a session.
        let env = parse(
            b"{}\n{\"type\":\"session\"}\n{\"started\": \"2020-02-07T14:16:00Z\",\"attrs\":{\"release\":\"sentry-test@1.0.0\"}}",
        )
        .unwrap();
        assert_eq!(env.items[0].ty, "session");
        assert_eq!(env.event_id, None);
    }

    #[test]
    fn header_only_and_empty_items_follow_relay() {
        assert!(parse(HEADER.as_bytes()).unwrap().items.is_empty());
        assert!(parse(format!("{HEADER}\n").as_bytes())
            .unwrap()
            .items
            .is_empty());
        // An item header at the very end has an empty implicit payload.
        let env = parse(format!("{HEADER}\n{{\"type\":\"attachment\"}}").as_bytes()).unwrap();
        assert_eq!(lens(&env), [("attachment".into(), 0)]);
        // `\r\n` ends an implicit payload with the `\r` in it.
        let env =
            parse(format!("{HEADER}\n{{\"type\":\"attachment\"}}\nab\r\n").as_bytes()).unwrap();
        assert_eq!(env.items[0].payload, b"ab\r");
        // Unknown types and attributes are kept.
        let env = parse(b"{\"x\":1}\n{\"type\":\"future\",\"y\":[1]}\n").unwrap();
        assert_eq!(env.items[0].ty, "future");
        assert_eq!(env.items[0].headers["y"], serde_json::json!([1]));
        assert_eq!(env.headers["x"], 1);
    }

    #[test]
    fn malformed_envelopes_get_relays_errors() {
        use EnvelopeError::*;
        let h = HEADER;
        let cases: Vec<(Vec<u8>, EnvelopeError)> = vec![
            (b"   ".to_vec(), MissingHeader),
            (b"{\"a\":1} \n".to_vec(), MissingNewline),
            (format!("{h}x").into_bytes(), MissingNewline),
            (format!("{h}\r\n").into_bytes(), MissingNewline),
            (
                format!("{h}\n{{\"type\":\"event\",\"length\":5}}\nab").into_bytes(),
                UnexpectedEof,
            ),
            (
                format!("{h}\n{{\"type\":\"event\",\"length\":2}}\nabc\n").into_bytes(),
                MissingNewline,
            ),
            (
                format!("{h}\n{{\"type\":\"event\",\"length\":2}}\nab\r\n").into_bytes(),
                MissingNewline,
            ),
            (
                format!("{h}\n{{\"type\":\"event\"}}\n{{}}\n\n").into_bytes(),
                UnexpectedEof,
            ),
            (
                format!("{h}\n{{\"type\":\"event\"}} \n").into_bytes(),
                MissingNewline,
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                parse(&body),
                Err(want),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
        let invalid_header = |b: &[u8]| matches!(parse(b), Err(InvalidHeader(_)));
        for b in [
            &b"[]\n"[..],
            b"not json\n",
            b"{\"event_id\":\"12\"}\n",
            b"{\"event_id\":5}\n",
            b"{\"sent_at\":\"yesterday\"}\n",
            b"{\"sent_at\":1700000000}\n",
            b"{\"dsn\":\"https://nokey@sentry.io/42\"}\n",
            b"{\"sent_at\":\"2020-02-07T14:16:00Z\",\"sent_at\":\"2020-02-07T14:16:00Z\"}\n",
        ] {
            assert!(invalid_header(b), "{}", String::from_utf8_lossy(b));
        }
        let invalid_item = |b: String| matches!(parse(b.as_bytes()), Err(InvalidItemHeader(_)));
        for item in [
            "{}",
            "{\"type\":1}",
            "{\"type\":\"event\",\"length\":-1}",
            "{\"type\":\"event\",\"length\":\"3\"}",
            "{\"type\":\"event\",\"length\":4294967296}",
            "{\"type\":\"event\",\"type\":\"event\"}",
            "nope",
        ] {
            assert!(invalid_item(format!("{h}\n{item}\n")), "{item}");
        }
    }

    #[test]
    fn uuids_in_both_spellings_and_typed_headers() {
        assert_eq!(
            normalize_uuid("12C2D058-D584-4270-9AA2-ECA08BF20986").as_deref(),
            Some("12c2d058d58442709aa2eca08bf20986")
        );
        for bad in [
            "",
            "12c2d058d58442709aa2eca08bf2098",
            "12c2d058d58442709aa2eca08bf2098g",
            "12c2d058-d5844-270-9aa2-eca08bf20986",
            "{12c2d058-d584-4270-9aa2-eca08bf20986}",
        ] {
            assert_eq!(normalize_uuid(bad), None, "{bad}");
        }
        let env =
            parse(b"{\"event_id\":null,\"sent_at\":\"2020-02-07T14:16:00.123+01:00\"}").unwrap();
        assert_eq!(env.event_id, None);
        assert_eq!(env.sent_at, Some(1_581_081_360));
        let env = parse(HEADER.as_bytes()).unwrap();
        assert_eq!(
            env.check_dsn("e12d836b15bb49d7bbf99e64295d995b", 42),
            Ok(())
        );
        assert_eq!(
            env.check_dsn("e12d836b15bb49d7bbf99e64295d995b", 43),
            Err(EnvelopeError::HeaderMismatch("project id"))
        );
        assert_eq!(
            env.check_dsn(&"0".repeat(32), 42),
            Err(EnvelopeError::HeaderMismatch("public key"))
        );
    }
}
