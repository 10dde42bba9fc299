//! The one-command sandbox: the real `workload-manager` binary against the
//! fake Kubernetes API, the fake backend and the fake S3, with sample
//! workloads, a change of the desired state, heartbeats as workloads would
//! send them, and a live one-line-per-event log of what happens.
//!
//! `src/bin/sandbox.rs` prints it for a newcomer; `tests/sandbox.rs` (in the
//! root package) drives the same [`Sandbox`] and asserts that it gets
//! somewhere, so the demo cannot rot.
//!
//! ```no_run
//! use wm_testkit::sandbox::{Options, Sandbox};
//! let sandbox = Sandbox::start("target/release/workload-manager".as_ref(), Options::default())
//!     .expect("the sandbox starts");
//! println!("curl -s http://{}/v1/status", sandbox.addr);
//! let stopped = sandbox.stop(std::time::Duration::from_secs(10));
//! # drop(stopped);
//! ```
//!
//! What happens, on its own:
//!
//! - The backend wants [`SAMPLES`] (`web`, `api`, `cache` at `1.0.0`). The
//!   manager creates their Deployments at its first sync (within 5 s).
//! - [`Options::change_after`] after all three exist in the cluster, the
//!   backend wants `web` at [`NEW_VERSION`] (its manifest is published
//!   first) and no longer `cache`: the manager applies and deletes at its
//!   next sync (within 15 s while a rollout is in progress, else 30 s).
//! - Every Deployment of the manager whose pods are available sends a
//!   heartbeat every [`HEARTBEAT_EVERY`]; `api` says `degraded`.
//! - The manager reports every 10 s and checks S3 for a newer release every
//!   30 s; the version file names the running version (up to date).
//!
//! The manager runs in its own process group (a terminal's Ctrl-C reaches
//! only the sandbox, which stops it with SIGTERM) and, on Linux, gets
//! SIGTERM if the thread that started it dies. All fakes listen on
//! 127.0.0.1; nothing leaves the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::backend::{sample_manifest, FakeBackend};
use crate::kube::{rollout_complete, FakeKube};
use crate::node::TEST_ADDRESS;
use crate::proc::{read_reply, Reply, TempDir, TEST_KEY};
use crate::s3::FakeS3;

/// The namespace of the fake cluster.
pub const NAMESPACE: &str = "edge";
/// The bucket and key of the manager's version file in the fake S3.
pub const BUCKET: &str = "releases";
pub const VERSION_KEY: &str = "workload-manager/latest";
/// The desired workloads at the start.
pub const SAMPLES: [(&str, &str); 3] = [("web", "1.0.0"), ("api", "1.0.0"), ("cache", "1.0.0")];
/// The change: [`CHANGED`] moves to [`NEW_VERSION`], [`REMOVED`] is no longer wanted.
pub const CHANGED: &str = "web";
pub const NEW_VERSION: &str = "1.1.0";
pub const REMOVED: &str = "cache";
/// The workload whose heartbeats say `degraded`.
pub const DEGRADED: &str = "api";
const DEGRADED_MESSAGE: &str = "p95 latency 480 ms, target 250 ms";
/// How often each running sample workload sends a heartbeat.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);
/// The manager's intervals, short so that things happen while one watches.
pub const SYNC_INTERVAL: &str = "30s";
pub const REPORT_INTERVAL: &str = "10s";
pub const UPDATE_INTERVAL: &str = "30s";
/// How long the fake Deployment controller takes to roll a change out.
const CONTROLLER_DELAY: Duration = Duration::from_secs(1);
/// How often the fakes are looked at for events.
const POLL: Duration = Duration::from_millis(500);
/// How long the manager may take to log "serving on".
const START_LIMIT: Duration = Duration::from_secs(10);
/// The manager's own Deployment and container.
const SELF_NAME: &str = "workload-manager";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// `WM_LISTEN`; port 0 picks a free port.
    pub listen: SocketAddr,
    /// How long after the sample workloads' Deployments all exist the
    /// desired state changes.
    pub change_after: Duration,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            listen: "127.0.0.1:8080".parse().expect("literal"),
            change_after: Duration::from_secs(60),
        }
    }
}

