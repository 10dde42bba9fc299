//! The manager processes of a soak: the primary `wm-a` (the ServiceAccount's
//! own token) and the second instance `wm-b` (a token of its own, so the
//! fake's request log tells the two apart), each with a state directory that
//! outlives its processes. Every process is watched from a thread of its own:
//! `/healthz` every second with a 1 s limit, and its RSS, open fds and
//! threads from /proc. Its log is copied to a file and searched for panics.
//!
//! Nothing here decides when a process starts or ends; the soak's schedule
//! does, and this carries it out and keeps the record ([`Life`]).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Write as _;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::net::log::wait_until;
use crate::proc::{proc_status, read_reply, Manager, Reply};

/// The longest a `/healthz` probe may take, and the gap between two.
pub const PROBE_LIMIT: Duration = Duration::from_secs(1);
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long a manager may take from spawn to serving.
const START_LIMIT: Duration = Duration::from_secs(10);
/// How long a manager may take to exit after SIGTERM (it flushes for at most 3 s).
const STOP_LIMIT: Duration = Duration::from_secs(15);

/// One of the two instances, by its `POD_NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pod {
    A,
    B,
}

impl Pod {
    pub fn name(self) -> &'static str {
        match self {
            Pod::A => "wm-a",
            Pod::B => "wm-b",
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Running,
    Killed,
    /// After SIGTERM, with its exit status (`None`: killed after the limit).
    Stopped(Option<i32>),
}

/// One resource sample of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Since the process started.
    pub age: Duration,
    pub rss_kib: u64,
    /// Every open fd, the two kinds of TCP connection below included.
    pub fds: u64,
    /// Connections clients opened to it (heartbeats, probes): each lasts as
    /// long as its client keeps it.
    pub inbound: u64,
    /// Connections it opened (pooled keep-alive to the outside systems).
    pub outbound: u64,
    pub threads: u64,
}

impl Sample {
    /// The fds it holds of its own accord: files, pipes, its listener.
    pub fn own_fds(&self) -> u64 {
        self.fds.saturating_sub(self.inbound + self.outbound)
    }
}

/// One `/healthz` probe that did not answer 200 within [`PROBE_LIMIT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Miss {
    pub at: Instant,
    pub why: String,
}

/// The `/healthz` probes of one process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probes {
    pub sent: u64,
    pub slowest: Duration,
    pub misses: Vec<Miss>,
}

/// The record of one manager process, kept after it ended.
#[derive(Debug, Clone)]
pub struct Life {
    pub pod: Pod,
    /// 1 for the pod's first process, 2 for its first restart, ...
    pub nth: u32,
    pub pid: u32,
    pub started: Instant,
    pub ended: Option<Instant>,
    pub end: End,
    pub probes: Probes,
    pub samples: Vec<Sample>,
    /// Log lines that mention a panic.
    pub panics: Vec<String>,
    pub log_lines: usize,
    /// The largest `outbox.dropped` its `/v1/status` showed.
    pub dropped: u64,
}

impl Life {
    /// `wm-a#2`.
    pub fn label(&self) -> String {
        format!("{}#{}", self.pod.name(), self.nth)
    }

    /// How long it ran (until now if it still runs).
    pub fn lifetime(&self, now: Instant) -> Duration {
        self.ended
            .unwrap_or(now)
            .saturating_duration_since(self.started)
    }
}

/// A running process as the heartbeat thread sees it.
#[derive(Clone)]
pub struct Target {
    pub pod: Pod,
    pub addr: SocketAddr,
    pub life: Arc<Mutex<Life>>,
}

/// The running processes, shared with the heartbeat thread.
pub type Targets = Arc<Mutex<Vec<Target>>>;

