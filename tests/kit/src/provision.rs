//! What some tests need from outside the kit, had on demand when the
//! environment does not name it: moto's S3 emulator (`WM_TEST_S3_ENDPOINT`)
//! and the statically linked release binary (`WM_STATIC_BIN`). `.ci/run`
//! sets both; elsewhere the first test that asks starts or builds it, once
//! per test process, the way the CI scripts do (`.ci/moto.sh install`,
//! `.ci/static.sh`), and says so on stderr (past libtest's capture) when
//! that takes a while. An `Err` says why it cannot be had on this machine:
//! the caller skips (`proc::skip_outside_ci`).
//!
//! Never leaves anything running: the moto_server started here is killed
//! and reaped when the test process exits, and dies with it however it ends.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Once, OnceLock};
use std::time::{Duration, Instant};

/// How long moto_server may take to start answering.
const MOTO_START_LIMIT: Duration = Duration::from_secs(60);

/// The workspace's root directory (where `Cargo.toml`, `.ci/` and `src/` are).
pub fn workspace_root() -> PathBuf {
    let kit = Path::new(env!("CARGO_MANIFEST_DIR"));
    kit.parent()
        .and_then(Path::parent)
        .expect("the kit lives at tests/kit in the workspace")
        .to_path_buf()
}

/// The cargo target directory the running test binary was built in: the
/// nearest ancestor of the executable that cargo marked with `CACHEDIR.TAG`
/// (the binary is in `<target>/[<triple>/]<profile>/deps/`), else
/// `CARGO_TARGET_DIR`, else `target/` in the workspace.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().ok();
    if let Some(dir) = exe
        .as_deref()
        .and_then(|e| e.ancestors().find(|d| d.join("CACHEDIR.TAG").is_file()))
    {
        return dir.to_path_buf();
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if !d.is_empty() => workspace_root().join(d),
        _ => workspace_root().join("target"),
    }
}

// ---------------------------------------------------------------- moto

/// moto's S3 endpoint: `WM_TEST_S3_ENDPOINT` when set, else a moto_server
/// of this process's own, started from the venv `.ci/moto.sh` installs
/// (`MOTO_VENV`, default `~/.cache/wm-moto-venv`; installed first from PyPI
/// when missing, about 40 s) on a random loopback port.
pub fn moto_endpoint() -> Result<String, String> {
    if let Some(e) = non_empty_var("WM_TEST_S3_ENDPOINT") {
        return Ok(e);
    }
    static MOTO: OnceLock<Result<String, String>> = OnceLock::new();
    MOTO.get_or_init(start_moto).clone()
}

