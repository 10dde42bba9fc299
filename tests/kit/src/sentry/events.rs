//! Event items and what the fake keeps of an accepted envelope. The
//! event rules are the develop docs' ("Envelope Items: Event", "Event
//! Payloads: Required Attributes"), which Relay does not enforce at the
//! endpoint (it fills in a missing `event_id` and lets the header win a
//! mismatch), so the fake refuses what the docs forbid: more than one
//! `event` item, `event` next to `transaction`, an `event` without the
//! envelope header `event_id`, a payload that is not a JSON object, and a
//! payload `event_id` that is not 32 lower-case hex digits or differs from
//! the header's.

use serde_json::Value;

use super::envelope::Envelope;

/// One item of an accepted envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredItem {
    /// The item header's `type`.
    pub item_type: String,
    /// The item header as sent, unknown attributes included.
    pub headers: Value,
    /// The payload bytes (without the newline that ends them).
    pub payload: Vec<u8>,
}

impl StoredItem {
    /// The payload parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.payload).ok()
    }
}

/// One accepted envelope, as it arrived.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEnvelope {
    /// The body exactly as received.
    pub body: Vec<u8>,
    /// Every HTTP header, names lower-cased, in the order sent.
    pub headers: Vec<(String, String)>,
    /// `X-Sentry-Auth` as sent, if sent.
    pub auth_header: Option<String>,
    /// The raw query string, without `?`.
    pub query: String,
    /// The envelope header line, parsed.
    pub envelope_header: Value,
    /// The envelope header's `event_id`, as 32 lower-case hex digits.
    pub event_id: Option<String>,
    /// The items the fake kept (all of them, unless a rate limit dropped some).
    pub items: Vec<StoredItem>,
}

impl StoredEnvelope {
    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first HTTP header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The payloads of the `event` items, parsed.
    pub fn events(&self) -> Vec<Value> {
        self.items
            .iter()
            .filter(|i| i.item_type == "event")
            .filter_map(StoredItem::json)
            .collect()
    }
}

/// Whether `s` is an `event_id` as an event payload spells it: 32
/// lower-case hex digits, no dashes.
fn is_payload_event_id(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Checks the envelope's event item (if any) against the docs; why not.
pub(crate) fn check(env: &Envelope) -> Result<(), String> {
    let events: Vec<_> = env.items.iter().filter(|i| i.ty == "event").collect();
    let Some(event) = events.first() else {
        return Ok(());
    };
    if events.len() > 1 {
        return Err(format!(
            "the envelope has {} event items; an event item may occur at most once per envelope",
            events.len()
        ));
    }
    if env.items.iter().any(|i| i.ty == "transaction") {
        return Err("event and transaction items are mutually exclusive".into());
    }
    let header_id = env.event_id.as_deref().ok_or(
        "an envelope with an event item must carry the event's event_id in its envelope header",
    )?;
    let payload: Value = serde_json::from_slice(&event.payload)
        .map_err(|e| format!("the event payload is not JSON: {e}"))?;
    let obj = payload
        .as_object()
        .ok_or("the event payload must be a JSON object")?;
    let id = match obj.get("event_id") {
        Some(Value::String(id)) => id,
        Some(v) => return Err(format!("the event's event_id {v} is not a string")),
        None => return Err("the event payload has no event_id (a required attribute)".into()),
    };
    if !is_payload_event_id(id) {
        return Err(format!(
            "the event's event_id {id:?} is not 32 lower-case hex digits without dashes"
        ));
    }
    if id != header_id {
        return Err(format!(
            "the event's event_id {id} differs from the envelope header's {header_id}"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::envelope::parse;
    use super::*;

    const ID: &str = "fc6d8c0c43fc4630ad850ee518f1b9d0";

    fn env(header: &str, items: &[(&str, &str)]) -> Envelope {
        let mut body = format!("{header}\n");
        for (ty, payload) in items {
            body.push_str(&format!(
                "{{\"type\":\"{ty}\",\"length\":{}}}\n{payload}\n",
                payload.len()
            ));
        }
        parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn a_docs_event_passes_and_envelopes_without_events_too() {
        let header = format!("{{\"event_id\":\"{ID}\"}}");
        let event = format!("{{\"event_id\":\"{ID}\",\"message\":\"hi\"}}");
        assert_eq!(check(&env(&header, &[("event", &event)])), Ok(()));
        // The header may spell the id with dashes.
        let dashed = "{\"event_id\":\"fc6d8c0c-43fc-4630-ad85-0ee518f1b9d0\"}";
        assert_eq!(check(&env(dashed, &[("event", &event)])), Ok(()));
        assert_eq!(check(&env("{}", &[("session", "{}")])), Ok(()));
    }

    #[test]
    fn events_that_break_the_docs_are_refused_with_a_reason() {
        let header = format!("{{\"event_id\":\"{ID}\"}}");
        let good = format!("{{\"event_id\":\"{ID}\"}}");
        let other = "{\"event_id\":\"00000000000000000000000000000001\"}";
        let upper = format!("{{\"event_id\":\"{}\"}}", ID.to_ascii_uppercase());
        let cases = [
            (
                &header[..],
                vec![("event", &good[..]), ("event", &good[..])],
                "at most once",
            ),
            (
                &header,
                vec![("event", &good), ("transaction", "{}")],
                "mutually exclusive",
            ),
            ("{}", vec![("event", &good)], "envelope header"),
            (&header, vec![("event", "[1]")], "JSON object"),
            (&header, vec![("event", "{")], "not JSON"),
            (&header, vec![("event", "{}")], "no event_id"),
            (&header, vec![("event", "{\"event_id\":7}")], "not a string"),
            (&header, vec![("event", &upper)], "lower-case"),
            (&header, vec![("event", other)], "differs"),
        ];
        for (h, items, want) in cases {
            let err = check(&env(h, &items)).unwrap_err();
            assert!(err.contains(want), "{err} (wanted {want})");
        }
    }
}
