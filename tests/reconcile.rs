//! The reconcile through the real binary, against the fake Kubernetes API and
//! the fake backend: the cluster comes to match the desired state, and
//! nothing the manager does not own is ever touched.

use std::time::Duration;

use serde_json::{json, Value};
use wm_testkit::kube::{Fault, FaultKind};
use wm_testkit::node::{FakeNode, TEST_ADDRESS};
use wm_testkit::proc::{wait_for, Manager};

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");
/// The Deployments collection of the fake node's namespace.
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/edge/deployments";

/// Starts the manager with reports kept out of the way (one an hour).
fn start_with(node: &FakeNode, env: &[(&str, &str)]) -> Manager {
    let mut all = vec![("WM_REPORT_INTERVAL", "1h")];
    all.extend_from_slice(env);
    node.start(BIN, &all)
}

fn start(node: &FakeNode) -> Manager {
    start_with(node, &[])
}

fn status(m: &Manager) -> Value {
    m.status()
}

fn workload(m: &Manager, name: &str) -> Value {
    m.workload(name)
}

fn sync(m: &Manager) -> Value {
    m.sync()
}

fn image(d: &Value) -> &str {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
}

fn unmanaged(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": "edge"},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": name, "image": "someone/else:1"}]}}}})
}

#[test]
fn the_cluster_comes_to_match_the_desired_state() {
    let node = FakeNode::new();
    node.kube.put_deployment_raw("kubectl", unmanaged("db"));
    let mut old = unmanaged("old");
    old["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "workload-manager", "workload-manager/workload": "old"});
    old["metadata"]["annotations"] = json!({"workload-manager/version": "0.9"});
    node.kube.put_deployment_raw("workload-manager", old);
    node.want(&[("web", "1.4.0"), ("api", "2.0.0")]);
    let m = start(&node);
    wait_for("both created", Duration::from_secs(20), || {
        (node.kube.deployment("web").is_some()
            && node.kube.deployment("api").is_some()
            && node.kube.deployment("old").is_none())
        .then_some(())
    });
    let web = node.kube.deployment("web").unwrap();
    assert_eq!(image(&web), "registry.example/web:1.4.0");
    assert_eq!(
        web["metadata"]["labels"]["app.kubernetes.io/managed-by"],
        "workload-manager"
    );
    assert_eq!(
        web["metadata"]["labels"]["workload-manager/workload"],
        "web"
    );
    assert_eq!(
        web["metadata"]["annotations"]["workload-manager/version"],
        "1.4.0"
    );
    assert_eq!(
        image(&node.kube.deployment("db").unwrap()),
        "someone/else:1",
        "not ours: untouched"
    );
    assert!(
        node.backend.wait_for_applied(2, Duration::from_secs(10)),
        "versions reported to the backend"
    );
    // The next sync sees the rollouts complete.
    node.kube.settle();
    sync(&m);
    let w = workload(&m, "web");
    assert_eq!(
        (w["deployedVersion"].as_str(), w["rollout"].as_str()),
        (Some("1.4.0"), Some("complete")),
        "{w}"
    );
    assert_eq!(w["ready"], "1/1");

    // A new version is applied and reported.
    node.want(&[("web", "1.5.0"), ("api", "2.0.0")]);
    let v = sync(&m);
    assert_eq!(v["lastSync"]["outcome"], "ok", "{v}");
    assert_eq!(
        image(&node.kube.deployment("web").unwrap()),
        "registry.example/web:1.5.0"
    );
    assert!(node
        .backend
        .applied_versions()
        .iter()
        .any(|a| a.workload == "web" && a.version == "1.5.0"));

    // Nothing changed: per sync one LIST, no write, and one 304 from the
    // backend (the Lease renewals every 5 s are the only other calls).
    node.kube.settle();
    sync(&m);
    let (kmark, bmark) = (node.kube.mark(), node.backend.mark());
    sync(&m); // two runs
    let k: Vec<_> = node
        .kube
        .requests_since(kmark)
        .into_iter()
        .filter(|r| !r.path.contains("/leases"))
        .collect();
    assert_eq!(k.len(), 2, "{k:#?}");
    assert!(k
        .iter()
        .all(|r| r.method == "GET" && r.path.starts_with(DEPLOYMENTS)));
    assert!(node
        .kube
        .writes_since(kmark)
        .iter()
        .all(|r| r.path.contains("/leases")));
    let b = node.backend.requests_since(bmark);
    assert_eq!(b.len(), 2, "{b:#?}");
    assert!(b.iter().all(|r| r.status == Some(304)), "{b:#?}");
}

#[test]
fn a_taken_name_is_a_conflict_and_a_bad_manifest_is_invalid() {
    let node = FakeNode::new();
    node.kube.put_deployment_raw("kubectl", unmanaged("db"));
    node.want(&[("db", "1"), ("web", "1")]);
    node.backend.put_manifest(
        "bad",
        "1",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"}}),
    );
    node.backend
        .set_workloads(TEST_ADDRESS, &[("db", "1"), ("web", "1"), ("bad", "1")]);
    let before = node.kube.deployment("db").unwrap();
    let m = start(&node);
    wait_for("web created", Duration::from_secs(20), || {
        node.kube.deployment("web").map(|_| ())
    });
    let v = wait_for("the sync to finish", Duration::from_secs(20), || {
        let v = status(&m);
        (v["lastSync"]["outcome"] != "never").then_some(v)
    });
    // A refused manifest is no failure of the sync: it would fail the same way again.
    assert_eq!(v["lastSync"]["outcome"], "ok", "{v}");
    let detail = v["lastSync"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("invalid, not tried again until the desired version changes: bad"),
        "{detail}"
    );
    let db = workload(&m, "db");
    assert_eq!(db["rollout"], "conflict", "{db}");
    // Its status and revision annotation may move (the controller), never its
    // spec or labels; and no write was sent for it.
    let after = node.kube.deployment("db").unwrap();
    for field in ["generation", "labels"] {
        assert_eq!(
            after["metadata"][field], before["metadata"][field],
            "{field}"
        );
    }
    assert_eq!(after["spec"], before["spec"]);
    let touched: Vec<_> = node
        .kube
        .log()
        .into_iter()
        .filter(|r| r.path.ends_with("/deployments/db") && r.method != "GET")
        .collect();
    assert!(touched.is_empty(), "{touched:#?}");
    let bad = workload(&m, "bad");
    assert_eq!(bad["rollout"], "invalid");
    assert!(
        bad["error"]
            .as_str()
            .unwrap()
            .contains("not an apps/v1 Deployment"),
        "{bad}"
    );
    assert!(node.kube.deployment("bad").is_none());
}

#[test]
fn a_refused_version_is_not_tried_again_until_the_desired_version_changes() {
    let node = FakeNode::new();
    node.want(&[("web", "1")]);
    // No manifest for gone 1: the backend answers 404.
    node.backend
        .set_workloads(TEST_ADDRESS, &[("web", "1"), ("gone", "1")]);
    let m = start_with(&node, &[("WM_SYNC_INTERVAL", "1s")]);
    let fetches = |node: &FakeNode| {
        node.backend
            .log()
            .iter()
            .filter(|r| r.path.contains("/workloads/gone/versions/"))
            .count()
    };
    // The workload shows the refusal while its sync is still running: wait
    // for that sync to end too.
    wait_for("gone refused", Duration::from_secs(20), || {
        (workload(&m, "gone")["rollout"] == "invalid" && status(&m)["lastSync"]["outcome"] == "ok")
            .then_some(())
    });
    // Several syncs later: one fetch, no failure, no backoff, steadily invalid.
    let runs = m.job_runs("sync");
    while m.job_runs("sync") < runs + 4 {
        let w = workload(&m, "gone");
        assert_eq!(w["rollout"], "invalid", "{w}");
        assert!(w["error"].as_str().unwrap().contains("404"), "{w}");
        assert_eq!(status(&m)["lastSync"]["outcome"], "ok");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fetches(&node), 1);
    let metrics = m.get("/metrics").body;
    assert!(
        metrics.contains("wm_job_runs_total{job=\"sync\",outcome=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        !metrics.contains("wm_job_runs_total{job=\"sync\",outcome=\"error\"}"),
        "{metrics}"
    );
    // A new desired version is tried at once.
    node.backend.put_manifest(
        "gone",
        "2",
        wm_testkit::backend::sample_manifest("gone", "registry.example/gone:2"),
    );
    node.backend
        .set_workloads(TEST_ADDRESS, &[("web", "1"), ("gone", "2")]);
    wait_for("gone 2 created", Duration::from_secs(20), || {
        node.kube.deployment("gone").map(|_| ())
    });
    assert_eq!(fetches(&node), 2);
}

#[test]
fn a_deployment_changed_or_deleted_by_hand_is_put_back() {
    let node = FakeNode::new();
    node.want(&[("web", "1.4.0")]);
    let m = start(&node);
    wait_for("web created", Duration::from_secs(20), || {
        node.kube.deployment("web").map(|_| ())
    });
    sync(&m);
    // Someone edits the image by hand.
    let mut edited = node.kube.deployment("web").unwrap();
    edited["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil/miner:1");
    node.kube.put_deployment_raw("kubectl", edited);
    sync(&m);
    assert_eq!(
        image(&node.kube.deployment("web").unwrap()),
        "registry.example/web:1.4.0"
    );
    // Someone deletes it.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = workload_manager::config::KubeConfig {
        api_url: node.kube.url(),
        token_file: Some(node.kube.token_file()),
        ca_file: node.kube.ca_file(),
    };
    let mut someone = workload_manager::kube::Kube::new(
        &config,
        "edge",
        Duration::from_secs(5),
        Duration::from_secs(5),
    );
    someone.delete("web", std::time::Instant::now()).unwrap();
    node.kube.settle();
    assert!(node.kube.deployment("web").is_none());
    sync(&m);
    assert_eq!(
        image(&node.kube.deployment("web").unwrap()),
        "registry.example/web:1.4.0"
    );
}

#[test]
fn a_rollout_in_progress_is_checked_again_soon() {
    let node = FakeNode::new();
    node.want(&[("web", "1.4.0")]);
    let m = start(&node);
    wait_for("web created", Duration::from_secs(20), || {
        node.kube.deployment("web").map(|_| ())
    });
    node.kube.settle();
    // No POST /v1/sync: the manager looks again by itself, well before the 10-minute interval.
    wait_for(
        "the rollout to show complete",
        Duration::from_secs(40),
        || (workload(&m, "web")["rollout"] == "complete").then_some(()),
    );
}

#[test]
fn one_failing_workload_does_not_stop_the_others() {
    let node = FakeNode::new();
    node.want(&[("api", "1"), ("web", "1")]);
    // The first create (api: plans go in name order) fails.
    node.kube.inject(
        Fault::new(FaultKind::InternalError)
            .method("POST")
            .path_prefix(DEPLOYMENTS),
    );
    let m = start(&node);
    wait_for("web created", Duration::from_secs(20), || {
        node.kube.deployment("web").map(|_| ())
    });
    let v = wait_for("the failed sync", Duration::from_secs(10), || {
        let v = status(&m);
        (v["lastSync"]["outcome"] == "error").then_some(v)
    });
    assert!(
        v["lastSync"]["error"]
            .as_str()
            .unwrap()
            .contains("api: create 1"),
        "{v}"
    );
    assert_eq!(workload(&m, "api")["rollout"], "failed");
    // The retry after a short backoff creates it.
    wait_for("api created on retry", Duration::from_secs(20), || {
        node.kube.deployment("api").map(|_| ())
    });
}

#[test]
fn a_rotated_token_is_picked_up_mid_run() {
    let node = FakeNode::new();
    node.want(&[("web", "1")]);
    let m = start(&node);
    wait_for("web created", Duration::from_secs(20), || {
        node.kube.deployment("web").map(|_| ())
    });
    node.kube.rotate_token();
    let mark = node.kube.mark();
    let v = sync(&m);
    assert_ne!(v["lastSync"]["outcome"], "error", "{v}");
    let statuses: Vec<Option<u16>> = node
        .kube
        .requests_since(mark)
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses[..2], [Some(401), Some(200)], "{statuses:?}");
    assert_eq!(m.get("/readyz").status, 200);
}

