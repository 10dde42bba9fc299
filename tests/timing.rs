//! The manager under real timing, through the real binary: a slow
//! Kubernetes API, a backend that hangs every call, a leader paused past
//! its Lease (idle, and in the middle of a sync), stops and crashes after
//! every step of a sync, and version acknowledgements that fail for a while.
//!
//! Two managers are told apart in the fakes' logs: each has its own token
//! of the ServiceAccount (`client` in the Kubernetes log) and its own node
//! key (`X-Node-Address` in the backend log).

use std::time::{Duration, Instant};

use serde_json::Value;
use wm_testkit::backend::{sample_manifest, Fault, FaultKind};
use wm_testkit::node::{FakeNode, TEST_ADDRESS};
use wm_testkit::proc::{wait_for, Manager, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");
const LEASE: &str = "workload-manager";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/edge/deployments";
/// A second node key, only ever used in tests.
const KEY_B: &str = "8da4ef21b864d2cc526dbdb2a120bd2874c36c9d0a1fb7f8c63d7f7a8b41de8f";

fn status(m: &Manager) -> Value {
    m.get("/v1/status").json()
}

fn address_of(key: &str) -> String {
    workload_manager::identity::NodeIdentity::from_hex(key)
        .expect("a valid key")
        .address()
        .to_string()
}

/// `n` workloads `w0000…` at `version`, published for both test keys.
fn want_many(node: &FakeNode, n: usize, version: &str) -> Vec<String> {
    let names: Vec<String> = (0..n).map(|i| format!("w{i:04}")).collect();
    for name in &names {
        let image = format!("registry.example/{name}:{version}");
        node.backend
            .put_manifest(name, version, sample_manifest(name, &image));
    }
    let list: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), version)).collect();
    node.backend.set_workloads(TEST_ADDRESS, &list);
    node.backend.set_workloads(&address_of(KEY_B), &list);
    names
}

fn lease_of(node: &FakeNode) -> Value {
    node.kube.lease(LEASE).expect("the Lease exists")
}