/// Why the sandbox did not start.
#[derive(Debug)]
pub enum StartError {
    /// Something else listens on the address.
    PortInUse(SocketAddr),
    /// `--version` did not work: not the manager, or not runnable.
    NotTheManager(PathBuf, String),
    /// The manager exited (or never logged that it serves); its log.
    Failed(String, Vec<String>),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::PortInUse(addr) => write!(
                f,
                "{addr} is already in use (another workload-manager or sandbox?). \
                 Stop that, or pick another address: --listen 127.0.0.1:0 takes a free port"
            ),
            StartError::NotTheManager(bin, why) => write!(
                f,
                "{} does not look like workload-manager: `--version` {why}",
                bin.display()
            ),
            StartError::Failed(why, log) => {
                write!(f, "the manager {why}")?;
                for line in log {
                    write!(f, "\n  {line}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for StartError {}

/// Where an event comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A log line of the manager (level INFO left out).
    Manager,
    /// The fake Kubernetes API (rollouts completing).
    Kube,
    /// The fake backend (reports, version PUTs, desired-state changes).
    Backend,
    /// The fake S3 (version file reads) and what the manager made of them.
    S3,
    /// The sandbox itself (heartbeats starting, stopping).
    Sandbox,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Manager => "manager",
            Source::Kube => "kube",
            Source::Backend => "backend",
            Source::S3 => "s3",
            Source::Sandbox => "sandbox",
        }
    }
}

/// One line of the live log.
#[derive(Debug, Clone)]
pub struct Event {
    /// Since the sandbox started.
    pub at: Duration,
    pub source: Source,
    pub text: String,
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>7.1}s  {:<7}  {}",
            self.at.as_secs_f64(),
            self.source.as_str(),
            self.text
        )
    }
}

/// What the manager did to the fakes, counted on the fakes' side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Health reports the backend stored (each id once).
    pub reports: usize,
    /// Versions the manager told the backend about.
    pub versions: usize,
    /// Deployment creates, applies and deletes the fake API accepted.
    pub created: usize,
    pub applied: usize,
    pub deleted: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} report(s) delivered, {} version(s) reported; Deployments: {} created, {} applied, {} deleted",
            self.reports, self.versions, self.created, self.applied, self.deleted
        )
    }
}

/// How the sandbox ended.
#[derive(Debug)]
pub struct Stopped {
    /// The manager's exit status (`None` if it could not be waited for).
    pub status: Option<ExitStatus>,
    /// Whether it had to be killed after not stopping within the limit.
    pub killed: bool,
    /// From SIGTERM to the exit.
    pub took: Duration,
    pub summary: Summary,
}

/// The fakes, shared with the watcher thread.
pub struct Fakes {
    pub kube: FakeKube,
    pub backend: FakeBackend,
    pub s3: FakeS3,
}

/// What the threads share.
struct Shared {
    started: Instant,
    events: Mutex<Events>,
    /// The manager's stderr, line by line.
    log: Mutex<Vec<String>>,
    /// The manager is being stopped: no more heartbeats, changes or status reads.
    stopping: AtomicBool,
    /// The watcher's last round.
    stop: AtomicBool,
}

#[derive(Default)]
struct Events {
    all: Vec<Event>,
    /// Print each new event to stdout as it comes.
    echo: bool,
}

impl Shared {
    fn push(&self, source: Source, text: impl Into<String>) {
        let event = Event {
            at: self.started.elapsed(),
            source,
            text: text.into(),
        };
        let mut events = self.events.lock().expect("events lock");
        if events.echo {
            print_line(&event.to_string());
        }
        events.all.push(event);
    }
}

