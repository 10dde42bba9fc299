//! The built-in load generator (works without wrk) and a /proc sampler that
//! records the peak RSS and thread count while load runs.
//!
//! Blocking IO: one thread per keep-alive connection, each sending a request
//! and reading its response in a loop until a fixed deadline, recording every
//! latency in its own [`Histogram`]. The client shares the machine's cores
//! with the server, as wrk does.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::stats::Histogram;
use crate::proc::proc_status;

/// The heartbeat body both generators send.
pub const HEARTBEAT_BODY: &str = r#"{"status":"healthy"}"#;

/// A keep-alive heartbeat POST for workload `name`, as raw bytes.
pub fn heartbeat_request(addr: SocketAddr, name: &str) -> Vec<u8> {
    format!(
        "POST /v1/workloads/{name}/health HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{HEARTBEAT_BODY}",
        HEARTBEAT_BODY.len()
    )
    .into_bytes()
}

/// What one run of the generator saw.
#[derive(Clone, Default)]
pub struct LoadResult {
    /// From the start signal until the last connection finished its last request.
    pub elapsed: Duration,
    /// Responses with the expected status.
    pub ok: u64,
    /// Everything else, by kind (`HTTP 503`, `read: TimedOut`, ...).
    pub errors: BTreeMap<String, u64>,
    /// Connections opened (one per thread, plus one per server-side close).
    pub connects: u64,
    /// Latency of every completed exchange, whatever its status.
    pub latency: Histogram,
    /// Connections (threads) whose first response came more than
    /// [`STALL`] after the start, or never: left waiting by the server.
    pub stalled: u64,
    /// The longest any connection waited for its first response.
    pub slowest_first: Duration,
}

/// A connection that waits longer than this for its first response counts as stalled.
pub const STALL: Duration = Duration::from_secs(1);

impl LoadResult {
    /// Expected responses per second.
    pub fn rps(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn merge(&mut self, other: LoadResult) {
        self.elapsed = self.elapsed.max(other.elapsed);
        self.ok += other.ok;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_insert(0) += v;
        }
        self.connects += other.connects;
        self.latency.merge(&other.latency);
        self.stalled += other.stalled;
        self.slowest_first = self.slowest_first.max(other.slowest_first);
    }
}

/// Runs `connections` threads, each with one keep-alive connection to `addr`,
/// sending `request` and reading the response in a loop for `duration`.
/// `expect` is the status counted as success.
pub fn run(
    addr: SocketAddr,
    request: &[u8],
    expect: u16,
    connections: usize,
    duration: Duration,
) -> LoadResult {
    let barrier = Arc::new(Barrier::new(connections));
    let request: Arc<[u8]> = request.into();
    let workers: Vec<JoinHandle<LoadResult>> = (0..connections)
        .map(|i| {
            let (barrier, request) = (barrier.clone(), request.clone());
            thread::Builder::new()
                .name(format!("load-{i}"))
                .spawn(move || worker(addr, &request, expect, duration, &barrier))
                .expect("spawn a load thread")
        })
        .collect();
    let mut total = LoadResult::default();
    for w in workers {
        match w.join() {
            Ok(r) => total.merge(r),
            Err(_) => *total.errors.entry("client panic".into()).or_insert(0) += 1,
        }
    }
    total
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    Ok(s)
}

fn worker(
    addr: SocketAddr,
    request: &[u8],
    expect: u16,
    duration: Duration,
    barrier: &Barrier,
) -> LoadResult {
    let mut r = LoadResult::default();
    let err = |r: &mut LoadResult, what: String| *r.errors.entry(what).or_insert(0) += 1;
    // Connect before the start signal so the first requests don't queue behind accepts.
    let mut conn = match connect(addr) {
        Ok(s) => {
            r.connects += 1;
            Some(s)
        }
        Err(e) => {
            err(&mut r, format!("connect: {:?}", e.kind()));
            None
        }
    };
    let mut buf = Vec::with_capacity(4096);
    barrier.wait();
    let start = Instant::now();
    let deadline = start + duration;
    let mut first: Option<Duration> = None;
    while Instant::now() < deadline {
        let mut stream = match conn.take() {
            Some(s) => s,
            None => match connect(addr) {
                Ok(s) => {
                    r.connects += 1;
                    s
                }
                Err(e) => {
                    err(&mut r, format!("connect: {:?}", e.kind()));
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
            },
        };
        let t = Instant::now();
        if let Err(e) = stream.write_all(request) {
            err(&mut r, format!("write: {:?}", e.kind()));
            continue;
        }
        match read_response(&mut stream, &mut buf) {
            Ok((status, close)) => {
                r.latency.record(t.elapsed());
                first.get_or_insert(start.elapsed());
                if status == expect {
                    r.ok += 1;
                } else {
                    err(&mut r, format!("HTTP {status}"));
                }
                if !close {
                    conn = Some(stream);
                }
            }
            Err(e) => err(&mut r, format!("read: {:?}", e.kind())),
        }
    }
    r.elapsed = start.elapsed();
    r.slowest_first = first.unwrap_or(r.elapsed);
    r.stalled = u64::from(first.is_none_or(|f| f > STALL));
    r
}

/// Reads one response; returns its status and whether the server closes the
/// connection after it.
pub fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> io::Result<(u16, bool)> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let (status, len, close) = parse_head(&buf[..end])?;
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok((status, close));
        }
        if buf.len() > 64 * 1024 {
            return Err(io::Error::other("response head over 64 KiB"));
        }
    }
}

