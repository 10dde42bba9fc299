//! End to end against a real Kubernetes control plane (`.ci/cluster.sh
//! start`: kube-apiserver with RBAC and Pod Security admission, the real
//! Deployment and ReplicaSet controllers, the scheduler, KWOK playing the
//! kubelet of node edge-1). The release binary runs as it would in its pod:
//! our `manifests/` applied in a namespace of the test's own, a bound token of
//! the manager's ServiceAccount from `kubectl create token`, the cluster's CA,
//! so every call it makes is authorized by the Role we ship. The API server's
//! audit log tells which calls it made, with which token.
//!
//! Without a control plane (no `WM_CLUSTER_API_URL`) every test is skipped
//! with a message, except under `CI=true`, where that is a failure.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use wm_testkit::backend::{sample_manifest, FakeBackend};
use wm_testkit::cluster::{token_id, AuditEvent, ControlPlane, Namespace};
use wm_testkit::node::TEST_ADDRESS;
use wm_testkit::proc::{skip_outside_ci, wait_for, Manager};
use wm_testkit::s3::FakeS3;

/// The release binary (`WM_STATIC_BIN` from `.ci/static.sh`), else the test build.
fn bin() -> PathBuf {
    std::env::var_os("WM_STATIC_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_workload-manager").into())
}

fn control_plane() -> Option<ControlPlane> {
    match ControlPlane::from_env() {
        Ok(cp) => Some(cp),
        Err(why) => {
            skip_outside_ci(&why);
            None
        }
    }
}

/// One test's world: its namespace with `manifests/` applied, a fake backend,
/// and a token file for the manager.
struct E2e {
    ns: Namespace,
    backend: FakeBackend,
    token_file: PathBuf,
}

impl E2e {
    fn new(tag: &str) -> Option<E2e> {
        E2e::with(tag, |_| {})
    }

    /// `edit` may change the rendered manifests before they are applied.
    fn with(tag: &str, edit: impl FnOnce(&mut Vec<Value>)) -> Option<E2e> {
        let cp = control_plane()?;
        let ns = Namespace::install(&cp, tag, edit);
        let token_file = ns.dir.0.join("token");
        ns.write_token(&token_file);
        Some(E2e {
            ns,
            backend: FakeBackend::start(),
            token_file,
        })
    }

    /// Starts the manager as pod `pod` with its own token file (so its calls
    /// can be told apart in the audit log); returns it and that token's id.
    fn start_as(&self, pod: &str, token_file: &std::path::Path, extra: &[(&str, &str)]) -> Manager {
        let backend = self.backend.url();
        let mut env: Vec<(String, String)> = self.ns.manager_env(token_file);
        env.push(("NODE_SYSTEM_ENDPOINT".into(), backend));
        env.push(("POD_NAME".into(), pod.into()));
        env.push(("WM_REPORT_INTERVAL".into(), "1h".into()));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Manager::start(bin(), &env)
    }

    fn start(&self, extra: &[(&str, &str)]) -> Manager {
        self.start_as("workload-manager-0", &self.token_file, extra)
    }

    /// Publishes `workloads`, each with the sample manifest unless `manifests` has one.
    fn want(&self, workloads: &[(&str, &str)]) {
        for (name, version) in workloads {
            let image = format!("registry.example/{name}:{version}");
            self.backend
                .put_manifest(name, version, sample_manifest(name, &image));
        }
        self.backend.set_workloads(TEST_ADDRESS, workloads);
    }

    fn deployment(&self, name: &str) -> Option<Value> {
        self.ns.deployment(name)
    }
}