/// Prints a line to stdout; a closed stdout (`| head`) is not an error.
pub fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// A running sandbox; dropping it kills the manager and stops the fakes.
pub struct Sandbox {
    /// Where the manager's HTTP API listens.
    pub addr: SocketAddr,
    /// The manager's version (from `--version`).
    pub version: String,
    pub bin: PathBuf,
    pub state_dir: PathBuf,
    pub options: Options,
    fakes: Arc<Fakes>,
    shared: Arc<Shared>,
    child: Option<Child>,
    reader: Option<JoinHandle<()>>,
    watcher: Option<JoinHandle<()>>,
    _state: TempDir,
}

/// `bin --version`'s version (`workload-manager 0.1.0` → `0.1.0`).
fn manager_version(bin: &Path) -> Result<String, StartError> {
    let fail = |why: String| StartError::NotTheManager(bin.to_path_buf(), why);
    let out = Command::new(bin)
        .arg("--version")
        .env_clear()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| fail(format!("could not run: {e}")))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match text.split_whitespace().collect::<Vec<_>>()[..] {
        ["workload-manager", version] if out.status.success() => Ok(version.to_string()),
        _ => Err(fail(format!("printed {:?} ({})", text.trim(), out.status))),
    }
}

/// The manager's own Deployment, as the manifests install it: no
/// managed-by label, so no sync can prune it.
fn own_deployment(image: &str) -> Value {
    let labels = json!({"app.kubernetes.io/name": SELF_NAME});
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": SELF_NAME, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": SELF_NAME, "image": image}]}
            }
        }
    })
}

fn publish(backend: &FakeBackend, name: &str, version: &str) {
    let image = format!("registry.example/{name}:{version}");
    backend.put_manifest(name, version, sample_manifest(name, &image));
}

impl Sandbox {
    /// Starts the fakes and the manager `bin`, and waits until the manager
    /// serves (at most 10 s). Events are collected from the start; call
    /// [`Sandbox::echo`] to have them printed as they come.
    pub fn start(bin: &Path, options: Options) -> Result<Sandbox, StartError> {
        let version = manager_version(bin)?;
        if options.listen.port() != 0 {
            // The manager would say so too, but less plainly; a race after
            // this check is caught from its log below.
            if let Err(e) = TcpListener::bind(options.listen) {
                if e.kind() == std::io::ErrorKind::AddrInUse {
                    return Err(StartError::PortInUse(options.listen));
                }
            }
        }
        let kube = FakeKube::builder()
            .namespace(NAMESPACE)
            .controller_delay(CONTROLLER_DELAY)
            .start();
        kube.put_deployment_raw(
            "kubectl",
            own_deployment(&format!("registry.example/{SELF_NAME}:{version}")),
        );
        kube.settle();
        let backend = FakeBackend::start();
        for (name, version) in SAMPLES {
            publish(&backend, name, version);
        }
        backend.set_workloads(TEST_ADDRESS, &SAMPLES);
        let s3 = FakeS3::start();
        s3.create_bucket(BUCKET);
        s3.put_object(BUCKET, VERSION_KEY, format!("{version}\n"));
        let state = TempDir::new("sandbox");

        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("NODE_SYSTEM_ENDPOINT", backend.url())
            .env("NODE_PRIVATE_KEY", TEST_KEY)
            .env("WM_LISTEN", options.listen.to_string())
            .env("WM_NAMESPACE", NAMESPACE)
            .env("WM_KUBE_API_URL", kube.url())
            .env("WM_KUBE_TOKEN_FILE", kube.token_file())
            .env("WM_KUBE_CA_FILE", kube.ca_file())
            .env("WM_SYNC_INTERVAL", SYNC_INTERVAL)
            .env("WM_REPORT_INTERVAL", REPORT_INTERVAL)
            .env("WM_UPDATE_INTERVAL", UPDATE_INTERVAL)
            .env("WM_UPDATE_S3_BUCKET", BUCKET)
            .env("WM_UPDATE_S3_KEY", VERSION_KEY)
            .env("WM_UPDATE_S3_ENDPOINT", s3.url())
            .env("WM_UPDATE_S3_REGION", s3.region())
            .env("WM_STATE_DIR", &state.0)
            .env("WM_LOG", "info")
            .env("POD_NAME", "sandbox")
            .env("NODE_NAME", kube.node_name())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        detach(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| StartError::NotTheManager(bin.to_path_buf(), format!("{e}")))?;

        let shared = Arc::new(Shared {
            started: Instant::now(),
            events: Mutex::new(Events::default()),
            log: Mutex::new(Vec::new()),
            stopping: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let stderr = child.stderr.take().expect("stderr is piped");
        let shared2 = shared.clone();
        let reader = thread::Builder::new()
            .name("sandbox-manager-log".into())
            .spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    shared2.push(Source::Manager, manager_event(&line));
                    shared2.log.lock().expect("log lock").push(line);
                }
            })
            .expect("spawn the log reader");