#[test]
fn storms_of_429_and_503_are_ridden_out_without_a_busy_loop() {
    let node = FakeNode::new();
    node.want(&[("web", "1")]);
    node.kube.inject(
        Fault::new(FaultKind::TooManyRequestsText {
            retry_after: Some(1),
        })
        .times(2)
        .method("GET")
        .path_prefix(DEPLOYMENTS),
    );
    node.kube.inject(
        Fault::new(FaultKind::ServiceUnavailable)
            .times(1)
            .method("GET")
            .path_prefix(DEPLOYMENTS),
    );
    let mark = node.kube.mark();
    let m = start(&node);
    wait_for("web created", Duration::from_secs(60), || {
        node.kube.deployment("web").map(|_| ())
    });
    let reads = node
        .kube
        .requests_since(mark)
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with(DEPLOYMENTS))
        .count();
    assert!(
        reads <= 7,
        "{reads} reads for 3 refusals: the manager backed off"
    );
    assert!(m.log().iter().any(|l| l.contains("429")), "{:#?}", m.log());
}

#[test]
fn a_hung_api_server_delays_heartbeats_by_at_most_the_call_timeout() {
    let node = FakeNode::new();
    node.want(&[("web", "1")]);
    let m = start_with(&node, &[("WM_HTTP_TIMEOUT", "2s")]);
    wait_for("web created", Duration::from_secs(20), || {
        node.kube.deployment("web").map(|_| ())
    });
    let mark = node.kube.mark();
    node.kube.inject(
        Fault::new(FaultKind::Hang(Duration::from_secs(30)))
            .method("GET")
            .path_prefix(DEPLOYMENTS),
    );
    assert_eq!(m.post("/v1/sync", "application/json", "").status, 202);
    wait_for("the hung call", Duration::from_secs(10), || {
        (!node.kube.requests_since(mark).is_empty()).then_some(())
    });
    let sent = std::time::Instant::now();
    assert_eq!(m.heartbeat("web").status, 204);
    assert!(
        sent.elapsed() < Duration::from_secs(4),
        "answered after {:?}",
        sent.elapsed()
    );
}

