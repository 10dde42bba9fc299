//! Measures the release `workload-manager` binary against its resource
//! targets and prints a markdown table (for the README) plus the raw numbers.
//!
//! ```text
//! cargo build --release                          # the bench builds nothing itself
//! cargo run --release -p wm-testkit --bin bench  # full run, about 7 minutes on 2 cores
//! cargo run --release -p wm-testkit --bin bench -- --quick   # about 5 minutes
//! cargo run --release -p wm-testkit --bin bench -- --fleet 10000,100000   # the fleet simulation only
//! cargo run --release -p wm-testkit --bin bench -- --soak 30m --seed 7     # an accelerated soak
//! ```
//!
//! The manager under test talks to an in-process fake Kubernetes API (HTTPS,
//! token, CA) so it becomes ready, and to the fake backend, logs at `info`, and listens on loopback.
//! Every loop here is bounded by a deadline; nothing leaves 127.0.0.1.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime};

use wm_testkit::bench::load::{self, LoadResult, Peak, Sampler};
use wm_testkit::bench::report::{num, table, Row};
use wm_testkit::bench::startup;
use wm_testkit::bench::stats::{median, percentile};
use wm_testkit::bench::sys::{self, Machine, Sched};
use wm_testkit::bench::wrk;
use wm_testkit::kube::FakeKube;
use wm_testkit::node::FakeNode;
use wm_testkit::proc::{Manager, TempDir};

const USAGE: &str =
    "usage: bench [--fleet N[,N...] [--hours H] [--seed S]] [--soak DURATION [--seed S]] [--quick] [--sync N] [--outbox] [--render] [--window] [--memory] [--slow-api] [--cluster] [--bin PATH]

  --soak DURATION  an accelerated soak of the release binary (e.g. 30m, 1h,
              90s; at least 40s): short intervals, faults of the fake
              Kubernetes API, backend and S3, kills and a second instance,
              chosen by a seeded RNG (--seed; a random one is printed);
              prints each invariant held/MISSED and exits 1 on a miss

  --quick     10 s idle window instead of 60 s (idle CPU scaled to a minute;
              the report interval follows the idle window, so the scaled
              minute holds six report windows instead of one), load rounds
              of 2 s instead of 5 s
  --sync N    only the sync rows, with N desired workloads
  --outbox    only the rows of a day of queued reports
  --render    only the in-process rendering of /v1/status and /metrics
  --window    only the in-process report window rows: its main-thread work
              (decoding the Node, Deployments and pods, diagnosis, /proc,
              closing) for 10, 100 and 1,000 workloads
  --memory    only the RSS rows: idle with no workloads, and 1,000 workloads
              with their pods after 3 report windows
  --slow-api  only the initial syncs of 200 and 1,000 workloads against a
              Kubernetes API answering in 20 ms and 50 ms
  --cluster   only the sync rows (100 and 1,000 workloads) against the fake
              and against the real control plane, and self-update on the real
              one (needs `eval \"$(bash .ci/cluster.sh start)\"` first; a full
              run adds the real rows too when a control plane is up)
  --bin PATH  the workload-manager binary to measure (default: the one next
              to this executable, i.e. target/release/workload-manager)

Build first: `cargo build --release`, then
`cargo run --release -p wm-testkit --bin bench`.";

/// Concurrent keep-alive connections for both load generators.
const CONNECTIONS: usize = 32;
/// The workload every heartbeat names.
const WORKLOAD: &str = "bench";
const MIB: f64 = 1024.0;

/// How long and how often to measure.
struct Plan {
    quick: bool,
    /// Recorded starts (after one warm-up start).
    starts: usize,
    /// Of those, how many also wait for `/readyz` (seconds each: first-sync jitter).
    ready_starts: usize,
    /// Idle window for the CPU figure; the RSS figure is taken 10 s into it.
    idle: Duration,
    rounds: usize,
    round: Duration,
    warm_up: Duration,
}

impl Plan {
    fn new(quick: bool) -> Plan {
        Plan {
            quick,
            starts: 20,
            ready_starts: if quick { 3 } else { 5 },
            idle: Duration::from_secs(if quick { 10 } else { 60 }),
            rounds: 3,
            round: Duration::from_secs(if quick { 2 } else { 5 }),
            warm_up: Duration::from_secs(1),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} run: idle window {} s{}, load {} × {} s per client after a {} s warm-up, {} starts (+1 warm-up)",
            if self.quick { "quick (--quick)" } else { "full" },
            self.idle.as_secs(),
            if self.quick {
                " (idle CPU scaled ×6 to a minute)"
            } else {
                ""
            },
            self.rounds,
            self.round.as_secs(),
            self.warm_up.as_secs(),
            self.starts
        )
    }
}

/// The result table and the raw numbers behind it.
#[derive(Default)]
struct Report {
    rows: Vec<Row>,
    raw: Vec<String>,
}

