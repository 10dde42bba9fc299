//! Legacy (non-aggregated) discovery documents: `/version`, `/api`,
//! `/api/v1` (pods and nodes), `/apis`, `/apis/{group}` and `/apis/{group}/{version}` for the
//! groups the fake serves, enough for kubectl's REST mapping; and a minimal
//! OpenAPI v3 (paths and parameters, no schemas) from which kubectl learns
//! that the server validates fields itself (`fieldValidation`), so that
//! `kubectl apply` works with its default `--validate=strict`.

use serde_json::{json, Value};

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn group(name: &str) -> Value {
    let gv = format!("{name}/v1");
    json!({
        "name": name,
        "versions": [{"groupVersion": gv, "version": "v1"}],
        "preferredVersion": {"groupVersion": gv, "version": "v1"},
    })
}

fn resource_list(group_version: &str, resources: Value) -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

/// The discovery document at `path` (decoded segments), if it is one.
pub(crate) fn document(segments: &[&str]) -> Option<Value> {
    Some(match segments {
        ["version"] => json!({
            "major": "1", "minor": "32", "gitVersion": "v1.32.0",
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2024-12-11T00:00:00Z", "goVersion": "go1.23.3",
            "compiler": "gc", "platform": "linux/amd64",
        }),
        ["api"] => json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        }),
        // As the v1.36 server lists them (without storageVersionHash).
        ["api", "v1"] => resource_list(
            "v1",
            json!([
                {"name": "nodes", "singularName": "node", "namespaced": false,
                 "kind": "Node", "verbs": VERBS, "shortNames": ["no"]},
                {"name": "nodes/status", "singularName": "", "namespaced": false,
                 "kind": "Node", "verbs": ["get", "patch", "update"]},
                {"name": "pods", "singularName": "pod", "namespaced": true,
                 "kind": "Pod", "verbs": VERBS, "shortNames": ["po"],
                 "categories": ["all"]},
                {"name": "pods/log", "singularName": "", "namespaced": true,
                 "kind": "Pod", "verbs": ["get"]},
                {"name": "pods/status", "singularName": "", "namespaced": true,
                 "kind": "Pod", "verbs": ["get", "patch", "update"]},
            ]),
        ),
        ["apis"] => json!({
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [group("apps"), group("coordination.k8s.io")],
        }),
        ["apis", g @ ("apps" | "coordination.k8s.io")] => {
            let mut doc = group(g);
            doc["kind"] = "APIGroup".into();
            doc["apiVersion"] = "v1".into();
            doc
        }
        ["apis", "apps", "v1"] => resource_list(
            "apps/v1",
            json!([
                {"name": "deployments", "singularName": "deployment", "namespaced": true,
                 "kind": "Deployment", "verbs": VERBS, "shortNames": ["deploy"],
                 "categories": ["all"]},
                {"name": "deployments/status", "singularName": "", "namespaced": true,
                 "kind": "Deployment", "verbs": ["get", "patch", "update"]},
                {"name": "deployments/scale", "singularName": "", "namespaced": true,
                 "group": "autoscaling", "version": "v1", "kind": "Scale",
                 "verbs": ["get", "patch", "update"]},
            ]),
        ),
        ["apis", "coordination.k8s.io", "v1"] => resource_list(
            "coordination.k8s.io/v1",
            json!([
                {"name": "leases", "singularName": "lease", "namespaced": true,
                 "kind": "Lease", "verbs": VERBS},
            ]),
        ),
        ["openapi", "v3"] => json!({"paths": {
            "apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=fake1"},
            "apis/coordination.k8s.io/v1":
                {"serverRelativeURL": "/openapi/v3/apis/coordination.k8s.io/v1?hash=fake1"},
        }}),
        ["openapi", "v3", "apis", "apps", "v1"] => openapi_v3("apps", "deployments", "Deployment"),
        ["openapi", "v3", "apis", "coordination.k8s.io", "v1"] => {
            openapi_v3("coordination.k8s.io", "leases", "Lease")
        }
        _ => return None,
    })
}

/// An OpenAPI v3 group-version document listing one resource's operations
/// with the `x-kubernetes-group-version-kind` and query parameters kubectl
/// checks; no schemas.
fn openapi_v3(group: &str, resource: &str, kind: &str) -> Value {
    let gvk = json!({"group": group, "version": "v1", "kind": kind});
    let params = json!([
        "dryRun",
        "fieldManager",
        "fieldValidation",
        "force",
        "pretty"
    ]
    .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string"}})));
    let op = |id: &str| json!({"operationId": id, "x-kubernetes-group-version-kind": gvk, "parameters": params});
    let base = format!("/apis/{group}/v1/namespaces/{{namespace}}/{resource}");
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.32.0"},
        "paths": {
            base.clone(): {"get": op("list"), "post": op("create")},
            format!("{base}/{{name}}"): {"get": op("read"), "put": op("replace"),
                                        "patch": op("patch"), "delete": op("delete")},
        },
        "components": {"schemas": {}},
    })
}