fn holder(node: &FakeNode) -> String {
    lease_of(node)["spec"]["holderIdentity"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn transitions(node: &FakeNode) -> i64 {
    lease_of(node)["spec"]["leaseTransitions"]
        .as_i64()
        .unwrap_or(-1)
}

fn leads(m: &Manager) -> bool {
    status(m)["manager"]["leader"] == true
}

/// Starts a manager as `pod` with its own token (and, for `b`, its own key).
fn start(node: &FakeNode, pod: &str, key: Option<&str>, env: &[(&str, &str)]) -> Manager {
    let token = node.kube.issue_token(pod).display().to_string();
    let mut all: Vec<(&str, &str)> = vec![("POD_NAME", pod), ("WM_KUBE_TOKEN_FILE", &token)];
    if let Some(key) = key {
        all.push(("NODE_PRIVATE_KEY", key));
    }
    all.extend_from_slice(env);
    node.start(BIN, &all)
}

/// Starts wm-a, waits until it leads, then wm-b (with the second key),
/// and waits until it follows.
fn a_leads_b_follows(node: &FakeNode, env: &[(&str, &str)]) -> (Manager, Manager) {
    let a = start(node, "wm-a", None, env);
    wait_for("wm-a to lead", Duration::from_secs(15), || {
        leads(&a).then_some(())
    });
    let b = start(node, "wm-b", Some(KEY_B), env);
    wait_for("wm-b to follow", Duration::from_secs(15), || {
        (status(&b)["manager"]["leaseHolder"] == "wm-a").then_some(())
    });
    (a, b)
}

/// The first sync converges (every workload created by it), with no
/// Lease lost on the way.
fn converges_in_one_sync(n: usize, latency: Duration) {
    let node = FakeNode::new();
    node.kube.set_latency(latency);
    want_many(&node, n, "1.0.0");
    let started = Instant::now();
    let m = start(&node, "wm-a", None, &[("WM_SYNC_INTERVAL", "1h")]);
    let first = wait_for(
        "the first sync to end",
        Duration::from_secs(60 + n as u64 / 4),
        || {
            let v = status(&m);
            (v["lastSync"]["outcome"] != "never").then_some(v)
        },
    );
    let took = started.elapsed();
    let sync = &first["lastSync"];
    assert_eq!(sync["outcome"], "ok", "{sync}");
    let detail = sync["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with(&format!("{n} desired (fetched); {n} created")),
        "{detail}"
    );
    assert!(
        detail.contains(&format!("{n} version(s) acknowledged")),
        "{detail}"
    );
    let creates = node
        .kube
        .log()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == DEPLOYMENTS)
        .count();
    assert_eq!(creates, n, "each Deployment created once");
    assert_eq!(node.kube.deployments().len(), n);
    assert_eq!(transitions(&node), 0);
    assert_eq!(holder(&node), "wm-a");
    assert!(
        m.log().iter().all(|l| !l.contains("no longer leading")),
        "{:#?}",
        m.log()
            .iter()
            .filter(|l| l.contains("lead"))
            .collect::<Vec<_>>()
    );
    let led = m.log().iter().filter(|l| l.contains("leading:")).count();
    assert_eq!(led, 1, "one term from start to end");
    eprintln!("{n} workloads at {latency:?} per call: converged in {took:?}");
}

#[test]
fn two_hundred_workloads_on_a_slow_api_server_converge_in_one_sync() {
    converges_in_one_sync(200, Duration::from_millis(40));
}

#[test]
fn a_thousand_workloads_on_a_slow_api_server_converge_in_one_sync() {
    converges_in_one_sync(1000, Duration::from_millis(40));
}

#[test]
fn a_backend_that_hangs_every_call_never_costs_the_lease() {
    let node = FakeNode::new();
    want_many(&node, 3, "1.0.0");
    let env = [
        ("WM_HTTP_TIMEOUT", "2s"),
        ("WM_REPORT_INTERVAL", "1s"),
        ("WM_SYNC_INTERVAL", "1s"),
    ];
    let (a, b) = a_leads_b_follows(&node, &env);
    // Every backend call now takes the whole timeout and more.
    node.backend
        .inject(Fault::new(FaultKind::Hang(Duration::from_secs(3))).times(100_000));
    let mark = node.backend.mark();
    let watched = Instant::now();
    // Two Lease durations (13 s each at a 2 s timeout).
    while watched.elapsed() < Duration::from_secs(28) {
        assert!(
            leads(&a),
            "wm-a lost the Lease after {:?}",
            watched.elapsed()
        );
        assert!(!leads(&b));
        assert_eq!(holder(&node), "wm-a");
        std::thread::sleep(Duration::from_millis(200));
    }
    let hung = node.backend.requests_since(mark).len();
    assert!(hung >= 8, "the backend was called all along: {hung}");
    assert_eq!(transitions(&node), 0);
    assert!(a.log().iter().all(|l| !l.contains("no longer leading")));
    // Heartbeats are answered throughout.
    assert_eq!(a.heartbeat("w0000").status, 204);
}

/// The leader-only calls `pod` (with node key `key`'s address) made since
/// the marks: Kubernetes calls other than the Lease's, and backend calls.
fn leader_calls(
    node: &FakeNode,
    pod: &str,
    address: &str,
    kube_mark: wm_testkit::kube::Mark,
    backend_mark: wm_testkit::kube::Mark,
) -> Vec<String> {
    let kube = node
        .kube
        .requests_since(kube_mark)
        .into_iter()
        .filter(|r| r.client.as_deref() == Some(pod) && !r.path.contains("/leases"))
        .map(|r| format!("{} {}", r.method, r.path));
    let backend = node
        .backend
        .requests_since(backend_mark)
        .into_iter()
        .filter(|r| r.header("x-node-address") == Some(address))
        .map(|r| format!("{} {}", r.method, r.path));
    kube.chain(backend).collect()
}

/// Pauses the leader past its Lease; once resumed it makes no leader-only
/// call, because another instance took over meanwhile.
fn paused_leader_stays_quiet(mid_sync: bool) {
    let node = FakeNode::new();
    let n = if mid_sync { 40 } else { 2 };
    want_many(&node, n, "1.0.0");
    let env = [
        ("WM_HTTP_TIMEOUT", "2s"),
        ("WM_REPORT_INTERVAL", "1s"),
        ("WM_SYNC_INTERVAL", "2s"),
    ];
    if mid_sync {
        // 40 creates at 150 ms: the first sync takes several seconds.
        node.kube.set_latency(Duration::from_millis(150));
    }
    let (a, b) = a_leads_b_follows(&node, &env);
    if mid_sync {
        wait_for("wm-a inside its sync", Duration::from_secs(30), || {
            let created = node.kube.deployments().len();
            (created >= 3).then_some(())
        });
    } else {
        wait_for("wm-a to have synced", Duration::from_secs(30), || {
            (status(&a)["lastSync"]["outcome"] == "ok").then_some(())
        });
    }
    a.signal(libc::SIGSTOP);
    let stopped = Instant::now();
    if mid_sync {
        let created = node.kube.deployments().len();
        assert!(
            created < n,
            "paused inside the sync: {created} of {n} created"
        );
    }
    wait_for("wm-b to take over", Duration::from_secs(40), || {
        (holder(&node) == "wm-b" && leads(&b)).then_some(())
    });
    // Past wm-a's Lease duration on its own clock too.
    while stopped.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (kube_mark, backend_mark) = (node.kube.mark(), node.backend.mark());
    a.signal(libc::SIGCONT);
    wait_for("wm-a to see it lost", Duration::from_secs(15), || {
        let v = status(&a);
        (v["manager"]["leader"] == false && v["manager"]["leaseHolder"] == "wm-b").then_some(())
    });
    // A few more periods: wm-a stays a follower and quiet.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(6) {
        assert!(!leads(&a));
        std::thread::sleep(Duration::from_millis(100));
    }
    let calls = leader_calls(&node, "wm-a", TEST_ADDRESS, kube_mark, backend_mark);
    assert!(
        calls.is_empty(),
        "wm-a made leader-only calls after resuming: {calls:#?}"
    );
    let lease_calls = node
        .kube
        .requests_since(kube_mark)
        .into_iter()
        .filter(|r| r.client.as_deref() == Some("wm-a"))
        .count();
    assert!(lease_calls >= 1, "wm-a looked at the Lease after resuming");
    let lost = a
        .log()
        .into_iter()
        .find(|l| l.contains("no longer leading"))
        .expect("wm-a logs that it lost the Lease");
    assert!(lost.contains("wm-b holds Lease"), "{lost}");
    assert!(leads(&b));
}