impl Report {
    fn raw(&mut self, line: impl Into<String>) {
        self.raw.push(line.into());
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ms_list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fleet scenarios (no binary, no network: a simulation in virtual time).
fn fleet_scale(sizes: &[usize], hours: u64, seed: u64) -> ExitCode {
    let mut held = true;
    for nodes in sizes {
        progress(&format!(
            "fleet of {nodes} nodes, steady state over {hours} h, seed {seed}"
        ));
        for verdict in wm_testkit::fleet::all(*nodes, seed, hours) {
            verdict.print();
            held &= verdict.held();
        }
        println!();
    }
    if held {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn progress(what: &str) {
    eprintln!("bench: {what}");
}

fn main() -> ExitCode {
    // The manager's allocator settings, so the in-process rows allocate as it does.
    workload_manager::memory::return_large_blocks();
    let mut quick = false;
    let mut only_sync: Option<usize> = None;
    let mut only_outbox = false;
    let mut only_slow = false;
    let mut only_render = false;
    let mut only_window = false;
    let mut only_memory = false;
    let mut only_cluster = false;
    let mut bin: Option<PathBuf> = None;
    let mut fleet: Option<Vec<usize>> = None;
    let mut hours = 24u64;
    let mut seed: Option<u64> = None;
    let mut soak: Option<Duration> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--fleet" => match args.next().map(|n| {
                n.split(',')
                    .map(|n| n.trim().replace('_', "").parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()
            }) {
                Some(Ok(n)) if !n.is_empty() && n.iter().all(|n| *n > 0) => fleet = Some(n),
                _ => return usage("--fleet needs numbers of nodes, e.g. 10000,100000"),
            },
            "--hours" => match args.next().and_then(|n| n.parse().ok()) {
                Some(h) if h > 0 => hours = h,
                _ => return usage("--hours needs a whole number of hours"),
            },
            "--seed" => match args.next().and_then(|n| n.parse().ok()) {
                Some(s) => seed = Some(s),
                None => return usage("--seed needs a number"),
            },
            "--soak" => match args
                .next()
                .map(|d| wm_testkit::bench::soak::parse_duration(&d))
            {
                Some(Ok(d)) => soak = Some(d),
                Some(Err(e)) => return usage(&format!("--soak: {e}")),
                None => return usage("--soak needs a duration, e.g. 30m"),
            },
            "--quick" => quick = true,
            "--outbox" => only_outbox = true,
            "--slow-api" => only_slow = true,
            "--render" => only_render = true,
            "--window" => only_window = true,
            "--memory" => only_memory = true,
            "--cluster" => only_cluster = true,
            "--sync" => match args.next().and_then(|n| n.parse().ok()) {
                Some(n) => only_sync = Some(n),
                None => return usage("--sync needs a number of workloads"),
            },
            "--bin" => match args.next() {
                Some(p) => bin = Some(PathBuf::from(p)),
                None => return usage("--bin needs a path"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => return usage(&format!("unknown argument {other:?}")),
        }
    }
    if let Some(sizes) = fleet {
        return fleet_scale(&sizes, hours, seed.unwrap_or(1));
    }
    let bin = match bin.map_or_else(wm_testkit::proc::locate_manager, Ok) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("bench: {e}");
            return ExitCode::from(2);
        }
    };
    if !bin.is_file() {
        eprintln!(
            "bench: no workload-manager binary at {}.\n\
             The bench builds nothing itself: run `cargo build --release` in the workspace root \
             (with the same CARGO_TARGET_DIR as this run) first, then run the bench again.",
            bin.display()
        );
        return ExitCode::from(2);
    }
    if let Some(duration) = soak {
        return soak_run(&bin, duration, seed);
    }
    match only_sync {
        _ if only_cluster => {
            let Ok(cp) = wm_testkit::cluster::ControlPlane::from_env() else {
                eprintln!(
                    "bench: --cluster needs a control plane: eval \"$(bash .ci/cluster.sh start)\""
                );
                return ExitCode::from(2);
            };
            let mut report = Report::default();
            for n in [100, 1000] {
                let _ = syncs(&bin, n, &mut report);
            }
            real_cluster(&cp, &bin, &mut report);
            print!("{}", table(&report.rows));
            for line in &report.raw {
                println!("- {line}");
            }
        }
        _ if only_outbox => {
            let mut report = Report::default();
            let tmp = TempDir::new("bench");
            for workloads in [10, 100] {
                outbox_day(&bin, workloads, &tmp, &mut report);
            }
            print!("{}", table(&report.rows));
            for line in &report.raw {
                println!("- {line}");
            }
        }
        _ if only_render => {
            let mut report = Report::default();
            rendering(&mut report);
            print!("{}", table(&report.rows));
        }
        _ if only_window => {
            let mut report = Report::default();
            report_windows(&mut report);
            print!("{}", table(&report.rows));
            for line in &report.raw {
                println!("- {line}");
            }
        }
        _ if only_memory => {
            let mut report = Report::default();
            idle_rss(&bin, &mut report);
            window_memory(&bin, 1000, &mut report);
            print!("{}", table(&report.rows));
            for line in &report.raw {
                println!("- {line}");
            }
        }
        _ if only_slow => {
            let mut report = Report::default();
            slow_syncs(&bin, &mut report);
            print!("{}", table(&report.rows));
            for line in &report.raw {
                println!("- {line}");
            }
        }
        Some(n) => {
            let mut report = Report::default();
            let _ = syncs(&bin, n, &mut report);
            print!("{}", table(&report.rows));
            for line in &report.raw {
                println!("- {line}");
            }
        }
        None => run(&bin, &Plan::new(quick)),
    }
    ExitCode::SUCCESS
}

/// The soak (a random seed unless one was given; it is printed either way).
fn soak_run(bin: &Path, duration: Duration, seed: Option<u64>) -> ExitCode {
    for w in build_warnings(bin) {
        eprintln!("bench: WARNING: {w}");
    }
    let seed = seed.unwrap_or_else(|| workload_manager::scheduler::Rng::seed_from_os() % 1_000_000);
    if wm_testkit::bench::soak::run(bin, duration, seed) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn usage(problem: &str) -> ExitCode {
    eprintln!("bench: {problem}\n\n{USAGE}");
    ExitCode::from(2)
}

/// Warnings about what is measured: a debug build, or sources newer than the binary.
fn build_warnings(bin: &Path) -> Vec<String> {
    let mut w = Vec::new();
    if bin.parent().and_then(Path::file_name) != Some("release".as_ref()) {
        w.push(format!(
            "{} is not in a `release` directory: make sure it is a release build",
            bin.display()
        ));
    }
    w.extend(wm_testkit::proc::stale_warning(bin));
    w
}

fn run(bin: &Path, plan: &Plan) {
    let machine = Machine::read();
    let warnings = build_warnings(bin);
    for w in &warnings {
        eprintln!("bench: WARNING: {w}");
    }
    let mut report = Report::default();
    let tmp = TempDir::new("bench");

    progress("starting the fake Kubernetes API");
    let kube = FakeKube::builder().namespace("edge").start();
    let backend = wm_testkit::backend::FakeBackend::start();
    let node = workload_manager::identity::NodeIdentity::from_hex(wm_testkit::proc::TEST_KEY)
        .expect("the test key is valid");
    backend.set_workloads(node.address(), &[(WORKLOAD, "1.0.0")]);
    let env: Vec<(String, String)> = vec![
        ("NODE_SYSTEM_ENDPOINT".into(), backend.url()),
        ("WM_KUBE_API_URL".into(), kube.url()),
        (
            "WM_KUBE_TOKEN_FILE".into(),
            kube.token_file().display().to_string(),
        ),
        (
            "WM_KUBE_CA_FILE".into(),
            kube.ca_file().display().to_string(),
        ),
        ("WM_LOG".into(), "info".into()),
    ];

    size(bin, &tmp, &mut report);
    starts(bin, &env, plan, &tmp, &mut report);
    drop(kube);
    drop(backend);
    idle_rss(bin, &mut report);
    long_lived(bin, plan, &tmp, &mut report);
    reporting(&mut report);
    rendering(&mut report);
    report_windows(&mut report);
    for workloads in [10, 100] {
        outbox_day(bin, workloads, &tmp, &mut report);
    }
    let memory: Vec<Option<(f64, f64)>> = [10, 100, 1000]
        .into_iter()
        .map(|n| syncs(bin, n, &mut report))
        .collect();
    if let (Some(small), Some(large)) = (memory[1], memory[2]) {
        growth(small, large, &mut report);
    }
    window_memory(bin, 1000, &mut report);
    slow_syncs(bin, &mut report);
    match wm_testkit::cluster::ControlPlane::from_env() {
        Ok(cp) => real_cluster(&cp, bin, &mut report),
        Err(why) => report
            .raw
            .push(format!("no real control plane rows: {why}")),
    }

    let mut out = String::new();
    let _ = writeln!(out, "## workload-manager benchmark\n");
    let _ = writeln!(
        out,
        "{} · nproc {} · {} · Linux {} · {}\n",
        machine.date,
        machine.nproc,
        machine.cpu,
        machine.kernel,
        plan.describe()
    );
    for w in &warnings {
        let _ = writeln!(out, "**WARNING:** {w}\n");
    }
    out.push_str(&table(&report.rows));
    let _ = writeln!(out, "\nRaw numbers:\n");
    for line in &report.raw {
        let _ = writeln!(out, "- {line}");
    }
    let met = report.rows.iter().filter(|r| r.ok == Some(true)).count();
    let judged = report.rows.iter().filter(|r| r.ok.is_some()).count();
    let _ = writeln!(out, "\n{met} of {judged} targets met.");
    print!("{out}");
}

/// The rows against the real control plane, beside the fake's.
fn real_cluster(cp: &wm_testkit::cluster::ControlPlane, bin: &Path, report: &mut Report) {
    let mut out = wm_testkit::bench::cluster::Out {
        rows: &mut report.rows,
        raw: &mut report.raw,
    };
    for n in [100, 1000] {
        progress(&format!(
            "syncs with {n} workloads on the real control plane"
        ));
        wm_testkit::bench::cluster::syncs(cp, bin, n, &mut out);
    }
    progress("self-update on the real control plane");
    wm_testkit::bench::cluster::self_update(cp, bin, &mut out);
}

/// Memory per managed workload between 100 and 1,000 of them, beyond the
/// cached manifests (compact JSON text, as the manager keeps them): the heap
/// in use (`wm_heap_bytes`), judged, and resident memory, which adds the
/// free space a fragmented heap keeps.
fn growth(small: (f64, f64), large: (f64, f64), report: &mut Report) {
    use wm_testkit::backend::sample_manifest;
    let manifest_bytes: usize = (100..1000)
        .map(|i| {
            let name = format!("w{i:04}");
            sample_manifest(&name, &format!("registry.example/{name}:1"))
                .to_string()
                .len()
        })
        .sum();
    let manifest = manifest_bytes as f64 / 900.0 / 1024.0;
    let heap = (large.1 - small.1) / 900.0;
    let rss = (large.0 - small.0) / 900.0;
    report.rows.push(Row::below(
        "heap growth per managed workload from 100 to 1,000, beyond the cached manifests (wm_heap_bytes)",
        heap - manifest,
        2.0,
        "KiB",
        2,
    ));
    report.rows.push(Row::info(
        "RSS growth per managed workload from 100 to 1,000, beyond the cached manifests",
        format!("{:.2} KiB", rss - manifest),
    ));
    report.raw(format!(
        "growth per workload: heap {heap:.2} KiB, RSS {rss:.2} KiB, of which the cached manifest text is {manifest:.2} KiB"
    ));
}

/// Syncs with `n` desired workloads: the initial sync's wall time, then
/// idle syncs (nothing changed): requests and main-thread CPU, median of 5;
/// and resident memory and heap in use (KiB, returned) with all of them managed.
fn syncs(bin: &Path, n: usize, report: &mut Report) -> Option<(f64, f64)> {
    progress(&format!("syncs with {n} workloads"));
    let node = FakeNode::new();
    let (kube, backend) = (&node.kube, &node.backend);
    backend.want_samples(wm_testkit::node::TEST_ADDRESS, n);
    let started = Instant::now();
    let mut m = start_against(bin, &node, &[]);
    let deadline = started + Duration::from_secs(120);
    // Version reports come after each create: cheaper to poll than the cluster.
    while backend.applied_versions().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let initial = started.elapsed();
    if kube.deployments().len() < n {
        report.rows.push(Row::failed(
            &format!("initial sync of {n} workloads"),
            "not done within 120 s",
            "< 30 s",
        ));
        return None;
    }
    // Let the rollouts complete and the manager see it, so the next syncs are idle.
    kube.settle();
    sync_and_wait(&mut m);
    sync_and_wait(&mut m);
    let (mut cpu_ms, mut requests) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        let (km, bm) = (kube.mark(), backend.mark());
        let cpu0 = sys::sched_by_thread(m.pid())
            .get("main")
            .map_or(0, |s| s.cpu_ns);
        sync_and_wait(&mut m);
        let cpu1 = sys::sched_by_thread(m.pid())
            .get("main")
            .map_or(0, |s| s.cpu_ns);
        cpu_ms.push(cpu1.saturating_sub(cpu0) as f64 / 1e6);
        // Lease renewals (every 5 s, whatever the sync does) are not the sync's.
        let kube_calls = kube
            .requests_since(km)
            .iter()
            .filter(|r| !r.path.contains("/leases"))
            .count();
        requests.push((kube_calls + backend.requests_since(bm).len()) as f64);
    }
    let rss_kib = m.proc_status("VmRSS") as f64;
    let heap_kib = m.metric("wm_heap_bytes").unwrap_or(0.0) / 1024.0;
    let limit_ms = match n {
        10 => 2.0,
        100 => 5.0,
        _ => 40.0,
    };
    report.rows.push(Row::below(
        &format!("initial sync of {n} workloads (create, version report), wall time"),
        initial.as_secs_f64(),
        30.0,
        "s",
        2,
    ));
    report.rows.push(Row::below(
        &format!(
            "idle sync with {n} workloads: requests in total (Kubernetes + backend), median of 5"
        ),
        median(&requests),
        2.5,
        "",
        0,
    ));
    report.rows.push(Row::below(
        &format!("idle sync with {n} workloads: main-thread CPU (incl. answering the status polls), median of 5"),
        median(&cpu_ms),
        limit_ms,
        "ms",
        2,
    ));
    report.rows.push(Row::info(
        &format!("RSS (heap in use) with {n} managed workloads, manifests cached"),
        format!("{:.2} MiB ({:.2} MiB)", rss_kib / 1024.0, heap_kib / 1024.0),
    ));
    let by_mapping: Vec<String> = sys::rss_by_mapping(m.pid())
        .iter()
        .take(5)
        .map(|(name, kb)| format!("{name} {kb}"))
        .collect();
    report.raw.push(format!(
        "{n} workloads: idle sync CPU ms {cpu_ms:?}, requests {requests:?}, RSS {rss_kib} kB ({}), threads {}",
        by_mapping.join(", "),
        sys::thread_names(m.pid()).values().sum::<usize>()
    ));
    Some((rss_kib, heap_kib))
}

/// GETs of the namespace's pod list (one per report window) answered 200 since `mark`.
fn pod_lists(kube: &FakeKube, mark: wm_testkit::kube::Mark) -> usize {
    kube.requests_since(mark)
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/pods") && r.status == Some(200))
        .count()
}

/// Resident memory with `n` desired workloads, all deployed and each with
/// its pod in the fake, once at least 3 report windows 2 s apart (each
/// reading the Node, the Deployments and the `n` pods) have closed: VmRSS,
/// and VmHWM, the peak since start (the initial sync included).
fn window_memory(bin: &Path, n: usize, report: &mut Report) {
    const WINDOWS: usize = 3;
    progress(&format!(
        "RSS with {n} workloads and their pods over {WINDOWS} report windows"
    ));
    let node = FakeNode::new();
    let (kube, backend) = (&node.kube, &node.backend);
    backend.want_samples(wm_testkit::node::TEST_ADDRESS, n);
    let m = start_against(bin, &node, &[("WM_REPORT_INTERVAL", "2s")]);
    let what = format!("RSS with {n} managed workloads and their {n} pods, after {WINDOWS} report windows 2 s apart (VmRSS)");
    let what_peak =
        format!("peak RSS of that run since start: initial sync of {n} and the windows (VmHWM)");
    let deadline = Instant::now() + Duration::from_secs(180);
    while backend.applied_versions().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    kube.settle();
    let mark = kube.mark();
    while pod_lists(kube, mark) < WINDOWS && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    // The window of the last list closes when its report run ends.
    let runs = m.job_runs("report");
    while m.job_runs("report") <= runs && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let pods = kube.pods().len();
    if kube.deployments().len() < n || pods < n || pod_lists(kube, mark) < WINDOWS {
        let why = format!(
            "{} Deployments, {pods} pods, {} pod lists within 180 s",
            kube.deployments().len(),
            pod_lists(kube, mark)
        );
        report.rows.push(Row::failed(&what, &why, "< 24 MiB"));
        return;
    }
    let (rss, peak) = (m.proc_status("VmRSS") as f64, m.proc_status("VmHWM") as f64);
    report
        .rows
        .push(Row::below(&what, rss / MIB, 24.0, "MiB", 2));
    report
        .rows
        .push(Row::below(&what_peak, peak / MIB, 24.0, "MiB", 2));
    report.raw(format!(
        "{n} workloads over report windows: {} pod lists of {} bytes each, VmRSS {rss} kB, VmHWM {peak} kB, heap in use {:.0} KiB, {} threads; RSS by mapping kB: {}",
        pod_lists(kube, mark),
        kube.list_body("pods", "").len(),
        m.metric("wm_heap_bytes").unwrap_or(f64::NAN) / 1024.0,
        m.proc_status("Threads"),
        sys::rss_by_mapping(m.pid())
            .iter()
            .take(5)
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

/// Starts `bin` against the node's fakes, reports and update checks an
/// hour apart (out of the way), with `extra` added.
fn start_against(bin: &Path, node: &FakeNode, extra: &[(&str, &str)]) -> Manager {
    let mut env = vec![
        ("WM_REPORT_INTERVAL", "1h"),
        ("WM_UPDATE_INTERVAL", "1h"),
        ("WM_LOG", "info"),
    ];
    env.extend_from_slice(extra);
    node.start(bin, &env)
}

/// The slow-API rows: 200 and 1,000 workloads at 20 ms and 50 ms a call.
fn slow_syncs(bin: &Path, report: &mut Report) {
    for n in [200, 1000] {
        for ms in [20, 50] {
            slow_sync(bin, n, Duration::from_millis(ms), report);
        }
    }
}

/// The initial sync of `n` workloads against a Kubernetes API that answers
/// every call after `latency`: wall time until every version is
/// acknowledged, calls made (Kubernetes without the Lease, and backend), and
/// Lease transitions (0: leadership held throughout).
fn slow_sync(bin: &Path, n: usize, latency: Duration, report: &mut Report) {
    let ms = latency.as_millis();
    progress(&format!(
        "initial sync of {n} workloads at {ms} ms per Kubernetes call"
    ));
    let node = FakeNode::new();
    let (kube, backend) = (&node.kube, &node.backend);
    kube.set_latency(latency);
    backend.want_samples(wm_testkit::node::TEST_ADDRESS, n);
    let started = Instant::now();
    let m = start_against(bin, &node, &[("WM_SYNC_INTERVAL", "1h")]);
    let limit = Duration::from_secs(60) + latency * (3 * n as u32);
    while backend.applied_versions().len() < n && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(50));
    }
    let took = started.elapsed();
    let what = format!(
        "initial sync of {n} workloads, Kubernetes API answering in {ms} ms: wall time; calls (Kubernetes without the Lease + backend)"
    );
    if backend.applied_versions().len() < n {
        report.rows.push(Row::failed(
            &what,
            &format!("not done within {limit:?}"),
            "",
        ));
        return;
    }
    let kube_calls = kube
        .log()
        .iter()
        .filter(|r| !r.path.contains("/leases"))
        .count();
    let backend_calls = backend.log().len();
    report.rows.push(Row::info(
        &what,
        format!(
            "{:.1} s; {} ({kube_calls} + {backend_calls})",
            took.as_secs_f64(),
            kube_calls + backend_calls
        ),
    ));
    let transitions = kube
        .lease("workload-manager")
        .and_then(|l| l["spec"]["leaseTransitions"].as_i64())
        .unwrap_or(-1);
    let lost = m
        .log()
        .iter()
        .filter(|l| l.contains("no longer leading"))
        .count();
    report.rows.push(Row::below(
        &format!("initial sync of {n} workloads at {ms} ms per call: Lease transitions, and leadership lost"),
        (transitions.max(0) as usize + lost) as f64,
        0.5,
        "",
        0,
    ));
    report.raw.push(format!(
        "{n} workloads at {ms} ms: {took:?}, {kube_calls} Kubernetes + {backend_calls} backend calls, {transitions} Lease transitions, leadership lost {lost} times"
    ));
}

/// A node's state with `workloads` desired workloads that all report healthy,
/// for building reports in process.
struct HealthyNode {
    state: workload_manager::state::State,
    names: Vec<String>,
    t0: Instant,
}

impl HealthyNode {
    fn new(workloads: usize) -> HealthyNode {
        use workload_manager::state::{Identity, State};
        let t0 = Instant::now();
        let identity = Identity {
            version: "bench",
            namespace: "edge".into(),
            pod_name: "bench".into(),
            node_address: Some(wm_testkit::node::TEST_ADDRESS.into()),
        };
        let mut state = State::new(identity, Duration::from_secs(30), t0);
        let desired: std::collections::BTreeMap<String, String> = (0..workloads)
            .map(|i| (format!("workload-{i}"), "1.4.0".to_string()))
            .collect();
        state
            .workloads
            .set_desired(desired.keys().cloned().collect(), t0);
        let names = desired.keys().cloned().collect();
        state.desired = Some(desired);
        HealthyNode { state, names, t0 }
    }

    /// Every workload says it is healthy at the end of minute `minute`
    /// (from 0); returns that time.
    fn minute(&mut self, minute: u64) -> Instant {
        use workload_manager::workloads::Reported;
        let now = self.t0 + Duration::from_secs(60 * (minute + 1));
        for name in &self.names {
            let _ = self.state.workloads.record(
                name,
                Reported::Healthy,
                "serving",
                now,
                SystemTime::now(),
            );
        }
        now
    }
}

/// A day offline: 1,440 one-minute reports of `workloads` workloads queued
/// in the outbox file, then a manager started on it (backend unreachable):
/// its resident memory once loaded, and the peak while loading.
fn outbox_day(bin: &Path, workloads: usize, tmp: &TempDir, report: &mut Report) {
    use workload_manager::outbox::Outbox;
    progress(&format!("a day of queued reports, {workloads} workloads"));
    let dir = tmp.0.join(format!("outbox-{workloads}"));
    let _ = std::fs::create_dir_all(&dir);
    let (mut outbox, _) = Outbox::open(&dir);
    let mut node = HealthyNode::new(workloads);
    for minute in 0..1440u64 {
        let now = node.minute(minute);
        let queued =
            workload_manager::report::close_window(&mut node.state, now, SystemTime::now());
        if outbox.push(queued).is_err() {
            report.rows.push(Row::failed(
                "outbox of a day",
                "cannot write the outbox",
                "",
            ));
            return;
        }
    }
    let (queued, bytes) = (outbox.len(), outbox.bytes());
    drop(outbox);
    let dir_text = dir.display().to_string();
    let mut m = Manager::start(
        bin,
        &[("WM_STATE_DIR", dir_text.as_str()), ("WM_LOG", "info")],
    );
    let loaded = m.wait_for_log("undelivered report(s)", Duration::from_secs(10));
    let (rss, peak) = (m.proc_status("VmRSS") as f64, m.proc_status("VmHWM") as f64);
    report.rows.push(Row::info(
        &format!(
            "RSS after a restart with a day of queued reports ({workloads} workloads: {queued} reports, {:.1} MiB; peak while loading)",
            bytes as f64 / 1024.0 / MIB
        ),
        format!("{:.2} MiB (peak {:.2} MiB)", rss / MIB, peak / MIB),
    ));
    report.raw(format!(
        "outbox of a day, {workloads} workloads: {queued} reports queued (capacity {}), {bytes} bytes, loaded: {}, VmRSS {rss} kB, VmHWM {peak} kB",
        workload_manager::outbox::CAPACITY,
        if loaded.is_empty() { "no" } else { "yes" }
    ));
}

/// Building one health report for 100 workloads and signing its delivery,
/// in process, on the library's own code: median of 200 runs.
fn reporting(report: &mut Report) {
    use workload_manager::identity::NodeIdentity;
    progress("report building and signing");
    let signer = NodeIdentity::from_hex(wm_testkit::proc::TEST_KEY).expect("the test key is valid");
    let mut node = HealthyNode::new(100);
    let mut times = Vec::new();
    for round in 0..200u64 {
        let now = node.minute(round);
        let started = Instant::now();
        let queued =
            workload_manager::report::close_window(&mut node.state, now, SystemTime::now());
        let body = format!("{{\"reports\":[{}]}}", queued.json);
        let signed = signer.sign_request(
            "POST",
            "/api/v1/nodes/x/health",
            1_795_867_200,
            body.as_bytes(),
        );
        times.push(started.elapsed().as_secs_f64() * 1000.0);
        std::hint::black_box(signed);
    }
    let median_ms = median(&times);
    report.rows.push(Row::below(
        "build one health report for 100 workloads and sign its delivery (in process), median of 200",
        median_ms,
        1.0,
        "ms",
        3,
    ));
    report.raw.push(format!(
        "report build + sign, ms: median {median_ms:.3}, p90 {:.3}",
        percentile(&times, 90.0)
    ));
}

/// What one report window reads, as the fake serves it, for Deployments
/// made as the manager makes them (the sample manifest with our labels and
/// version annotation, POSTed) and their pods once ready (as the controller,
/// admission and the kubelet write them, managedFields included).
struct WindowBodies {
    node_name: String,
    node: Vec<u8>,
    deployments: Vec<u8>,
    pods: Vec<u8>,
}

impl WindowBodies {
    fn of(names: &[String]) -> Result<WindowBodies, String> {
        use workload_manager::reconcile::{prepare, LABEL_MANAGED_BY};
        let kube = FakeKube::builder().namespace("edge").start();
        for name in names {
            let manifest = wm_testkit::backend::sample_manifest(name, "registry.example/app:1.4.0");
            kube.put_deployment_raw(
                "workload-manager",
                prepare(name, "1.4.0", "edge", &manifest)?,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        let all_ready = || {
            let deployments = kube.deployments();
            deployments
                .iter()
                .all(|d| wm_testkit::kube::rollout_complete(d) == Ok(true))
                && kube.pods().len() == names.len()
        };
        while !all_ready() {
            if Instant::now() > deadline {
                return Err("the fake's pods not all ready within 60 s".into());
            }
            kube.settle();
        }
        let managed = format!("{}={}", LABEL_MANAGED_BY.0, LABEL_MANAGED_BY.1);
        Ok(WindowBodies {
            node_name: kube.node_name().to_string(),
            node: kube.node().to_string().into_bytes(),
            deployments: kube.list_body("deployments", &managed),
            pods: kube.list_body("pods", ""),
        })
    }
}

/// One report window's main-thread work for 10, 100 and 1,000 workloads, in
/// process and without the network: decoding the Node, the managed
/// Deployments and the namespace's pods from the fake's bodies, refreshing
/// the views, diagnosing, sampling the kernel (`Host::sample` on "/"), and
/// closing the window into a report: median of 50 windows each.
fn report_windows(report: &mut Report) {
    use workload_manager::kube::{Deployment, Node};
    use workload_manager::pods::PodList;
    use workload_manager::report as wm_report;
    #[derive(serde::Deserialize)]
    struct DeploymentList {
        items: Vec<Deployment>,
    }
    const RUNS: usize = 50;
    for (n, target_ms) in [(10, None), (100, Some(5.0)), (1000, Some(50.0))] {
        progress(&format!("report window with {n} workloads, in process"));
        let mut node = HealthyNode::new(n);
        let what = format!(
            "report window with {n} workloads, main thread, in process: decode Node, Deployments and {n} pods, refresh views, diagnose, sample /proc, close; median of {RUNS}"
        );
        let bodies = match WindowBodies::of(&node.names) {
            Ok(b) => b,
            Err(why) => {
                let target = target_ms.map_or(String::new(), |t| format!("< {t} ms"));
                report.rows.push(Row::failed(&what, &why, &target));
                continue;
            }
        };
        let state = &mut node.state;
        state.node =
            workload_manager::node::view::NodeView::new(Some(bodies.node_name.clone()), node.t0);
        // What the syncs left: a view of each Deployment.
        let listed: DeploymentList =
            serde_json::from_slice(&bodies.deployments).expect("the fake's list decodes");
        for d in &listed.items {
            state.deployments.insert(
                d.metadata.name.clone(),
                workload_manager::state::DeploymentView::of(d),
            );
        }
        let mut host = workload_manager::node::proc::Host::new("/");
        // Milliseconds per run: decoding the three bodies, refresh + diagnose, /proc, close.
        let mut phases: Vec<[f64; 4]> = Vec::new();
        for round in 0..RUNS as u64 {
            let now = node.minute(round);
            let state = &mut node.state;
            let t0 = Instant::now();
            let got: Result<Node, _> = serde_json::from_slice(&bodies.node);
            state.node.set_object(Ok(got.ok()));
            let listed: DeploymentList =
                serde_json::from_slice(&bodies.deployments).expect("decodes");
            let pods: PodList = serde_json::from_slice(&bodies.pods).expect("decodes");
            let t1 = Instant::now();
            wm_report::refresh_views(state, &listed.items);
            wm_report::diagnose(state, &listed.items, &pods.items);
            drop((listed, pods));
            let t2 = Instant::now();
            let sample = host.sample();
            state.node.observe(sample, now);
            let t3 = Instant::now();
            let queued = wm_report::close_window(state, now, SystemTime::now());
            let t4 = Instant::now();
            std::hint::black_box(queued);
            phases.push([ms(t1 - t0), ms(t2 - t1), ms(t3 - t2), ms(t4 - t3)]);
        }
        let total: Vec<f64> = phases.iter().map(|p| p.iter().sum()).collect();
        let phase = |i: usize| median(&phases.iter().map(|p| p[i]).collect::<Vec<_>>());
        report.rows.push(match target_ms {
            Some(t) => Row::below(&what, median(&total), t, "ms", 2),
            None => Row::info(&what, format!("{} ms", num(median(&total), 2))),
        });
        report.raw(format!(
            "report window, {n} workloads: bodies: pod list {} bytes ({:.1} KiB a pod), Deployment list {} bytes, Node {} bytes; ms: median {:.2}, p90 {:.2}; median by phase: decode {:.2}, refresh + diagnose {:.2}, /proc sample {:.2}, close {:.2}",
            bodies.pods.len(),
            bodies.pods.len() as f64 / n as f64 / 1024.0,
            bodies.deployments.len(),
            bodies.node.len(),
            median(&total),
            percentile(&total, 90.0),
            phase(0),
            phase(1),
            phase(2),
            phase(3)
        ));
    }
}

/// Rendering `/v1/status` (JSON) and `/metrics` in process, as the main
/// thread does for every poll: median of 200 renders of each.
fn rendering(report: &mut Report) {
    progress("status and metrics rendering");
    let wall = SystemTime::now();
    for (workloads, target_ms) in [(200, None), (1000, Some(1.0))] {
        let mut node = HealthyNode::new(workloads);
        let now = node.minute(0);
        let time = |f: &dyn Fn() -> usize| {
            let mut times: Vec<f64> = (0..200)
                .map(|_| {
                    let started = Instant::now();
                    std::hint::black_box(f());
                    started.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            times.sort_by(f64::total_cmp);
            median(&times)
        };
        let state = &node.state;
        let status_ms = time(&|| workload_manager::status::json_text(state, now, wall).len());
        let bytes = workload_manager::status::json_text(state, now, wall).len();
        let metrics_ms = time(&|| workload_manager::metrics::render(state, now, wall).len());
        let what = format!(
            "render /v1/status JSON for {workloads} workloads ({} KiB), in process, median of 200",
            bytes / 1024
        );
        let what_m =
            format!("render /metrics for {workloads} workloads, in process, median of 200");
        match target_ms {
            Some(t) => {
                report.rows.push(Row::below(&what, status_ms, t, "ms", 3));
                report
                    .rows
                    .push(Row::below(&what_m, metrics_ms, t, "ms", 3));
            }
            None => {
                report
                    .rows
                    .push(Row::info(&what, format!("{status_ms:.3} ms")));
                report
                    .rows
                    .push(Row::info(&what_m, format!("{metrics_ms:.3} ms")));
            }
        }
    }
}

/// 1. Binary size, stripped.
fn size(bin: &Path, tmp: &TempDir, report: &mut Report) {
    progress("binary size");
    let what = "release binary size (stripped)";
    let Ok(len) = std::fs::metadata(bin).map(|m| m.len()) else {
        report
            .rows
            .push(Row::failed(what, "cannot stat", "< 3.5 MiB"));
        return;
    };
    let mut stripped = len;
    let copy = tmp.0.join("workload-manager.stripped");
    match sys::which("strip") {
        Some(strip) if std::fs::copy(bin, &copy).is_ok() => {
            let ok = std::process::Command::new(strip)
                .arg(&copy)
                .status()
                .is_ok_and(|s| s.success());
            match std::fs::metadata(&copy).map(|m| m.len()) {
                Ok(n) if ok => {
                    stripped = n;
                    report.raw(format!(
                        "binary: {} is {len} bytes; after `strip` {n} bytes (strip removed {} bytes)",
                        bin.display(),
                        len.saturating_sub(n)
                    ));
                }
                _ => report.raw(format!(
                    "binary: {} is {len} bytes; `strip` failed, size as built",
                    bin.display()
                )),
            }
        }
        _ => report.raw(format!(
            "binary: {} is {len} bytes (no `strip` found; size as built, release profile has strip = true)",
            bin.display()
        )),
    }
    report
        .rows
        .push(Row::below(what, stripped as f64 / MIB / MIB, 3.5, "MiB", 2));
}

/// 2. Spawn → serving and spawn → ready.
fn starts(bin: &Path, env: &[(String, String)], plan: &Plan, tmp: &TempDir, report: &mut Report) {
    progress(&format!(
        "start-up: {} starts, {} of them until ready (seconds each)",
        plan.starts + 1,
        plan.ready_starts
    ));
    let env = startup::base_env(env);
    let log = tmp.0.join("start.log");
    let (mut serving, mut ready, mut failures) = (Vec::new(), Vec::new(), Vec::new());
    let warm = startup::measure(bin, &env, false, &log);
    for i in 0..plan.starts {
        match startup::measure(bin, &env, i < plan.ready_starts, &log) {
            Ok(s) => {
                serving.push(ms(s.serving));
                ready.extend(s.ready.map(ms));
            }
            Err(e) => failures.push(e),
        }
    }
    let what = format!(
        "start-to-serving: spawn → first 200 on /healthz, median of {} starts (p90)",
        serving.len()
    );
    if serving.is_empty() {
        report.rows.push(Row::failed(
            &what,
            failures.first().map_or("no start", String::as_str),
            "< 20 ms",
        ));
    } else {
        let mut row = Row::below(&what, median(&serving), 20.0, "ms", 2);
        row.value = format!("{} (p90 {:.2} ms)", row.value, percentile(&serving, 90.0));
        report.rows.push(row);
    }
    if !ready.is_empty() {
        report.rows.push(Row::info(
            &format!(
                "spawn → first 200 on /readyz (ready once the fake Kube API answers the first Lease call), median of {}",
                ready.len()
            ),
            format!("{} ms", num(median(&ready), 0)),
        ));
    }
    report.raw(format!(
        "start-to-serving ms, in order (polling a new connection every {} µs): [{}]; warm-up start not counted: {}",
        startup::POLL_EVERY.as_micros(),
        ms_list(&serving),
        match &warm {
            Ok(s) => format!("{:.2} ms", ms(s.serving)),
            Err(e) => format!("failed: {e}"),
        }
    ));
    if !ready.is_empty() {
        report.raw(format!(
            "spawn-to-ready ms, in order: [{}]",
            ms_list(&ready)
        ));
    }
    for f in failures {
        report.raw(format!("FAILED start: {f}"));
    }
}

/// Workloads of the long-lived manager: [`WORKLOAD`] and nine more.
const IDLE_WORKLOADS: usize = 10;

/// Asks for a sync and waits (at most 60 s) until one has run.
fn sync_and_wait(m: &mut Manager) {
    let before = m.job_runs("sync");
    m.post("/v1/sync", "application/json", "");
    let until = Instant::now() + Duration::from_secs(60);
    while m.job_runs("sync") <= before && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// 3: a manager with no workloads: resident memory 10 s after its first
/// sync, and what makes it up.
fn idle_rss(bin: &Path, report: &mut Report) {
    progress("idle RSS with no workloads: 10 s after the first sync");
    let node = FakeNode::new();
    node.want(&[]);
    let m = node.start(bin, &[("WM_LOG", "info")]);
    let pid = m.pid();
    let until = Instant::now() + Duration::from_secs(15);
    while m.job_runs("sync") == 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let synced = m.job_runs("sync") > 0;
    std::thread::sleep(Duration::from_secs(10));
    let rss = m.proc_status("VmRSS");
    let threads = m.proc_status("Threads");
    let rollup = sys::smaps_rollup(pid);
    let by_mapping = sys::rss_by_mapping(pid);
    let names = sys::thread_names(pid);
    report.rows.push(Row::below(
        "idle RSS with no workloads, 10 s after the first sync (VmRSS)",
        rss as f64 / MIB,
        5.0,
        "MiB",
        2,
    ));
    report
        .rows
        .push(Row::info("threads, idle", threads.to_string()));
    report.raw(format!(
        "idle, no workloads{}: VmRSS {rss} kB, {threads} threads ({})",
        if synced { "" } else { " (NO sync within 15 s)" },
        names
            .iter()
            .map(|(n, c)| format!("{c}× {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    report.raw(format!(
        "idle smaps_rollup kB: {}",
        rollup
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "Rss"
                        | "Pss"
                        | "Shared_Clean"
                        | "Private_Clean"
                        | "Private_Dirty"
                        | "Anonymous"
                        | "Swap"
                )
            })
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    report.raw(format!(
        "idle RSS by mapping kB: {}",
        by_mapping
            .iter()
            .take(8)
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

/// 4–8. One long-lived manager with [`IDLE_WORKLOADS`] workloads, all
/// deployed with their pods: idle, then heartbeats at full speed.
fn long_lived(bin: &Path, plan: &Plan, tmp: &TempDir, report: &mut Report) {
    progress(&format!(
        "starting the long-lived manager: {IDLE_WORKLOADS} workloads with their pods"
    ));
    let node = FakeNode::new();
    let names: Vec<String> = std::iter::once(WORKLOAD.to_string())
        .chain((1..IDLE_WORKLOADS).map(|i| format!("idle-{i}")))
        .collect();
    let wanted: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1.0.0")).collect();
    node.want(&wanted);
    // One report window per idle window, as the default minute does for 60 s.
    let interval = format!("{}s", plan.idle.as_secs());
    let mut m = node.start(
        bin,
        &[
            ("WM_LOG", "info"),
            ("WM_REPORT_INTERVAL", interval.as_str()),
        ],
    );
    let (pid, addr) = (m.pid(), m.addr);
    let t = Instant::now();
    while node.backend.applied_versions().len() < IDLE_WORKLOADS
        && t.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let deployed = node.backend.applied_versions().len();
    // Let the rollouts complete and the manager see it, so what follows is idle.
    node.kube.settle();
    sync_and_wait(&mut m);
    // Start just after a report window (the first closes 0.9 to 1.9
    // intervals after leading): the next closes one interval later, inside
    // the idle window.
    let first_window = node
        .backend
        .wait_for_reports(1, plan.idle * 2 + Duration::from_secs(15));
    report.raw(format!(
        "long-lived manager pid {pid} on {addr}: {deployed} of {IDLE_WORKLOADS} workloads deployed, {} pods, NODE_NAME {}, report interval {interval}; first report {} after {:.1} s{}",
        node.kube.pods().len(),
        node.kube.node_name(),
        if first_window { "delivered" } else { "NOT delivered" },
        t.elapsed().as_secs_f64(),
        if deployed < IDLE_WORKLOADS { " (NOT all deployed: idle figures are for a manager still syncing)" } else { "" },
    ));

    idle(&mut m, &node.kube, plan, report);
    under_load(&mut m, plan, tmp, report);

    let alive = m.alive();
    if !alive {
        report.raw("the manager was NOT running at the end of the bench");
    }
    let log = m.log();
    let warnings: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("WARN") || l.contains("ERROR"))
        .collect();
    report.raw(format!(
        "manager log: {} lines, {} at WARN or ERROR{}",
        log.len(),
        warnings.len(),
        if warnings.is_empty() { "" } else { ":" }
    ));
    // Shown, not just counted: a warning in a benchmark run is a finding.
    for line in warnings.iter().take(20) {
        report.raw(format!("  {line}"));
    }
}

/// CPU over the idle window (in which one report window falls: the report
/// interval is the idle window's length), scaled to a minute, and the
/// resident memory 10 s into it.
fn idle(m: &mut Manager, kube: &FakeKube, plan: &Plan, report: &mut Report) {
    let pid = m.pid();
    progress(&format!(
        "idle: {} s window (RSS at 10 s)",
        plan.idle.as_secs()
    ));
    std::thread::sleep(Duration::from_secs(1));
    let clk = sys::clock_ticks();
    let t0 = Instant::now();
    let mark = kube.mark();
    let (ticks0, sched0, tids0) = (
        sys::cpu_ticks(pid),
        sys::sched_total(pid),
        sys::thread_ids(pid),
    );
    let rss_at = Duration::from_secs(10).min(plan.idle);
    std::thread::sleep(rss_at);
    let rss = m.proc_status("VmRSS");
    std::thread::sleep(plan.idle.saturating_sub(t0.elapsed()));
    let window = t0.elapsed();
    let (ticks1, sched1, tids1) = (
        sys::cpu_ticks(pid),
        sys::sched_total(pid),
        sys::thread_ids(pid),
    );
    let calls = kube.requests_since(mark);
    let count = |f: &dyn Fn(&str) -> bool| calls.iter().filter(|r| f(&r.path)).count();
    let windows = pod_lists(kube, mark);
    let reads = format!(
        "{} Node, {} Deployment list, {windows} pod list, {} Lease, {} other",
        count(&|p| p.starts_with("/api/v1/nodes/")),
        count(&|p| p.ends_with("/deployments")),
        count(&|p| p.contains("/leases")),
        count(&|p| {
            !(p.starts_with("/api/v1/nodes/")
                || p.ends_with("/deployments")
                || p.ends_with("/pods")
                || p.contains("/leases"))
        })
    );

    report.rows.push(Row::info(
        &format!("idle RSS with {IDLE_WORKLOADS} workloads and their pods, 10 s into the idle window (VmRSS)"),
        format!("{} MiB", num(rss as f64 / MIB, 2)),
    ));
    let per_minute = 60.0 / window.as_secs_f64();
    // Nanoseconds when the same threads were there at both ends and the
    // ticks (which count exited threads too) show nothing more, to within
    // the 2 ticks of truncating both readings; else the ticks, 10 ms each,
    // as coarse as half the target.
    let d = sched1.since(sched0);
    let ticks = ticks0.zip(ticks1).map(|(a, b)| b.saturating_sub(a));
    let sched_s = d.cpu_ns as f64 / 1e9;
    let ticks_agree = ticks.is_none_or(|t| (t as f64 - 2.0) / clk as f64 <= sched_s);
    let (cpu_s, how) = if tids0 == tids1 && ticks_agree {
        (
            Some(d.cpu_ns as f64 / 1e9),
            "schedstat of its threads, the same ones throughout",
        )
    } else {
        let cpu = ticks.map(|t| t as f64 / clk as f64);
        (cpu, "utime+stime: threads came and went")
    };
    let what = format!(
        "idle CPU with {IDLE_WORKLOADS} workloads and their pods over {} s idle holding {windows} report window(s) (Node, Deployments, pods, /proc): {how}{}, per idle minute",
        window.as_secs(),
        if plan.quick { ", scaled to 60 s" } else { "" }
    );
    match cpu_s {
        Some(cpu) => {
            let mut row = Row::below(&what, cpu * per_minute, 0.02, "CPU-s", 4);
            if windows == 0 {
                row.value = format!(
                    "{} (no report window: not what the target means)",
                    row.value
                );
                row.ok = Some(false);
            }
            report.rows.push(row);
        }
        None => report.rows.push(Row::failed(
            &what,
            "/proc/PID/stat unreadable",
            "< 0.02 CPU-s",
        )),
    }
    report.rows.push(Row::info(
        "idle CPU by utime+stime (ticks of 10 ms, exited threads included), per idle minute; wake-ups per second (schedstat)",
        format!(
            "{} CPU-s; {:.1} wake-ups/s",
            ticks.map_or("unreadable".into(), |t| num(
                t as f64 / clk as f64 * per_minute,
                2
            )),
            d.runs as f64 / window.as_secs_f64()
        ),
    ));
    report.raw(format!(
        "idle CPU: {} ns by schedstat, {} ticks (1 tick = {:.0} ms) in {:.1} s; threads {tids0:?} → {tids1:?}; Kubernetes calls in it: {reads}",
        d.cpu_ns,
        ticks.map_or("unreadable".into(), |t| t.to_string()),
        1e3 / clk as f64,
        window.as_secs_f64()
    ));
}

/// Manager CPU and per-thread schedstat over a stretch of load.
struct CpuWindow {
    pid: u32,
    start: Instant,
    ticks: Option<u64>,
    sched: std::collections::BTreeMap<String, Sched>,
}

impl CpuWindow {
    fn start(pid: u32) -> CpuWindow {
        CpuWindow {
            pid,
            start: Instant::now(),
            ticks: sys::cpu_ticks(pid),
            sched: sys::sched_by_thread(pid),
        }
    }

    /// "manager used 1.23 cores (main 0.9, ...)".
    fn finish(self) -> String {
        let wall = self.start.elapsed().as_secs_f64();
        let cores = match (self.ticks, sys::cpu_ticks(self.pid)) {
            (Some(a), Some(b)) => (b - a) as f64 / sys::clock_ticks() as f64 / wall,
            _ => f64::NAN,
        };
        let after = sys::sched_by_thread(self.pid);
        let mut per: Vec<(String, f64)> = after
            .iter()
            .map(|(name, s)| {
                let before = self.sched.get(name).copied().unwrap_or_default();
                (name.clone(), s.since(before).cpu_ns as f64 / 1e9 / wall)
            })
            .filter(|(_, c)| *c >= 0.005)
            .collect();
        per.sort_by(|a, b| b.1.total_cmp(&a.1));
        format!(
            "manager used {cores:.2} cores (utime+stime); by thread (schedstat, live threads): {}",
            per.iter()
                .map(|(n, c)| format!("{n} {c:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn under_load(m: &mut Manager, plan: &Plan, tmp: &TempDir, report: &mut Report) {
    let pid = m.pid();
    let addr = m.addr;
    // The desired state (which names WORKLOAD) arrives with the first sync.
    let deadline = Instant::now() + Duration::from_secs(15);
    let first = loop {
        let r = m.post(
            &format!("/v1/workloads/{WORKLOAD}/health"),
            "application/json",
            load::HEARTBEAT_BODY,
        );
        if r.status == 204 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    report.raw(format!(
        "a single heartbeat POST answered {} (expected 204)",
        first.status
    ));
    let request = load::heartbeat_request(addr, WORKLOAD);
    let sampler = Sampler::start(pid, Duration::from_millis(5));

    progress(&format!(
        "load: built-in client, {CONNECTIONS} connections, warm-up + {} × {} s",
        plan.rounds,
        plan.round.as_secs()
    ));
    let warm = load::run(addr, &request, 204, CONNECTIONS, plan.warm_up);
    report.raw(format!(
        "built-in warm-up (not counted): {}",
        describe_load(&warm)
    ));
    let window = CpuWindow::start(pid);
    let rounds: Vec<LoadResult> = (0..plan.rounds)
        .map(|_| load::run(addr, &request, 204, CONNECTIONS, plan.round))
        .collect();
    let cpu_builtin = window.finish();
    let what = |s: &str| {
        format!(
            "heartbeat {s}, built-in client ({CONNECTIONS} keep-alive conns, 32 threads), median of {} × {} s",
            plan.rounds,
            plan.round.as_secs()
        )
    };
    let rps: Vec<f64> = rounds.iter().map(LoadResult::rps).collect();
    let p50: Vec<f64> = rounds
        .iter()
        .map(|r| ms(r.latency.percentile(50.0)))
        .collect();
    let p99: Vec<f64> = rounds
        .iter()
        .map(|r| ms(r.latency.percentile(99.0)))
        .collect();
    let errors: u64 = rounds.iter().map(LoadResult::error_count).sum();
    let mut row = Row::at_least(&what("throughput"), median(&rps), 30_000.0, "req/s", 0);
    if errors > 0 {
        row.value = format!("{} ({errors} errors)", row.value);
        row.ok = Some(false);
    }
    report.rows.push(row);
    report.rows.push(latency_row(
        &what("latency p99 (p50)"),
        median(&p99),
        median(&p50),
    ));
    for (i, r) in rounds.iter().enumerate() {
        report.raw(format!("built-in round {}: {}", i + 1, describe_load(r)));
    }
    report.raw(format!("during built-in load: {cpu_builtin}"));
    let stalled = warm.stalled + rounds.iter().map(|r| r.stalled).sum::<u64>();
    let slowest = rounds
        .iter()
        .map(|r| r.slowest_first)
        .fold(warm.slowest_first, Duration::max);
    report.rows.push(Row {
        what: format!(
            "connections left waiting > {} s for their first response (built-in client, warm-up + {} rounds × {CONNECTIONS} connections)",
            load::STALL.as_secs(),
            plan.rounds
        ),
        value: format!(
            "{stalled} (slowest first response {} ms)",
            num(ms(slowest), 1)
        ),
        target: "0".into(),
        ok: Some(stalled == 0),
    });

    // Latency without queueing: one connection, one request at a time.
    let single = load::run(addr, &request, 204, 1, plan.round);
    report.rows.push(Row::info(
        &format!(
            "heartbeat latency p99 (p50), built-in client, 1 connection (no queueing), {} s",
            plan.round.as_secs()
        ),
        format!(
            "{:.3} ms (p50 {:.3} ms), {} req/s",
            ms(single.latency.percentile(99.0)),
            ms(single.latency.percentile(50.0)),
            num(single.rps(), 0)
        ),
    ));
    report.raw(format!(
        "built-in, 1 connection: {}",
        describe_load(&single)
    ));

    // wrk, when installed.
    match sys::which("wrk") {
        None => {
            report.rows.push(Row::info(
                "heartbeat throughput and latency, wrk",
                "wrk not installed",
            ));
            report.raw(wrk::INSTALL_HINT);
        }
        Some(wrk_bin) => {
            progress(&format!(
                "load: wrk -t1 -c{CONNECTIONS}, {} × {} s",
                plan.rounds,
                plan.round.as_secs()
            ));
            let script = tmp.0.join("post.lua");
            let url = format!("http://{addr}/v1/workloads/{WORKLOAD}/health");
            let results: Vec<Result<wrk::WrkResult, String>> = match std::fs::write(
                &script,
                wrk::post_lua(),
            ) {
                Err(e) => vec![Err(format!("cannot write {}: {e}", script.display()))],
                Ok(()) => {
                    let window = CpuWindow::start(pid);
                    let mut mid_threads = Vec::new();
                    let r = (0..plan.rounds)
                        .map(|_| {
                            // A connection only gets answers once it has a thread.
                            let half = plan.round / 2;
                            let probe = std::thread::spawn(move || {
                                std::thread::sleep(half);
                                wm_testkit::proc::proc_status(pid, "Threads")
                            });
                            let r = wrk::run(&wrk_bin, &script, &url, CONNECTIONS, plan.round);
                            mid_threads.push(probe.join().unwrap_or(0));
                            r
                        })
                        .collect();
                    report.raw(format!("during wrk load: {}", window.finish()));
                    report.raw(format!(
                            "manager threads in the middle of each wrk round: {mid_threads:?} ({CONNECTIONS} connections served at once need {} = main + accept + {CONNECTIONS})",
                            CONNECTIONS + 2
                        ));
                    let short = mid_threads
                        .iter()
                        .filter(|t| (**t as usize) < CONNECTIONS + 2)
                        .count();
                    report.rows.push(Row {
                        what: format!(
                            "wrk rounds in which some of the {CONNECTIONS} connections had no server thread (threads mid-round < {})",
                            CONNECTIONS + 2
                        ),
                        value: format!("{short} of {} (threads: {mid_threads:?})", mid_threads.len()),
                        target: "0".into(),
                        ok: Some(short == 0),
                    });
                    r
                }
            };
            let ok: Vec<&wrk::WrkResult> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            let what = |s: &str| {
                format!(
                    "heartbeat {s}, wrk -t1 -c{CONNECTIONS}, median of {} × {} s",
                    ok.len(),
                    plan.round.as_secs()
                )
            };
            if ok.is_empty() {
                let why = results
                    .iter()
                    .find_map(|r| r.as_ref().err().cloned())
                    .unwrap_or_default();
                report.rows.push(Row::failed(
                    "heartbeat throughput, wrk",
                    "wrk failed",
                    "≥ 30,000 req/s",
                ));
                report.raw(format!("wrk failed: {why}"));
            } else {
                let rps: Vec<f64> = ok.iter().map(|r| r.rps).collect();
                let p50: Vec<f64> = ok.iter().map(|r| ms(r.p50)).collect();
                let p99: Vec<f64> = ok.iter().map(|r| ms(r.p99)).collect();
                let bad: u64 = ok.iter().map(|r| r.non_2xx).sum();
                let mut row =
                    Row::at_least(&what("throughput"), median(&rps), 30_000.0, "req/s", 0);
                if bad > 0 || ok.len() < results.len() {
                    row.value = format!(
                        "{} ({bad} non-2xx, {} failed rounds)",
                        row.value,
                        results.len() - ok.len()
                    );
                    row.ok = Some(false);
                }
                report.rows.push(row);
                report.rows.push(latency_row(
                    &what("latency p99 (p50)"),
                    median(&p99),
                    median(&p50),
                ));
            }
            for (i, r) in results.iter().enumerate() {
                report.raw(match r {
                    Ok(r) => format!(
                        "wrk round {}: {} req/s, {} requests, p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms, non-2xx {}{}",
                        i + 1,
                        num(r.rps, 0),
                        r.requests,
                        ms(r.p50),
                        ms(r.p90),
                        ms(r.p99),
                        ms(r.max),
                        r.non_2xx,
                        r.socket_errors.as_ref().map_or(String::new(), |s| format!(", {s}"))
                    ),
                    Err(e) => format!("wrk round {}: FAILED: {e}", i + 1),
                });
            }
        }
    }

    let peak: Peak = sampler.stop();
    report.rows.push(Row::below(
        "RSS peak while serving heartbeats at full speed (VmRSS sampled every 5 ms)",
        peak.rss_kb as f64 / MIB,
        8.0,
        "MiB",
        2,
    ));
    report.rows.push(Row::info(
        "threads under load (peak)",
        peak.threads.to_string(),
    ));
    report.raw(format!(
        "under load: peak VmRSS {} kB, peak {} threads ({} samples)",
        peak.rss_kb, peak.threads, peak.samples
    ));
    // tiny_http's pool lets idle threads above 4 go after 5 s.
    std::thread::sleep(Duration::from_secs(6));
    report.raw(format!(
        "6 s after load: VmRSS {} kB, {} threads; RSS by mapping kB: {}",
        m.proc_status("VmRSS"),
        m.proc_status("Threads"),
        sys::rss_by_mapping(pid)
            .iter()
            .take(6)
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

fn latency_row(what: &str, p99_ms: f64, p50_ms: f64) -> Row {
    let mut row = Row::below(what, p99_ms, 1.0, "ms", 3);
    row.value = format!("{} (p50 {:.3} ms)", row.value, p50_ms);
    row
}

fn describe_load(r: &LoadResult) -> String {
    format!(
        "{} req/s ({} × 204 in {:.2} s, {} connects, {} stalled, slowest first response {:.1} ms), latency p50 {:.3} ms, p90 {:.3} ms, p99 {:.3} ms, max {:.3} ms, mean {:.3} ms; errors: {}",
        num(r.rps(), 0),
        r.ok,
        r.elapsed.as_secs_f64(),
        r.connects,
        r.stalled,
        ms(r.slowest_first),
        ms(r.latency.percentile(50.0)),
        ms(r.latency.percentile(90.0)),
        ms(r.latency.percentile(99.0)),
        ms(r.latency.max()),
        ms(r.latency.mean()),
        if r.errors.is_empty() {
            "none".to_string()
        } else {
            format!("{:?}", r.errors)
        }
    )
}
