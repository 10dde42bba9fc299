//! Node health and workload diagnosis through the real binary, against the
//! fake Kubernetes API (its pods in each scenario a kubelet reports, its
//! Node) and the fake backend: what `/v1/status`, the reports and `/metrics`
//! say, and what it costs the API server (one pod list a window).

use std::time::Duration;

use serde_json::{json, Value};
use wm_testkit::kube::PodScenario;
use wm_testkit::node::FakeNode;
use wm_testkit::proc::{wait_for, Manager};

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");
const LIMIT: Duration = Duration::from_secs(30);

/// Starts the manager with a report window a second long.
fn start(node: &FakeNode, env: &[(&str, &str)]) -> Manager {
    let mut all = vec![("WM_REPORT_INTERVAL", "1s")];
    all.extend_from_slice(env);
    node.start(BIN, &all)
}

/// Waits until `name`'s status entry satisfies `ok`, and returns it.
fn wait_workload(m: &Manager, name: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    wait_for(what, LIMIT, || {
        let w = m.workload(name);
        ok(&w).then_some(w)
    })
}

#[test]
fn each_reason_a_kubelet_reports_is_shown_with_its_message() {
    let node = FakeNode::new();
    let cases: [(&str, PodScenario, &str, &str); 7] = [
        (
            "crash",
            PodScenario::CrashLoop { restarts: 7 },
            "CrashLoopBackOff",
            "back-off",
        ),
        (
            "pull",
            PodScenario::ImagePullBackOff,
            "ImagePullBackOff",
            "registry.example/pull:1",
        ),
        (
            "errpull",
            PodScenario::ErrImagePull,
            "ErrImagePull",
            "registry.example/errpull:1",
        ),
        (
            "config",
            PodScenario::CreateContainerConfigError {
                secret: "db-password".into(),
            },
            "CreateContainerConfigError",
            "secret \"db-password\" not found",
        ),
        ("oom", PodScenario::OomKilled, "OOMKilled", ""),
        (
            "pending",
            PodScenario::Unschedulable,
            "Unschedulable",
            "0/1 nodes are available",
        ),
        (
            "init",
            PodScenario::InitWaiting,
            "Init:CrashLoopBackOff",
            "back-off",
        ),
    ];
    for (name, scenario, _, _) in &cases {
        node.kube.set_pod_scenario(name, scenario.clone());
    }
    let mut wanted: Vec<(&str, &str)> = cases.iter().map(|(n, ..)| (*n, "1")).collect();
    wanted.push(("web", "1"));
    node.want(&wanted);
    let m = start(&node, &[]);
    for (name, _, reason, message) in &cases {
        let w = wait_workload(&m, name, reason, |w| w["reason"] == *reason);
        assert_eq!(w["replicas"], json!({"desired": 1, "ready": 0}), "{w}");
        let said = w["reasonMessage"].as_str().unwrap_or_default();
        assert!(said.contains(message), "{name}: {said:?} lacks {message:?}");
        assert!(said.len() <= 256, "{w}");
    }
    let crash = m.workload("crash");
    assert_eq!(crash["restarts"], 7, "{crash}");
    assert_eq!(crash["lastTermination"]["reason"], "Error", "{crash}");
    assert_eq!(crash["lastTermination"]["exitCode"], 1, "{crash}");
    let oom = m.workload("oom");
    assert_eq!(oom["lastTermination"]["reason"], "OOMKilled", "{oom}");
    assert_eq!(oom["lastTermination"]["exitCode"], 137, "{oom}");
    let web = wait_workload(&m, "web", "web ready, its pods read", |w| {
        w["replicas"]["ready"] == 1 && !w["restarts"].is_null()
    });
    assert_eq!(web["reason"], Value::Null, "{web}");
    assert_eq!(web["lastTermination"], Value::Null, "{web}");
    assert_eq!(web["restarts"], 0, "{web}");

    // One glance at the table says why each one is down.
    let text = m.get("/v1/status?format=text").body;
    for (name, _, reason, _) in &cases {
        let row = text
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no row for {name}: {text}"));
        assert!(row.contains(reason), "{row}");
    }

    // And the backend hears the same.
    let reported = wait_for("a report with every reason", LIMIT, || {
        node.backend.reports().into_iter().rev().find(|r| {
            r.report["workloads"].as_array().is_some_and(|ws| {
                ws.iter()
                    .all(|w| w["name"] == "web" || w["reason"].is_string())
            })
        })
    });
    let ws = reported.report["workloads"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let crash = ws.iter().find(|w| w["name"] == "crash").unwrap();
    assert_eq!(crash["reason"], "CrashLoopBackOff");
    assert_eq!(crash["restarts"], 7);

    // /metrics: restarts and ready replicas per workload.
    let metrics = m.get("/metrics").body;
    assert!(
        metrics.contains("wm_workload_restarts{workload=\"crash\"} 7"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wm_workload_ready_replicas{workload=\"web\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("wm_workload_ready_replicas{workload=\"crash\"} 0"),
        "{metrics}"
    );
}

#[test]
fn an_oom_kill_stays_visible_after_the_pod_recovered_and_was_replaced() {
    let node = FakeNode::new();
    node.kube
        .set_pod_scenario("web", PodScenario::OomKilledThenRecovered);
    node.want(&[("web", "1")]);
    let m = start(&node, &[]);
    let w = wait_workload(&m, "web", "the OOM kill seen", |w| {
        w["lastTermination"]["reason"] == "OOMKilled"
    });
    assert_eq!(w["reason"], Value::Null, "recovered and ready: {w}");
    assert_eq!(w["restarts"], 1, "{w}");
    let at = w["lastTermination"]["at"].clone();
    // A new version replaces the pod: the kill is still the last one seen.
    node.kube.set_pod_scenario("web", PodScenario::Ready);
    node.want(&[("web", "2")]);
    m.post("/v1/sync", "application/json", "");
    let w = wait_workload(&m, "web", "the new pod ready", |w| {
        w["deployedVersion"] == "2" && w["replicas"]["ready"] == 1 && w["restarts"] == 0
    });
    assert_eq!(w["lastTermination"]["reason"], "OOMKilled", "{w}");
    assert_eq!(w["lastTermination"]["at"], at, "{w}");
    assert_eq!(w["lastTermination"]["exitCode"], 137, "{w}");
}

#[test]
fn the_node_section_has_the_nodes_conditions_and_the_kernels_facts() {
    let node = FakeNode::new();
    node.want(&[("web", "1")]);
    let m = start(&node, &[]);
    let v = wait_for("the node read", LIMIT, || {
        let v = m.status();
        (v["node"]["name"] == "edge-1" && v["node"]["cpu"]["usedPercent"].is_number()).then_some(v)
    });
    let n = &v["node"];
    assert_eq!(n["kubelet"], "v1.31.4+k3s1", "{n}");
    assert_eq!(
        n["conditions"],
        json!({"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False"}),
        "{n}"
    );
    assert_eq!(n["error"], Value::Null, "{n}");
    // The kernel of this machine: a boot id, an uptime, real sizes.
    assert_eq!(n["bootId"].as_str().map(str::len), Some(36), "{n}");
    assert!(n["uptimeSeconds"].as_u64() > Some(0), "{n}");
    assert!(n["kernel"].is_string() && n["arch"].is_string(), "{n}");
    assert!(n["cpu"]["cores"].as_u64() >= Some(1), "{n}");
    for resource in ["cpu", "memory", "disk"] {
        let used = n[resource]["usedPercent"].as_f64().unwrap_or(-1.0);
        assert!((0.0..=100.0).contains(&used), "{resource}: {n}");
        // Under 30 minutes of samples no level above healthy can be reached.
        assert_eq!(n[resource]["status"], "healthy", "{resource}: {n}");
    }
    assert!(
        n["memory"]["totalBytes"].as_u64() > n["memory"]["usedBytes"].as_u64(),
        "{n}"
    );
    assert!(
        n["disk"]["totalBytes"].as_u64() > n["disk"]["freeBytes"].as_u64(),
        "{n}"
    );
    // A condition that changes shows at the next window.
    node.kube.set_node_condition("DiskPressure", "True");
    wait_for("DiskPressure seen", LIMIT, || {
        (m.status()["node"]["conditions"]["DiskPressure"] == "True").then_some(())
    });
    let metrics = m.get("/metrics").body;
    for line in [
        "wm_node_condition{condition=\"DiskPressure\",status=\"True\"} 1",
        "wm_node_condition{condition=\"Ready\",status=\"True\"} 1",
        "wm_node_resource_status{resource=\"disk\",status=\"healthy\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(
        metrics.contains("wm_node_used_ratio{resource=\"memory\"} 0."),
        "{metrics}"
    );
    // The report carries the same node object.
    let r = wait_for("a report with the node", LIMIT, || {
        node.backend
            .reports()
            .into_iter()
            .rev()
            .find(|r| r.report["node"]["conditions"]["DiskPressure"] == "True")
    });
    assert_eq!(r.report["node"]["kubelet"], "v1.31.4+k3s1");
    assert!(
        r.report["node"].get("error").is_none(),
        "status only: {}",
        r.report["node"]
    );
}

#[test]
fn without_the_nodes_grant_or_node_name_the_nodes_fields_are_null_and_say_why() {
    let node = FakeNode::new();
    node.kube.deny_nodes(true);
    node.want(&[("web", "1")]);
    let m = start(&node, &[]);
    // The 403 can come before the window's first kernel sample: wait for both.
    let v = wait_for("the 403 seen and the kernel sampled", LIMIT, || {
        let v = m.status();
        let why = v["node"]["error"].as_str().unwrap_or_default();
        (why.starts_with("not allowed") && v["node"]["kernel"].is_string()).then_some(v)
    });
    let n = &v["node"];
    let why = n["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("not allowed to get Node edge-1") && why.contains("ClusterRole"),
        "{n}"
    );
    assert_eq!(
        (
            n["name"].clone(),
            n["kubelet"].clone(),
            n["conditions"].clone()
        ),
        (Value::Null, Value::Null, Value::Null),
        "{n}"
    );
    // Nothing else is affected: the workload is deployed and explained.
    let w = wait_workload(&m, "web", "web ready, its pods read", |w| {
        w["replicas"]["ready"] == 1 && !w["restarts"].is_null()
    });
    assert_eq!(w["restarts"], 0, "{w}");
    assert_eq!(m.status()["lastSync"]["outcome"], "ok");
    assert!(
        v["node"]["kernel"].is_string(),
        "the kernel's facts stay: {n}"
    );
    // The grant comes back: so do the fields.
    node.kube.deny_nodes(false);
    wait_for("the node read", LIMIT, || {
        (m.status()["node"]["name"] == "edge-1").then_some(())
    });
    drop(m);

    let node = FakeNode::new();
    node.want(&[("web", "1")]);
    let m = start(&node, &[("NODE_NAME", "")]);
    let v = wait_for("a window", LIMIT, || {
        let v = m.status();
        v["node"]["bootId"].is_string().then_some(v)
    });
    assert!(
        v["node"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("NODE_NAME is not set"),
        "{v}"
    );
    assert_eq!(v["node"]["conditions"], Value::Null);
    assert!(
        !node
            .kube
            .log()
            .iter()
            .any(|r| r.path.starts_with("/api/v1/nodes")),
        "no Node read without NODE_NAME"
    );
}

#[test]
fn a_report_window_costs_one_pod_list_whatever_the_number_of_workloads() {
    let node = FakeNode::new();
    let names: Vec<String> = (0..20).map(|i| format!("w{i:02}")).collect();
    let wanted: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
    node.want(&wanted);
    let m = start(&node, &[("WM_REPORT_INTERVAL", "2s")]);
    wait_for("all deployed and explained", LIMIT, || {
        names
            .iter()
            .all(|n| m.workload(n)["restarts"] == 0)
            .then_some(())
    });
    let mark = node.kube.mark();
    let reports = node.backend.reports().len();
    wait_for("three more windows", LIMIT, || {
        (node.backend.reports().len() >= reports + 3).then_some(())
    });
    let calls = node.kube.requests_since(mark);
    let pod_lists = calls.iter().filter(|r| r.path.contains("/pods")).count();
    let node_gets = calls
        .iter()
        .filter(|r| r.path.starts_with("/api/v1/nodes/"))
        .count();
    let windows = node.backend.reports().len() - reports;
    // A window in progress may have made its reads already.
    assert!(
        (windows..=windows + 1).contains(&pod_lists),
        "{pod_lists} pod lists in {windows} windows"
    );
    assert!(
        (windows..=windows + 1).contains(&node_gets),
        "{node_gets} Node reads in {windows} windows"
    );
    assert!(
        calls
            .iter()
            .all(|r| r.method == "GET" || r.path.contains("/leases/")),
        "reads only: {calls:?}"
    );
    assert!(
        calls
            .iter()
            .filter(|r| r.path.contains("/pods"))
            .all(|r| r.path == "/api/v1/namespaces/edge/pods" && r.query == "resourceVersion=0"),
        "one list of the namespace, from the cache"
    );
}