fn image(d: &Value) -> &str {
    d["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

/// The managers of `d`'s fields: `(manager, operation)` pairs.
fn field_managers(d: &Value) -> Vec<(String, String)> {
    d["metadata"]["managedFields"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["manager"].as_str().unwrap_or_default().to_string(),
                        f["operation"].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// No call of the manager was refused (401/403) or failed on the server (5xx).
fn assert_no_refused_calls(e: &E2e) {
    let bad: Vec<String> =
        e.ns.manager_calls()
            .iter()
            .filter(|c| matches!(c.code(), 401 | 403) || c.code() >= 500)
            .map(AuditEvent::line)
            .collect();
    assert!(bad.is_empty(), "refused calls: {bad:#?}");
}

fn unmanaged(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": name, "image": "someone/else:1"}]}}}})
}

#[test]
fn lifecycle_against_the_real_api_server() {
    let Some(e) = E2e::new("life") else { return };
    // Not ours: same name as a desired workload.
    e.ns.kubectl(&["apply", "-f", "-"], Some(&unmanaged("db").to_string()));
    // Ours from before, no longer desired.
    let mut old = unmanaged("old");
    old["metadata"]["labels"] = json!({"app.kubernetes.io/managed-by": "workload-manager", "workload-manager/workload": "old"});
    old["metadata"]["annotations"] = json!({"workload-manager/version": "0.9"});
    e.ns.kubectl(&["apply", "-f", "-"], Some(&old.to_string()));
    let db_before = e.deployment("db").expect("db");

    // web 1.4.0 (created) has args that 1.5.0 (applied) drops; 1.5.0 adds an
    // environment variable that 1.6.0 drops.
    let mut web14 = sample_manifest("web", "registry.example/web:1.4.0");
    web14["spec"]["template"]["spec"]["containers"][0]["args"] = json!(["--legacy"]);
    e.backend.put_manifest("web", "1.4.0", web14);
    let mut web15 = sample_manifest("web", "registry.example/web:1.5.0");
    web15["spec"]["template"]["spec"]["containers"][0]["env"] =
        json!([{"name": "LEGACY", "value": "1"}]);
    e.backend.put_manifest("web", "1.5.0", web15);
    e.backend.put_manifest(
        "web",
        "1.6.0",
        sample_manifest("web", "registry.example/web:1.6.0"),
    );
    e.backend.put_manifest(
        "api",
        "2.0.0",
        sample_manifest("api", "registry.example/api:2.0.0"),
    );
    e.backend
        .put_manifest("db", "1", sample_manifest("db", "registry.example/db:1"));
    // Refused by our checks: never sent.
    e.backend.put_manifest(
        "bad",
        "1",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bad"}}),
    );
    // Passes our checks, refused by the API server: the selector does not
    // match the template's labels.
    let mut broken = sample_manifest("broken", "registry.example/broken:1");
    broken["spec"]["selector"]["matchLabels"] = json!({"app": "something-else"});
    e.backend.put_manifest("broken", "1", broken);
    let desired = [
        ("web", "1.4.0"),
        ("api", "2.0.0"),
        ("db", "1"),
        ("bad", "1"),
        ("broken", "1"),
    ];
    e.backend.set_workloads(TEST_ADDRESS, &desired);

    let m = e.start(&[]);
    wait_for(
        "web and api created, old deleted",
        Duration::from_secs(60),
        || {
            (e.deployment("web").is_some()
                && e.deployment("api").is_some()
                && e.deployment("old").is_none())
            .then_some(())
        },
    );
    let web = e.deployment("web").unwrap();
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
    assert!(
        field_managers(&web)
            .iter()
            .any(|(m, _)| m == "workload-manager"),
        "{:?}",
        field_managers(&web)
    );

    let v = wait_for("the first sync to end", Duration::from_secs(60), || {
        let v = m.status();
        v["lastSync"]["outcome"].is_string().then_some(v)
    });
    // db: not ours, reported as a conflict and untouched.
    let db = m.workload("db");
    assert_eq!(db["rollout"], "conflict", "{db}");
    let db_after = e.deployment("db").unwrap();
    assert_eq!(db_after["spec"], db_before["spec"]);
    assert_eq!(
        db_after["metadata"]["labels"],
        db_before["metadata"]["labels"]
    );
    // bad: refused by our checks, never sent.
    let bad = m.workload("bad");
    assert_eq!(bad["rollout"], "invalid", "{bad}");
    // broken: the API server's own message.
    let broken = m.workload("broken");
    assert_eq!(broken["rollout"], "failed", "{broken}");
    let err = broken["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{broken}\n{v}"
    );
    assert!(e.deployment("broken").is_none());

    // The controllers and KWOK roll web out; the manager sees it complete.
    let w = wait_for("web's rollout complete", Duration::from_secs(90), || {
        let w = m.workload("web");
        (w["rollout"] == "complete").then_some(w)
    });
    assert_eq!(w["deployedVersion"], "1.4.0", "{w}");
    assert_eq!(w["ready"], "1/1", "{w}");
    assert!(
        e.backend
            .applied_versions()
            .iter()
            .any(|a| a.workload == "web" && a.version == "1.4.0"),
        "version reported"
    );

    // A new version, by server-side apply; then one without a field the
    // one before had: that field is removed.
    for version in ["1.5.0", "1.6.0"] {
        if version == "1.6.0" {
            let web = e.deployment("web").unwrap();
            let c = &web["spec"]["template"]["spec"]["containers"][0];
            assert!(
                c.get("args").is_none(),
                "a field from the create is removed: {c}"
            );
            assert_eq!(c["env"][0]["name"], "LEGACY", "{c}");
        }
        e.backend.set_workloads(
            TEST_ADDRESS,
            &[
                ("web", version),
                ("api", "2.0.0"),
                ("db", "1"),
                ("bad", "1"),
                ("broken", "1"),
            ],
        );
        m.sync();
    }
    let web = e.deployment("web").unwrap();
    assert_eq!(image(&web), "registry.example/web:1.6.0");
    assert!(
        web["spec"]["template"]["spec"]["containers"][0]
            .get("env")
            .is_none(),
        "the dropped field is removed: {}",
        web["spec"]["template"]["spec"]["containers"][0]
    );
    assert!(
        field_managers(&web).contains(&("workload-manager".into(), "Apply".into())),
        "{:?}",
        field_managers(&web)
    );
    assert!(e
        .backend
        .applied_versions()
        .iter()
        .any(|a| a.workload == "web" && a.version == "1.6.0"));

    // A hand edit by another field manager is corrected at the next sync.
    e.ns.kubectl(
        &["set", "image", "deployment/web", "web=evil/miner:1"],
        None,
    );
    e.ns.kubectl(&["scale", "deployment/web", "--replicas=3"], None);
    m.sync();
    let web = e.deployment("web").unwrap();
    assert_eq!(image(&web), "registry.example/web:1.6.0");
    assert_eq!(web["spec"]["replicas"], 1);

    // Deleted by hand: created again.
    e.ns.kubectl(&["delete", "deployment", "web", "--wait=true"], None);
    m.sync();
    assert_eq!(
        image(&e.deployment("web").expect("web again")),
        "registry.example/web:1.6.0"
    );

    // No longer desired: deleted; the others stay.
    e.backend
        .set_workloads(TEST_ADDRESS, &[("api", "2.0.0"), ("db", "1")]);
    m.sync();
    wait_for("web deleted", Duration::from_secs(30), || {
        e.deployment("web").is_none().then_some(())
    });
    assert!(e.deployment("api").is_some());
    assert!(e.deployment("db").is_some());

    // Every call was authorized by the shipped Role; db and bad never written.
    let calls = e.ns.manager_calls();
    let wrong: Vec<String> = calls
        .iter()
        .filter(|c| c.is_write() && (c.name() == "db" || c.name() == "bad"))
        .map(AuditEvent::line)
        .collect();
    assert!(wrong.is_empty(), "{wrong:?}");
    // (bad is only looked up: a GET answered 404, whether a Deployment not ours took its name)
    assert!(
        calls
            .iter()
            .filter(|c| c.name() == "bad")
            .all(|c| c.verb() == "get" && c.code() == 404),
        "bad was never sent"
    );
    let refused: Vec<String> = calls
        .iter()
        .filter(|c| matches!(c.code(), 401 | 403))
        .map(AuditEvent::line)
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
}

#[test]
fn an_idle_sync_is_one_list_and_one_304() {
    let Some(e) = E2e::new("idle") else { return };
    e.want(&[("web", "1")]);
    let m = e.start(&[]);
    wait_for("web rolled out", Duration::from_secs(90), || {
        (m.workload("web")["rollout"] == "complete").then_some(())
    });
    m.sync();
    let bmark = e.backend.mark();
    e.ns.audit_marker("marker-before");
    m.sync(); // two runs
    e.ns.audit_marker("marker-after");
    let calls: Vec<String> =
        e.ns.manager_calls_between("marker-before", "marker-after")
            .iter()
            .filter(|c| c.resource() != "leases")
            .map(AuditEvent::line)
            .collect();
    assert_eq!(
        calls,
        vec!["list deployments/ 200", "list deployments/ 200"],
        "two syncs"
    );
    let b = e.backend.requests_since(bmark);
    assert_eq!(b.len(), 2, "{b:#?}");
    assert!(b.iter().all(|r| r.status == Some(304)), "{b:#?}");
    assert_no_refused_calls(&e);
}

#[test]
fn the_manifests_pass_pod_security_restricted_admission() {
    let Some(cp) = control_plane() else { return };
    // The namespace exists first, enforcing "restricted" (the manifests only warn).
    // (applied, so that the `apply -k` below finds it declared: no warning)
    let ns =
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "workload-manager"}});
    cp.kubectl(&["apply", "-f", "-"], Some(&ns.to_string()));
    cp.kubectl(
        &[
            "label",
            "--overwrite",
            "namespace",
            "workload-manager",
            "pod-security.kubernetes.io/enforce=restricted",
        ],
        None,
    );
    let dir = wm_testkit::cluster::manifests_dir();
    let out = cp.kubectl_output(
        &[
            "apply",
            "--dry-run=server",
            "-k",
            &dir.display().to_string(),
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.trim().is_empty(), "warnings: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("deployment.apps/workload-manager created (server dry run)"),
        "{stdout}"
    );

    // The pod itself, as the ReplicaSet controller would create it: admitted
    // where "restricted" is enforced; a pod without the security settings is not.
    // (its ServiceAccount must exist for that: the dry run above created nothing)
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
        "metadata": {"name": "workload-manager", "namespace": "workload-manager"}});
    cp.kubectl(&["apply", "-f", "-"], Some(&sa.to_string()));
    let objects = wm_testkit::cluster::rendered_manifests(&cp, "workload-manager");
    let deployment = objects
        .iter()
        .find(|o| o["kind"] == "Deployment")
        .expect("a Deployment");
    let mut template = deployment["spec"]["template"].clone();
    template["metadata"]["name"] = json!("workload-manager-probe");
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"], "spec": template["spec"]});
    let dry_run_create = |pod: &Value| {
        let out = cp.kubectl_output(
            &[
                "-n",
                "workload-manager",
                "create",
                "--dry-run=server",
                "-f",
                "-",
            ],
            Some(&pod.to_string()),
        );
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, stderr) = dry_run_create(&pod);
    assert!(ok && stderr.trim().is_empty(), "{stderr}");
    let mut plain = pod.clone();
    plain["spec"]["securityContext"] = json!({});
    plain["spec"]["containers"][0]["securityContext"] = json!({});
    let (ok, stderr) = dry_run_create(&plain);
    assert!(!ok, "enforcement is on");
    assert!(
        stderr.contains("violates PodSecurity \"restricted:"),
        "{stderr}"
    );
}

