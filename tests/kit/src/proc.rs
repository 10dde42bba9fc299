//! Running the real `workload-manager` binary in tests, and talking raw HTTP
//! to it.
//!
//! Every manager listens on a random loopback port (`WM_LISTEN=127.0.0.1:0`);
//! the port is read from its start-up log line. Waiting is always
//! poll-with-deadline, never a fixed sleep.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A node key that is only ever used in tests.
pub const TEST_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

/// Polls `f` every few milliseconds until it returns `Some`, or panics with
/// `what` after `limit`.
pub fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running manager process; killed when dropped.
pub struct Manager {
    child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<String>>>,
}

impl Manager {
    /// Starts `bin` with a minimal valid environment plus `env` (which wins),
    /// and waits until it serves.
    pub fn start(bin: impl AsRef<Path>, env: &[(&str, &str)]) -> Manager {
        Manager::try_start(bin, env, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Manager::start`] that says why instead of panicking: the binary
    /// did not start, exited, or did not serve within `limit`.
    pub fn try_start(
        bin: impl AsRef<Path>,
        env: &[(&str, &str)],
        limit: Duration,
    ) -> Result<Manager, String> {
        let mut cmd = Command::new(bin.as_ref());
        cmd.env_clear()
            .env("NODE_SYSTEM_ENDPOINT", "http://127.0.0.1:9")
            .env("NODE_PRIVATE_KEY", TEST_KEY)
            .env("WM_LISTEN", "127.0.0.1:0")
            .env("WM_NAMESPACE", "edge")
            .env("WM_KUBE_API_URL", "http://127.0.0.1:9")
            .env("WM_LOG", "debug")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Manager::try_spawn(cmd, limit)
    }

    /// Starts a prepared command whose stderr carries the manager's log.
    pub fn spawn(cmd: Command) -> Manager {
        Manager::try_spawn(cmd, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Manager::spawn`] that says why instead of panicking.
    pub fn try_spawn(mut cmd: Command, limit: Duration) -> Result<Manager, String> {
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("the manager binary does not start: {e}"))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().ok_or("stderr is not piped")?;
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        let mut manager = Manager {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            log,
        };
        let line = manager.try_wait_for_log("serving on", limit)?;
        manager.addr = line
            .split("serving on ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("the start-up line names no address: {line:?}"))?;
        Ok(manager)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_log(&mut self, needle: &str, limit: Duration) -> String {
        self.try_wait_for_log(needle, limit)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Manager::wait_for_log`] that says why instead of panicking: the
    /// process exited first, or `limit` passed.
    pub fn try_wait_for_log(&mut self, needle: &str, limit: Duration) -> Result<String, String> {
        let deadline = Instant::now() + limit;
        loop {
            let found = self
                .log
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .find(|l| l.contains(needle))
                .cloned();
            if let Some(line) = found {
                return Ok(line);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "the manager exited ({status}) before logging {needle:?}:\n{}",
                    self.log().join("\n")
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {limit:?} waiting for log line {needle:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Everything logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The log lines from the `from`th on (for reading a long log in parts).
    pub fn log_from(&self, from: usize) -> Vec<String> {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        log.get(from..).unwrap_or_default().to_vec()
    }

    /// Sends a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// Waits for the process to end.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        self.try_wait_exit(limit)
            .unwrap_or_else(|| panic!("timed out after {limit:?} waiting for the manager to exit"))
    }

    /// Waits up to `limit` for the process to end; `None` if it still runs.
    pub fn try_wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// A value from /proc/PID/status, such as `VmRSS` (kB) or `Threads`.
    pub fn proc_status(&self, field: &str) -> u64 {
        proc_status(self.child.id(), field)
    }

    pub fn get(&self, path: &str) -> Reply {
        request(
            self.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
        )
    }

    /// The value of an unlabelled sample in `/metrics`, e.g. `wm_leader`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        let prefix = format!("{name} ");
        self.get("/metrics")
            .body
            .lines()
            .find_map(|l| l.strip_prefix(&prefix)?.trim().parse().ok())
    }

    /// Finished runs of `job` (`sync`, `report`, `update-check`, `lease`),
    /// whatever their outcome: `wm_job_runs_total` summed.
    pub fn job_runs(&self, job: &str) -> u64 {
        let prefix = format!("wm_job_runs_total{{job=\"{job}\"");
        self.get("/metrics")
            .body
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or_else(|| panic!("not a counter sample: {l:?}"))
            })
            .sum()
    }

    /// `/v1/status` as JSON (asserting a 200).
    pub fn status(&self) -> serde_json::Value {
        let r = self.get("/v1/status");
        assert_eq!(r.status, 200, "/v1/status: {}", r.body);
        r.json()
    }

    /// One workload's entry in `/v1/status` (`Null` when it has none).
    pub fn workload(&self, name: &str) -> serde_json::Value {
        self.status()["workloads"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["name"] == name).cloned())
            .unwrap_or(serde_json::Value::Null)
    }

    /// Asks for a sync and waits until one that started after the call has
    /// finished (two runs: a sync already running when asked may have listed
    /// before the caller's last change); returns the status then.
    pub fn sync(&self) -> serde_json::Value {
        for _ in 0..2 {
            let n = self.job_runs("sync");
            assert_eq!(self.post("/v1/sync", "application/json", "").status, 202);
            wait_for("a sync", Duration::from_secs(30), || {
                (self.job_runs("sync") > n).then_some(())
            });
        }
        self.status()
    }

    /// A heartbeat of `workload` saying it is healthy, as a workload sends it.
    pub fn heartbeat(&self, workload: &str) -> Reply {
        self.post(
            &format!("/v1/workloads/{workload}/health"),
            "application/json",
            r#"{"status":"healthy"}"#,
        )
    }

    /// POSTs `body` with `Content-Type: content_type`.
    pub fn post(&self, path: &str, content_type: &str, body: &str) -> Reply {
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        request(self.addr, &(head + body))
    }
}

impl Drop for Manager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Says a test is skipped because of `why` (e.g. "kubectl is not
/// installed"), except under `CI=true`, where the test must run: there this
/// panics, so the test fails instead. Either way the skip is recorded
/// (`skips`), and the end of `cargo test --workspace` lists it.
pub fn skip_outside_ci(why: &str) {
    crate::skips::record(why);
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{why}, and CI=true requires this test to run"
    );
    eprintln!("SKIPPED: {why}");
}

/// A value from /proc/PID/status (the number before any unit).
pub fn proc_status(pid: u32, field: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// The `error` code of a contract error body.
    pub fn error(&self) -> String {
        let v = self.json();
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "error body without message: {v}"
        );
        v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {v}"))
            .to_string()
    }
}

/// Sends raw bytes on a new connection and reads one response
/// (the server must close or send Content-Length).
pub fn request(addr: SocketAddr, raw: &str) -> Reply {
    request_bytes(addr, raw.as_bytes())
}

pub fn request_bytes(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    stream.write_all(raw).expect("write");
    read_reply(&mut stream).expect("a response")
}

/// Reads one HTTP response from `stream`.
pub fn read_reply(stream: &mut TcpStream) -> std::io::Result<Reply> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let len = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok());
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let mut body = Vec::new();
    match len {
        _ if chunked => loop {
            line.clear();
            reader.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {line:?}")))?;
            let mut chunk = vec![0; size + 2];
            reader.read_exact(&mut chunk)?;
            if size == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..size]);
        },
        Some(n) => {
            body.resize(n, 0);
            reader.read_exact(&mut body)?;
        }
        None => {
            reader.read_to_end(&mut body)?;
        }
    }
    Ok(Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("wm-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `workload-manager` next to the running executable (`target/release/`
/// for `cargo run --release`).
pub fn locate_manager() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find my own executable: {e}"))?;
    let dir = exe.parent().ok_or("my executable has no directory")?;
    Ok(dir.join("workload-manager"))
}

/// A warning if the product's sources changed after `bin` was built.
pub fn stale_warning(bin: &Path) -> Option<String> {
    let built = std::fs::metadata(bin).and_then(|m| m.modified()).ok()?;
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../src");
    let newest = newest_mtime(&src)?;
    (newest > built).then(|| {
        format!(
            "sources in {} changed after {} was built: rebuild it to run the current code",
            src.display(),
            bin.display()
        )
    })
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for e in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let p = e.path();
        let t = if p.is_dir() {
            newest_mtime(&p)
        } else {
            e.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(t);
    }
    newest
}
