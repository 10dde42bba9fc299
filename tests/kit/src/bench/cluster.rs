//! Benchmark rows against the real control plane (`.ci/cluster.sh start`):
//! initial sync, idle sync (requests and main-thread CPU) and self-update to
//! available, with the manager in a namespace of its own set up from
//! `manifests/` exactly as the end-to-end tests do. Kubernetes requests are
//! counted in the API server's audit log, between two marker calls.

use std::path::Path;
use std::time::{Duration, Instant};

use super::report::Row;
use super::stats::median;
use super::sys;
use crate::backend::FakeBackend;
use crate::cluster::{ControlPlane, Namespace};
use crate::proc::{Manager, TEST_KEY};
use crate::s3::FakeS3;

/// Rows and raw lines, as the bench's report keeps them.
pub struct Out<'a> {
    pub rows: &'a mut Vec<Row>,
    pub raw: &'a mut Vec<String>,
}

fn manager(bin: &Path, ns: &Namespace, backend: &FakeBackend, extra: &[(&str, &str)]) -> Manager {
    let token = ns.dir.0.join("token");
    ns.write_token(&token);
    let mut env = ns.manager_env(&token);
    env.push(("NODE_SYSTEM_ENDPOINT".into(), backend.url()));
    env.push(("NODE_PRIVATE_KEY".into(), TEST_KEY.into()));
    env.push(("WM_REPORT_INTERVAL".into(), "1h".into()));
    env.push(("WM_LOG".into(), "info".into()));
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Manager::start(bin, &env)
}