#[test]
fn a_role_without_one_verb_gives_a_clear_403() {
    // The shipped Role with "patch" removed from deployments.
    let Some(e) = E2e::with("rbac", |objects| {
        for o in objects.iter_mut().filter(|o| o["kind"] == "Role") {
            for rule in o["rules"].as_array_mut().expect("rules") {
                if let Some(verbs) = rule["verbs"].as_array_mut() {
                    verbs.retain(|v| v != "patch");
                }
            }
        }
    }) else {
        return;
    };
    e.want(&[("web", "1")]);
    let m = e.start(&[]);
    wait_for(
        "web created (create is granted)",
        Duration::from_secs(60),
        || e.deployment("web").map(|_| ()),
    );
    e.want(&[("web", "2")]);
    let v = m.sync();
    let w = m.workload("web");
    assert_eq!(w["rollout"], "failed", "{w}");
    let err = w["error"].as_str().unwrap_or_default();
    assert!(err.contains("403"), "{w}");
    assert!(
        err.contains("cannot patch resource \"deployments\" in API group \"apps\""),
        "{w}"
    );
    assert_eq!(v["lastSync"]["outcome"], "error", "{v}");
    assert!(
        v["lastSync"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("web"),
        "{v}"
    );
    assert_eq!(
        image(&e.deployment("web").unwrap()),
        "registry.example/web:1"
    );
    // Only that call was refused.
    let refused: Vec<String> =
        e.ns.manager_calls()
            .iter()
            .filter(|c| c.code() == 403)
            .map(|c| format!("{} {}", c.verb(), c.resource()))
            .collect();
    assert!(
        !refused.is_empty() && refused.iter().all(|r| r == "patch deployments"),
        "{refused:?}"
    );
}

/// The Lease's holder as the API server has it.
fn lease_holder(e: &E2e) -> String {
    e.ns.get("lease", "workload-manager")
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_string))
        .unwrap_or_default()
}

