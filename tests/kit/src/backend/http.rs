//! Hand-rolled HTTP/1.1 framing for the fake backend: reading one request
//! (Content-Length or chunked body, capped so an oversized body is a 413
//! rather than an allocation) and writing one response, whole or as a
//! streamed filler body for the huge/endless-body faults. Nothing here
//! panics on client input; bad framing is a [`ReadError`].

use std::io::{self, BufRead, Read, Write};
use std::time::{Duration, Instant};

/// Longest request line or header line accepted.
const MAX_LINE: usize = 16 * 1024;
/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 100;
/// An endless body stops after this long even if the client never cuts it off.
const ENDLESS_LIMIT: Duration = Duration::from_secs(60);
/// Size of each write of a streamed body.
const STREAM_CHUNK: usize = 64 * 1024;

/// One parsed request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    /// The request target as sent: path and query, still percent-encoded.
    pub target: String,
    /// The path part of `target`.
    pub path: String,
    /// The query part of `target`, without `?`.
    pub query: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// False for HTTP/1.0, where connections close unless asked otherwise.
    pub http11: bool,
}

/// Why no request could be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed (or timed out) before a whole request: not an error.
    Closed,
    /// The bytes are not HTTP/1.1: answer 400 and close.
    Malformed,
    /// The body is over the cap: answer 413 and close (the head is kept
    /// for the request log; its body is left unread).
    TooLarge(Box<Request>),
}

impl From<io::Error> for ReadError {
    fn from(_: io::Error) -> Self {
        ReadError::Closed
    }
}

impl Request {
    /// The first header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after the response.
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("connection").map(str::to_ascii_lowercase);
        match conn.as_deref() {
            Some(c) if c.split(',').any(|t| t.trim() == "close") => false,
            Some(c) if c.split(',').any(|t| t.trim() == "keep-alive") => true,
            _ => self.http11,
        }
    }

    /// The media type of the body, lower-cased, without parameters.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }
}

/// Reads one line ending in LF (CR before it is dropped), at most `MAX_LINE` bytes.
fn read_line<R: BufRead>(r: &mut R) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = r.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(if n > MAX_LINE {
            ReadError::Malformed
        } else {
            ReadError::Closed
        });
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    String::from_utf8(buf)
        .map(Some)
        .map_err(|_| ReadError::Malformed)
}

/// Reads one request with a body of at most `max_body` bytes; `Closed`
/// when the peer is gone before the first byte.
pub(crate) fn read_request<R: BufRead>(r: &mut R, max_body: usize) -> Result<Request, ReadError> {
    let line = loop {
        match read_line(r)? {
            None => return Err(ReadError::Closed),
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut parts = line.split(' ');
    let (method, target, version) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(m), Some(t), Some(v), None) if !m.is_empty() && t.starts_with('/') => (m, t, v),
        _ => return Err(ReadError::Malformed),
    };
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ReadError::Malformed);
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        _ => return Err(ReadError::Malformed),
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?.ok_or(ReadError::Closed)?;
        if line.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ReadError::Malformed);
        }
        let (name, value) = line
            .split_once(':')
            .filter(|(n, _)| !n.is_empty() && !n.contains(' '))
            .ok_or(ReadError::Malformed)?;
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
        http11,
    };
    let chunked = req
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if chunked {
        match read_chunked(r, max_body)? {
            Some(body) => req.body = body,
            None => return Err(ReadError::TooLarge(Box::new(req))),
        }
    } else if let Some(len) = req.header("content-length") {
        let len: usize = len.parse().map_err(|_| ReadError::Malformed)?;
        if len > max_body {
            return Err(ReadError::TooLarge(Box::new(req)));
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        req.body = body;
    }
    Ok(req)
}

/// Reads a chunked body and its trailer section; `None` once it passes `max_body`.
fn read_chunked<R: BufRead>(r: &mut R, max_body: usize) -> Result<Option<Vec<u8>>, ReadError> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?.ok_or(ReadError::Closed)?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| ReadError::Malformed)?;
        if size == 0 {
            break;
        }
        if size > max_body.saturating_sub(body.len()) {
            return Ok(None);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        if read_line(r)?.as_deref() != Some("") {
            return Err(ReadError::Malformed);
        }
    }
    // Trailer fields, ignored, up to the empty line.
    while !read_line(r)?.ok_or(ReadError::Closed)?.is_empty() {}
    Ok(Some(body))
}

/// One response to write.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response::raw_json(status, body.to_string().into_bytes())
    }

    /// Bytes sent as `application/json`, valid JSON or not.
    pub fn raw_json(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body,
        }
    }

    /// A status without a body (204, 304).
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// The status line and headers, ending in the blank line.
fn head(status: u16, headers: &[(String, String)], framing: &str, close: bool) -> String {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason_phrase(status));
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(framing);
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out
}

/// Writes the response; `close` adds `Connection: close`. 204 and 304
/// carry neither a body nor a `Content-Length`.
pub(crate) fn write_response<W: Write>(w: &mut W, resp: &Response, close: bool) -> io::Result<()> {
    let framing = match resp.status {
        204 | 304 => String::new(),
        _ => format!("Content-Length: {}\r\n", resp.body.len()),
    };
    let mut bytes = head(resp.status, &resp.headers, &framing, close).into_bytes();
    if !matches!(resp.status, 204 | 304) {
        bytes.extend_from_slice(&resp.body);
    }
    w.write_all(&bytes)?;
    w.flush()
}

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

/// Decodes `%XX` escapes in a path segment; `None` if an escape is invalid
/// or the result is not UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_chunked_bodies_and_caps_them() {
        let raw = b"POST /a?b=1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let req = read_request(&mut &raw[..], 10).unwrap();
        assert_eq!(
            (req.target.as_str(), req.path.as_str(), req.query.as_str()),
            ("/a?b=1", "/a", "b=1")
        );
        assert_eq!(req.body, b"abcde");
        assert!(matches!(
            read_request(&mut &raw[..], 4),
            Err(ReadError::TooLarge(_))
        ));
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde";
        assert!(matches!(
            read_request(&mut &raw[..], 4),
            Err(ReadError::TooLarge(_))
        ));
    }

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

    #[test]
    fn decodes_path_segments() {
        assert_eq!(
            percent_decode("1.4.0%2Bbuild").as_deref(),
            Some("1.4.0+build")
        );
        assert_eq!(percent_decode("a%2"), None);
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(percent_decode("%FF"), None);
    }
}
