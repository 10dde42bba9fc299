//! The one-command sandbox: the real `workload-manager` against the fake
//! Kubernetes API, backend and S3, with sample workloads and a live log.
//!
//! ```text
//! cargo build --release                            # the sandbox builds nothing itself
//! cargo run --release -p wm-testkit --bin sandbox  # Ctrl-C stops everything
//! ```
//!
//! What runs is `wm_testkit::sandbox` (tests/kit/src/sandbox.rs), which
//! `tests/sandbox.rs` exercises; this file parses the options, prints the
//! banner and the live log, and stops on Ctrl-C, SIGTERM or `--duration`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use wm_testkit::node::TEST_ADDRESS;
use wm_testkit::sandbox::{
    print_line, Options, Sandbox, StartError, BUCKET, CHANGED, DEGRADED, HEARTBEAT_EVERY,
    NAMESPACE, NEW_VERSION, REMOVED, REPORT_INTERVAL, SAMPLES, SYNC_INTERVAL, UPDATE_INTERVAL,
    VERSION_KEY,
};

const USAGE: &str =
    "usage: sandbox [--listen ADDR] [--change-after SECS] [--duration SECS] [--bin PATH]

Runs the real workload-manager against a fake Kubernetes API, a fake Node
System backend and a fake S3 (all on 127.0.0.1), with three sample workloads,
and prints what happens, one line per event. Ctrl-C stops everything.

  --listen ADDR        the manager's HTTP API (default 127.0.0.1:8080;
                       127.0.0.1:0 takes a free port)
  --change-after SECS  how long after the sample workloads are deployed the
                       backend wants web at 1.1.0 and no longer cache (default 60)
  --duration SECS      stop by itself after that long (default: run until Ctrl-C)
  --bin PATH           the workload-manager binary (default: the one next to
                       this executable, i.e. target/release/workload-manager)

Build first: `cargo build --release`, then
`cargo run --release -p wm-testkit --bin sandbox`.";

/// How long the manager may take to stop after SIGTERM before it is killed.
const STOP_LIMIT: Duration = Duration::from_secs(10);