#[test]
fn many_new_workloads_are_told_from_taken_names_with_one_list() {
    let node = FakeNode::new();
    node.kube.put_deployment_raw("kubectl", unmanaged("w05"));
    let names: Vec<String> = (0..12).map(|i| format!("w{i:02}")).collect();
    let wanted: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1.0.0")).collect();
    node.want(&wanted);
    let m = start(&node);
    wait_for("a sync", Duration::from_secs(20), || {
        (m.job_runs("sync") >= 1).then_some(())
    });
    assert_eq!(workload(&m, "w05")["rollout"], "conflict");
    let log = node.kube.log();
    let reads: Vec<_> = log
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with(DEPLOYMENTS))
        .collect();
    // The managed list, then one list of everything instead of 12 GETs.
    assert_eq!(reads.len(), 2, "{reads:#?}");
    assert!(reads[0].query.contains("labelSelector"), "{reads:#?}");
    assert!(
        reads[1].path == DEPLOYMENTS && !reads[1].query.contains("labelSelector"),
        "{reads:#?}"
    );
    let creates = log
        .iter()
        .filter(|r| r.method == "POST" && r.path == DEPLOYMENTS)
        .count();
    assert_eq!(
        creates, 11,
        "every free name created, the taken one left alone"
    );
    let untouched = node.kube.deployment("w05").unwrap();
    assert!(untouched["metadata"]["labels"]
        .get("app.kubernetes.io/managed-by")
        .is_none());
}

