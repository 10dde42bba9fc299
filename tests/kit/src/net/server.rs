//! Sockets and threads: the accept loop on 127.0.0.1 (closed and reopened
//! on the same port to make a fake unreachable, cutting the open
//! connections), a thread per connection, plain or TLS streams, and TCP
//! resets, and the rustls server configuration of the fakes that serve
//! HTTPS. What a connection carries is the fake's own `serve`.

use std::collections::HashMap;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// Idle keep-alive connections are closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long, and how much, an oversized body is drained after its 413.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// What a fake does with each accepted connection, on its own thread.
type Serve = Arc<dyn Fn(TcpStream) + Send + Sync>;

/// A fake's listening port, reachable or not, with its open connections.
pub(crate) struct Listener {
    /// Names the threads: `fake-{name}-accept`, `fake-{name}-conn`.
    name: &'static str,
    serve: Serve,
    conns: Arc<Connections>,
    acceptor: Mutex<Option<Acceptor>>,
    port: u16,
}

impl Listener {
    /// Listens on a random port of 127.0.0.1 and runs `serve` for each
    /// connection (after `TCP_NODELAY` and the idle read timeout).
    pub fn start(
        name: &'static str,
        serve: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> Listener {
        let serve: Serve = Arc::new(serve);
        let conns = Arc::new(Connections::default());
        let acceptor =
            Acceptor::start(name, serve.clone(), conns.clone(), 0).expect("listen on 127.0.0.1");
        Listener {
            name,
            serve,
            conns,
            port: acceptor.addr.port(),
            acceptor: Mutex::new(Some(acceptor)),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, or `https://` when serving TLS.
    pub fn url(&self, tls: bool) -> String {
        let scheme = if tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `false` closes the listener and cuts open connections (connections
    /// are refused); `true` listens again on the same port.
    pub fn set_reachable(&self, reachable: bool) {
        let mut acceptor = self.acceptor.lock().unwrap_or_else(|e| e.into_inner());
        match (reachable, acceptor.is_some()) {
            (false, true) => {
                if let Some(a) = acceptor.take() {
                    a.stop();
                }
                self.conns.cut_all();
            }
            (true, false) => {
                let a =
                    Acceptor::start(self.name, self.serve.clone(), self.conns.clone(), self.port)
                        .expect("listen again on the same port");
                *acceptor = Some(a);
            }
            _ => {}
        }
    }
}

/// The open connections, so that going unreachable can cut them.
#[derive(Default)]
struct Connections {
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
    fn cut_all(&self) {
        for (_, s) in self.open.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

/// A running accept loop.
struct Acceptor {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Acceptor {
    /// Listens on 127.0.0.1:`port` (0 for a random port).
    fn start(name: &str, serve: Serve, conns: Arc<Connections>, port: u16) -> io::Result<Acceptor> {
        let listener = TcpListener::bind(("127.0.0.1", port))?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let conn_name = format!("fake-{name}-conn");
        let thread = thread::Builder::new()
            .name(format!("fake-{name}-accept"))
            .spawn(move || {
                for stream in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (serve, conns) = (serve.clone(), conns.clone());
                    let _ = thread::Builder::new()
                        .name(conn_name.clone())
                        .spawn(move || connection(&*serve, &conns, stream));
                }
            })?;
        Ok(Acceptor {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Closes the listening socket: new connections are refused.
    fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept; the loop then drops the listener.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one connection, registered as open while it lasts.
fn connection(serve: &(dyn Fn(TcpStream) + Send + Sync), conns: &Connections, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let Some(id) = conns.add(&stream) else { return };
    serve(stream);
    conns.remove(id);
}

/// A connection's byte stream, plain or TLS, with access to the TCP socket under it.
pub(crate) enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl Stream {
    /// `tcp` as is, or the server side of TLS with `tls`; `None` if rustls
    /// cannot start a session.
    pub fn new(tcp: TcpStream, tls: Option<&Arc<rustls::ServerConfig>>) -> Option<Stream> {
        Some(match tls {
            Some(cfg) => {
                let conn = rustls::ServerConnection::new(cfg.clone()).ok()?;
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, tcp)))
            }
            None => Stream::Plain(tcp),
        })
    }

    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// The TLS server configuration (ring provider only) serving `cert`, whose key is `key`.
pub(crate) fn tls_config(
    cert: &rcgen::Certificate,
    key: &rcgen::KeyPair,
) -> Arc<rustls::ServerConfig> {
    let chain = vec![CertificateDer::from(cert.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("server certificate matches its key");
    Arc::new(config)
}

/// Makes the coming close send RST instead of FIN.
pub(crate) fn reset(tcp: &TcpStream) {
    let _ = socket2::SockRef::from(tcp).set_linger(Some(Duration::ZERO));
}

/// Stops writing, then reads and drops what the client still sends (a
/// bounded amount, for a bounded time), so that a client still sending an
/// oversized body reads the answer instead of a reset.
pub(crate) fn lingering_close(reader: &mut BufReader<TcpStream>) {
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
