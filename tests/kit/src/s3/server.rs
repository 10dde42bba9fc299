//! One connection of the fake S3: HTTP/1.1 keep-alive over TLS or plain
//! TCP, S3's framing rules and common response headers, fault injection,
//! and the request log (sockets and threads are [`crate::net::server`]).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::thread;

use super::api;
use super::clock::{host_id, request_id};
use super::errors::{self, S3Error};
use super::faults::{self, Action};
use super::log::LoggedRequest;
use super::state::Shared;
use crate::net::http::{self, write_response, ReadError, Request, Response};
use crate::net::server::{reset, Stream};
use crate::net::time::http_date;

/// Largest request body read (and ignored: the fake serves GET and HEAD).
const MAX_BODY: usize = 1024 * 1024;

/// Serves one connection, over TLS in HTTPS mode.
pub(crate) fn serve(shared: &Shared, tcp: TcpStream) {
    if let Some(conn) = Stream::new(tcp, shared.tls.as_ref()) {
        requests(shared, conn);
    }
}

/// Reads one request as S3 frames it: `Err(None)` when the peer is gone,
/// else the error to answer before closing (501 for any `Transfer-Encoding`,
/// 400 for bad framing or a body over `MAX_BODY`).
fn read_request<R: BufRead>(r: &mut R) -> Result<Request, Option<S3Error>> {
    let refuse = |e| match e {
        ReadError::Closed => None,
        ReadError::Malformed | ReadError::TooLarge(_) => Some(errors::bad_request()),
    };
    let req = http::read_head(r).map_err(refuse)?;
    if req.header("transfer-encoding").is_some() {
        return Err(Some(errors::not_implemented("Transfer-Encoding")));
    }
    http::read_body(r, req, MAX_BODY).map_err(refuse)
}

/// The headers S3 puts on every response.
fn common_headers(resp: Response, request_id: &str, host_id: &str, now: i64) -> Response {
    resp.with_header("x-amz-id-2", host_id)
        .with_header("x-amz-request-id", request_id)
        .with_header("Date", &http_date(now))
        .with_header("Server", "AmazonS3")
}

/// Serves requests on one connection until it closes.
fn requests(shared: &Shared, conn: Stream) {
    let mut reader = BufReader::new(conn);
    loop {
        let (rid, hid) = (request_id(), host_id());
        let req = match read_request(&mut reader) {
            Ok(r) => r,
            Err(None) => return,
            Err(Some(err)) => {
                let now = shared.clock.now();
                let resp = common_headers(err.response(&rid, &hid), &rid, &hid, now);
                let _ = write_response(reader.get_mut(), &resp, false, true);
                return;
            }
        };
        let fault = faults::take(&mut shared.lock().faults, &req.method, &req.path);
        let result: Result<Response, S3Error> = match fault {
            Some(Action::Reset) => {
                log(shared, &req, None, None, &rid);
                reset(reader.get_ref().tcp());
                return;
            }
            Some(Action::Fail(e)) => Err(e),
            Some(Action::Hang(d)) => {
                thread::sleep(d);
                api::handle(shared, &req)
            }
            None => api::handle(shared, &req),
        };
        let head = req.method == "HEAD";
        let (resp, code) = match result {
            Ok(r) => (r, None),
            Err(e) => {
                let mut r = e.response(&rid, &hid);
                if head {
                    // S3 answers HEAD errors with the status and headers alone.
                    r.body.clear();
                }
                (r, Some(e.code))
            }
        };
        let resp = common_headers(resp, &rid, &hid, shared.clock.now());
        log(shared, &req, Some(resp.status), code, &rid);
        let keep = req.keep_alive();
        if write_response(reader.get_mut(), &resp, head, !keep).is_err() || !keep {
            return;
        }
    }
}

fn log(shared: &Shared, req: &Request, status: Option<u16>, code: Option<String>, rid: &str) {
    let entry = LoggedRequest::new(req, status, code, rid);
    shared.lock().log.push(entry);
}