#[test]
fn a_leader_paused_past_its_lease_makes_no_leader_call_when_resumed() {
    paused_leader_stays_quiet(false);
}

#[test]
fn a_leader_paused_inside_a_sync_makes_no_leader_call_when_resumed() {
    paused_leader_stays_quiet(true);
}

/// What the fakes show of a sync of `web` and `api` at 1.0.0.
struct Outcome {
    /// Successful creates per workload.
    creates: Vec<(String, usize)>,
    /// Writes (POST, PUT, PATCH, DELETE) of Deployments in all.
    writes: usize,
    conflicts: usize,
    /// Versions the backend accepted, per workload.
    acked: Vec<(String, Vec<String>)>,
}

fn outcome(node: &FakeNode) -> Outcome {
    let log = node.kube.log();
    let deployments: Vec<_> = log
        .iter()
        .filter(|r| r.path.starts_with(DEPLOYMENTS))
        .collect();
    let names = ["api", "web"];
    Outcome {
        creates: names
            .iter()
            .map(|n| {
                let count = deployments
                    .iter()
                    .filter(|r| {
                        r.method == "POST"
                            && r.status == Some(201)
                            && r.json().is_some_and(|v| v["metadata"]["name"] == *n)
                    })
                    .count();
                (n.to_string(), count)
            })
            .collect(),
        writes: deployments.iter().filter(|r| r.is_write()).count(),
        conflicts: deployments.iter().filter(|r| r.status == Some(409)).count(),
        acked: names
            .iter()
            .map(|n| {
                let versions = node
                    .backend
                    .applied_versions()
                    .into_iter()
                    .filter(|a| a.workload == *n)
                    .map(|a| a.version)
                    .collect();
                (n.to_string(), versions)
            })
            .collect(),
    }
}

/// Stops the manager with `signal` once `step` calls of its first sync
/// were answered, restarts it on the same state directory, and checks
/// that each version is acknowledged as applied, with no Deployment
/// written twice.
fn stop_after_step(signal: i32, step: usize) {
    let node = FakeNode::new();
    node.want(&[("web", "1.0.0"), ("api", "1.0.0")]);
    node.kube.set_latency(Duration::from_millis(60));
    node.backend.set_latency(Duration::from_millis(60));
    let state = TempDir::new("timing-stop");
    let dir = state.0.display().to_string();
    let env = [
        ("WM_STATE_DIR", dir.as_str()),
        ("WM_HTTP_TIMEOUT", "2s"),
        ("WM_REPORT_INTERVAL", "1h"),
        ("WM_SYNC_INTERVAL", "1h"),
    ];
    let sync_calls = |node: &FakeNode| {
        let kube = node
            .kube
            .log()
            .into_iter()
            .filter(|r| r.path.starts_with(DEPLOYMENTS) && r.status.is_some())
            .count();
        let backend = node
            .backend
            .log()
            .into_iter()
            .filter(|r| !r.path.ends_with("/health") && r.status.is_some())
            .count();
        kube + backend
    };
    let mut m = node.start(BIN, &env);
    wait_for(
        &format!("{step} answered calls of the sync"),
        Duration::from_secs(30),
        || (sync_calls(&node) >= step).then_some(()),
    );
    m.signal(signal);
    m.wait_exit(Duration::from_secs(15));
    // With SIGTERM the Lease was released; after SIGKILL it must expire
    // first (13 s at a 2 s timeout).
    let m = node.start(BIN, &env);
    let done = wait_for(
        "a complete sync after the restart",
        Duration::from_secs(45),
        || {
            let v = status(&m);
            (v["lastSync"]["outcome"] == "ok").then_some(v)
        },
    );
    let o = outcome(&node);
    let why = format!(
        "signal {signal} after step {step}: {:?} / {:?} / {}",
        o.creates, o.acked, done["lastSync"]
    );
    for (name, count) in &o.creates {
        assert_eq!(*count, 1, "{name} created once: {why}");
    }
    assert_eq!(o.writes, 2, "no Deployment written twice: {why}");
    assert_eq!(o.conflicts, 0, "{why}");
    for (name, versions) in &o.acked {
        assert!(!versions.is_empty(), "{name} acknowledged: {why}");
        assert!(versions.iter().all(|v| v == "1.0.0"), "{name}: {why}");
    }
}

