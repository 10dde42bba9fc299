//! Self-update against the fake S3 and the fake Kubernetes API, running the
//! real binary (version 0.1.0): only the image of the manager's own
//! container ever changes, only to a newer release in the same repository,
//! and a release that does not become available is rolled back and not
//! tried again until a newer one appears.

use std::time::Duration;

use serde_json::{json, Value};
use wm_testkit::node::FakeNode;
use wm_testkit::proc::{wait_for, Manager};
use wm_testkit::s3::{FakeS3, Fault, FaultKind};

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");
const BUCKET: &str = "releases";
const KEY: &str = "workload-manager/latest";
const OWN: &str = "/apis/apps/v1/namespaces/edge/deployments/workload-manager";
const SECRET: &str = "s3-secret-that-must-not-leak";

/// The manager's own Deployment as the manifests install it (plus a sidecar
/// that must never change).
fn own_deployment(image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "workload-manager", "labels": {"app.kubernetes.io/name": "workload-manager"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": "workload-manager"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": "workload-manager"}},
                "spec": {"containers": [
                    {"name": "log-shipper", "image": "registry.example/shipper:1.0.0"},
                    {"name": "workload-manager", "image": image}
                ]}
            }
        }
    })
}

struct Setup {
    node: FakeNode,
    s3: FakeS3,
}

fn setup(image: &str, signed: bool) -> Setup {
    let node = FakeNode::new();
    node.kube
        .put_deployment_raw("kubectl", own_deployment(image));
    node.kube.settle();
    let s3 = if signed {
        FakeS3::builder().credentials("AKIDTEST", SECRET).start()
    } else {
        FakeS3::start()
    };
    s3.create_bucket(BUCKET);
    Setup { node, s3 }
}

impl Setup {
    fn start(&self, extra: &[(&str, &str)]) -> Manager {
        let (endpoint, region) = (self.s3.url(), self.s3.region().to_string());
        let mut env = vec![
            ("WM_UPDATE_S3_BUCKET", BUCKET),
            ("WM_UPDATE_S3_ENDPOINT", endpoint.as_str()),
            ("WM_UPDATE_S3_REGION", region.as_str()),
            ("WM_UPDATE_INTERVAL", "1s"),
            ("WM_REPORT_INTERVAL", "1h"),
            ("WM_SYNC_INTERVAL", "1h"),
        ];
        env.extend_from_slice(extra);
        self.node.start(BIN, &env)
    }

    fn signed_start(&self, extra: &[(&str, &str)]) -> Manager {
        let mut env = vec![
            ("AWS_ACCESS_KEY_ID", "AKIDTEST"),
            ("AWS_SECRET_ACCESS_KEY", SECRET),
        ];
        env.extend_from_slice(extra);
        self.start(&env)
    }

    fn publish(&self, body: &str) {
        self.s3.put_object(BUCKET, KEY, body);
    }