/// Locks a record; a panicking watcher does not make it unreadable.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends `raw` on a new connection and reads one answer, all within `limit`.
pub fn call(addr: SocketAddr, raw: &str, limit: Duration) -> Result<Reply, String> {
    let t0 = Instant::now();
    let mut stream =
        TcpStream::connect_timeout(&addr, limit).map_err(|e| format!("connect: {e}"))?;
    let left = limit
        .saturating_sub(t0.elapsed())
        .max(Duration::from_millis(1));
    stream
        .set_write_timeout(Some(left))
        .and_then(|()| stream.set_read_timeout(Some(left)))
        .map_err(|e| format!("socket: {e}"))?;
    stream
        .write_all(raw.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    read_reply(&mut stream).map_err(|e| format!("no answer: {e}"))
}

/// `GET path` within `limit`.
pub fn get(addr: SocketAddr, path: &str, limit: Duration) -> Result<Reply, String> {
    call(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"),
        limit,
    )
}

/// One `/healthz` probe: how long the 200 took, or why it is a miss.
fn probe(addr: SocketAddr) -> Result<Duration, String> {
    let t0 = Instant::now();
    let reply = get(addr, "/healthz", PROBE_LIMIT)?;
    let took = t0.elapsed();
    if reply.status != 200 {
        return Err(format!("answered {} after {took:.2?}", reply.status));
    }
    if took > PROBE_LIMIT {
        return Err(format!("answered after {took:.2?}"));
    }
    Ok(took)
}

/// RSS, open fds and threads of `pid`; `None` once it is gone.
fn sample(pid: u32, age: Duration) -> Option<Sample> {
    let rss_kib = proc_status(pid, "VmRSS");
    let threads = proc_status(pid, "Threads");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .filter_map(|e| {
            Some(
                std::fs::read_link(e.ok()?.path())
                    .ok()?
                    .display()
                    .to_string(),
            )
        })
        .collect();
    let (inbound, outbound) = connections(pid, &fds);
    (rss_kib > 0 && threads > 0).then_some(Sample {
        age,
        rss_kib,
        fds: fds.len() as u64,
        inbound,
        outbound,
        threads,
    })
}

/// Of the fds' targets (`socket:[inode]`, paths, ...), how many are TCP
/// connections accepted on one of the process's listening ports, and how
/// many are other TCP connections (ones it opened), by /proc/PID/net/tcp{,6}.
fn connections(pid: u32, fds: &[String]) -> (u64, u64) {
    let inodes: BTreeSet<&str> = fds
        .iter()
        .filter_map(|t| t.strip_prefix("socket:[")?.strip_suffix(']'))
        .collect();
    // (local port, listening) of each of its TCP sockets.
    let mut sockets = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) = (cols.get(1), cols.get(3), cols.get(9))
            else {
                continue;
            };
            let port = local
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if let (Some(port), true) = (port, inodes.contains(inode)) {
                sockets.push((port, *state == "0A"));
            }
        }
    }
    let listening: BTreeSet<u16> = sockets.iter().filter(|s| s.1).map(|s| s.0).collect();
    let open = sockets.iter().filter(|s| !s.1);
    let inbound = open.clone().filter(|s| listening.contains(&s.0)).count() as u64;
    (inbound, open.count() as u64 - inbound)
}

/// The machine's 1-minute load average, as /proc/loadavg says.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

/// The thread that probes and samples one process every second.
struct Watch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Watch {
    fn start(addr: SocketAddr, life: Arc<Mutex<Life>>) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || watch(addr, &life, &flag));
        Watch { stop, thread }
    }

    /// Stops the thread (before its process is signalled, so no probe of a
    /// dying process counts).
    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.thread().unpark();
        let _ = self.thread.join();
    }
}

fn watch(addr: SocketAddr, life: &Mutex<Life>, stop: &AtomicBool) {
    let (pid, started) = {
        let l = lock(life);
        (l.pid, l.started)
    };
    let mut next = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let at = Instant::now();
        let answer = probe(addr);
        let sampled = sample(pid, at.saturating_duration_since(started));
        {
            let mut l = lock(life);
            l.probes.sent += 1;
            match answer {
                Ok(took) => l.probes.slowest = l.probes.slowest.max(took),
                Err(why) => {
                    l.probes.slowest = l.probes.slowest.max(at.elapsed());
                    let why = format!("{why} (load average {})", load_average());
                    l.probes.misses.push(Miss { at, why });
                }
            }
            l.samples.extend(sampled);
        }
        // Pacing, not synchronisation: the next probe is due a second after
        // this one was; `Watch::stop` unparks.
        next += PROBE_EVERY;
        let now = Instant::now();
        if next <= now {
            next = now;
        } else {
            thread::park_timeout(next - now);
        }
    }
}

