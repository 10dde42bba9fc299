//! The Role and the ClusterRole in manifests/ grant exactly the verbs the
//! code uses: the real binary runs every kind of call it makes (create,
//! version change, delete, leader election, a self-update that is rolled
//! back, the report window's reads of pods and of its Node) against the fake
//! Kubernetes API, and the calls in the fake's log, as RBAC verbs, must
//! equal the rules: the Role's in the namespace, the ClusterRole's at the
//! cluster scope.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};
use wm_testkit::node::FakeNode;
use wm_testkit::proc::wait_for;
use wm_testkit::s3::FakeS3;

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");

/// Where a rule applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Namespace,
    Cluster,
}

/// (scope, API group, resource, verb) for one logged request.
fn verb(method: &str, path: &str) -> Option<(Scope, String, String, String)> {
    let path = path.split('?').next().unwrap_or_default();
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // apis/{group}/{version}/namespaces/{ns}/{resource}[/{name}], api/v1/… for the core group
    let (scope, group, resource, named) = match parts.as_slice() {
        ["apis", group, _, "namespaces", _, resource] => {
            (Scope::Namespace, *group, *resource, false)
        }
        ["apis", group, _, "namespaces", _, resource, _] => {
            (Scope::Namespace, *group, *resource, true)
        }
        ["api", _, "namespaces", _, resource] => (Scope::Namespace, "", *resource, false),
        ["api", _, "namespaces", _, resource, _] => (Scope::Namespace, "", *resource, true),
        ["api", _, resource] => (Scope::Cluster, "", *resource, false),
        ["api", _, resource, _] => (Scope::Cluster, "", *resource, true),
        _ => return None,
    };
    let verb = match (method, named) {
        ("GET", false) => "list",
        ("GET", true) => "get",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        _ => return None,
    };
    Some((
        scope,
        group.to_string(),
        resource.to_string(),
        verb.to_string(),
    ))
}

/// The rules of manifests/role.yaml (namespaced) and clusterrole.yaml.
fn granted() -> BTreeSet<(Scope, String, String, String)> {
    let mut out = rules("role.yaml", "Role", Scope::Namespace);
    out.extend(rules("clusterrole.yaml", "ClusterRole", Scope::Cluster));
    out
}

fn rules(file: &str, kind: &str, scope: Scope) -> BTreeSet<(Scope, String, String, String)> {
    let path = format!("{}/manifests/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).expect("the manifest");
    let role: Value = serde_norway::from_str(&text).expect("the role is YAML");
    assert_eq!(role["kind"], kind);
    let mut out = BTreeSet::new();
    for rule in role["rules"].as_array().expect("rules") {
        for group in rule["apiGroups"].as_array().expect("apiGroups") {
            for resource in rule["resources"].as_array().expect("resources") {
                for verb in rule["verbs"].as_array().expect("verbs") {
                    out.insert((
                        scope,
                        group.as_str().unwrap().to_string(),
                        resource.as_str().unwrap().to_string(),
                        verb.as_str().unwrap().to_string(),
                    ));
                }
            }
        }
    }
    out
}

#[test]
fn the_role_grants_exactly_what_the_code_calls() {
    let node = FakeNode::new();
    let image = |tag: &str| format!("registry.example/workload-manager:{tag}");
    node.kube.put_deployment_raw(
        "kubectl",
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "workload-manager"},
            "spec": {
                "selector": {"matchLabels": {"app": "wm"}},
                "template": {"metadata": {"labels": {"app": "wm"}},
                             "spec": {"containers": [{"name": "workload-manager", "image": image("0.1.0")}]}}
            }
        }),
    );
    node.kube.mark_broken_image(&image("0.2.0"));
    let s3 = FakeS3::start();
    s3.create_bucket("releases");
    s3.put_object("releases", "workload-manager/latest", "0.2.0");
    node.want(&[("api", "1"), ("web", "1")]);
    let (endpoint, region) = (s3.url(), s3.region().to_string());
    let m = node.start(
        BIN,
        &[
            ("WM_UPDATE_S3_BUCKET", "releases"),
            ("WM_UPDATE_S3_ENDPOINT", endpoint.as_str()),
            ("WM_UPDATE_S3_REGION", region.as_str()),
            ("WM_UPDATE_INTERVAL", "1s"),
            ("WM_REPORT_INTERVAL", "1s"),
            ("NODE_NAME", "edge-1"),
        ],
    );
    wait_for("both created", Duration::from_secs(30), || {
        (node.kube.deployment("api").is_some() && node.kube.deployment("web").is_some())
            .then_some(())
    });
    // A new version of one, the other no longer wanted.
    node.want(&[("web", "2")]);
    m.post("/v1/sync", "application/json", "");
    wait_for(
        "web applied and api deleted",
        Duration::from_secs(30),
        || {
            let web = node.kube.deployment("web")?;
            (web["metadata"]["annotations"]["workload-manager/version"] == "2"
                && node.kube.deployment("api").is_none())
            .then_some(())
        },
    );
    wait_for(
        "the self-update rolled back",
        Duration::from_secs(60),
        || {
            let own = node.kube.deployment("workload-manager")?;
            own["metadata"]["annotations"]
                .get("workload-manager/rejected-version")
                .map(|_| ())
        },
    );
    wait_for("a report window's reads", Duration::from_secs(30), || {
        let log = node.kube.log();
        (log.iter().any(|r| r.path.starts_with("/api/v1/nodes/"))
            && log.iter().any(|r| r.path.contains("/pods")))
        .then_some(())
    });
    wait_for("a Lease renewal", Duration::from_secs(30), || {
        node.kube
            .log()
            .iter()
            .any(|r| r.method == "PUT" && r.path.contains("/leases/"))
            .then_some(())
    });
    let used: BTreeSet<_> = node
        .kube
        .log()
        .iter()
        .filter_map(|r| verb(&r.method, &r.path))
        .collect();
    assert_eq!(
        used,
        granted(),
        "calls made vs the rules of the Role and the ClusterRole"
    );
}