        let fakes = Arc::new(Fakes { kube, backend, s3 });
        let mut sandbox = Sandbox {
            addr: options.listen,
            version,
            bin: bin.to_path_buf(),
            state_dir: state.0.clone(),
            options,
            fakes,
            shared,
            child: Some(child),
            reader: Some(reader),
            watcher: None,
            _state: state,
        };
        sandbox.addr = sandbox.wait_serving()?;
        let watcher = Watcher::new(&sandbox);
        sandbox.watcher = Some(
            thread::Builder::new()
                .name("sandbox-watcher".into())
                .spawn(move || watcher.run())
                .expect("spawn the watcher"),
        );
        Ok(sandbox)
    }

    /// Waits for the "serving on ADDR" line; its address.
    fn wait_serving(&mut self) -> Result<SocketAddr, StartError> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            let serving = self.manager_log().iter().find_map(|l| {
                l.split("serving on ")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            });
            if let Some(addr) = serving {
                return Ok(addr);
            }
            if let Some(status) = self.exited() {
                // Let the reader take the last lines.
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                let log = self.manager_log();
                if log.iter().any(|l| l.contains("cannot listen on")) {
                    return Err(StartError::PortInUse(self.options.listen));
                }
                return Err(StartError::Failed(
                    format!("exited ({status}) before serving"),
                    log,
                ));
            }
            if Instant::now() >= deadline {
                return Err(StartError::Failed(
                    format!("did not log \"serving on\" within {START_LIMIT:?}"),
                    self.manager_log(),
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The fake Kubernetes API, backend and S3.
    pub fn fakes(&self) -> &Fakes {
        &self.fakes
    }

    /// The manager's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Prints every event so far to stdout, then each new one as it comes.
    pub fn echo(&self) {
        let mut events = self.shared.events.lock().expect("events lock");
        for e in &events.all {
            print_line(&e.to_string());
        }
        events.echo = true;
    }

    /// Every event so far.
    pub fn events(&self) -> Vec<Event> {
        self.shared.events.lock().expect("events lock").all.clone()
    }

    /// Every line the manager logged so far.
    pub fn manager_log(&self) -> Vec<String> {
        self.shared.log.lock().expect("log lock").clone()
    }

    /// The manager's exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut()?.try_wait().ok().flatten()
    }

    /// `GET /v1/status` as JSON, if the manager answers.
    pub fn status(&self) -> Option<Value> {
        get_status(self.addr)
    }

    /// What the manager did so far, counted on the fakes' side.
    pub fn summary(&self) -> Summary {
        summarize(&self.fakes)
    }

    /// Stops the manager with SIGTERM (SIGKILL if it has not exited within
    /// `limit`), takes the last events, and stops the fakes.
    pub fn stop(mut self, limit: Duration) -> Stopped {
        self.shared.stopping.store(true, Ordering::SeqCst);
        let mut stopped = Stopped {
            status: None,
            killed: false,
            took: Duration::ZERO,
            summary: Summary::default(),
        };
        if let Some(mut child) = self.child.take() {
            let begin = Instant::now();
            self.shared.push(
                Source::Sandbox,
                format!("stopping: SIGTERM to the manager (pid {})", child.id()),
            );
            // SAFETY: kill(2) on our own child, which has not been waited for.
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let deadline = begin + limit;
            stopped.status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(20))
                    }
                    Ok(None) => {
                        self.shared.push(
                            Source::Sandbox,
                            format!("the manager did not stop within {limit:?}: SIGKILL"),
                        );
                        stopped.killed = true;
                        let _ = child.kill();
                        break child.wait().ok();
                    }
                    Err(_) => break None,
                }
            };
            stopped.took = begin.elapsed();
        }
        self.finish_threads();
        stopped.summary = self.summary();
        stopped
    }

    /// Lets the log reader take the last lines and the watcher make its last round.
    fn finish_threads(&mut self) {
        if let Some(r) = self.reader.take() {
            // EOF comes with the manager's exit; bounded in case a
            // grandchild kept the pipe open.
            let deadline = Instant::now() + Duration::from_secs(2);
            while !r.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(10));
            }
            if r.is_finished() {
                let _ = r.join();
            }
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(w) = self.watcher.take() {
            w.thread().unpark();
            let _ = w.join();
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.finish_threads();
    }
}

