//! Sockets and threads: the accept loop on 127.0.0.1 (closed and reopened on
//! the same port to make S3 unreachable), a thread per connection with
//! HTTP/1.1 keep-alive over TLS or plain TCP, fault injection, TCP resets,
//! S3's common response headers, and the request log.

use std::collections::HashMap;
use std::io::{BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::api;
use super::clock::{host_id, http_date, request_id};
use super::errors::{self, S3Error};
use super::faults::{self, Action};
use super::http::{read_request, write_response, ReadError, Request, Response};
use super::log::LoggedRequest;
use super::state::Shared;

/// Idle keep-alive connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

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
            .name("fake-s3-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (shared, conns) = (shared.clone(), conns.clone());
                    let _ = thread::Builder::new()
                        .name("fake-s3-conn".into())
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

/// A connection's byte stream, with access to the TCP socket under it.
trait Conn: Read + Write {
    fn tcp(&self) -> &TcpStream;
}

impl Conn for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

impl Conn for rustls::StreamOwned<rustls::ServerConnection, TcpStream> {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

fn serve(shared: &Shared, conns: &Connections, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let Some(id) = conns.add(&stream) else { return };
    match &shared.tls {
        Some(cfg) => {
            if let Ok(conn) = rustls::ServerConnection::new(cfg.clone()) {
                requests(shared, rustls::StreamOwned::new(conn, stream));
            }
        }
        None => requests(shared, stream),
    }
    conns.remove(id);
}

/// The headers S3 puts on every response.
fn common_headers(resp: Response, request_id: &str, host_id: &str, now: i64) -> Response {
    resp.with_header("x-amz-id-2", host_id)
        .with_header("x-amz-request-id", request_id)
        .with_header("Date", &http_date(now))
        .with_header("Server", "AmazonS3")
}

/// Serves requests on one connection until it closes.
fn requests<C: Conn>(shared: &Shared, conn: C) {
    let mut reader = BufReader::new(conn);
    loop {
        let (rid, hid) = (request_id(), host_id());
        let req = match read_request(&mut reader) {
            Ok(r) => r,
            Err(ReadError::Closed) => return,
            Err(e) => {
                let err = match e {
                    ReadError::Chunked => errors::not_implemented("Transfer-Encoding"),
                    _ => errors::bad_request(),
                };
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

/// Makes the coming close send RST instead of FIN.
fn reset(tcp: &TcpStream) {
    let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
}