/// A running manager process with its watcher and log copy.
struct Running {
    manager: Manager,
    life: Arc<Mutex<Life>>,
    watch: Option<Watch>,
    log_seen: usize,
    log_file: Option<File>,
}

impl Running {
    /// Copies new log lines to the file and keeps those naming a panic.
    fn scan_log(&mut self) {
        let new = self.manager.log_from(self.log_seen);
        self.log_seen += new.len();
        let mut l = lock(&self.life);
        l.log_lines = self.log_seen;
        for line in &new {
            if line.to_ascii_lowercase().contains("panic") {
                l.panics.push(line.clone());
            }
            if let Some(f) = self.log_file.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        }
    }

    /// Waits (briefly) until the log reader has taken everything the
    /// process wrote before it exited: no new line for 50 ms.
    fn drain_log(&mut self) {
        let mut quiet_since = Instant::now();
        wait_until(Duration::from_millis(500), || {
            let before = self.log_seen;
            self.scan_log();
            if self.log_seen != before {
                quiet_since = Instant::now();
            }
            quiet_since.elapsed() >= Duration::from_millis(50)
        });
    }
}

/// Both instances: starting, signalling and keeping the record of every
/// process.
pub struct Fleet {
    bin: PathBuf,
    logs: PathBuf,
    /// The environment of both, without `POD_NAME`, the token and the state directory.
    env: Vec<(String, String)>,
    tokens: [PathBuf; 2],
    states: [PathBuf; 2],
    running: [Option<Running>; 2],
    starts: [u32; 2],
    pub lives: Vec<Arc<Mutex<Life>>>,
    pub targets: Targets,
    /// Starts that failed, with why.
    pub failed_starts: Vec<String>,
}

fn slot(pod: Pod) -> usize {
    match pod {
        Pod::A => 0,
        Pod::B => 1,
    }
}

impl Fleet {
    /// `env` is what both instances share; `tokens` and `states` are per
    /// pod (A, B); process logs go to files in `logs`.
    pub fn new(
        bin: &Path,
        logs: &Path,
        env: Vec<(String, String)>,
        tokens: [PathBuf; 2],
        states: [PathBuf; 2],
    ) -> Fleet {
        Fleet {
            bin: bin.to_path_buf(),
            logs: logs.to_path_buf(),
            env,
            tokens,
            states,
            running: [None, None],
            starts: [0, 0],
            lives: Vec::new(),
            targets: Arc::new(Mutex::new(Vec::new())),
            failed_starts: Vec::new(),
        }
    }

    /// The state directory of `pod` (its `outbox.jsonl` survives it).
    pub fn state_dir(&self, pod: Pod) -> &Path {
        &self.states[slot(pod)]
    }

    pub fn is_running(&self, pod: Pod) -> bool {
        self.running[slot(pod)].is_some()
    }

    /// The address of `pod`, while it runs.
    pub fn addr(&self, pod: Pod) -> Option<SocketAddr> {
        self.running[slot(pod)].as_ref().map(|r| r.manager.addr)
    }

    /// The label of `pod`'s current process (`wm-a#3`), while it runs.
    pub fn label(&self, pod: Pod) -> Option<String> {
        self.running[slot(pod)]
            .as_ref()
            .map(|r| lock(&r.life).label())
    }

