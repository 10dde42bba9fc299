//! The socket side of our HTTP API: the listener, tiny_http, the liveness
//! answer off the main loop, and the checks that keep the server from
//! going deaf.
//!
//! The listener is created here with read and write timeouts, which accepted
//! sockets inherit on Linux, so an idle or stalled client holds a connection
//! thread for at most [`SOCKET_TIMEOUT`]. The patched tiny_http (see
//! `src/vendor/tiny_http/PATCHES.md`) caps headers, bodies and connections and
//! reads bodies on its own threads, so nothing here ever waits on a client
//! for long: the main loop only takes finished requests and writes small replies.
//!
//! A plain `GET /healthz` is answered on its connection's thread (tiny_http's
//! front hook), from the time of the main loop's last turn
//! ([`HttpServer::turned`]), so liveness is answered at once even while the
//! loop waits on an outbound call; every other request goes to the main
//! loop, which owns all state.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::api;
use crate::clock::{Clock, SystemClock};

/// Read and write timeout of every accepted socket: an idle keep-alive
/// connection is closed after this long.
pub const SOCKET_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the server checks that it still accepts connections.
pub const PROBE_EVERY: Duration = Duration::from_secs(30);
/// How long a self-probe may take before the server counts as deaf.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(10);

/// The running HTTP server.
pub struct HttpServer {
    inner: tiny_http::Server,
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// What the connection threads and the main loop share; it outlives a rebuild.
#[derive(Debug)]
struct Shared {
    origin: Instant,
    /// The main loop's last turn, in milliseconds after `origin`.
    last_turn_ms: AtomicU64,
    /// `/healthz` answers given off the loop, by status, not yet counted.
    healthz_ok: AtomicU64,
    healthz_stalled: AtomicU64,
}

impl Shared {
    fn last_turn(&self) -> Instant {
        self.origin + Duration::from_millis(self.last_turn_ms.load(Ordering::Relaxed))
    }
}

impl HttpServer {
    /// Listens on `addr` (port 0 picks a free port).
    pub fn bind(addr: SocketAddr) -> io::Result<HttpServer> {
        let shared = Arc::new(Shared {
            origin: SystemClock.now(),
            last_turn_ms: AtomicU64::new(0),
            healthz_ok: AtomicU64::new(0),
            healthz_stalled: AtomicU64::new(0),
        });
        HttpServer::start(addr, shared)
    }

