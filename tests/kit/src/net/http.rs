//! Hand-rolled HTTP/1.1 framing for the fakes: reading one request (request
//! line, headers, then a Content-Length or chunked body up to a cap the
//! fake chooses) and writing one response, plus percent-decoding and query
//! strings. Nothing here panics on client input; bad framing is a
//! [`ReadError`].

use std::io::{self, BufRead, Read, Write};

/// Longest request line or header line accepted.
const MAX_LINE: usize = 16 * 1024;
/// Most header lines accepted in one request.
const MAX_HEADERS: usize = 100;

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
    /// The body is over the cap (the head is kept; its body is left unread).
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
    let req = read_head(r)?;
    read_body(r, req, max_body)
}

/// Reads the request line and the headers (the body is left unread).
pub(crate) fn read_head<R: BufRead>(r: &mut R) -> Result<Request, ReadError> {
    // Tolerate blank lines between requests, as RFC 9112 allows.
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
    Ok(Request {
        method: method.to_string(),
        target: target.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body: Vec::new(),
        http11,
    })
}

/// Reads the body `req`'s headers announce (chunked, or `Content-Length`,
/// or none), at most `max_body` bytes.
pub(crate) fn read_body<R: BufRead>(
    r: &mut R,
    mut req: Request,
    max_body: usize,
) -> Result<Request, ReadError> {
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
    /// A response without headers yet.
    pub fn new(status: u16, body: Vec<u8>) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body,
        }
    }

    /// A JSON response.
    pub fn json(status: u16, body: &serde_json::Value) -> Response {
        Response::new(status, body.to_string().into_bytes())
            .with_header("Content-Type", "application/json")
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
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        409 => "Conflict",
        413 => "Payload Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Unknown",
    }
}

/// The status line and headers, then `framing` (the body's length or
/// transfer coding), ending in the blank line; `close` adds `Connection: close`.
pub(crate) fn head(
    status: u16,
    headers: &[(String, String)],
    framing: &str,
    close: bool,
) -> String {
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

/// Writes the response; `close` adds `Connection: close`. The answer to a
/// HEAD request (`to_head`) has the body's length but not the body; 204
/// and 304 carry neither.
pub(crate) fn write_response<W: Write>(
    w: &mut W,
    resp: &Response,
    to_head: bool,
    close: bool,
) -> io::Result<()> {
    let bodiless = matches!(resp.status, 204 | 304);
    let framing = if bodiless {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", resp.body.len())
    };
    let mut bytes = head(resp.status, &resp.headers, &framing, close).into_bytes();
    if !bodiless && !to_head {
        bytes.extend_from_slice(&resp.body);
    }
    w.write_all(&bytes)?;
    w.flush()
}

/// Decodes `%XX` escapes (and `+` as space when `plus_is_space`) to bytes;
/// `None` if an escape is invalid.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> Option<Vec<u8>> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return None;
                }
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// [`percent_decode`] to text; `None` if an escape is invalid or the
/// result is not UTF-8.
pub(crate) fn percent_decode_utf8(s: &str, plus_is_space: bool) -> Option<String> {
    String::from_utf8(percent_decode(s, plus_is_space)?).ok()
}

/// Splits and decodes a query string the way Go's `url.ParseQuery` does
/// (`+` as space); the error names the first pair that does not decode.
pub(crate) fn parse_query(query: &str) -> Result<Vec<(String, String)>, String> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match (percent_decode_utf8(k, true), percent_decode_utf8(v, true)) {
                (Some(k), Some(v)) => Ok((k, v)),
                _ => Err(format!("invalid query parameter {pair:?}")),
            }
        })
        .collect()
}

/// The decoded value of the first `name` parameter of `query`; `None` if
/// absent or if the query does not decode.
pub(crate) fn query_param(query: &str, name: &str) -> Option<String> {
    parse_query(query)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
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
    fn decodes_path_segments() {
        assert_eq!(
            percent_decode_utf8("1.4.0%2Bbuild", false).as_deref(),
            Some("1.4.0+build")
        );
        assert_eq!(percent_decode_utf8("a%2", false), None);
        assert_eq!(percent_decode_utf8("a%zz", false), None);
        assert_eq!(percent_decode_utf8("%FF", false), None);
    }
}