    fn image(&self) -> String {
        let d = self
            .node
            .kube
            .deployment("workload-manager")
            .expect("own Deployment");
        d["spec"]["template"]["spec"]["containers"][1]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Writes to the own Deployment since `mark`, by the manager.
    fn own_writes(&self, mark: wm_testkit::kube::Mark) -> Vec<String> {
        self.node
            .kube
            .writes_since(mark)
            .iter()
            .filter(|r| r.path.starts_with(OWN))
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }
}

fn status(m: &Manager) -> Value {
    m.get("/v1/status").json()
}

/// Waits for `n` more finished update checks and returns the status then.
fn checks(m: &Manager, n: u64) -> Value {
    let before = m.job_runs("update-check");
    wait_for("update checks", Duration::from_secs(30), || {
        (m.job_runs("update-check") >= before + n).then_some(())
    });
    let v = status(m);
    assert!(v["lastUpdateCheck"]["at"].is_string(), "{v}");
    v
}

#[test]
fn a_newer_release_changes_only_the_own_image_in_the_running_tag_style() {
    for (running, file, expected) in [
        ("registry.example/workload-manager:0.1.0", "0.2.0\n", "registry.example/workload-manager:0.2.0"),
        ("registry.example:5000/wm:v0.1.0", r#"{"version": "v0.2.0"}"#, "registry.example:5000/wm:v0.2.0"),
        (
            "registry.example/wm:0.1.0@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            " 0.2.0-rc.1 ",
            "registry.example/wm:0.2.0-rc.1",
        ),
    ] {
        let s = setup(running, true);
        s.publish(file);
        let before = s.node.kube.deployment("workload-manager").unwrap();
        let mark = s.node.kube.mark();
        let m = s.signed_start(&[]);
        wait_for("the image patched", Duration::from_secs(30), || {
            (s.image() == expected).then_some(())
        });
        let after = s.node.kube.deployment("workload-manager").unwrap();
        assert_eq!(
            after["spec"]["template"]["spec"]["containers"][0], before["spec"]["template"]["spec"]["containers"][0],
            "the sidecar is untouched"
        );
        assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
        assert!(after["metadata"]["labels"].get("app.kubernetes.io/managed-by").is_none());
        assert_eq!(s.own_writes(mark), vec![format!("PATCH {OWN}")]);
        // The fake's controller completes the rollout; the manager says so.
        let v = wait_for("the rollout seen complete", Duration::from_secs(30), || {
            let v = status(&m);
            v["lastUpdateCheck"]["detail"]
                .as_str()
                .is_some_and(|d| d.contains("is available") || d.contains("about to be replaced"))
                .then_some(v)
        });
        assert_eq!(v["lastUpdateCheck"]["outcome"], "ok", "{v}");
        // And it never patches again while it waits to be replaced.
        checks(&m, 2);
        assert_eq!(s.own_writes(mark).len(), 1, "{:?}", s.own_writes(mark));
    }
}

#[test]
fn equal_older_garbage_missing_and_foreign_files_change_nothing() {
    let cases: [(Option<&str>, &str, &str); 7] = [
        (Some("0.1.0"), "ok", "up to date"),
        (Some("v0.0.9"), "ok", "up to date"),
        (Some("0.1.0-rc.1"), "ok", "up to date"),
        (Some("latest"), "error", "not a semantic version"),
        (
            Some(r#"{"version": "9.9.9", "image": "evil.example/x:9.9.9"}"#),
            "error",
            "only name a version",
        ),
        (
            Some("\u{0}\u{1}garbage"),
            "error",
            "s3://releases/workload-manager/latest",
        ),
        (None, "error", "NoSuchKey"),
    ];
    for (file, outcome, says) in cases {
        // Anonymous (an unsigned GET of the object URL) for these.
        let s = setup("registry.example/workload-manager:0.1.0", false);
        if let Some(body) = file {
            s.publish(body);
        }
        let mark = s.node.kube.mark();
        let m = s.start(&[]);
        let v = checks(&m, 2);
        assert_eq!(v["lastUpdateCheck"]["outcome"], outcome, "{file:?}: {v}");
        let text = if outcome == "error" {
            v["lastUpdateCheck"]["error"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        } else {
            v["lastUpdateCheck"]["detail"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        assert!(text.contains(says), "{file:?}: {text}");
        assert!(
            s.own_writes(mark).is_empty(),
            "{file:?}: {:?}",
            s.own_writes(mark)
        );
        assert_eq!(s.image(), "registry.example/workload-manager:0.1.0");
        assert_eq!(m.get("/healthz").status, 200);
    }
}

#[test]
fn s3_errors_and_a_hung_s3_are_bounded_and_leak_no_secret() {
    let s = setup("registry.example/workload-manager:0.1.0", true);
    s.publish("0.1.0");
    let mark = s.node.kube.mark();
    let m = s.signed_start(&[("WM_HTTP_TIMEOUT", "2s"), ("WM_LOG", "debug")]);
    let error_with = |part: &str| {
        wait_for(part, Duration::from_secs(30), || {
            let v = status(&m);
            v["lastUpdateCheck"]["error"]
                .as_str()
                .filter(|e| e.contains(part))
                .map(str::to_string)
        })
    };
    s.s3.inject(Fault::new(FaultKind::AccessDenied).times(1));
    let denied = error_with("403");
    assert!(
        denied.contains("S3 answered 403 AccessDenied: Access Denied"),
        "{denied}"
    );
    s.s3.inject(Fault::new(FaultKind::InternalError).times(1));
    error_with("500 InternalError");
    s.s3.inject(Fault::new(FaultKind::Hang(Duration::from_secs(30))).times(1));
    // While S3 hangs (the next check, within about a second), requests are
    // answered within the call timeout (no workload is desired here: 204
    // before the first sync, 404 after), and then the check fails with a
    // timeout.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let timeout = loop {
        assert!(std::time::Instant::now() < deadline, "no timeout reported");
        let sent = std::time::Instant::now();
        let r = m.heartbeat("web");
        assert!(matches!(r.status, 204 | 404), "{}", r.status);
        assert!(
            sent.elapsed() < Duration::from_secs(3),
            "{:?}",
            sent.elapsed()
        );
        let v = status(&m);
        if let Some(e) = v["lastUpdateCheck"]["error"].as_str() {
            if e.contains("unreachable") {
                break e.to_string();
            }
        }
    };
    assert!(
        timeout.contains("timeout") || timeout.contains("timed out"),
        "{timeout}"
    );
    assert!(s.own_writes(mark).is_empty());
    // Once S3 answers with a newer release, the update happens.
    s.publish("0.2.0");
    wait_for("the image patched", Duration::from_secs(60), || {
        (s.image() == "registry.example/workload-manager:0.2.0").then_some(())
    });
    assert_eq!(s.own_writes(mark).len(), 1);
    let everything = format!(
        "{}\n{}\n{}",
        m.log().join("\n"),
        status(&m),
        m.get("/metrics").body
    );
    for secret in [SECRET, "X-Amz-Signature", "X-Amz-Credential"] {
        assert!(!everything.contains(secret), "{secret} leaked");
    }
}

#[test]
fn a_broken_release_is_rolled_back_and_skipped_until_a_newer_one() {
    let s = setup("registry.example/workload-manager:0.1.0", true);
    // Pods of 0.2.0 never become ready; the fake's progress deadline is 1 s.
    s.node
        .kube
        .mark_broken_image("registry.example/workload-manager:0.2.0");
    s.publish("0.2.0");
    let mark = s.node.kube.mark();
    let m = s.signed_start(&[]);
    wait_for("the patch to 0.2.0", Duration::from_secs(30), || {
        (s.image() == "registry.example/workload-manager:0.2.0").then_some(())
    });
    let v = wait_for("the rollback", Duration::from_secs(60), || {
        let v = status(&m);
        v["lastUpdateCheck"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("rolled back"))
            .then_some(v)
    });
    assert!(
        v["lastUpdateCheck"]["error"]
            .as_str()
            .unwrap()
            .contains("exceeded the progress deadline"),
        "{v}"
    );
    let d = s.node.kube.deployment("workload-manager").unwrap();
    assert_eq!(s.image(), "registry.example/workload-manager:0.1.0");
    assert_eq!(
        d["metadata"]["annotations"]["workload-manager/rejected-version"],
        "0.2.0"
    );
    assert_eq!(s.own_writes(mark).len(), 2, "{:?}", s.own_writes(mark));

    // The same file again: nothing is tried.
    let v = checks(&m, 3);
    assert!(
        v["lastUpdateCheck"]["detail"]
            .as_str()
            .unwrap()
            .contains("rolled back before"),
        "{v}"
    );
    assert_eq!(s.own_writes(mark).len(), 2);

    // A newer good release is applied, the record of 0.2.0 stays.
    s.publish("0.3.0");
    wait_for("the patch to 0.3.0", Duration::from_secs(30), || {
        (s.image() == "registry.example/workload-manager:0.3.0").then_some(())
    });
    let d = s.node.kube.deployment("workload-manager").unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["workload-manager/rejected-version"],
        "0.2.0"
    );
}

#[test]
fn without_its_own_deployment_it_says_so_and_writes_nothing() {
    let node = FakeNode::new();
    let s3 = FakeS3::start();
    s3.create_bucket(BUCKET);
    s3.put_object(BUCKET, KEY, "0.2.0");
    let (endpoint, region) = (s3.url(), s3.region().to_string());
    let mark = node.kube.mark();
    let m = node.start(
        BIN,
        &[
            ("WM_UPDATE_S3_BUCKET", BUCKET),
            ("WM_UPDATE_S3_ENDPOINT", endpoint.as_str()),
            ("WM_UPDATE_S3_REGION", region.as_str()),
            ("WM_UPDATE_INTERVAL", "1s"),
            ("WM_SELF_DEPLOYMENT", "wm-renamed"),
        ],
    );
    let v = checks(&m, 1);
    let e = v["lastUpdateCheck"]["error"].as_str().unwrap_or_default();
    assert!(
        e.contains("wm-renamed") && e.contains("WM_SELF_DEPLOYMENT"),
        "{v}"
    );
    assert!(node
        .kube
        .writes_since(mark)
        .iter()
        .all(|r| r.path.contains("/leases")));
}