fn leads(m: &Manager) -> bool {
    m.status()["manager"]["leader"] == true
}

#[test]
fn leader_election_on_the_real_lease_api() {
    let Some(e) = E2e::new("elect") else { return };
    e.want(&[("web", "1")]);
    let (file_a, file_b) = (e.ns.dir.0.join("token-a"), e.ns.dir.0.join("token-b"));
    let (ta, tb) = (e.ns.write_token(&file_a), e.ns.write_token(&file_b));
    let (ida, idb) = (token_id(&ta), token_id(&tb));
    // A 2 s call timeout: a 13 s Lease (see the README's Timing).
    let fast = [("WM_HTTP_TIMEOUT", "2s")];
    let a = e.start_as("pod-a", &file_a, &fast);
    wait_for("pod-a leads", Duration::from_secs(30), || {
        leads(&a).then_some(())
    });
    let mut b = e.start_as("pod-b", &file_b, &fast);
    wait_for("pod-b ready", Duration::from_secs(30), || {
        (b.get("/readyz").status == 200).then_some(())
    });
    assert_eq!(lease_holder(&e), "pod-a");
    assert!(!leads(&b));
    wait_for("web created", Duration::from_secs(60), || {
        e.deployment("web").map(|_| ())
    });
    // b asks for a sync: accepted, nothing done.
    assert_eq!(b.post("/v1/sync", "application/json", "").status, 202);
    let calls = e.ns.manager_calls();
    let by_b: Vec<String> = calls
        .iter()
        .filter(|c| c.token_id() == Some(idb.as_str()))
        .map(AuditEvent::line)
        .collect();
    assert!(!by_b.is_empty(), "b was seen");
    assert!(
        by_b.iter()
            .all(|l| l.starts_with("get leases/workload-manager")),
        "the follower only reads the Lease: {by_b:?}"
    );
    assert!(calls
        .iter()
        .filter(|c| c.is_write() && c.resource() == "deployments")
        .all(|c| c.token_id() == Some(ida.as_str())));

    // SIGTERM: a releases the Lease, b takes over at its next look (5 s).
    let lease_before = e.ns.get("lease", "workload-manager").unwrap();
    a.signal(libc::SIGTERM);
    let t = Instant::now();
    let mut a = a;
    assert!(a.wait_exit(Duration::from_secs(15)).success());
    wait_for("pod-b leads", Duration::from_secs(10), || {
        leads(&b).then_some(())
    });
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "handover took {:?}",
        t.elapsed()
    );
    let lease_after = e.ns.get("lease", "workload-manager").unwrap();
    assert_eq!(lease_after["spec"]["holderIdentity"], "pod-b");
    assert_eq!(
        lease_after["spec"]["leaseTransitions"]
            .as_i64()
            .unwrap_or(0),
        lease_before["spec"]["leaseTransitions"]
            .as_i64()
            .unwrap_or(0)
            + 1,
        "{lease_after}"
    );

    // A new a follows; b killed with SIGKILL: a takes over once the Lease
    // stayed unchanged for its 13 s duration, not before.
    let file_a2 = e.ns.dir.0.join("token-a2");
    let ida2 = token_id(&e.ns.write_token(&file_a2));
    let a2 = e.start_as("pod-a2", &file_a2, &fast);
    wait_for("pod-a2 ready", Duration::from_secs(30), || {
        (a2.get("/readyz").status == 200).then_some(())
    });
    assert!(!leads(&a2));
    b.signal(libc::SIGKILL);
    let _ = b.wait_exit(Duration::from_secs(5));
    let t = Instant::now();
    wait_for("pod-a2 leads", Duration::from_secs(40), || {
        leads(&a2).then_some(())
    });
    assert!(
        t.elapsed() >= Duration::from_secs(10),
        "took over after only {:?}",
        t.elapsed()
    );
    assert_eq!(lease_holder(&e), "pod-a2");

    // Only the leader writes.
    e.want(&[("web", "2")]);
    a2.sync();
    assert_eq!(
        image(&e.deployment("web").unwrap()),
        "registry.example/web:2"
    );
    let patch_by: Vec<Option<String>> =
        e.ns.manager_calls()
            .iter()
            .filter(|c| c.verb() == "patch" && c.name() == "web")
            .map(|c| c.token_id().map(str::to_string))
            .collect();
    // (the ownership hand-over and the apply)
    assert_eq!(
        patch_by,
        vec![Some(ida2.clone()), Some(ida2)],
        "by the new leader"
    );
    assert_no_refused_calls(&e);
}

