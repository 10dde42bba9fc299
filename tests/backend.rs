//! The real binary against the fake Node System backend (and the fake
//! Kubernetes API): signed requests, the desired state, health reports and
//! the outbox through outages and restarts.

use std::time::{Duration, Instant};

use wm_testkit::backend::{Fault, FaultKind};
use wm_testkit::node::{FakeNode, TEST_ADDRESS};
use wm_testkit::proc::{wait_for, Manager, TempDir};

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");

fn start(node: &FakeNode, env: &[(&str, &str)]) -> Manager {
    node.start(BIN, env)
}

/// Ids of the reports the backend stored, in arrival order.
fn report_ids(node: &FakeNode) -> Vec<String> {
    node.backend.reports().into_iter().map(|r| r.id).collect()
}

/// `(run, sequence)` of a report id `<address>-<start ms>.<8 hex digits>-<seq>`.
fn id_parts(id: &str) -> (String, u64) {
    let mut parts = id.rsplitn(3, '-');
    let seq = parts.next().unwrap().parse().unwrap();
    let run = parts.next().unwrap().to_string();
    assert_eq!(parts.next().unwrap(), TEST_ADDRESS);
    let (ms, random) = run.split_once('.').expect("<start ms>.<random>");
    assert!(ms.parse::<u64>().is_ok(), "{id}");
    assert!(
        random.len() == 8 && random.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    (run, seq)
}

fn status(m: &Manager) -> serde_json::Value {
    m.get("/v1/status").json()
}

#[test]
fn requests_are_signed_and_the_desired_state_is_used() {
    let node = FakeNode::new();
    node.want(&[("web", "1.4.0")]);
    let m = start(&node, &[]);
    let v = wait_for(
        "a sync with the desired state",
        Duration::from_secs(15),
        || {
            let v = status(&m);
            (v["workloads"][0]["desiredVersion"] == "1.4.0" && v["lastSync"]["outcome"] != "never")
                .then_some(v)
        },
    );
    assert_eq!(v["manager"]["nodeAddress"], TEST_ADDRESS);
    assert_eq!(v["lastSync"]["outcome"], "ok", "{v}");
    let log = node.backend.log();
    assert!(!log.is_empty());
    assert!(
        log.iter().all(|r| r.verified),
        "every request verifies: {log:#?}"
    );
    assert!(log.iter().all(|r| r.path.starts_with("/api/v1/")));
    // Heartbeats now need a desired name.
    let r = m.heartbeat("db");
    assert_eq!((r.status, r.error().as_str()), (404, "unknown_workload"));
    let r = m.heartbeat("web");
    assert_eq!(r.status, 204);
}

#[test]
fn an_idle_sync_costs_one_304_and_nothing_else() {
    let node = FakeNode::new();
    node.want(&[("web", "1.4.0")]);
    let m = start(
        &node,
        &[("WM_REPORT_INTERVAL", "1h"), ("WM_UPDATE_INTERVAL", "1h")],
    );
    wait_for("the first sync", Duration::from_secs(15), || {
        (status(&m)["lastSync"]["outcome"] == "ok").then_some(())
    });
    let mark = node.backend.mark();
    let etag = node.backend.etag(TEST_ADDRESS);
    assert_eq!(m.post("/v1/sync", "application/json", "").status, 202);
    let fetch = node
        .backend
        .wait_for_request(mark, Duration::from_secs(15), |r| {
            r.path.ends_with("/workloads")
        })
        .expect("a second fetch");
    assert_eq!(fetch.if_none_match(), Some(etag.as_str()));
    assert_eq!(fetch.status, Some(304));
    wait_for("the sync to finish", Duration::from_secs(5), || {
        status(&m)["lastSync"]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("unchanged")
            .then_some(())
    });
    let since = node.backend.requests_since(mark);
    assert_eq!(since.len(), 1, "one request in all: {since:#?}");
}

#[test]
fn a_desired_state_that_does_not_validate_changes_nothing() {
    let node = FakeNode::new();
    node.want(&[("web", "1.4.0")]);
    let mut m = start(&node, &[]);
    wait_for("the first sync", Duration::from_secs(15), || {
        (status(&m)["lastSync"]["outcome"] == "ok").then_some(())
    });
    let cases = [
        FaultKind::MalformedJson,
        FaultKind::HugeBody(50 * 1024 * 1024),
        FaultKind::EndlessBody,
    ];
    for fault in cases {
        // A new ETag, so the manager reads a full answer, which the fault garbles.
        node.backend.set_workloads(TEST_ADDRESS, &[("other", "9")]);
        node.backend.inject(
            Fault::new(fault.clone())
                .method("GET")
                .path_contains("/nodes/"),
        );
        let runs = |m: &Manager| status(m)["lastSync"]["at"].clone();
        let before = runs(&m);
        assert_eq!(m.post("/v1/sync", "application/json", "").status, 202);
        let v = wait_for("the failed sync", Duration::from_secs(20), || {
            let v = status(&m);
            (v["lastSync"]["at"] != before || v["lastSync"]["outcome"] == "error").then_some(v)
        });
        let v = if v["lastSync"]["outcome"] == "error" {
            v
        } else {
            status(&m)
        };
        assert_eq!(v["lastSync"]["outcome"], "error", "{fault:?}: {v}");
        let names: Vec<&str> = v["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["web"], "{fault:?} changed the desired state");
        assert!(m.alive());
        assert!(
            m.proc_status("VmRSS") < 32 * 1024,
            "a huge answer is not held in memory"
        );
        node.backend.clear_faults();
        node.want(&[("web", "1.4.0")]);
    }
    // Names that are not labels, and duplicates, are refused whole.
    node.backend
        .set_workloads(TEST_ADDRESS, &[("web", "1.4.0"), ("web", "1.5.0")]);
    assert_eq!(m.post("/v1/sync", "application/json", "").status, 202);
    let v = wait_for("the refused state", Duration::from_secs(20), || {
        let v = status(&m);
        v["lastSync"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("listed twice")
            .then_some(v)
    });
    assert_eq!(v["workloads"][0]["desiredVersion"], "1.4.0");
    assert_eq!(m.get("/healthz").status, 200);
}

#[test]
fn reports_come_every_window_with_healthy_seconds() {
    let node = FakeNode::new();
    node.want(&[("web", "1.4.0")]);
    let m = start(
        &node,
        &[("WM_REPORT_INTERVAL", "2s"), ("WM_HEARTBEAT_TIMEOUT", "1s")],
    );
    wait_for("the desired state", Duration::from_secs(15), || {
        (status(&m)["workloads"][0]["desiredVersion"] == "1.4.0").then_some(())
    });
    // Heartbeats every 200 ms for a while, then silence.
    let until = Instant::now() + Duration::from_secs(7);
    while Instant::now() < until {
        assert_eq!(m.heartbeat("web").status, 204);
        std::thread::sleep(Duration::from_millis(200));
    }
    let stopped = node.backend.reports().len();
    assert!(node
        .backend
        .wait_for_reports(stopped + 3, Duration::from_secs(15)));
    let reports: Vec<serde_json::Value> = node
        .backend
        .reports()
        .into_iter()
        .map(|r| r.report)
        .collect();
    let seqs: Vec<u64> = reports
        .iter()
        .map(|r| id_parts(r["id"].as_str().unwrap()).1)
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "every window once, in order"
    );
    // Windows closed before the first sync know no workload yet.
    let known = reports
        .iter()
        .position(|r| !r["workloads"].as_array().unwrap().is_empty())
        .unwrap();
    let reports = &reports[known..];
    for r in reports {
        assert_eq!(r["manager"]["version"], env!("CARGO_PKG_VERSION"));
        let window = r["windowSeconds"].as_u64().unwrap();
        // The first window runs from start to the first report, up to two intervals.
        assert!((1..=4).contains(&window), "{r}");
        let w = &r["workloads"][0];
        assert_eq!(
            (w["name"].as_str(), w["desiredVersion"].as_str()),
            (Some("web"), Some("1.4.0"))
        );
        assert!(w["healthySeconds"].as_u64().unwrap() <= window);
    }
    // Some window fully inside the heartbeat phase counts all its seconds.
    assert!(
        reports.iter().any(
            |r| r["workloads"][0]["healthySeconds"] == r["windowSeconds"]
                && r["windowSeconds"] == 2
        ),
        "{reports:#?}"
    );
    // The last windows come after the silence: no healthy time, unresponsive.
    let last = &reports[reports.len() - 1]["workloads"][0];
    assert_eq!(
        (last["healthySeconds"].as_u64(), last["health"].as_str()),
        (Some(0), Some("unresponsive"))
    );
}

#[test]
fn an_outage_loses_no_report_and_sends_each_once() {
    let node = FakeNode::new();
    let m = start(&node, &[("WM_REPORT_INTERVAL", "1s")]);
    assert!(node.backend.wait_for_reports(2, Duration::from_secs(20)));
    node.backend.set_reachable(false);
    wait_for("reports to queue", Duration::from_secs(30), || {
        (status(&m)["outbox"]["queued"].as_u64().unwrap() >= 5).then_some(())
    });
    node.backend.set_reachable(true);
    wait_for("the outbox to empty", Duration::from_secs(30), || {
        (status(&m)["outbox"]["queued"] == 0).then_some(())
    });
    let ids = report_ids(&node);
    let seqs: Vec<u64> = ids.iter().map(|id| id_parts(id).1).collect();
    assert!(seqs.len() >= 7);
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "oldest first, none missing, none twice"
    );
    let accepted: Vec<String> = node
        .backend
        .delivery_log()
        .into_iter()
        .filter(|d| d.status == Some(202))
        .flat_map(|d| d.ids)
        .collect();
    assert_eq!(accepted, ids, "no report was sent again once accepted");
    assert_eq!(status(&m)["outbox"]["dropped"], 0);
}

#[test]
fn a_restart_in_an_outage_loses_nothing_with_a_state_dir() {
    let node = FakeNode::new();
    let dir = TempDir::new("state");
    let state = dir.0.to_str().unwrap().to_string();
    let env = [
        ("WM_REPORT_INTERVAL", "1s"),
        ("WM_STATE_DIR", state.as_str()),
    ];
    let mut first = start(&node, &env);
    assert!(node.backend.wait_for_reports(1, Duration::from_secs(20)));
    node.backend.set_reachable(false);
    wait_for("reports to queue", Duration::from_secs(30), || {
        (status(&first)["outbox"]["queued"].as_u64().unwrap() >= 3).then_some(())
    });
    first.signal(libc::SIGKILL);
    first.wait_exit(Duration::from_secs(5));
    let on_disk = std::fs::read_to_string(dir.0.join("outbox.jsonl")).unwrap();
    let queued: Vec<String> = on_disk
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(queued.len() >= 3);
    let second = start(&node, &env);
    node.backend.set_reachable(true);
    wait_for("the old reports to arrive", Duration::from_secs(30), || {
        let ids = report_ids(&node);
        queued.iter().all(|q| ids.contains(q)).then_some(())
    });
    let ids = report_ids(&node);
    let first_boot: Vec<u64> = ids
        .iter()
        .map(|id| id_parts(id))
        .filter(|p| p.0 == id_parts(&queued[0]).0)
        .map(|p| p.1)
        .collect();
    assert_eq!(
        first_boot,
        (1..=first_boot.len() as u64).collect::<Vec<_>>(),
        "the first run's reports, all, in order"
    );
    assert!(second
        .log()
        .iter()
        .any(|l| l.contains("undelivered report(s) from an earlier run")));
}

#[test]
fn retry_after_is_honoured() {
    let node = FakeNode::new();
    let m = start(&node, &[("WM_REPORT_INTERVAL", "1s")]);
    assert!(node.backend.wait_for_reports(1, Duration::from_secs(20)));
    let mark = node.backend.mark();
    node.backend
        .inject(Fault::new(FaultKind::TooManyRequests { retry_after: 4 }).path_contains("/health"));
    let refused = node
        .backend
        .wait_for_request(mark, Duration::from_secs(10), |r| r.status == Some(429))
        .expect("a refused delivery");
    let at = Instant::now();
    let next = node
        .backend
        .wait_for_request(mark, Duration::from_secs(15), |r| {
            r.path.ends_with("/health") && r.status == Some(202)
        })
        .expect("a later delivery");
    assert!(
        at.elapsed() >= Duration::from_millis(3500),
        "waited only {:?} after {refused:?}",
        at.elapsed()
    );
    assert!(next.body.len() > 2);
    assert!(m
        .log()
        .iter()
        .any(|l| l.contains("retrying after 4s as asked")));
}

#[test]
fn a_hung_backend_delays_heartbeats_by_at_most_the_call_timeout() {
    let node = FakeNode::new();
    node.want(&[("web", "1.4.0")]);
    let mut m = start(
        &node,
        &[("WM_HTTP_TIMEOUT", "2s"), ("WM_REPORT_INTERVAL", "1h")],
    );
    wait_for("the first sync", Duration::from_secs(15), || {
        (status(&m)["lastSync"]["outcome"] == "ok").then_some(())
    });
    let mark = node.backend.mark();
    node.want(&[("web", "1.5.0")]);
    node.backend.inject(
        Fault::new(FaultKind::Hang(Duration::from_secs(30)))
            .method("GET")
            .path_contains("/nodes/"),
    );
    assert_eq!(m.post("/v1/sync", "application/json", "").status, 202);
    node.backend
        .wait_for_request(mark, Duration::from_secs(10), |r| {
            r.path.ends_with("/workloads")
        })
        .expect("the hung call");
    let sent = Instant::now();
    assert_eq!(m.heartbeat("web").status, 204);
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "answered after {:?}",
        sent.elapsed()
    );
    // The call times out, and the retry after a short backoff succeeds.
    m.wait_for_log(
        "sync failed: backend unreachable: timeout",
        Duration::from_secs(10),
    );
    wait_for("the retried sync", Duration::from_secs(15), || {
        (status(&m)["workloads"][0]["desiredVersion"] == "1.5.0").then_some(())
    });
}

