//! The backend's streamed bodies for the huge/endless-body faults: a 200
//! `application/json` filler body of a given length, or chunked without
//! end; and the slow drip of a real answer. Everything else about HTTP is
//! [`crate::net::http`].

use std::io::Write;
use std::time::{Duration, Instant};

use crate::net::http::{head, write_response, Response};

/// An endless body stops after this long even if the client never cuts it off.
const ENDLESS_LIMIT: Duration = Duration::from_secs(60);
/// Size of each write of a streamed body.
const STREAM_CHUNK: usize = 64 * 1024;

/// The filler of streamed bodies: the start of a desired-state document
/// that never ends, so a client that reads it all still cannot parse it.
fn filler() -> Vec<u8> {
    let item = br#"{"name":"web","version":"1.4.0"},"#;
    let mut out = br#"{"workloads":["#.to_vec();
    while out.len() < STREAM_CHUNK {
        out.extend_from_slice(item);
    }
    out.truncate(STREAM_CHUNK);
    out
}

/// Writes `resp` (closing the connection after it) one byte every `every`,
/// until the client goes away or `ENDLESS_LIMIT` passes. Returns whether
/// all of it was written.
pub(crate) fn write_dripped<W: Write>(w: &mut W, resp: &Response, every: Duration) -> bool {
    let mut bytes = Vec::new();
    if write_response(&mut bytes, resp, false, true).is_err() {
        return false;
    }
    let started = Instant::now();
    for byte in bytes {
        if started.elapsed() >= ENDLESS_LIMIT
            || w.write_all(&[byte]).and_then(|()| w.flush()).is_err()
        {
            return false;
        }
        std::thread::sleep(every);
    }
    true
}

/// Streams a 200 `application/json` body of `len` filler bytes, or with
/// `None` an endless chunked one, until the client goes away (a write
/// fails) or, for the endless body, `ENDLESS_LIMIT` passes. Returns the
/// body bytes written; the connection must be closed afterwards.
pub(crate) fn write_streamed<W: Write>(w: &mut W, len: Option<u64>) -> u64 {
    let headers = [("Content-Type".to_string(), "application/json".to_string())];
    let framing = match len {
        Some(n) => format!("Content-Length: {n}\r\n"),
        None => "Transfer-Encoding: chunked\r\n".to_string(),
    };
    if w.write_all(head(200, &headers, &framing, true).as_bytes())
        .is_err()
    {
        return 0;
    }
    let chunk = filler();
    let started = Instant::now();
    let mut sent = 0u64;
    loop {
        let n = match len {
            Some(total) if sent >= total => break,
            Some(total) => chunk.len().min((total - sent) as usize),
            None if started.elapsed() >= ENDLESS_LIMIT => break,
            None => chunk.len(),
        };
        let written = match len {
            Some(_) => w.write_all(&chunk[..n]),
            None => w
                .write_all(format!("{n:x}\r\n").as_bytes())
                .and_then(|()| w.write_all(&chunk[..n]))
                .and_then(|()| w.write_all(b"\r\n")),
        };
        if written.is_err() {
            return sent;
        }
        sent += n as u64;
    }
    let _ = w.flush();
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_exactly_the_asked_length() {
        let mut out = Vec::new();
        assert_eq!(write_streamed(&mut out, Some(100_000)), 100_000);
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("Content-Length: 100000"));
        assert_eq!(body.len(), 100_000);
        assert!(body.starts_with(r#"{"workloads":[{"name":"web""#));
    }
}