#[test]
fn a_rotated_token_is_used_without_a_failed_call() {
    let Some(e) = E2e::new("token") else { return };
    e.want(&[("web", "1")]);
    let first = token_id(&std::fs::read_to_string(&e.token_file).unwrap());
    let m = e.start(&[]);
    wait_for("web created", Duration::from_secs(60), || {
        e.deployment("web").map(|_| ())
    });
    let second = token_id(&e.ns.write_token(&e.token_file));
    assert_ne!(first, second);
    // Re-read every minute: the new token shows up in the audit log.
    wait_for("a call with the new token", Duration::from_secs(90), || {
        e.ns.manager_calls()
            .iter()
            .any(|c| c.token_id() == Some(second.as_str()))
            .then_some(())
    });
    let v = m.sync();
    assert_eq!(v["lastSync"]["outcome"], "ok", "{v}");
    assert_eq!(v["lastLease"]["outcome"], "ok", "{v}");
    assert_no_refused_calls(&e);
    let errors: u64 = m
        .get("/metrics")
        .body
        .lines()
        .filter(|l| l.starts_with("wm_job_runs_total") && l.contains("outcome=\"error\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(errors, 0);
}

const BUCKET: &str = "releases";
const KEY: &str = "workload-manager/latest";

/// The manager's own Deployment from `manifests/`, with the progress deadline lowered.
fn self_update_setup(tag: &str, deadline: u64) -> Option<(E2e, FakeS3)> {
    let e = E2e::with(tag, |objects| {
        for o in objects.iter_mut().filter(|o| o["kind"] == "Deployment") {
            o["spec"]["progressDeadlineSeconds"] = json!(deadline);
        }
    })?;
    wait_for(
        "the manager's own pod available (KWOK)",
        Duration::from_secs(90),
        || {
            let d = e.deployment("workload-manager")?;
            (d["status"]["availableReplicas"] == 1).then_some(())
        },
    );
    let s3 = FakeS3::start();
    s3.create_bucket(BUCKET);
    Some((e, s3))
}

fn own_image(e: &E2e) -> String {
    image(&e.deployment("workload-manager").expect("own Deployment")).to_string()
}

fn start_updating(e: &E2e, s3: &FakeS3) -> Manager {
    let (endpoint, region) = (s3.url(), s3.region().to_string());
    e.start(&[
        ("WM_UPDATE_S3_BUCKET", BUCKET),
        ("WM_UPDATE_S3_ENDPOINT", endpoint.as_str()),
        ("WM_UPDATE_S3_REGION", region.as_str()),
        ("WM_UPDATE_INTERVAL", "1s"),
        ("WM_SYNC_INTERVAL", "1h"),
    ])
}

#[test]
fn self_update_to_a_release_that_becomes_available() {
    let Some((e, s3)) = self_update_setup("update", 60) else {
        return;
    };
    s3.put_object(BUCKET, KEY, "0.2.0\n");
    let m = start_updating(&e, &s3);
    wait_for("the image patched", Duration::from_secs(30), || {
        (own_image(&e) == "registry.example/workload-manager:0.2.0").then_some(())
    });
    let v = wait_for("the rollout seen complete", Duration::from_secs(90), || {
        let v = m.status();
        v["lastUpdateCheck"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("is available") || d.contains("about to be replaced"))
            .then_some(v)
    });
    assert_eq!(v["lastUpdateCheck"]["outcome"], "ok", "{v}");
    let d = e.deployment("workload-manager").unwrap();
    assert_eq!(d["status"]["updatedReplicas"], 1, "{}", d["status"]);
    assert!(d["metadata"]["labels"]
        .get("app.kubernetes.io/managed-by")
        .is_none());
    let patches: Vec<String> =
        e.ns.manager_calls()
            .iter()
            .filter(|c| c.is_write() && c.resource() == "deployments")
            .map(AuditEvent::line)
            .collect();
    assert_eq!(patches, vec!["patch deployments/workload-manager 200"]);
    assert_no_refused_calls(&e);
}

#[test]
fn self_update_to_a_broken_release_is_rolled_back_by_the_real_controller_verdict() {
    let Some((e, s3)) = self_update_setup("rollback", 10) else {
        return;
    };
    // KWOK never makes pods of an image containing "never-ready" Ready.
    s3.put_object(BUCKET, KEY, "0.2.0-never-ready\n");
    let m = start_updating(&e, &s3);
    wait_for(
        "the patch to 0.2.0-never-ready",
        Duration::from_secs(30),
        || (own_image(&e) == "registry.example/workload-manager:0.2.0-never-ready").then_some(()),
    );
    let v = wait_for("the rollback", Duration::from_secs(90), || {
        let v = m.status();
        v["lastUpdateCheck"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("rolled back"))
            .then_some(v)
    });
    assert!(
        v["lastUpdateCheck"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("exceeded the progress deadline"),
        "{v}"
    );
    let d = e.deployment("workload-manager").unwrap();
    assert_eq!(own_image(&e), "registry.example/workload-manager:0.1.0");
    assert_eq!(
        d["metadata"]["annotations"]["workload-manager/rejected-version"],
        "0.2.0-never-ready"
    );
    // The real controller's verdict was what the manager acted on.
    wait_for("the old pod serving again", Duration::from_secs(60), || {
        let d = e.deployment("workload-manager")?;
        (d["status"]["availableReplicas"] == 1 && d["status"]["updatedReplicas"] == 1).then_some(())
    });
    // A newer good release is applied; the record stays.
    s3.put_object(BUCKET, KEY, "0.3.0\n");
    wait_for("the patch to 0.3.0", Duration::from_secs(30), || {
        (own_image(&e) == "registry.example/workload-manager:0.3.0").then_some(())
    });
    let d = e.deployment("workload-manager").unwrap();
    assert_eq!(
        d["metadata"]["annotations"]["workload-manager/rejected-version"],
        "0.2.0-never-ready"
    );
    assert_no_refused_calls(&e);
}

#[test]
fn kwok_plays_crash_looping_and_never_ready_pods() {
    let Some(e) = E2e::new("kwok") else { return };
    for (name, img) in [
        ("crash", "registry.example/crashloop:1"),
        ("stuck", "registry.example/never-ready:1"),
    ] {
        let mut d = sample_manifest(name, img);
        d["spec"]["progressDeadlineSeconds"] = json!(5);
        e.ns.kubectl(&["apply", "-f", "-"], Some(&d.to_string()));
    }
    let pod_of = |app: &str| -> Option<Value> {
        let pods: Value = serde_json::from_str(&e.ns.kubectl(
            &["get", "pods", "-l", &format!("app={app}"), "-o", "json"],
            None,
        ))
        .ok()?;
        let p = pods["items"].get(0)?.clone();
        p["status"]["containerStatuses"]
            .get(0)
            .is_some()
            .then_some(p)
    };
    let crash = wait_for("the crash-looping pod", Duration::from_secs(60), || {
        pod_of("crash")
    });
    let cs = &crash["status"]["containerStatuses"][0];
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff", "{cs}");
    assert!(cs["restartCount"].as_i64().unwrap_or(0) > 0, "{cs}");
    let stuck = wait_for("the never-ready pod", Duration::from_secs(60), || {
        pod_of("stuck")
    });
    assert_eq!(stuck["status"]["phase"], "Running");
    assert_eq!(stuck["status"]["containerStatuses"][0]["ready"], false);
    wait_for("ProgressDeadlineExceeded", Duration::from_secs(60), || {
        let d = e.deployment("stuck")?;
        d["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded")
            .then_some(())
    });
}

/// The manager's own diagnosis of those pods, through the Role and the
/// ClusterRole we ship: the reason of kubectl's STATUS column, restarts and
/// the last termination for a crash loop, the image-pull reason for an image
/// that does not exist, and its Node's conditions and kubelet version. Then
/// without the ClusterRoleBinding: the Node's fields are null with a reason,
/// and the pods are still explained.
#[test]
fn the_report_says_why_workloads_are_down_on_the_real_cluster() {
    let Some(e) = E2e::new("diagnose") else {
        return;
    };
    for (name, img) in [
        ("crash", "registry.example/crashloop:1"),
        ("nopull", "registry.example/no-such-image:1"),
        ("web", "registry.example/web:1"),
    ] {
        e.backend
            .put_manifest(name, "1", sample_manifest(name, img));
    }
    e.backend.set_workloads(
        TEST_ADDRESS,
        &[("crash", "1"), ("nopull", "1"), ("web", "1")],
    );
    let m = e.start(&[("WM_REPORT_INTERVAL", "2s"), ("NODE_NAME", "edge-1")]);
    let workload = |v: &Value, name: &str| -> Value {
        v["workloads"]
            .as_array()
            .and_then(|ws| ws.iter().find(|w| w["name"] == name).cloned())
            .unwrap_or_default()
    };
    let v = wait_for("every workload explained", Duration::from_secs(90), || {
        let v: Value = serde_json::from_str(&m.get("/v1/status").body).ok()?;
        let crash = workload(&v, "crash");
        let nopull = workload(&v, "nopull");
        let web = workload(&v, "web");
        (crash["reason"] == "CrashLoopBackOff"
            && nopull["reason"].is_string()
            && web["replicas"]["ready"] == 1
            && v["node"]["bootId"].is_string())
        .then_some(v)
    });
    let crash = workload(&v, "crash");
    assert_eq!(
        crash["replicas"],
        json!({"desired": 1, "ready": 0}),
        "{crash}"
    );
    assert_eq!(crash["restarts"], 3, "{crash}");
    assert!(
        crash["reasonMessage"]
            .as_str()
            .unwrap_or_default()
            .contains("back-off"),
        "{crash}"
    );
    assert_eq!(crash["lastTermination"]["reason"], "Error", "{crash}");
    assert_eq!(crash["lastTermination"]["exitCode"], 1, "{crash}");
    let nopull = workload(&v, "nopull");
    assert!(
        ["ErrImagePull", "ImagePullBackOff"]
            .contains(&nopull["reason"].as_str().unwrap_or_default()),
        "{nopull}"
    );
    let web = workload(&v, "web");
    assert_eq!(web["reason"], Value::Null, "{web}");
    assert_eq!(web["restarts"], 0, "{web}");
    let node = &v["node"];
    assert_eq!(node["name"], "edge-1", "{node}");
    assert_eq!(node["conditions"]["Ready"], "True", "{node}");
    assert!(node["kubelet"].is_string(), "{node}");
    assert_eq!(node["error"], Value::Null, "{node}");
    assert!(
        node["bootId"].is_string() && node["memory"]["totalBytes"].as_u64() > Some(0),
        "{node}"
    );
    let text = m.get("/v1/status?format=text").body;
    assert!(
        text.contains("CrashLoopBackOff") && text.contains("node edge-1"),
        "{text}"
    );
    // The reports carry the same.
    let last = wait_for("a report with the Node", Duration::from_secs(30), || {
        e.backend
            .reports()
            .into_iter()
            .rev()
            .find(|r| r.report["node"]["name"] == "edge-1")
    });
    let crash_reported = workload(&last.report, "crash");
    assert_eq!(
        crash_reported["reason"], "CrashLoopBackOff",
        "{crash_reported}"
    );
    assert_no_refused_calls(&e);

    // Without the ClusterRoleBinding: a clear reason, pods still explained.
    let binding = wm_testkit::cluster::cluster_scoped_name(
        &json!("workload-manager-node-reader"),
        &e.ns.name,
    );
    e.ns.cp
        .kubectl(&["delete", "clusterrolebinding", &binding], None);
    let v = wait_for("the Node forbidden", Duration::from_secs(60), || {
        let v: Value = serde_json::from_str(&m.get("/v1/status").body).ok()?;
        v["node"]["error"].is_string().then_some(v)
    });
    let node = &v["node"];
    assert!(
        node["error"]
            .as_str()
            .unwrap_or_default()
            .contains("not allowed to get Node edge-1"),
        "{node}"
    );
    assert_eq!(node["conditions"], Value::Null, "{node}");
    assert_eq!(node["name"], Value::Null, "{node}");
    assert_eq!(workload(&v, "crash")["reason"], "CrashLoopBackOff");
}

/// Every kind of call the manager makes, through its own client, with each
/// answer written down as the manager sees it (status code, reason, message;
/// or what it reads of the object). Run on the real API server and on the
/// in-process fake, the two lists must be equal.
fn the_managers_calls(k: &mut workload_manager::kube::Kube, ns: &str) -> Vec<String> {
    use workload_manager::kube::KubeError;
    let now = Instant::now;
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<String, KubeError>| {
        out.push(match r {
            Ok(s) => format!("{what}: {s}"),
            Err(e) => format!("{what}: error {e}"),
        })
    };
    let prepare = |name: &str, version: &str, image: &str| {
        workload_manager::reconcile::prepare(name, version, ns, &sample_manifest(name, image))
            .expect("a valid manifest")
    };
    let spec_managers = |d: &workload_manager::kube::Deployment| {
        d.metadata
            .managed_fields
            .iter()
            .filter(|f| f.subresource.is_none())
            .map(|f| format!("{}/{}", f.manager, f.operation))
            .collect::<Vec<_>>()
            .join(",")
    };
    let seen = |d: &workload_manager::kube::Deployment| {
        format!(
            "generation {} managed-by {:?} version {:?} fields {}",
            d.metadata.generation,
            d.metadata.labels.managed_by,
            d.metadata.annotations.version,
            spec_managers(d)
        )
    };
    note(
        "list",
        k.list_managed(now())
            .map(|l| format!("{} managed", l.len())),
    );
    note(
        "create",
        k.create(&prepare("web", "1", "registry.example/web:1"), now())
            .map(|d| seen(&d)),
    );
    note(
        "create again",
        k.create(&prepare("web", "1", "registry.example/web:1"), now())
            .map(|d| seen(&d)),
    );
    note(
        "get",
        k.get("web", now())
            .map(|d| d.as_ref().map(seen).unwrap_or_default()),
    );
    note(
        "get missing",
        k.get("nothing", now())
            .map(|d| format!("{:?}", d.map(|d| d.metadata.name))),
    );
    // What the server made of the manifest: defaults, metadata it stamps.
    note(
        "spec as stored",
        k.get_raw("web", now()).map(|d| {
            let d = d.unwrap_or_default();
            let mut keys: Vec<&String> = d["metadata"]
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            keys.sort();
            format!("{} metadata {keys:?}", d["spec"])
        }),
    );
    let listed = k.list_managed(now()).unwrap_or_default();
    let web = listed.iter().find(|d| d.metadata.name == "web");
    let ownership =
        web.and_then(|d| workload_manager::reconcile::ownership_patch(&d.metadata.managed_fields));
    note(
        "ownership patch planned",
        Ok(format!("{}", ownership.is_some())),
    );
    if let Some(ops) = ownership {
        note(
            "ownership",
            k.json_patch("web", &ops, now()).map(|_| "ok".into()),
        );
    }
    note(
        "apply",
        k.apply("web", &prepare("web", "2", "registry.example/web:2"), now())
            .map(|d| seen(&d)),
    );
    note(
        "apply unchanged",
        k.apply("web", &prepare("web", "2", "registry.example/web:2"), now())
            .map(|d| seen(&d)),
    );
    note(
        "json patch, failing test",
        k.json_patch(
            "web",
            &json!([{"op": "test", "path": "/metadata/annotations/workload-manager~1version", "value": "9"},
                    {"op": "replace", "path": "/spec/replicas", "value": 5}]),
            now(),
        )
        .map(|_| "ok".into()),
    );
    let mut broken = prepare("broken", "1", "registry.example/broken:1");
    broken["spec"]["selector"]["matchLabels"] = json!({"app": "other"});
    note("create invalid", k.create(&broken, now()).map(|d| seen(&d)));
    note(
        "apply invalid",
        k.apply(
            "web",
            &{
                let mut b = prepare("web", "3", "registry.example/web:3");
                b["spec"]["selector"]["matchLabels"] = json!({"app": "other"});
                b
            },
            now(),
        )
        .map(|d| seen(&d)),
    );
    note("delete", k.delete("web", now()).map(|()| "ok".into()));
    note(
        "delete missing",
        k.delete("web", now()).map(|()| "ok".into()),
    );

    let lease = |rv: Option<&str>, holder: &str| {
        let mut l = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "workload-manager", "namespace": ns},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15,
                     "acquireTime": "2026-01-01T00:00:00.000000Z", "renewTime": "2026-01-01T00:00:00.000000Z",
                     "leaseTransitions": 0}});
        if let Some(rv) = rv {
            l["metadata"]["resourceVersion"] = json!(rv);
        }
        l
    };
    let show = |l: &workload_manager::lease::Lease| {
        format!(
            "holder {:?} transitions {:?} rv set {}",
            l.holder(),
            l.spec.lease_transitions,
            !l.metadata.resource_version.is_empty()
        )
    };
    note(
        "lease get missing",
        k.get_lease(now())
            .map(|l| format!("{:?}", l.map(|l| show(&l)))),
    );
    let created = k.create_lease(&lease(None, "a"), now());
    let rv = created
        .as_ref()
        .map(|l| l.metadata.resource_version.clone())
        .unwrap_or_default();
    note("lease create", created.map(|l| show(&l)));
    note(
        "lease create again",
        k.create_lease(&lease(None, "b"), now()).map(|l| show(&l)),
    );
    note(
        "lease update",
        k.update_lease(&lease(Some(&rv), "a2"), now())
            .map(|l| show(&l)),
    );
    note(
        "lease update stale",
        k.update_lease(&lease(Some(&rv), "b"), now())
            .map(|l| show(&l)),
    );
    note(
        "lease update without version",
        k.update_lease(&lease(None, "b"), now()).map(|l| show(&l)),
    );
    note(
        "lease get",
        k.get_lease(now())
            .map(|l| format!("{:?}", l.map(|l| show(&l)))),
    );
    out
}