fn sync_once(m: &Manager) {
    let before = m.job_runs("sync");
    m.post("/v1/sync", "application/json", "");
    let until = Instant::now() + Duration::from_secs(60);
    while m.job_runs("sync") <= before && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Initial and idle sync of `n` workloads against the real API server.
pub fn syncs(cp: &ControlPlane, bin: &Path, n: usize, out: &mut Out<'_>) {
    let what = format!(
        "real control plane: initial sync of {n} workloads (create, version report), wall time"
    );
    let ns = Namespace::install(cp, &format!("bench{n}"), |_| {});
    let backend = FakeBackend::start();
    backend.want_samples(crate::node::TEST_ADDRESS, n);
    let started = Instant::now();
    let m = manager(bin, &ns, &backend, &[("WM_UPDATE_INTERVAL", "1h")]);
    let deadline = started + Duration::from_secs(180);
    while backend.applied_versions().len() < n && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let initial = started.elapsed();
    let reported = backend.applied_versions().len();
    if reported < n {
        let calls = ns.manager_calls();
        let created = calls
            .iter()
            .filter(|c| c.resource() == "deployments" && c.verb() == "create" && c.code() == 201)
            .count();
        let renewals: Vec<&str> = calls
            .iter()
            .filter(|c| c.resource() == "leases")
            .take(6)
            .map(|c| c.0["stageTimestamp"].as_str().unwrap_or_default())
            .collect();
        let why = format!(
            "{reported} of {n} versions reported to the backend within 180 s ({created} Deployments created)"
        );
        out.raw.push(format!(
            "real control plane, {n} workloads: {why}; first Lease calls at {renewals:?}"
        ));
        out.rows.push(Row::failed(&what, &why, "< 30 s"));
        return;
    }
    // Until every rollout is complete (KWOK's pods Ready), so the syncs are idle.
    let complete = |m: &Manager| {
        m.status()["workloads"].as_array().map_or(0, |w| {
            w.iter().filter(|w| w["rollout"] == "complete").count()
        })
    };
    let until = Instant::now() + Duration::from_secs(600);
    while complete(&m) < n && Instant::now() < until {
        sync_once(&m);
        std::thread::sleep(Duration::from_millis(500));
    }
    let rolled_out = started.elapsed();
    sync_once(&m);
    sync_once(&m);
    let (mut cpu_ms, mut requests, mut writes) = (Vec::new(), Vec::new(), 0);
    for i in 0..5 {
        let bmark = backend.mark();
        let (from, to) = (format!("bench-{i}-before"), format!("bench-{i}-after"));
        ns.audit_marker(&from);
        let cpu0 = sys::sched_by_thread(m.pid())
            .get("main")
            .map_or(0, |s| s.cpu_ns);
        sync_once(&m);
        let cpu1 = sys::sched_by_thread(m.pid())
            .get("main")
            .map_or(0, |s| s.cpu_ns);
        ns.audit_marker(&to);
        cpu_ms.push(cpu1.saturating_sub(cpu0) as f64 / 1e6);
        let calls: Vec<_> = ns
            .manager_calls_between(&from, &to)
            .into_iter()
            .filter(|c| c.resource() != "leases")
            .collect();
        writes += calls.iter().filter(|c| c.is_write()).count();
        requests.push((calls.len() + backend.requests_since(bmark).len()) as f64);
    }
    out.rows
        .push(Row::below(&what, initial.as_secs_f64(), 30.0, "s", 2));
    out.rows.push(Row::info(
        &format!("real control plane: {n} workloads rolled out (pods Ready under KWOK) and seen complete, from start"),
        format!("{:.1} s", rolled_out.as_secs_f64()),
    ));
    out.rows.push(Row::below(
        &format!("real control plane: idle sync with {n} workloads: requests in total (Kubernetes + backend), median of 5"),
        median(&requests),
        2.5,
        "",
        0,
    ));
    out.rows.push(Row::info(
        &format!("real control plane: idle sync with {n} workloads: main-thread CPU (incl. answering the status polls), median of 5"),
        format!("{:.2} ms", median(&cpu_ms)),
    ));
    out.raw.push(format!(
        "real control plane, {n} workloads: initial {:.2} s, rolled out {:.1} s, idle sync CPU ms {cpu_ms:?}, requests {requests:?}, writes {writes}",
        initial.as_secs_f64(),
        rolled_out.as_secs_f64()
    ));
}

/// From a newer release in S3 to the manager's own Deployment rolled out by
/// the real Deployment controller and seen available by the manager.
pub fn self_update(cp: &ControlPlane, bin: &Path, out: &mut Out<'_>) {
    let what = "real control plane: self-update, newer release published → own Deployment available, seen by the manager";
    let ns = Namespace::install(cp, "benchupdate", |_| {});
    let backend = FakeBackend::start();
    let s3 = FakeS3::start();
    s3.create_bucket("releases");
    let available = |ns: &Namespace| {
        ns.deployment("workload-manager")
            .is_some_and(|d| d["status"]["availableReplicas"] == 1)
    };
    let until = Instant::now() + Duration::from_secs(120);
    while !available(&ns) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(200));
    }
    let (endpoint, region) = (s3.url(), s3.region().to_string());
    let m = manager(
        bin,
        &ns,
        &backend,
        &[
            ("WM_UPDATE_S3_BUCKET", "releases"),
            ("WM_UPDATE_S3_ENDPOINT", endpoint.as_str()),
            ("WM_UPDATE_S3_REGION", region.as_str()),
            ("WM_UPDATE_INTERVAL", "1s"),
            ("WM_SYNC_INTERVAL", "1h"),
        ],
    );
    let started = Instant::now();
    s3.put_object("releases", "workload-manager/latest", "0.2.0\n");
    let until = started + Duration::from_secs(120);
    let seen = loop {
        let v = m.status();
        let detail = v["lastUpdateCheck"]["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if detail.contains("is available") || detail.contains("about to be replaced") {
            break Some(started.elapsed());
        }
        if Instant::now() > until {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    match seen {
        // Update checks run every 1 s (±10 %), so up to a second of this is waiting for the next one.
        Some(t) => out.rows.push(Row::info(
            what,
            format!("{:.2} s (update checks every 1 s)", t.as_secs_f64()),
        )),
        None => out
            .rows
            .push(Row::failed(what, "not seen within 120 s", "")),
    }
}