#[test]
fn sigterm_sends_the_last_partial_window() {
    let node = FakeNode::new();
    node.want(&[("web", "1.4.0")]);
    let mut m = start(&node, &[("WM_REPORT_INTERVAL", "1h")]);
    wait_for("the desired state", Duration::from_secs(15), || {
        (status(&m)["workloads"][0]["desiredVersion"] == "1.4.0").then_some(())
    });
    assert_eq!(m.heartbeat("web").status, 204);
    let before = node.backend.reports().len();
    m.signal(libc::SIGTERM);
    assert_eq!(m.wait_exit(Duration::from_secs(5)).code(), Some(0));
    let reports = node.backend.reports();
    assert_eq!(reports.len(), before + 1, "the last window was delivered");
    let last = &reports[reports.len() - 1].report;
    assert!(last["windowSeconds"].as_u64().unwrap() < 3600);
    assert_eq!(last["workloads"][0]["health"], "healthy");
}

#[test]
fn a_stop_right_after_a_report_sends_no_empty_window() {
    let node = FakeNode::new();
    node.want(&[("web", "1.0.0")]);
    let mut m = start(&node, &[("WM_REPORT_INTERVAL", "2s")]);
    wait_for("a regular report", Duration::from_secs(30), || {
        (!node.backend.reports().is_empty()).then_some(())
    });
    m.signal(libc::SIGTERM);
    assert!(m.wait_exit(Duration::from_secs(15)).success());
    let windows: Vec<u64> = node
        .backend
        .reports()
        .iter()
        .map(|r| r.report["windowSeconds"].as_u64().unwrap_or(u64::MAX))
        .collect();
    assert!(
        windows.iter().all(|w| *w >= 1),
        "a report of an empty window was sent: {windows:?}"
    );
}