    fn start(addr: SocketAddr, shared: Arc<Shared>) -> io::Result<HttpServer> {
        let listener = listener(addr)?;
        let addr = listener.local_addr()?;
        let inner = tiny_http::Server::from_listener_with_front(
            listener,
            None,
            Some(liveness_front(shared.clone())),
        )
        .map_err(io::Error::other)?;
        Ok(HttpServer {
            inner,
            addr,
            shared,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The main loop turned at `now` (its own clock); `/healthz` answers
    /// from this, judged by the system clock.
    pub fn turned(&self, now: Instant) {
        let ms = now
            .saturating_duration_since(self.shared.origin)
            .as_millis();
        let ms = u64::try_from(ms).unwrap_or(u64::MAX);
        self.shared.last_turn_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// The `/healthz` answers given off the main loop since the last call,
    /// by status code, for the request counts.
    pub fn answered_off_loop(&self) -> [(u16, u64); 2] {
        [
            (200, self.shared.healthz_ok.swap(0, Ordering::Relaxed)),
            (503, self.shared.healthz_stalled.swap(0, Ordering::Relaxed)),
        ]
    }

    /// Waits up to `timeout` for the next request. An error means the server
    /// stopped accepting connections; [`HttpServer::rebuild`] it.
    pub fn recv(&self, timeout: Duration) -> io::Result<Option<Incoming>> {
        let request = if timeout.is_zero() {
            self.inner.try_recv()?
        } else {
            self.inner.recv_timeout(timeout)?
        };
        Ok(request.map(Incoming))
    }

    /// Replaces a dead server with a new one on the same address.
    pub fn rebuild(&mut self) -> io::Result<()> {
        let fresh = HttpServer::start(self.addr, self.shared.clone())?;
        *self = fresh;
        Ok(())
    }
}

/// Answers a plain `/healthz` on the connection's thread; hands every
/// other request back for the main loop.
fn liveness_front(shared: Arc<Shared>) -> tiny_http::Front {
    Arc::new(move |request| {
        let incoming = Incoming(request);
        if !incoming.is_plain_healthz() {
            return Some(incoming.0);
        }
        let response = api::liveness(shared.last_turn(), SystemClock.now());
        let count = match response.status {
            200 => &shared.healthz_ok,
            _ => &shared.healthz_stalled,
        };
        count.fetch_add(1, Ordering::Relaxed);
        answer_guarded(incoming, |_| response);
        None
    })
}

/// A TCP listener whose accepted sockets time out reads and writes.
pub fn listener(addr: SocketAddr) -> io::Result<TcpListener> {
    let listener = TcpListener::bind(addr)?;
    set_timeouts(&listener, SOCKET_TIMEOUT)?;
    Ok(listener)
}

/// Sets SO_RCVTIMEO and SO_SNDTIMEO on a socket; std offers no way to do
/// this on a listener.
fn set_timeouts(socket: &impl AsRawFd, timeout: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros() as i32),
    };
    for option in [libc::SO_RCVTIMEO, libc::SO_SNDTIMEO] {
        // SAFETY: a valid fd, a pointer to a live timeval and its exact size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// One request, its body already in memory.
pub struct Incoming(tiny_http::Request);

impl Incoming {
    /// Answers the request with what `handle` returns. Write errors (a client
    /// that went away) are logged at debug level and otherwise ignored.
    pub fn answer(mut self, handle: impl FnOnce(&api::Request<'_>) -> api::Response) {
        let mut body = Vec::new();
        // The body is an in-memory buffer of at most api::MAX_BODY bytes.
        let read = self
            .0
            .as_reader()
            .take(api::MAX_BODY as u64 + 1)
            .read_to_end(&mut body);
        let header = |name: &'static str| {
            self.0
                .headers()
                .iter()
                .find(|h| h.field.equiv(name))
                .map(|h| h.value.as_str().to_string())
        };
        let (content_type, accept) = (header("Content-Type"), header("Accept"));
        let method = self.0.method().as_str().to_string();
        let response = match read {
            Ok(_) => handle(&api::Request {
                method: &method,
                url: self.0.url(),
                content_type: content_type.as_deref(),
                accept: accept.as_deref(),
                body: &body,
            }),
            Err(e) => {
                api::Response::error(400, "bad_request", &format!("could not read the body: {e}"))
            }
        };
        // The length is known: sent as Content-Length, never chunked.
        let mut reply = tiny_http::Response::from_data(response.body)
            .with_status_code(response.status)
            .with_chunked_threshold(usize::MAX);
        reply.add_header(header_of("Content-Type", response.content_type));
        if let Some(allow) = response.allow {
            reply.add_header(header_of("Allow", allow));
        }
        if let Err(e) = self.0.respond(reply) {
            log::debug!("could not write a response: {e}");
        }
    }

    /// `GET` or `HEAD` of `/healthz` with no query: answered off the loop.
    fn is_plain_healthz(&self) -> bool {
        self.0.url() == "/healthz" && matches!(self.0.method().as_str(), "GET" | "HEAD")
    }

    /// The query of a self-probe request, if this is one.
    pub fn probe_nonce(&self) -> Option<u64> {
        self.0.url().strip_prefix("/healthz?probe=")?.parse().ok()
    }
}

fn header_of(name: &'static str, value: &'static str) -> tiny_http::Header {
    tiny_http::Header {
        field: name.parse().expect("static header names are valid"),
        value: value.parse().expect("static header values are ASCII"),
    }
}

/// Answers `incoming` with `handle`; a panic in `handle` is caught and logged,
/// and the client gets an empty 500 (tiny_http answers a dropped request).
pub fn answer_guarded(incoming: Incoming, handle: impl FnOnce(&api::Request<'_>) -> api::Response) {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| incoming.answer(handle)));
    if result.is_err() {
        log::error!("a request handler panicked; the request got a 500");
    }
}

/// Checks that the server still accepts connections: every [`PROBE_EVERY`]
/// it connects to itself and sends `GET /healthz?probe=N`; the probe passes
/// when the main loop receives that request, or when the server at least
/// answered (a 503 when it is full of connections).
pub struct SelfProbe {
    target: SocketAddr,
    nonce: u64,
    pending: Option<(TcpStream, Instant)>,
    next: Instant,
}

/// What a probe check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Fine,
    /// No answer within [`PROBE_DEADLINE`].
    Deaf,
}

impl SelfProbe {
    /// Probes `listening` (an unspecified address is probed on loopback).
    pub fn new(listening: SocketAddr, now: Instant) -> SelfProbe {
        let mut target = listening;
        if target.ip().is_unspecified() {
            target.set_ip(if target.is_ipv4() {
                Ipv4Addr::LOCALHOST.into()
            } else {
                Ipv6Addr::LOCALHOST.into()
            });
        }
        SelfProbe {
            target,
            nonce: 0,
            pending: None,
            next: now + PROBE_EVERY,
        }
    }

    /// The main loop received probe `nonce`.
    pub fn received(&mut self, nonce: u64) {
        if nonce == self.nonce {
            self.pending = None;
        }
    }

    /// Starts a probe when one is due; judges the pending one when its time is up.
    pub fn tick(&mut self, now: Instant) -> Probe {
        match &mut self.pending {
            Some((stream, started))
                if now.saturating_duration_since(*started) >= PROBE_DEADLINE =>
            {
                let mut byte = [0u8; 1];
                let answered = matches!(stream.read(&mut byte), Ok(1));
                self.pending = None;
                self.next = now + PROBE_EVERY;
                if answered {
                    Probe::Fine
                } else {
                    Probe::Deaf
                }
            }
            Some(_) => Probe::Fine,
            None if now >= self.next => {
                self.nonce += 1;
                self.next = now + PROBE_EVERY;
                match self.send() {
                    Ok(stream) => {
                        self.pending = Some((stream, now));
                        Probe::Fine
                    }
                    Err(e) => {
                        log::warn!("self-probe could not connect to {}: {e}", self.target);
                        Probe::Deaf
                    }
                }
            }
            None => Probe::Fine,
        }
    }

    fn send(&self) -> io::Result<TcpStream> {
        let mut stream = TcpStream::connect_timeout(&self.target, Duration::from_secs(1))?;
        stream.set_nonblocking(true)?;
        let request = format!(
            "GET /healthz?probe={} HTTP/1.1\r\nHost: self\r\nConnection: close\r\n\r\n",
            self.nonce
        );
        stream.write_all(request.as_bytes())?;
        Ok(stream)
    }

    /// When the next tick has work to do.
    pub fn next_due(&self) -> Instant {
        match &self.pending {
            Some((_, started)) => *started + PROBE_DEADLINE,
            None => self.next,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_sockets_inherit_the_timeouts() {
        let l = listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let _client = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (accepted, _) = l.accept().unwrap();
        assert_eq!(accepted.read_timeout().unwrap(), Some(SOCKET_TIMEOUT));
        assert_eq!(accepted.write_timeout().unwrap(), Some(SOCKET_TIMEOUT));
    }

    #[test]
    fn a_server_that_never_accepts_is_found_deaf() {
        // A bound listener nobody accepts from: connections complete in the
        // kernel's backlog but no request is ever read.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let t0 = Instant::now();
        let mut probe = SelfProbe::new(l.local_addr().unwrap(), t0);
        assert_eq!(probe.tick(t0), Probe::Fine, "not due yet");
        assert_eq!(probe.tick(t0 + PROBE_EVERY), Probe::Fine, "sent");
        assert!(probe.pending.is_some());
        assert_eq!(probe.tick(t0 + PROBE_EVERY + PROBE_DEADLINE), Probe::Deaf);
    }

    #[test]
    fn a_probe_that_arrives_passes() {
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let t0 = Instant::now();
        let mut probe = SelfProbe::new(server.local_addr(), t0);
        assert_eq!(probe.tick(t0 + PROBE_EVERY), Probe::Fine);
        let incoming = server
            .recv(Duration::from_secs(5))
            .unwrap()
            .expect("the probe arrives");
        let nonce = incoming.probe_nonce().expect("it is the probe");
        probe.received(nonce);
        assert_eq!(probe.tick(t0 + PROBE_EVERY + PROBE_DEADLINE), Probe::Fine);
        assert_eq!(probe.next_due(), t0 + PROBE_EVERY * 2);
    }

    #[test]
    fn an_unspecified_address_is_probed_on_loopback() {
        let probe = SelfProbe::new("0.0.0.0:8080".parse().unwrap(), Instant::now());
        assert_eq!(probe.target, "127.0.0.1:8080".parse().unwrap());
        let probe = SelfProbe::new("[::]:8080".parse().unwrap(), Instant::now());
        assert_eq!(probe.target, "[::1]:8080".parse().unwrap());
    }

    #[test]
    fn a_dead_listener_is_reported_and_rebuilt() {
        let mut server = HttpServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        // Shut the listening socket down under tiny_http: its accept fails
        // with EINVAL, which ends its accept loop.
        let fd = find_listener_fd(addr).expect("the listener's fd");
        // SAFETY: shutting down a socket fd we own; no memory is involved.
        assert_eq!(unsafe { libc::shutdown(fd, libc::SHUT_RDWR) }, 0);
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = loop {
            match server.recv(Duration::from_millis(100)) {
                Err(e) => break e,
                Ok(_) => assert!(
                    Instant::now() < deadline,
                    "recv never reported the dead accept loop"
                ),
            }
        };
        assert_eq!(err.raw_os_error(), Some(libc::EINVAL), "{err}");
        server.rebuild().unwrap();
        assert_eq!(server.local_addr(), addr);
        let mut client = TcpStream::connect(addr).unwrap();
        client
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let incoming = server
            .recv(Duration::from_secs(5))
            .unwrap()
            .expect("served again");
        incoming.answer(|r| {
            assert_eq!(r.url, "/readyz");
            api::Response::error(418, "teapot", "test")
        });
        let mut reply = String::new();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = client.read_to_string(&mut reply);
        assert!(reply.starts_with("HTTP/1.1 418"), "{reply}");
    }

    /// Sends `raw` on a new connection and returns the whole reply.
    fn exchange(addr: SocketAddr, raw: &'static [u8]) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut client = TcpStream::connect(addr).unwrap();
            client
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            client.write_all(raw).unwrap();
            let mut reply = String::new();
            let _ = client.read_to_string(&mut reply);
            reply
        })
    }

    #[test]
    fn plain_healthz_is_answered_without_the_main_loop() {
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        server.turned(SystemClock.now());
        let get = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        // Nobody calls recv: the connection's thread answers.
        let reply = exchange(server.local_addr(), get).join().unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nok"), "{reply}");
        let head = b"HEAD /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let reply = exchange(server.local_addr(), head).join().unwrap();
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        assert!(reply.ends_with("\r\n\r\n"), "no body: {reply}");
        assert_eq!(server.answered_off_loop(), [(200, 2), (503, 0)]);
        assert_eq!(server.answered_off_loop(), [(200, 0), (503, 0)]);
        // Everything else goes to the main loop: a probe, another method.
        for raw in [
            &b"GET /healthz?probe=7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"[..],
            &b"POST /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
                [..],
        ] {
            let reply = exchange(server.local_addr(), raw);
            let incoming = server
                .recv(Duration::from_secs(10))
                .unwrap()
                .expect("forwarded");
            let url = incoming.0.url().to_string();
            incoming.answer(|r| api::Response::error(418, "teapot", r.method));
            assert!(reply.join().unwrap().starts_with("HTTP/1.1 418"), "{url}");
        }
        assert_eq!(server.answered_off_loop(), [(200, 0), (503, 0)]);
    }

    #[test]
    fn a_dropped_server_frees_its_port() {
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr();
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Err(e) = TcpListener::bind(addr) {
            assert!(Instant::now() < deadline, "the port stays taken: {e}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn a_panicking_handler_costs_one_500_and_nothing_else() {
        let server = HttpServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let ask = |addr| {
            std::thread::spawn(move || {
                let mut client = TcpStream::connect(addr).unwrap();
                client
                    .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    .unwrap();
                let mut reply = String::new();
                let _ = client.read_to_string(&mut reply);
                reply
            })
        };
        let first = ask(server.local_addr());
        let incoming = server.recv(Duration::from_secs(5)).unwrap().unwrap();
        answer_guarded(incoming, |_| panic!("a bug in a handler"));
        assert!(first.join().unwrap().starts_with("HTTP/1.1 500"));
        let second = ask(server.local_addr());
        let incoming = server.recv(Duration::from_secs(5)).unwrap().unwrap();
        answer_guarded(incoming, |_| api::Response::error(503, "x", "still here"));
        assert!(second.join().unwrap().starts_with("HTTP/1.1 503"));
    }

    /// The fd of this process's socket listening on `addr`.
    fn find_listener_fd(addr: SocketAddr) -> Option<i32> {
        for entry in std::fs::read_dir("/proc/self/fd").ok()? {
            let fd: i32 = entry.ok()?.file_name().to_str()?.parse().ok()?;
            let mut sa: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let mut listening: libc::c_int = 0;
            let mut ilen = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            // SAFETY: out-pointers to live locals with their sizes.
            let ok = unsafe {
                libc::getsockname(fd, (&mut sa as *mut libc::sockaddr_in).cast(), &mut len) == 0
                    && libc::getsockopt(
                        fd,
                        libc::SOL_SOCKET,
                        libc::SO_ACCEPTCONN,
                        (&mut listening as *mut libc::c_int).cast(),
                        &mut ilen,
                    ) == 0
            };
            if ok && listening == 1 && u16::from_be(sa.sin_port) == addr.port() {
                return Some(fd);
            }
        }
        None
    }
}