/// Its own process group, so a terminal's Ctrl-C goes to the sandbox only;
/// on Linux also SIGTERM when the starting thread dies, so a killed sandbox
/// leaves no manager behind.
fn detach(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    cmd.process_group(0);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
}

/// `INFO  [workload_manager::jobs] web: created 1.0.0` → `web: created 1.0.0`
/// (other levels kept: `WARN sync failed: …`).
pub fn manager_event(line: &str) -> String {
    let Some((level, rest)) = line.split_once(' ') else {
        return line.to_string();
    };
    if !matches!(level, "ERROR" | "WARN" | "INFO" | "DEBUG" | "TRACE") {
        return line.to_string();
    }
    let rest = rest.trim_start();
    let message = match rest.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((_, m)) => m,
        None => rest,
    };
    if level == "INFO" {
        message.to_string()
    } else {
        format!("{level} {message}")
    }
}

/// Counts what the fakes accepted from the manager.
fn summarize(fakes: &Fakes) -> Summary {
    let collection = format!("/apis/apps/v1/namespaces/{NAMESPACE}/deployments");
    let (mut created, mut applied, mut deleted) = (0, 0, 0);
    for r in fakes.kube.log() {
        let ok = r.status.is_some_and(|s| (200..300).contains(&s));
        let Some(rest) = r.path.strip_prefix(&collection) else {
            continue;
        };
        match (r.method.as_str(), rest) {
            ("POST", "") if ok => created += 1,
            ("PATCH", n) if ok && n.len() > 1 && n != format!("/{SELF_NAME}") => applied += 1,
            ("DELETE", n) if ok && n.len() > 1 => deleted += 1,
            _ => {}
        }
    }
    Summary {
        reports: fakes.backend.reports().len(),
        versions: fakes.backend.applied_versions().len(),
        created,
        applied,
        deleted,
    }
}

/// One request on a new connection, bounded in time, without panicking.
fn try_request(addr: SocketAddr, raw: &str) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(3)))?;
    stream.set_write_timeout(Some(Duration::from_secs(3)))?;
    stream.write_all(raw.as_bytes())?;
    read_reply(&mut stream)
}

fn get_status(addr: SocketAddr) -> Option<Value> {
    let r = try_request(
        addr,
        "GET /v1/status HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\r\n",
    )
    .ok()?;
    (r.status == 200)
        .then(|| serde_json::from_str(&r.body).ok())
        .flatten()
}

