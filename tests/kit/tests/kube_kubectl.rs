//! The real kubectl against the fake: discovery, get, server-side apply,
//! get -o json, delete. The kubectl is `KUBECTL`, else the first on `PATH`
//! (in CI, the one built with the control plane by .ci/cluster.sh). Skipped
//! (with a message) where there is none, except under CI=true, where that is
//! a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use wm_testkit::kube::{FakeKube, PodScenario};

mod kube_support;

/// `KUBECTL`, else the first `kubectl` on `PATH`.
fn kubectl_path() -> Option<PathBuf> {
    if let Some(k) = std::env::var_os("KUBECTL") {
        return Some(k.into());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join("kubectl"))
        .find(|p| p.is_file())
}

fn kubectl(kube: &FakeKube, args: &[&str], stdin_file: Option<&Path>) -> (bool, String, String) {
    let cache = kube.dir().join("kubectl-cache");
    let mut cmd = Command::new(kubectl_path().expect("kubectl"));
    cmd.arg("--kubeconfig")
        .arg(kube.kubeconfig_path())
        .arg("--cache-dir")
        .arg(&cache)
        .args(args)
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .env_remove("KUBECONFIG");
    if let Some(f) = stdin_file {
        cmd.arg("-f").arg(f);
    }
    let out = cmd.output().expect("run kubectl");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn kubectl_gets_applies_and_deletes() {
    if kubectl_path().is_none() {
        wm_testkit::proc::skip_outside_ci("kubectl is not installed (none on PATH, KUBECTL unset)");
        return;
    }
    let kube = FakeKube::start();

    let (ok, out, err) = kubectl(&kube, &["get", "deployments"], None);
    assert!(ok, "kubectl get failed: {out}{err}");

    let manifest = kube.dir().join("web.json");
    let d = kube_support::deployment("web", "nginx:1.27");
    std::fs::write(&manifest, d.to_string()).unwrap();
    let (ok, out, err) = kubectl(&kube, &["apply", "--server-side"], Some(&manifest));
    assert!(ok, "kubectl apply failed: {out}{err}");
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );

    let apply = kube
        .log()
        .into_iter()
        .find(|r| r.method == "PATCH")
        .expect("kubectl sent a PATCH");
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    assert_eq!(
        apply.query_param("fieldManager").as_deref(),
        Some("kubectl")
    );
    // kubectl sends the apply configuration as JSON (valid YAML).
    assert_eq!(
        apply.json().unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );

    let (ok, out, err) = kubectl(&kube, &["get", "deployment", "web", "-o", "json"], None);
    assert!(ok, "kubectl get -o json failed: {out}{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        got["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.27"
    );
    assert_eq!(got["spec"]["replicas"], 1);
    // kubectl hides managedFields; the stored object has them.
    let stored = kube.deployment("web").unwrap();
    assert_eq!(stored["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(stored["metadata"]["managedFields"][0]["operation"], "Apply");

    let (ok, out, err) = kubectl(&kube, &["get", "deployments"], None);
    assert!(
        ok && out.lines().any(|l| l.starts_with("web ")),
        "kubectl get failed: {out}{err}"
    );

    let (ok, out, err) = kubectl(&kube, &["delete", "deployment", "web"], None);
    assert!(ok, "kubectl delete failed: {out}{err}");
    assert!(out.contains("deployment.apps \"web\" deleted"), "{out}");
    assert!(kube.deployment("web").is_none());
}

#[test]
fn kubectl_gets_pods_and_the_node() {
    if kubectl_path().is_none() {
        wm_testkit::proc::skip_outside_ci("kubectl is not installed (none on PATH, KUBECTL unset)");
        return;
    }
    let kube = FakeKube::start();
    kube.set_pod_scenario("web", PodScenario::CrashLoop { restarts: 7 });
    kube.put_deployment_raw("kubectl", kube_support::deployment("web", "nginx:1.27"));
    kube.settle();

    let (ok, out, err) = kubectl(&kube, &["get", "pods", "-o", "json"], None);
    assert!(ok, "kubectl get pods -o json failed: {out}{err}");
    let got: Value = serde_json::from_str(&out).unwrap();
    let items = got["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    // kubectl puts kind and apiVersion back on each item and hides managedFields.
    let mut stored = kube.pods_of("web").remove(0);
    stored["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("managedFields");
    assert_eq!(items[0], stored);
    let waiting = &items[0]["status"]["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "CrashLoopBackOff");

    let (ok, out, err) = kubectl(&kube, &["get", "node", "edge-1", "-o", "json"], None);
    assert!(ok, "kubectl get node failed: {out}{err}");
    let node: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.31.4+k3s1");

    // Both types map (discovery); listing nodes is not granted.
    let (ok, out, err) = kubectl(&kube, &["get", "pods,nodes"], None);
    assert!(!ok);
    assert!(out.contains("web-"), "{out}");
    assert!(
        err.contains("nodes is forbidden: User \"system:serviceaccount:wm:workload-manager\" cannot list resource \"nodes\""),
        "{err}"
    );
}