#[test]
fn the_fake_answers_the_managers_calls_as_the_real_server_does() {
    let Some(e) = E2e::new("fidelity") else {
        return;
    };
    let mut real = kube_client(
        e.ns.cp.api_url.clone(),
        e.token_file.clone(),
        e.ns.cp.ca_file.clone(),
        &e.ns.name,
    );
    let mut real_seen = the_managers_calls(&mut real, &e.ns.name);
    let fake = wm_testkit::kube::FakeKube::builder()
        .namespace(&e.ns.name)
        .start();
    let mut client = kube_client(fake.url(), fake.token_file(), fake.ca_file(), &e.ns.name);
    let mut fake_seen = the_managers_calls(&mut client, &e.ns.name);
    // A token the server does not know.
    let unknown = e.ns.dir.0.join("unknown-token");
    std::fs::write(&unknown, "not-a-token").expect("write token");
    let refused = |url: String, ca: PathBuf| {
        let mut k = kube_client(url, unknown.clone(), ca, &e.ns.name);
        match k.list_managed(Instant::now()) {
            Ok(l) => format!("unknown token: {} listed", l.len()),
            Err(err) => format!("unknown token: error {err}"),
        }
    };
    real_seen.push(refused(e.ns.cp.api_url.clone(), e.ns.cp.ca_file.clone()));
    fake_seen.push(refused(fake.url(), fake.ca_file()));
    let (real, fake) = (real_seen, fake_seen);
    // The scenario itself: the answers that matter to the manager.
    for expected in [
        "create again: error Kubernetes API answered 409 AlreadyExists",
        "apply: generation 2 managed-by Some(\"workload-manager\") version Some(\"2\") fields workload-manager/Apply",
        "lease create again: error Kubernetes API answered 409 AlreadyExists",
        "lease update stale: error Kubernetes API answered 409 Conflict",
    ] {
        assert!(real.iter().any(|l| l.starts_with(expected)), "{expected}:\n{}", real.join("\n"));
    }
    let diff: Vec<String> = real
        .iter()
        .zip(&fake)
        .filter(|(r, f)| r != f)
        .map(|(r, f)| format!("real: {r}\nfake: {f}"))
        .collect();
    assert!(
        diff.is_empty() && real.len() == fake.len(),
        "{}\n\nall (real):\n{}",
        diff.join("\n\n"),
        real.join("\n")
    );
}

