//! One connection of the fake Sentry: HTTP/1.1 keep-alive over plain TCP,
//! fault injection, hanging, 413s with a lingering close, and the request
//! log (sockets and threads are [`crate::net::server`]).

use std::io::BufReader;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::api::{self, Answer};
use super::auth;
use super::errors;
use super::faults::{self, Action, FaultKind};
use super::log::LoggedRequest;
use super::state::Shared;
use crate::net::http::{read_request, write_response, ReadError, Request, Response};
use crate::net::log::Mark;
use crate::net::server::{lingering_close, reset};

/// A client that stops reading a response is given up on after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// A request held by [`super::FakeSentry::hang`] is answered after this
/// long even if the test never lets go.
const HANG_LIMIT: Duration = Duration::from_secs(120);

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
                let resp = errors::bad_http().response();
                let _ = write_response(reader.get_mut(), &resp, false, true);
                return;
            }
            Err(ReadError::TooLarge(req)) => {
                let entry = arrive(shared, &req, None);
                let answer = Answer {
                    resp: errors::payload_too_large(),
                    detail: Some("length limit exceeded".into()),
                    event_id: None,
                };
                answered(shared, entry, &answer);
                if write_response(reader.get_mut(), &answer.resp, false, true).is_ok() {
                    lingering_close(&mut reader);
                }
                return;
            }
        };
        let fault = faults::take(&mut shared.lock().faults, &req.method, &req.path);
        let (kind, action) = match fault {
            Some((kind, action)) => (Some(kind), Some(action)),
            None => (None, None),
        };
        // Logged on arrival, so a test that sees the request's effect also
        // finds it in the log; the answer is filled in once it is known.
        let entry = arrive(shared, &req, kind);
        wait_while_hanging(shared);
        let answer = match action {
            Some(Action::Reset) => {
                reset(reader.get_ref());
                return;
            }
            Some(Action::Respond(resp)) => Answer {
                detail: detail_of(&resp),
                resp,
                event_id: None,
            },
            Some(Action::Hang(d)) => {
                thread::sleep(d);
                api::handle(shared, &req)
            }
            None => api::handle(shared, &req),
        };
        answered(shared, entry, &answer);
        let keep = req.keep_alive();
        if write_response(reader.get_mut(), &answer.resp, false, !keep).is_err() || !keep {
            return;
        }
    }
}

/// The `detail` of a JSON error body.
fn detail_of(resp: &Response) -> Option<String> {
    serde_json::from_slice::<Value>(&resp.body)
        .ok()?
        .get("detail")?
        .as_str()
        .map(str::to_string)
}

/// Holds the request while the test has the fake hanging (at most
/// `HANG_LIMIT`; dropping the fake lets go).
fn wait_while_hanging(shared: &Shared) {
    let started = Instant::now();
    while shared.lock().hanging && started.elapsed() < HANG_LIMIT {
        thread::sleep(Duration::from_millis(5));
    }
}

/// Logs a request as it arrives, not yet answered.
fn arrive(shared: &Shared, req: &Request, fault: Option<FaultKind>) -> Mark {
    let claim = auth::claim(req);
    let categories = api::item_categories(&req.body);
    let now = shared.clock.now_ms();
    let mut st = shared.lock();
    let limited = api::in_rate_limit(&mut st, &categories, now);
    let entry = LoggedRequest::new(req, &claim, limited, fault, now);
    st.log.open(entry)
}

/// Fills in the answer of a logged request.
fn answered(shared: &Shared, at: Mark, answer: &Answer) {
    shared.lock().log.update(at, |e| {
        e.status = Some(answer.resp.status);
        e.detail.clone_from(&answer.detail);
        e.event_id.clone_from(&answer.event_id);
    });
}