#[test]
fn a_report_answer_that_drips_is_given_up_at_the_timeout_and_sent_again() {
    let node = FakeNode::new();
    // The answer to the first delivery comes a byte every 500 ms: a minute
    // or more in all, against a 2 s timeout.
    node.backend.inject(
        Fault::new(FaultKind::Drip(Duration::from_millis(500)))
            .method("POST")
            .path_contains("/health"),
    );
    let mark = node.backend.mark();
    let mut m = start(
        &node,
        &[("WM_REPORT_INTERVAL", "1s"), ("WM_HTTP_TIMEOUT", "2s")],
    );
    let ids = |r: &wm_testkit::backend::LoggedRequest| -> Vec<String> {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        body["reports"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let dripped = node
        .backend
        .wait_for_request(mark, Duration::from_secs(20), |r| r.fault.is_some())
        .expect("a delivery met the drip");
    let first = ids(&dripped);
    assert!(!first.is_empty(), "{dripped:?}");
    // Sent again, and accepted, long before the drip would have ended.
    let again = node
        .backend
        .wait_for_request(mark, Duration::from_secs(20), |r| {
            r.fault.is_none()
                && r.method == "POST"
                && r.status.is_some_and(|s| s < 300)
                && ids(r).contains(&first[0])
        })
        .expect("the report delivered again");
    assert!(ids(&again).starts_with(&first), "oldest first: {again:?}");
    assert!(m.alive());
    assert_eq!(m.get("/healthz").status, 200);
}