/// The manager's own Kubernetes client, for `api_url` with that token and CA.
fn kube_client(
    api_url: String,
    token_file: PathBuf,
    ca_file: PathBuf,
    namespace: &str,
) -> workload_manager::kube::Kube {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = workload_manager::config::KubeConfig {
        api_url,
        token_file: Some(token_file),
        ca_file,
    };
    workload_manager::kube::Kube::new(
        &config,
        namespace,
        Duration::from_secs(10),
        Duration::from_secs(10),
    )
}

/// A Deployment's status as the manager's rollout rules read it, times left
/// out and ReplicaSet hashes masked, plus the verdict.
fn rollout_seen(k: &mut workload_manager::kube::Kube, name: &str) -> Option<(String, String)> {
    let raw = k.get_raw(name, Instant::now()).ok()??;
    let d: workload_manager::kube::Deployment = serde_json::from_value(raw.clone()).ok()?;
    let verdict = format!("{:?}", workload_manager::reconcile::rollout(&d));
    let mut status = raw["status"].clone();
    for c in status["conditions"].as_array_mut().into_iter().flatten() {
        if let Some(c) = c.as_object_mut() {
            c.remove("lastUpdateTime");
            c.remove("lastTransitionTime");
            if let Some(m) = c.get("message").and_then(Value::as_str) {
                let masked = mask_replica_set(m, name);
                c.insert("message".into(), json!(masked));
            }
        }
    }
    let revision = &raw["metadata"]["annotations"]["deployment.kubernetes.io/revision"];
    Some((verdict, format!("{status} revision {revision}")))
}