/// Every position of a sync of two workloads: the list, the desired state,
/// two probes, and per workload its manifest, create and version PUT.
const SYNC_STEPS: usize = 10;

/// Every position at once, each against its own fakes (most of the time
/// is spent waiting: for a Lease to expire, for a sync to start).
fn stop_after_every_step(signal: i32) {
    std::thread::scope(|s| {
        let runs: Vec<_> = (1..=SYNC_STEPS)
            .map(|step| s.spawn(move || stop_after_step(signal, step)))
            .collect();
        let failed = runs.into_iter().filter_map(|r| r.join().err()).count();
        assert_eq!(failed, 0, "{failed} position(s) failed; see above");
    });
}

#[test]
fn sigterm_after_any_step_of_a_sync_loses_no_acknowledgement() {
    stop_after_every_step(libc::SIGTERM);
}

#[test]
fn sigkill_after_any_step_of_a_sync_loses_no_acknowledgement() {
    stop_after_every_step(libc::SIGKILL);
}

#[test]
fn a_restart_sends_acknowledgements_again_only_without_a_state_dir() {
    let node = FakeNode::new();
    node.want(&[("web", "1.0.0"), ("api", "1.0.0")]);
    let state = TempDir::new("timing-acks");
    let dir = state.0.display().to_string();
    let puts = |node: &FakeNode| node.backend.applied_versions().len();
    for (env, sent_again) in [
        (vec![("WM_STATE_DIR", dir.as_str())], 2),
        (vec![("WM_STATE_DIR", dir.as_str())], 0),
        (vec![], 2),
    ] {
        let before = puts(&node);
        let mut m = node.start(BIN, &env);
        wait_for("a sync", Duration::from_secs(20), || {
            (status(&m)["lastSync"]["outcome"] == "ok").then_some(())
        });
        assert_eq!(puts(&node) - before, sent_again, "{env:?}");
        m.signal(libc::SIGTERM);
        m.wait_exit(Duration::from_secs(10));
    }
}

#[test]
fn version_acknowledgements_that_fail_are_sent_until_accepted() {
    let node = FakeNode::new();
    node.backend.inject(
        Fault::new(FaultKind::InternalError)
            .method("PUT")
            .path_contains("/version")
            .times(5),
    );
    node.want(&[("web", "1.0.0"), ("api", "1.0.0"), ("db", "2.0.0")]);
    let m = node.start(BIN, &[]);
    wait_for(
        "every version acknowledged",
        Duration::from_secs(60),
        || {
            let acked = node.backend.applied_versions();
            (acked.len() == 3).then_some(())
        },
    );
    let failed = node
        .backend
        .log()
        .into_iter()
        .filter(|r| r.method == "PUT" && r.status == Some(500))
        .count();
    assert_eq!(failed, 5, "the first attempts failed");
    let mut acked: Vec<(String, String)> = node
        .backend
        .applied_versions()
        .into_iter()
        .map(|a| (a.workload, a.version))
        .collect();
    acked.sort();
    assert_eq!(
        acked,
        [("api", "1.0.0"), ("db", "2.0.0"), ("web", "1.0.0")]
            .map(|(n, v)| (n.to_string(), v.to_string()))
    );
    wait_for("a clean sync", Duration::from_secs(30), || {
        (status(&m)["lastSync"]["outcome"] == "ok").then_some(())
    });
    // Nothing more is owed: further syncs send no PUT.
    let n = m.job_runs("sync");
    assert_eq!(m.post("/v1/sync", "application/json", "").status, 202);
    wait_for("another sync", Duration::from_secs(20), || {
        (m.job_runs("sync") > n).then_some(())
    });
    assert_eq!(node.backend.applied_versions().len(), 3);
}
