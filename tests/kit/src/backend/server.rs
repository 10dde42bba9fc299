//! Sockets and threads: the accept loop on 127.0.0.1 (closed and reopened
//! on the same port to make the backend unreachable), a thread per
//! connection with HTTP/1.1 keep-alive, authentication, fault injection,
//! TCP resets, streamed bodies, and the request and delivery logs.

use std::collections::HashMap;
use std::io::{BufReader, Read};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::api;
use super::auth::authenticate;
use super::errors;
use super::faults::{self, Action, FaultKind};
use super::http::{read_request, write_response, write_streamed, ReadError, Request, Response};
use super::log::{Delivery, LoggedRequest};
use super::state::Shared;

/// Idle keep-alive connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// A client that stops reading a response is given up on after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long, and how much, an oversized body is drained after its 413.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// The open connections, so that going unreachable can cut them.
#[derive(Default)]
pub(crate) struct Connections {
    next: AtomicU64,
    open: Mutex<HashMap<u64, TcpStream>>,
}

impl Connections {
    fn add(&self, s: &TcpStream) -> Option<u64> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let clone = s.try_clone().ok()?;
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, clone);
        Some(id)
    }

    fn remove(&self, id: u64) {
        self.open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Shuts every open connection down.
    pub fn cut_all(&self) {
        for (_, s) in self.open.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A running accept loop.
pub(crate) struct Acceptor {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Listens on 127.0.0.1:`port` (0 for a random port).
    pub fn start(
        shared: Arc<Shared>,
        conns: Arc<Connections>,
        port: u16,
    ) -> std::io::Result<Acceptor> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = thread::Builder::new()
            .name("fake-backend-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (shared, conns) = (shared.clone(), conns.clone());
                    let _ = thread::Builder::new()
                        .name("fake-backend-conn".into())
                        .spawn(move || serve(&shared, &conns, stream));
                }
            })?;
        Ok(Acceptor {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes the listening socket: new connections are refused.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the loop then drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(shared: &Shared, conns: &Connections, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Some(id) = conns.add(&stream) else { return };
    requests(shared, stream);
    conns.remove(id);
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
                let _ = write_response(reader.get_mut(), &resp, true);
                return;
            }
            Err(ReadError::TooLarge(req)) => {
                let resp = errors::payload_too_large(shared.cfg.max_body).response();
                let unread = Err("the body was over the limit and not read".to_string());
                record(shared, &req, &unread, Some(&resp), None);
                if write_response(reader.get_mut(), &resp, true).is_ok() {
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
        let resp = match action {
            Some(Action::Reset) => {
                record(shared, &req, &auth, None, kind);
                reset(reader.get_ref());
                return;
            }
            Some(Action::Stream(len)) => {
                let ok = Response::empty(200);
                record(shared, &req, &auth, Some(&ok), kind);
                write_streamed(reader.get_mut(), len);
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
        record(shared, &req, &auth, Some(&resp), kind);
        let keep = req.keep_alive();
        if write_response(reader.get_mut(), &resp, !keep).is_err() || !keep {
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
    let status = resp.map(|r| r.status);
    let accepted = resp
        .filter(|r| r.status == 202)
        .and_then(|r| serde_json::from_slice::<Value>(&r.body).ok())
        .and_then(|v| v.get("accepted")?.as_u64())
        .map(|n| n as usize);
    let delivery = Delivery::of(&shared.cfg.base_path, req, status, accepted);
    let entry = LoggedRequest::new(req, auth, status, fault);
    let mut st = shared.lock();
    st.log.push(entry);
    st.deliveries.extend(delivery);
}

/// Stops writing, then reads and drops what the client still sends (a
/// bounded amount, for a bounded time), so that a client still sending an
/// oversized body reads the answer instead of a reset.
fn lingering_close(reader: &mut BufReader<TcpStream>) {
    let _ = reader.get_ref().shutdown(Shutdown::Write);
    let _ = reader.get_ref().set_read_timeout(Some(LINGER_TIME));
    let started = Instant::now();
    let mut drained = 0usize;
    let mut buf = [0u8; 64 * 1024];
    while drained < LINGER_BYTES && started.elapsed() < LINGER_TIME {
        match reader.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

/// Makes the coming close send RST instead of FIN.
fn reset(tcp: &TcpStream) {
    let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
}