/// Status, Content-Length (0 when absent) and whether `Connection: close`.
fn parse_head(head: &[u8]) -> io::Result<(u16, usize, bool)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let head = std::str::from_utf8(head).map_err(|_| bad("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let (mut len, mut close) = (0, false);
    for l in lines {
        let Some((k, v)) = l.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            len = v.parse().map_err(|_| bad("bad Content-Length"))?;
        } else if k.eq_ignore_ascii_case("connection") && v.eq_ignore_ascii_case("close") {
            close = true;
        }
    }
    Ok((status, len, close))
}

/// Peak /proc figures seen by a [`Sampler`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Peak {
    pub rss_kb: u64,
    pub threads: u64,
    pub samples: u64,
}

/// Reads VmRSS and Threads of a process every few milliseconds on its own
/// thread until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Peak>,
}

impl Sampler {
    pub fn start(pid: u32, every: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut peak = Peak::default();
                while !flag.load(Ordering::Relaxed) {
                    peak.rss_kb = peak.rss_kb.max(proc_status(pid, "VmRSS"));
                    peak.threads = peak.threads.max(proc_status(pid, "Threads"));
                    peak.samples += 1;
                    thread::sleep(every);
                }
                peak
            })
            .expect("spawn the sampler");
        Sampler { stop, handle }
    }

    pub fn stop(self) -> Peak {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn heads_are_parsed() {
        let (s, len, close) =
            parse_head(b"HTTP/1.1 204 No Content\r\nServer: x\r\nConnection: Close").unwrap();
        assert_eq!((s, len, close), (204, 0, true));
        let (s, len, close) = parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 12").unwrap();
        assert_eq!((s, len, close), (200, 12, false));
        assert!(parse_head(b"garbage").is_err());
    }

    /// A tiny keep-alive server: answers every request with 204, closes after 3.
    #[test]
    fn the_generator_counts_and_reconnects() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        thread::spawn(move || {
            for s in listener.incoming() {
                let Ok(mut s) = s else { break };
                thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    for i in 0..3 {
                        let mut got = Vec::new();
                        while !got.ends_with(HEARTBEAT_BODY.as_bytes()) {
                            let Ok(n) = s.read(&mut buf) else { return };
                            if n == 0 {
                                return;
                            }
                            got.extend_from_slice(&buf[..n]);
                        }
                        let close = if i == 2 { "Connection: close\r\n" } else { "" };
                        let reply = format!("HTTP/1.1 204 No Content\r\n{close}\r\n");
                        if s.write_all(reply.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let req = heartbeat_request(addr, "web");
        let r = run(addr, &req, 204, 4, Duration::from_millis(200));
        assert!(r.ok > 10, "{}", r.ok);
        assert_eq!(r.error_count(), 0, "{:?}", r.errors);
        assert!(
            r.connects >= r.ok / 3,
            "{} connects for {}",
            r.connects,
            r.ok
        );
        assert_eq!(r.latency.count(), r.ok);
        assert_eq!(r.stalled, 0);
        assert!(r.slowest_first < STALL);
        let wrong = run(addr, &req, 200, 1, Duration::from_millis(50));
        assert_eq!(wrong.ok, 0);
        assert!(wrong.errors.get("HTTP 204").is_some_and(|n| *n > 0));
    }

    #[test]
    fn the_sampler_sees_our_process() {
        let s = Sampler::start(std::process::id(), Duration::from_millis(1));
        thread::sleep(Duration::from_millis(20));
        let p = s.stop();
        assert!(p.rss_kb > 0 && p.threads >= 2 && p.samples > 0, "{p:?}");
    }
}