    /// Starts a process of `pod` (if none runs) and waits until it serves.
    pub fn start(&mut self, pod: Pod) -> Result<(), String> {
        if self.is_running(pod) {
            return Ok(());
        }
        let i = slot(pod);
        let (token, state) = (
            self.tokens[i].display().to_string(),
            self.states[i].display().to_string(),
        );
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend([
            ("POD_NAME", pod.name()),
            ("WM_KUBE_TOKEN_FILE", token.as_str()),
            ("WM_STATE_DIR", state.as_str()),
        ]);
        let manager = match Manager::try_start(&self.bin, &env, START_LIMIT) {
            Ok(m) => m,
            Err(e) => {
                let why = format!("{} did not start: {e}", pod.name());
                self.failed_starts.push(why.clone());
                return Err(why);
            }
        };
        self.starts[i] += 1;
        let life = Arc::new(Mutex::new(Life {
            pod,
            nth: self.starts[i],
            pid: manager.pid(),
            started: Instant::now(),
            ended: None,
            end: End::Running,
            probes: Probes::default(),
            samples: Vec::new(),
            panics: Vec::new(),
            log_lines: 0,
            dropped: 0,
        }));
        let file = File::create(
            self.logs
                .join(format!("{}-{}.log", pod.name(), self.starts[i])),
        )
        .ok();
        let addr = manager.addr;
        lock(&self.targets).push(Target {
            pod,
            addr,
            life: life.clone(),
        });
        self.lives.push(life.clone());
        self.running[i] = Some(Running {
            watch: Some(Watch::start(addr, life.clone())),
            manager,
            life,
            log_seen: 0,
            log_file: file,
        });
        Ok(())
    }

    /// SIGKILL: no flush, no release; its Lease stays until it expires or
    /// the next process of the same pod renews it.
    pub fn kill(&mut self, pod: Pod) {
        self.end(pod, libc::SIGKILL);
    }

    /// SIGTERM: it reports, releases the Lease and exits.
    pub fn stop(&mut self, pod: Pod) {
        self.end(pod, libc::SIGTERM);
    }

    fn end(&mut self, pod: Pod, signal: i32) {
        let Some(mut r) = self.running[slot(pod)].take() else {
            return;
        };
        lock(&self.targets).retain(|t| t.pod != pod);
        if let Some(w) = r.watch.take() {
            w.stop();
        }
        r.manager.signal(signal);
        let limit = if signal == libc::SIGKILL {
            Duration::from_secs(5)
        } else {
            STOP_LIMIT
        };
        let status = r.manager.try_wait_exit(limit);
        r.drain_log();
        let mut l = lock(&r.life);
        l.ended = Some(Instant::now());
        l.end = if signal == libc::SIGKILL {
            End::Killed
        } else {
            End::Stopped(status.and_then(|s| s.code()))
        };
        // Dropping the manager kills it if it still runs.
    }

    /// Copies new log lines of the running processes.
    pub fn scan_logs(&mut self) {
        for r in self.running.iter_mut().flatten() {
            r.scan_log();
        }
    }

    /// Snapshots of every process's record, in start order.
    pub fn lives(&self) -> Vec<Life> {
        self.lives.iter().map(|l| lock(l).clone()).collect()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for pod in [Pod::B, Pod::A] {
            self.kill(pod);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_call_to_a_silent_server_ends_within_its_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let t0 = Instant::now();
        let r = call(addr, "GET / HTTP/1.1\r\n\r\n", Duration::from_millis(200));
        assert!(r.is_err(), "{r:?}");
        assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        drop(listener);
        assert!(probe(addr).is_err());
    }

    #[test]
    fn samples_read_this_process() {
        let s = sample(std::process::id(), Duration::ZERO).expect("a sample");
        assert!(s.rss_kib > 0 && s.fds > 0 && s.threads > 0, "{s:?}");
        // Both ends of one connection: the accepted end is inbound, the
        // connecting end outbound; the listener is neither.
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (server, _) = listener.accept().expect("accept");
        let s = sample(std::process::id(), Duration::ZERO).expect("a sample");
        assert!(s.inbound >= 1 && s.outbound >= 1, "{s:?}");
        assert!(s.own_fds() >= 1 && s.own_fds() + s.inbound + s.outbound == s.fds);
        drop((client, server));
    }
}
