//! One connection of the fake backend: HTTP/1.1 keep-alive over plain TCP,
//! authentication, fault injection, 413s with a lingering close, streamed
//! bodies, and the request and delivery logs (sockets and threads are
//! [`crate::net::server`]).

use std::io::BufReader;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;

use serde_json::Value;

use crate::net::log::Mark;

use super::api;
use super::auth::authenticate;
use super::errors;
use super::faults::{self, Action, FaultKind};
use super::http::{write_dripped, write_streamed};
use super::log::{Delivery, LoggedRequest};
use super::state::Shared;
use crate::net::http::{read_request, write_response, ReadError, Request, Response};
use crate::net::server::{lingering_close, reset};

/// A client that stops reading a response is given up on after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one connection (plain TCP; a client that stops reading is given up on).
pub(crate) fn serve(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    requests(shared, stream);
}

/// Serves requests on one connection until it closes.
fn requests(shared: &Shared, stream: TcpStream) {
    let mut reader = BufReader::new(stream);
    loop {
        let req = match read_request(&mut reader, shared.cfg.max_body) {
            Ok(r) => r,
            Err(ReadError::Closed) => return,
            Err(ReadError::Malformed) => {
                let resp = errors::bad_request("malformed HTTP/1.1 request").response();
                let _ = write_response(reader.get_mut(), &resp, false, true);
                return;
            }
            Err(ReadError::TooLarge(req)) => {
                let resp = errors::payload_too_large(shared.cfg.max_body).response();
                let unread = Err("the body was over the limit and not read".to_string());
                record(shared, &req, &unread, Some(&resp), None);
                if write_response(reader.get_mut(), &resp, false, true).is_ok() {
                    lingering_close(&mut reader);
                }
                return;
            }
        };
        let auth = authenticate(&req, shared.clock.now());
        let fault = faults::take(&mut shared.lock().faults, &req.method, &req.path);
        let (kind, action) = match fault {
            Some((kind, action)) => (Some(kind), Some(action)),
            None => (None, None),
        };
        // Logged on arrival, so whoever sees a change the request made also
        // finds it in the logs; the answer is filled in once it is known.
        let entry = arrive(shared, &req, &auth, kind);
        let latency = shared.lock().latency;
        if !latency.is_zero() {
            thread::sleep(latency);
        }
        let resp = match action {
            Some(Action::Reset) => {
                reset(reader.get_ref());
                return;
            }
            Some(Action::Stream(len)) => {
                answered(shared, entry, &Response::new(200, Vec::new()));
                write_streamed(reader.get_mut(), len);
                return;
            }
            Some(Action::Drip(every)) => {
                let resp = api::handle(shared, &req, &auth, None);
                answered(shared, entry, &resp);
                if !write_dripped(reader.get_mut(), &resp, every) {
                    answer_lost(shared, entry);
                }
                return;
            }
            Some(Action::Respond(r)) => r,
            Some(Action::Hang(d)) => {
                thread::sleep(d);
                api::handle(shared, &req, &auth, None)
            }
            Some(Action::Manifest(rewrite)) => api::handle(shared, &req, &auth, Some(&rewrite)),
            None => api::handle(shared, &req, &auth, None),
        };
        answered(shared, entry, &resp);
        let keep = req.keep_alive();
        if write_response(reader.get_mut(), &resp, false, !keep).is_err() {
            answer_lost(shared, entry);
            return;
        }
        if !keep {
            return;
        }
    }
}

/// Appends to the request log and, for a health POST, the delivery log;
/// `resp` is `None` for a reset connection.
fn record(
    shared: &Shared,
    req: &Request,
    auth: &Result<String, String>,
    resp: Option<&Response>,
    fault: Option<FaultKind>,
) {
    let entry = arrive(shared, req, auth, fault);
    if let Some(resp) = resp {
        answered(shared, entry, resp);
    }
}

/// Where a request's entries are: in the request log and, for a health
/// POST, in the delivery log.
type Entry = (Mark, Option<usize>);

/// Logs a request as it arrives, not yet answered.
fn arrive(
    shared: &Shared,
    req: &Request,
    auth: &Result<String, String>,
    fault: Option<FaultKind>,
) -> Entry {
    let delivery = Delivery::of(&shared.cfg.base_path, req, None, None);
    let logged = LoggedRequest::new(req, auth, None, fault);
    let mut st = shared.lock();
    let at = st.log.open(logged);
    let delivery = delivery.map(|d| {
        st.deliveries.push(d);
        st.deliveries.len() - 1
    });
    (at, delivery)
}

/// Marks a logged request whose answer could not be written.
fn answer_lost(shared: &Shared, (at, _): Entry) {
    shared.lock().log.update(at, |e| e.answer_lost = true);
}

/// Fills in the answer of a logged request.
fn answered(shared: &Shared, (at, delivery): Entry, resp: &Response) {
    let accepted = Some(resp)
        .filter(|r| r.status == 202)
        .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .and_then(|v| v.get("accepted")?.as_u64())
        .map(|n| n as usize);
    let mut st = shared.lock();
    st.log.update(at, |e| e.status = Some(resp.status));
    if let Some(d) = delivery.and_then(|i| st.deliveries.get_mut(i)) {
        d.status = Some(resp.status);
        d.accepted = accepted;
    }
}