fn heartbeat(addr: SocketAddr, name: &str, status: &str, message: &str) -> bool {
    let body = json!({"status": status, "message": message}).to_string();
    let raw = format!(
        "POST /v1/workloads/{name}/health HTTP/1.1\r\nHost: sandbox\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    try_request(addr, &raw).is_ok_and(|r| r.status == 204)
}

/// The sandbox's own thread: looks at the fakes every [`POLL`], turns what
/// changed into events, changes the desired state when due and sends the
/// workloads' heartbeats.
struct Watcher {
    shared: Arc<Shared>,
    fakes: Arc<Fakes>,
    addr: SocketAddr,
    change_after: Duration,
    /// name → (generation, complete) as last seen.
    rollouts: BTreeMap<String, (i64, bool)>,
    reports: usize,
    versions: usize,
    s3_reads: usize,
    /// An update check read the file: its outcome is awaited from /v1/status.
    update_pending: Option<Instant>,
    last_update_at: Value,
    /// When all sample Deployments first existed.
    all_created: Option<Instant>,
    changed: bool,
    /// Workloads that send heartbeats, and when the next round is due.
    beating: BTreeSet<String>,
    next_beat: Instant,
}

impl Watcher {
    fn new(sandbox: &Sandbox) -> Watcher {
        let mut w = Watcher {
            shared: sandbox.shared.clone(),
            fakes: sandbox.fakes.clone(),
            addr: sandbox.addr,
            change_after: sandbox.options.change_after,
            rollouts: BTreeMap::new(),
            reports: 0,
            versions: 0,
            s3_reads: 0,
            update_pending: None,
            last_update_at: Value::Null,
            all_created: None,
            changed: false,
            beating: BTreeSet::new(),
            next_beat: Instant::now(),
        };
        // What is already there (the manager's own Deployment) is no news.
        for d in w.fakes.kube.deployments() {
            w.rollouts.insert(name_of(&d), rollout_of(&d));
        }
        w
    }

    fn run(mut self) {
        loop {
            let last = self.shared.stop.load(Ordering::SeqCst);
            self.look();
            if last {
                return;
            }
            if !self.shared.stopping.load(Ordering::SeqCst) {
                self.change();
                self.beat();
                self.update_outcome();
            }
            thread::park_timeout(POLL);
        }
    }

    fn push(&self, source: Source, text: impl Into<String>) {
        self.shared.push(source, text);
    }

    /// Rollouts, reports, version PUTs and S3 reads since the last look.
    fn look(&mut self) {
        let deployments = self.fakes.kube.deployments();
        let mut present = BTreeSet::new();
        for d in &deployments {
            let name = name_of(d);
            let now = rollout_of(d);
            let before = self.rollouts.insert(name.clone(), now);
            if now.1 && before != Some(now) {
                let version = d["metadata"]["annotations"]["workload-manager/version"]
                    .as_str()
                    .map_or_else(String::new, |v| format!(" {v}"));
                let count = |k: &str| d["status"][k].as_i64().unwrap_or(0);
                self.push(
                    Source::Kube,
                    format!(
                        "{name}{version}: rollout complete ({}/{} available)",
                        count("availableReplicas"),
                        d["spec"]["replicas"].as_i64().unwrap_or(1)
                    ),
                );
            }
            present.insert(name);
        }
        self.rollouts.retain(|n, _| present.contains(n));
        if self.all_created.is_none() && SAMPLES.iter().all(|(n, _)| present.contains(*n)) {
            self.all_created = Some(Instant::now());
        }
        // Running workloads: the manager's Deployments with an available pod
        // (a removed one keeps beating until its Deployment is deleted).
        let running: BTreeSet<String> = deployments
            .iter()
            .filter(|d| {
                d["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "workload-manager"
                    && d["status"]["availableReplicas"].as_i64().unwrap_or(0) > 0
            })
            .map(name_of)
            .collect();
        let stopping = self.shared.stopping.load(Ordering::SeqCst);
        for name in running.difference(&self.beating).filter(|_| !stopping) {
            let (status, _) = health_of(name);
            self.shared.push(
                Source::Sandbox,
                format!(
                    "{name} is up: it sends a heartbeat every {}s ({status})",
                    HEARTBEAT_EVERY.as_secs()
                ),
            );
            self.next_beat = Instant::now();
        }
        if !stopping {
            self.beating = running;
        }

        let reports = self.fakes.backend.reports();
        for (i, r) in reports.iter().enumerate().skip(self.reports) {
            let report = &r.report;
            let workloads: Vec<String> = report["workloads"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|w| {
                    format!(
                        "{} {}",
                        w["name"].as_str().unwrap_or("?"),
                        w["health"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            self.push(
                Source::Backend,
                format!(
                    "report #{} received ({}s window): {}",
                    i + 1,
                    report["windowSeconds"].as_f64().unwrap_or(0.0).round(),
                    if workloads.is_empty() {
                        "no workloads".to_string()
                    } else {
                        workloads.join(", ")
                    }
                ),
            );
        }
        self.reports = reports.len();

        let versions = self.fakes.backend.applied_versions();
        for v in versions.iter().skip(self.versions) {
            self.push(
                Source::Backend,
                format!("version PUT: {} runs {}", v.workload, v.version),
            );
        }
        self.versions = versions.len();

        let reads = self.fakes.s3.log();
        for r in reads.iter().skip(self.s3_reads) {
            self.push(
                Source::S3,
                format!(
                    "{} s3://{}/{} -> {}",
                    r.method,
                    r.bucket,
                    r.key,
                    r.status.map_or("reset".to_string(), |s| s.to_string())
                ),
            );
            self.update_pending.get_or_insert_with(Instant::now);
        }
        self.s3_reads = reads.len();
    }

    /// The desired-state change, once due.
    fn change(&mut self) {
        let Some(created) = self.all_created else {
            return;
        };
        if self.changed || created.elapsed() < self.change_after {
            return;
        }
        self.changed = true;
        let backend = &self.fakes.backend;
        // The manifest first: the manager may fetch it as soon as it sees the list.
        publish(backend, CHANGED, NEW_VERSION);
        let list: Vec<(&str, &str)> = SAMPLES
            .iter()
            .filter(|(n, _)| *n != REMOVED)
            .map(|&(n, v)| (n, if n == CHANGED { NEW_VERSION } else { v }))
            .collect();
        backend.set_workloads(TEST_ADDRESS, &list);
        let old = SAMPLES
            .iter()
            .find(|(n, _)| *n == CHANGED)
            .map_or("?", |(_, v)| v);
        self.push(
            Source::Backend,
            format!(
                "desired state changed: {CHANGED} {old} -> {NEW_VERSION}, {REMOVED} removed \
                 (the manager sees it at its next sync; POST /v1/sync to sync now)"
            ),
        );
    }

    /// A heartbeat from each running workload, every [`HEARTBEAT_EVERY`].
    fn beat(&mut self) {
        if Instant::now() < self.next_beat {
            return;
        }
        self.next_beat = Instant::now() + HEARTBEAT_EVERY;
        for name in &self.beating {
            let (status, message) = health_of(name);
            // A refusal (the manager stopping, a workload just removed) is
            // what a real workload would shrug off too.
            let _ = heartbeat(self.addr, name, status, message);
        }
    }

    /// After an S3 read: what the update check concluded (only failures are
    /// logged by the manager at info).
    fn update_outcome(&mut self) {
        let Some(since) = self.update_pending else {
            return;
        };
        if since.elapsed() > Duration::from_secs(10) {
            self.update_pending = None;
            return;
        }
        let Some(status) = get_status(self.addr) else {
            return;
        };
        let check = &status["lastUpdateCheck"];
        if check["at"].is_null() || check["at"] == self.last_update_at {
            return;
        }
        self.last_update_at = check["at"].clone();
        self.update_pending = None;
        self.push(
            Source::S3,
            format!(
                "update check {}: {}",
                check["outcome"].as_str().unwrap_or("?"),
                check["detail"].as_str().unwrap_or("")
            ),
        );
    }
}

fn name_of(d: &Value) -> String {
    d["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// (generation, rollout complete).
fn rollout_of(d: &Value) -> (i64, bool) {
    (
        d["metadata"]["generation"].as_i64().unwrap_or(0),
        rollout_complete(d).unwrap_or(false),
    )
}

/// What a sample workload says in its heartbeats.
fn health_of(name: &str) -> (&'static str, &'static str) {
    if name == DEGRADED {
        ("degraded", DEGRADED_MESSAGE)
    } else {
        ("healthy", "serving")
    }
}
