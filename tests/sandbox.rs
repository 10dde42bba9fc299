//! The one-command sandbox (`cargo run --release -p wm-testkit --bin
//! sandbox`), driven through the same `wm_testkit::sandbox::Sandbox` the
//! command uses: it starts, reaches a complete rollout of its sample
//! workloads, applies the desired-state change, reports, and shuts down
//! cleanly, all within bounded time, so the newcomer's first command cannot
//! rot.

use std::time::{Duration, Instant};

use serde_json::Value;
use wm_testkit::kube::rollout_complete;
use wm_testkit::proc::wait_for;
use wm_testkit::sandbox::{
    manager_event, Options, Sandbox, Source, CHANGED, DEGRADED, NEW_VERSION, REMOVED, SAMPLES,
};

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");
/// Everything up to the stop: first sync (≤ 5 s), change 3 s after the
/// creates, the next sync (≤ 15 s while rollouts progress), a report (10 s).
const LIMIT: Duration = Duration::from_secs(60);

fn version(d: &Value) -> Option<&str> {
    d["metadata"]["annotations"]["workload-manager/version"].as_str()
}

/// Child processes of this test process (no other test here starts one).
fn children() -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(me) {
            found.push(pid);
        }
    }
    found
}

#[test]
fn the_sandbox_rolls_out_its_samples_applies_the_change_and_stops_cleanly() {
    let begin = Instant::now();
    let left = || LIMIT.saturating_sub(begin.elapsed());
    let options = Options {
        listen: "127.0.0.1:0".parse().unwrap(),
        change_after: Duration::from_secs(3),
    };
    let sandbox = Sandbox::start(BIN.as_ref(), options).expect("the sandbox starts");
    let kube = &sandbox.fakes().kube;
    let backend = &sandbox.fakes().backend;
    let dump = |s: &Sandbox| {
        s.events()
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };

    // Every sample Deployment is created and its rollout completes (seen by
    // the sandbox's own watcher, which prints it).
    wait_for("the samples' rollouts complete", left(), || {
        let events = sandbox.events();
        SAMPLES
            .iter()
            .all(|(name, v)| {
                events.iter().any(|e| {
                    e.source == Source::Kube
                        && e.text.starts_with(&format!("{name} {v}: rollout complete"))
                })
            })
            .then_some(())
    });

    // The change: web moves to 1.1.0 and rolls out, cache is deleted, api stays.
    wait_for("the change applied and rolled out", left(), || {
        let web = kube.deployment(CHANGED)?;
        let api = kube.deployment("api")?;
        (version(&web) == Some(NEW_VERSION)
            && rollout_complete(&web) == Ok(true)
            && rollout_complete(&api) == Ok(true)
            && kube.deployment(REMOVED).is_none())
        .then_some(())
    });
    assert_eq!(
        kube.deployment(CHANGED).unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("registry.example/{CHANGED}:{NEW_VERSION}")
    );
    assert!(
        backend
            .applied_versions()
            .iter()
            .any(|v| v.workload == CHANGED && v.version == NEW_VERSION),
        "the new version reported to the backend: {:?}",
        backend.applied_versions()
    );

    // Reports arrive, and the manager is leader and ready, with the
    // heartbeats the sandbox sends (api degraded).
    wait_for("a report delivered", left(), || {
        (sandbox.summary().reports >= 1).then_some(())
    });
    let status = wait_for("status: leader, ready, heartbeats", left(), || {
        let v = sandbox.status()?;
        let health = |name: &str| {
            v["workloads"]
                .as_array()?
                .iter()
                .find(|w| w["name"] == name)
                .and_then(|w| w["health"].as_str().map(str::to_string))
        };
        (v["manager"]["leader"] == true
            && v["manager"]["ready"] == true
            && health(CHANGED).as_deref() == Some("healthy")
            && health(DEGRADED).as_deref() == Some("degraded"))
        .then_some(v)
    });
    assert_eq!(status["manager"]["podName"], "sandbox", "{status}");
    let names: Vec<&str> = status["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|w| w["name"].as_str())
        .collect();
    assert!(!names.contains(&REMOVED), "{status}");

    let summary = sandbox.summary();
    assert!(
        summary.created >= SAMPLES.len() && summary.applied >= 1 && summary.deleted >= 1,
        "{summary:?}\n{}",
        dump(&sandbox)
    );
    // The manager's own log lines are in the live log.
    let events = sandbox.events();
    for needle in [
        "leading:",
        "web: created 1.0.0",
        "web: applied 1.1.0",
        "cache: deleted",
    ] {
        assert!(
            events
                .iter()
                .any(|e| e.source == Source::Manager && e.text.contains(needle)),
            "no manager event {needle:?} in:\n{}",
            dump(&sandbox)
        );
    }
    let pid = sandbox.pid().expect("running");
    let ran = begin.elapsed();

    // Stop: SIGTERM, a clean exit within 10 s, nothing left behind.
    let stopped = sandbox.stop(Duration::from_secs(10));
    assert!(!stopped.killed, "{stopped:?}");
    assert!(
        stopped.status.is_some_and(|s| s.success()),
        "exit status 0: {stopped:?}"
    );
    assert!(stopped.took < Duration::from_secs(10), "{stopped:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the manager (pid {pid}) is gone and reaped"
    );
    assert_eq!(children(), Vec::<u32>::new(), "no child process left");
    assert!(
        stopped.summary.reports >= summary.reports,
        "{stopped:?} vs {summary:?}"
    );
    eprintln!(
        "sandbox test: running part {:.1}s, stop {:.2}s, {}",
        ran.as_secs_f64(),
        stopped.took.as_secs_f64(),
        stopped.summary
    );
}

#[test]
fn manager_lines_lose_the_target_and_the_info_level() {
    assert_eq!(
        manager_event("INFO  [workload_manager::jobs] web: created 1.0.0"),
        "web: created 1.0.0"
    );
    assert_eq!(
        manager_event("WARN  [workload_manager::agent] sync failed: x (retry in 2s)"),
        "WARN sync failed: x (retry in 2s)"
    );
    assert_eq!(
        manager_event("thread 'main' panicked"),
        "thread 'main' panicked"
    );
}