/// `ReplicaSet "web-5d8f7c9b4"` → `ReplicaSet "web-<hash>"`.
fn mask_replica_set(message: &str, name: &str) -> String {
    let prefix = format!("\"{name}-");
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find(&prefix) {
        out.push_str(&rest[..i + prefix.len()]);
        rest = &rest[i + prefix.len()..];
        let end = rest.find('"').unwrap_or(rest.len());
        out.push_str("<hash>");
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Creates a good and a never-ready Deployment and waits for the verdicts
/// (`settle` drives the fake's controller; the real one runs by itself).
fn rollouts(k: &mut workload_manager::kube::Kube, ns: &str, settle: &dyn Fn()) -> Vec<String> {
    let mut out = Vec::new();
    for (name, image, until) in [
        ("good", "registry.example/good:1", "Complete"),
        ("stuck", "registry.example/never-ready:1", "Failed"),
    ] {
        let mut m = sample_manifest(name, image);
        m["spec"]["progressDeadlineSeconds"] = json!(3);
        let m = workload_manager::reconcile::prepare(name, "1", ns, &m).expect("valid");
        k.create(&m, Instant::now()).expect("created");
        let seen = wait_for(&format!("{name} {until}"), Duration::from_secs(90), || {
            settle();
            rollout_seen(k, name).filter(|(v, _)| v == until)
        });
        out.push(format!("{name}: {} {}", seen.0, seen.1));
    }
    out
}

#[test]
fn the_fakes_controller_reports_rollouts_as_the_real_one() {
    let Some(e) = E2e::new("rollouts") else {
        return;
    };
    let mut k = kube_client(
        e.ns.cp.api_url.clone(),
        e.token_file.clone(),
        e.ns.cp.ca_file.clone(),
        &e.ns.name,
    );
    let real = rollouts(&mut k, &e.ns.name, &|| {});
    let fake = wm_testkit::kube::FakeKube::builder()
        .namespace(&e.ns.name)
        .progress_deadline(Duration::from_secs(3))
        .start();
    fake.mark_broken_image("registry.example/never-ready:1");
    let mut k = kube_client(fake.url(), fake.token_file(), fake.ca_file(), &e.ns.name);
    let fake_seen = rollouts(&mut k, &e.ns.name, &|| fake.settle());
    assert_eq!(real, fake_seen);
}