struct Args {
    options: Options,
    duration: Option<Duration>,
    bin: Option<PathBuf>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Option<Args>, String> {
    let mut a = Args {
        options: Options::default(),
        duration: None,
        bin: None,
    };
    let secs = |flag: &str, v: Option<String>| -> Result<Duration, String> {
        v.as_deref()
            .and_then(|s| s.parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| format!("{flag} needs a number of seconds"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--listen" => {
                a.options.listen = args
                    .next()
                    .and_then(|s| s.parse::<SocketAddr>().ok())
                    .ok_or("--listen needs an address like 127.0.0.1:8080")?
            }
            "--change-after" => a.options.change_after = secs("--change-after", args.next())?,
            "--duration" => a.duration = Some(secs("--duration", args.next())?),
            "--bin" => a.bin = Some(PathBuf::from(args.next().ok_or("--bin needs a path")?)),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Some(a))
}

fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print_line(USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sandbox: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let bin = match args
        .bin
        .clone()
        .map_or_else(wm_testkit::proc::locate_manager, Ok)
    {
        Ok(b) => b,
        Err(e) => {
            eprintln!("sandbox: {e}");
            return ExitCode::from(2);
        }
    };
    if !bin.is_file() {
        let (build, run) = if in_release_dir(&bin) || args.bin.is_some() {
            (
                "cargo build --release",
                "cargo run --release -p wm-testkit --bin sandbox",
            )
        } else {
            ("cargo build", "cargo run -p wm-testkit --bin sandbox")
        };
        eprintln!(
            "sandbox: no workload-manager binary at {}.\n\
             The sandbox builds nothing itself: run `{build}` in the workspace root \
             (with the same CARGO_TARGET_DIR as this run) first, then `{run}` again.",
            bin.display()
        );
        return ExitCode::from(2);
    }
    if let Some(w) = wm_testkit::proc::stale_warning(&bin) {
        eprintln!("sandbox: WARNING: {w}");
    }
    if let Err(e) = workload_manager::signals::install() {
        eprintln!("sandbox: cannot install the Ctrl-C handler: {e}");
        return ExitCode::from(1);
    }
    print_line("sandbox: starting the fakes and the manager ...");
    let mut sandbox = match Sandbox::start(&bin, args.options.clone()) {
        Ok(s) => s,
        Err(e @ StartError::PortInUse(_)) => {
            eprintln!("sandbox: cannot start the manager: {e}");
            return ExitCode::from(1);
        }
        Err(e) => {
            eprintln!("sandbox: {e}");
            return ExitCode::from(1);
        }
    };
    banner(&sandbox, args.duration);
    sandbox.echo();

    let begin = Instant::now();
    let why = loop {
        if workload_manager::signals::stop_requested() {
            break "Ctrl-C".to_string();
        }
        if let Some(d) = args.duration.filter(|d| begin.elapsed() >= *d) {
            break format!("--duration {}", d.as_secs_f64());
        }
        if let Some(status) = sandbox.exited() {
            // Its last lines are in the live log above.
            let summary = sandbox.summary();
            drop(sandbox);
            eprintln!("sandbox: the manager exited on its own ({status}); stopped the fakes.");
            print_line(&format!("sandbox: {summary}"));
            return ExitCode::from(1);
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    print_line(&format!("sandbox: stopping ({why}) ..."));
    let stopped = sandbox.stop(STOP_LIMIT);
    let clean = stopped.status.is_some_and(|s| s.success()) && !stopped.killed;
    print_line(&format!(
        "sandbox: stopped; the manager exited after {:.1}s ({}{}). {}",
        stopped.took.as_secs_f64(),
        stopped
            .status
            .map_or("status unknown".to_string(), |s| s.to_string()),
        if stopped.killed { ", killed" } else { "" },
        stopped.summary
    ));
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn in_release_dir(bin: &Path) -> bool {
    bin.parent().and_then(Path::file_name) == Some("release".as_ref())
}

fn banner(s: &Sandbox, duration: Option<Duration>) {
    let f = s.fakes();
    let url = format!("http://{}", s.addr);
    let samples: Vec<String> = SAMPLES.iter().map(|(n, v)| format!("{n} {v}")).collect();
    let old = SAMPLES
        .iter()
        .find(|(n, _)| *n == CHANGED)
        .map_or("?", |(_, v)| v);
    let lines = [
        String::new(),
        format!(
            "workload-manager {} (pid {}, {}) against fakes, all on 127.0.0.1:",
            s.version,
            s.pid().unwrap_or(0),
            s.bin.display()
        ),
        format!(
            "  fake Kubernetes API  {}  namespace {NAMESPACE}; kubectl --kubeconfig {} get deploy",
            f.kube.url(),
            f.kube.kubeconfig_path().display()
        ),
        format!("  fake backend         {}  node {TEST_ADDRESS}", f.backend.url()),
        format!(
            "  fake S3              {}  s3://{BUCKET}/{VERSION_KEY} says {} (up to date)",
            f.s3.url(),
            s.version
        ),
        format!(
            "  manager API          {url}  (state in {})",
            s.state_dir.display()
        ),
        String::new(),
        format!(
            "Desired: {}. {}s after they are deployed: {CHANGED} {old} -> {NEW_VERSION}, {REMOVED} removed.",
            samples.join(", "),
            s.options.change_after.as_secs_f64()
        ),
        format!(
            "Sync every {SYNC_INTERVAL}, report every {REPORT_INTERVAL}, update check every {UPDATE_INTERVAL}; \
             running workloads send heartbeats every {}s ({DEGRADED} says degraded).",
            HEARTBEAT_EVERY.as_secs()
        ),
        String::new(),
        "Try:".to_string(),
        format!("  curl -s '{url}/v1/status?format=text'"),
        format!("  curl -s {url}/metrics"),
        format!(
            "  curl -s -XPOST {url}/v1/workloads/web/health -H 'Content-Type: application/json' -d '{{\"status\":\"healthy\"}}'"
        ),
        format!("  curl -s -XPOST {url}/v1/sync"),
        String::new(),
        match duration {
            Some(d) => format!(
                "Stops after {}s, or on Ctrl-C. Live log (seconds since start, source, event):",
                d.as_secs_f64()
            ),
            None => "Ctrl-C stops everything. Live log (seconds since start, source, event):"
                .to_string(),
        },
    ];
    for l in lines {
        print_line(&l);
    }
}