#[test]
fn a_sync_asked_for_is_logged_even_when_it_changes_nothing() {
    let node = FakeNode::new();
    node.want(&[("web", "1.0.0")]);
    let mut m = start(&node);
    wait_for("a first sync", Duration::from_secs(20), || {
        (m.job_runs("sync") >= 1).then_some(())
    });
    assert_eq!(m.post("/v1/sync", "application/json", "").status, 202);
    let line = m.wait_for_log("sync (asked for): ", Duration::from_secs(20));
    assert!(line.contains("INFO"), "{line}");
    assert!(line.contains("1 desired"), "{line}");
}

#[test]
fn a_prune_to_empty_waits_for_a_confirming_fetch_a_minute_later() {
    let node = FakeNode::new();
    node.want(&[("web", "1.0.0"), ("api", "1.0.0")]);
    let m = start_with(&node, &[("WM_SYNC_INTERVAL", "2s")]);
    wait_for("both created", Duration::from_secs(20), || {
        (node.kube.deployments().len() == 2).then_some(())
    });
    node.backend.set_workloads(TEST_ADDRESS, &[]);
    let emptied = std::time::Instant::now();
    let v = wait_for("a pending prune", Duration::from_secs(20), || {
        let v = status(&m);
        (!v["pendingPrune"].is_null()).then_some(v)
    });
    assert_eq!(v["pendingPrune"]["names"], json!(["api", "web"]), "{v}");
    assert!(v["pendingPrune"]["firstSeenAt"].is_string(), "{v}");
    assert_eq!(
        v["lastSync"]["outcome"], "ok",
        "no failure, no backoff: {v}"
    );
    let text = m.get("/v1/status?format=text").body;
    assert!(text.contains("PENDING PRUNE"), "{text}");
    // An outage in between changes nothing.
    node.backend.set_reachable(false);
    let failed = m.job_runs("sync");
    wait_for(
        "syncs failing in the outage",
        Duration::from_secs(30),
        || {
            (status(&m)["lastSync"]["outcome"] == "error" && m.job_runs("sync") >= failed + 2)
                .then_some(())
        },
    );
    node.backend.set_reachable(true);
    while emptied.elapsed() < Duration::from_secs(50) {
        assert_eq!(
            node.kube.deployments().len(),
            2,
            "deleted before confirmation"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    wait_for("the confirmed prune", Duration::from_secs(40), || {
        node.kube.deployments().is_empty().then_some(())
    });
    let confirm = workload_manager::reconcile::PRUNE_CONFIRM_AFTER;
    assert!(emptied.elapsed() >= confirm, "{:?}", emptied.elapsed());
    wait_for("no prune pending", Duration::from_secs(10), || {
        status(&m)["pendingPrune"].is_null().then_some(())
    });
}

#[test]
fn a_field_the_created_version_had_and_the_next_lacks_is_removed() {
    let node = FakeNode::new();
    let mut first = wm_testkit::backend::sample_manifest("web", "registry.example/web:1");
    first["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--legacy"]);
    node.backend.put_manifest("web", "1", first);
    node.backend.set_workloads(TEST_ADDRESS, &[("web", "1")]);
    let m = start(&node);
    wait_for("web created", Duration::from_secs(20), || {
        node.kube.deployment("web").map(|_| ())
    });
    let created = node.kube.deployment("web").unwrap();
    assert_eq!(
        spec_managers(&created),
        [("workload-manager".to_string(), "Update".to_string())],
        "a create is an Update"
    );
    node.want(&[("web", "2")]);
    let v = sync(&m);
    assert_eq!(v["lastSync"]["outcome"], "ok", "{v}");
    let web = node.kube.deployment("web").unwrap();
    assert_eq!(image(&web), "registry.example/web:2");
    let c = &web["spec"]["template"]["spec"]["containers"][0];
    assert!(c.get("args").is_none(), "{c}");
    assert_eq!(
        spec_managers(&web),
        [("workload-manager".to_string(), "Apply".to_string())]
    );
}

/// `(manager, operation)` of each managedFields entry not of a subresource.
fn spec_managers(d: &Value) -> Vec<(String, String)> {
    d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f.get("subresource").is_none())
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (s("manager"), s("operation"))
        })
        .collect()
}
