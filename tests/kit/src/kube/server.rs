//! One connection of the fake API server: HTTP/1.1 keep-alive over TLS or
//! plain TCP, Go's answer to bad framing, fault injection, and the request
//! log (sockets and threads are [`crate::net::server`]).

use std::io::BufReader;
use std::net::TcpStream;
use std::thread;

use super::api;
use super::faults::{self, Action};
use super::log::LoggedRequest;
use super::state::Shared;
use crate::net::http::{read_request, write_response, ReadError, Response};
use crate::net::server::{reset, Stream};

/// Largest request body accepted (the real API server's limit is 3 MiB).
const MAX_BODY: usize = 3 * 1024 * 1024;

/// Serves one connection, over TLS unless in plain-HTTP mode.
pub(crate) fn serve(shared: &Shared, tcp: TcpStream) {
    if let Some(conn) = Stream::new(tcp, shared.tls.as_ref()) {
        requests(shared, conn);
    }
}

/// Serves requests on one connection until it closes.
fn requests(shared: &Shared, conn: Stream) {
    let mut reader = BufReader::new(conn);
    loop {
        let req = match read_request(&mut reader, MAX_BODY) {
            Ok(r) => r,
            Err(ReadError::Closed) => return,
            Err(ReadError::Malformed | ReadError::TooLarge(_)) => {
                // What Go's net/http answers to unparseable requests.
                let resp = Response::new(400, b"400 Bad Request".to_vec())
                    .with_header("Content-Type", "text/plain; charset=utf-8");
                let _ = write_response(reader.get_mut(), &resp, false, true);
                return;
            }
        };
        let fault = faults::take(&mut shared.lock().faults, &req.method, &req.path);
        // Logged on arrival, so whoever sees a change the request made also
        // finds it in the log; the status is filled in once it is known.
        let mut logged = LoggedRequest::new(&req, None);
        logged.client = api::client(shared, &req).filter(|label| !label.is_empty());
        let entry = shared.lock().log.open(logged);
        let latency = shared.lock().latency;
        if !latency.is_zero() {
            thread::sleep(latency);
        }
        let resp = match fault {
            Some(Action::Reset) => {
                reset(reader.get_ref().tcp());
                return;
            }
            Some(Action::Respond(r)) => r,
            Some(Action::Hang(d)) => {
                thread::sleep(d);
                api::handle(shared, &req)
            }
            None => api::handle(shared, &req),
        };
        let status = resp.status;
        let answered = std::time::SystemTime::now();
        shared.lock().log.update(entry, |e| {
            e.status = Some(status);
            e.answered_at = Some(answered);
        });
        let keep = req.keep_alive();
        if write_response(reader.get_mut(), &resp, false, !keep).is_err() || !keep {
            return;
        }
    }
}