fn moto_venv() -> PathBuf {
    if let Some(v) = non_empty_var("MOTO_VENV") {
        return PathBuf::from(v);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/wm-moto-venv")
}

/// moto_server from the venv, installed first if it is not there.
fn moto_server() -> Result<PathBuf, String> {
    let venv = moto_venv();
    let server = venv.join("bin/moto_server");
    if server.is_file() {
        return Ok(server);
    }
    // Another test process may be installing it: wait for it, then look again.
    let _lock = FileLock::exclusive(&venv.with_extension("lock"))?;
    if server.is_file() {
        return Ok(server);
    }
    notice(&format!(
        "installing moto[server] into {} for the S3 tests (once, about 40 s; \
         or set WM_TEST_S3_ENDPOINT)",
        venv.display()
    ));
    let out = Command::new("bash")
        .arg(workspace_root().join(".ci/moto.sh"))
        .arg("install")
        .env("MOTO_VENV", &venv)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run bash .ci/moto.sh install: {e}"))?;
    if !out.status.success() || !server.is_file() {
        return Err(format!(
            "moto is not installed in {} and `bash .ci/moto.sh install` failed ({}): {}",
            venv.display(),
            out.status,
            tail(&out.stderr)
        ));
    }
    Ok(server)
}

/// Starts moto_server on port 0 (it binds a free one and logs it) from a
/// thread that lives as long as it does, and waits until it answers.
fn start_moto() -> Result<String, String> {
    let server = moto_server()?;
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name("moto_server".into())
        .spawn(move || keep_moto(&server, tx))
        .map_err(|e| format!("cannot start a thread for moto_server: {e}"))?;
    let deadline = Instant::now() + MOTO_START_LIMIT;
    let port = match rx.recv_timeout(MOTO_START_LIMIT) {
        Ok(port) => port?,
        Err(_) => {
            return Err(format!(
                "moto_server did not say its port within {MOTO_START_LIMIT:?}"
            ))
        }
    };
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while !answers(addr) {
        if Instant::now() >= deadline {
            return Err(format!(
                "moto_server did not answer on {addr} within {MOTO_START_LIMIT:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(format!("http://{addr}"))
}

/// The moto_server this process started, for [`stop_moto`] (0: none).
static MOTO_PID: AtomicI32 = AtomicI32::new(0);

/// Runs moto_server and stays with it: sends its port (or why it did not
/// start) to `port`, then reads its log until it exits. [`stop_moto`] ends
/// it when the process exits normally (libtest's `main` returns or calls
/// `exit`); else the kernel kills it when this thread ends
/// (PR_SET_PDEATHSIG is tied to the thread that forked, not the process),
/// which, as this thread outlives moto_server, happens only when the test
/// process dies.
fn keep_moto(server: &Path, port: mpsc::Sender<Result<u16, String>>) {
    let mut cmd = Command::new(server);
    cmd.args(["-H", "127.0.0.1", "-p", "0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    die_with_this_thread(&mut cmd);
    let mut child = match cmd.spawn() {
        Ok(c) => KillOnDrop(c),
        Err(e) => {
            let _ = port.send(Err(format!("cannot start {}: {e}", server.display())));
            return;
        }
    };
    MOTO_PID.store(child.0.id() as i32, Ordering::SeqCst);
    static AT_EXIT: Once = Once::new();
    // SAFETY: atexit(3) with a function that lives as long as the program.
    AT_EXIT.call_once(|| unsafe {
        libc::atexit(stop_moto);
    });
    let stderr = child.0.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines().map_while(Result::ok);
    let mut log = Vec::new();
    for line in lines.by_ref() {
        // werkzeug's start-up line: " * Running on http://127.0.0.1:PORT".
        if let Some(p) = line
            .split("Running on http://127.0.0.1:")
            .nth(1)
            .and_then(|rest| rest.trim().parse::<u16>().ok())
        {
            let _ = port.send(Ok(p));
            // Keep reading, so that its request log never fills the pipe.
            lines.for_each(drop);
            let _ = child.0.wait();
            MOTO_PID.store(0, Ordering::SeqCst);
            return;
        }
        log.push(line);
    }
    let status = child.0.wait().map(|s| s.to_string()).unwrap_or_default();
    MOTO_PID.store(0, Ordering::SeqCst);
    let _ = port.send(Err(format!(
        "moto_server exited ({status}) before serving: {}",
        log.join("\n")
    )));
}

/// At exit: kills moto_server and reaps it, so that not even a zombie of
/// it is left to whoever inherits it.
extern "C" fn stop_moto() {
    let pid = MOTO_PID.swap(0, Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) and waitpid(2) on our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
    }
}

/// Whether an HTTP server answers on `addr` (any status).
fn answers(addr: SocketAddr) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_ok()
        && crate::proc::read_reply(&mut s).is_ok()
}

/// Makes the child get SIGKILL when the calling thread ends (at the latest
/// when the process does, however it ends), and not start at all when the
/// process is already gone.
fn die_with_this_thread(cmd: &mut Command) {
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only async-signal-safe functions (prctl, getppid), allocating nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ---------------------------------------------------------------- the static binary

/// The statically linked release binary: `WM_STATIC_BIN` when set, else
/// built by `.ci/static.sh` into `static/` in the target directory (glibc,
/// crt-static). cargo rebuilds only what changed, so this is quick when
/// nothing did and takes minutes the first time. Parallel test processes
/// build it one at a time (a file lock); each builds at most once. `Err`
/// where this machine cannot build it (not a glibc host, no static glibc);
/// a build that fails otherwise panics, as any failing test does.
pub fn static_binary() -> Result<PathBuf, String> {
    if let Some(p) = non_empty_var("WM_STATIC_BIN") {
        return Ok(PathBuf::from(p));
    }
    static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BIN.get_or_init(build_static).clone()
}

fn build_static() -> Result<PathBuf, String> {
    let target = target_dir();
    let dir = target.join("static");
    notice(&format!(
        "building the static release binary into {} as .ci/static.sh does \
         (minutes the first time, seconds when nothing changed; or set WM_STATIC_BIN)",
        dir.display()
    ));
    let started = Instant::now();
    // Another test process may be building it: wait, then let cargo see it is fresh.
    let _lock = FileLock::exclusive(&target.join("wm-static.lock"))?;
    let out = Command::new("bash")
        .arg(workspace_root().join(".ci/static.sh"))
        .env("STATIC_TARGET_DIR", &dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run bash .ci/static.sh: {e}"))?;
    match out.status.code() {
        Some(0) => {}
        // The script's "cannot build here" (see its header).
        Some(3) => {
            return Err(format!(
                "the static binary cannot be built on this machine: {}",
                tail(&out.stderr)
            ))
        }
        _ => panic!(
            "bash .ci/static.sh failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let bin = stdout
        .lines()
        .find_map(|l| l.strip_prefix("export WM_STATIC_BIN="))
        .map(|p| PathBuf::from(p.trim()))
        .unwrap_or_else(|| panic!(".ci/static.sh printed no WM_STATIC_BIN: {stdout:?}"));
    notice(&format!(
        "static binary ready in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        bin.display()
    ));
    Ok(bin)
}

// ---------------------------------------------------------------- helpers

/// An exclusive lock on a file (flock), held until dropped; the kernel
/// releases it if the process dies.
pub struct FileLock {
    _file: File,
}

impl FileLock {
    /// Waits for the lock on `path` (created if missing).
    pub fn exclusive(path: &Path) -> Result<FileLock, String> {
        let locking = |e: std::io::Error| format!("cannot lock {}: {e}", path.display());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(locking)?;
        }
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(locking)?;
        flock(&f).map_err(locking)?;
        Ok(FileLock { _file: f })
    }
}

/// Waits for an exclusive flock on `f`; it lasts until `f` is closed.
pub fn flock(f: &File) -> std::io::Result<()> {
    loop {
        // SAFETY: flock(2) on a file descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn non_empty_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The last lines of a script's stderr, for a one-line reason.
fn tail(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(3)..].join(" / ")
}

/// A progress line straight to stderr: libtest captures `eprintln!` in a
/// test, not this, so a long wait is explained while it happens.
fn notice(msg: &str) {
    let _ = writeln!(std::io::stderr(), "wm-testkit: {msg}");
}
