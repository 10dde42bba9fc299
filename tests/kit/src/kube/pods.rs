//! core/v1 Pods of the fake's Deployments: the objects the ReplicaSet
//! controller creates for a Deployment's template and what the API server's
//! admission adds, and how a pod is traced back to its Deployment. Pods are
//! read-only to the ServiceAccount (`get`, `list`); only the fake's
//! controller writes them. Their `status` comes from [`super::kubelet`].
//!
//! Which real output this follows (`kubectl get pod -o json` and the raw
//! `GET /api/v1/namespaces/{ns}/pods` of the v1.36 control plane of
//! `.ci/cluster.sh`, compared field by field):
//!
//! - metadata: `name` `<deployment>-<hash>-<5 chars>` (the prefix cut to 58
//!   characters, as `generateName` is), `generateName`,
//!   `namespace`, `uid`, `resourceVersion`, `creationTimestamp`,
//!   `generation: 1` (pods have one since v1.33), labels = the template's plus
//!   `pod-template-hash`, the template's annotations, one controller
//!   ownerReference `{apiVersion: apps/v1, kind: ReplicaSet, name:
//!   <deployment>-<hash>, uid, controller: true, blockOwnerDeletion: true}`,
//!   `managedFields`: kube-controller-manager's create and the node's status
//!   (`kubelet`, or `kube-scheduler` for an unschedulable pod), both
//!   `Update`; unlike the real server the fake also attributes what
//!   admission added (volumes, tolerations, …) and `status.phase`/`qosClass`
//!   to their writers.
//! - spec: the template's spec (with the Deployment's defaults) plus what
//!   admission and defaulting add: `serviceAccountName`/`serviceAccount`
//!   `default`, the projected `kube-api-access-xxxxx` volume mounted
//!   read-only at /var/run/secrets/kubernetes.io/serviceaccount in every
//!   container, `enableServiceLinks: true`, `priority: 0`, `preemptionPolicy:
//!   PreemptLowerPriority`, the two 300 s NoExecute tolerations, and
//!   `nodeName` once scheduled (absent for an unschedulable pod).
//! - status: `qosClass` (set on create) and the node's part.
//! - Lists are `kind: PodList, apiVersion: v1` with `metadata.resourceVersion`.
//!
//! The template hash is a stable hash of the template's JSON spelled like
//! the real one (10 characters of `bcdfghjklmnpqrstvwxz2456789`), not the
//! controller's FNV-32 of the Go struct; a rollback to an earlier template
//! gets that template's hash (and ReplicaSet) back, as for real.

use serde_json::{json, Map, Value};

use super::clock;
use super::resource::ResourceType;

pub(crate) static PODS: ResourceType = ResourceType {
    group: "",
    version: "v1",
    resource: "pods",
    kind: "Pod",
    namespaced: true,
    put_creates: false,
    put_requires_rv: false,
    has_status: true,
    tracks_generation: true,
    defaults: prepare_status,
    validate: |_, _| Vec::new(),
};

pub(crate) const TEMPLATE_HASH: &str = "pod-template-hash";

/// Where the ServiceAccount token volume is mounted.
const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The `pod-template-hash` of a Deployment's pod template.
pub(crate) fn template_hash(template: &Value) -> String {
    clock::short_hash(&template.to_string())
}

/// The ReplicaSet that owns a Deployment's pods of one template.
pub(crate) fn replica_set(deployment: &str, hash: &str) -> String {
    format!("{deployment}-{hash}")
}

/// The uid of that ReplicaSet: the fake stores no ReplicaSets, so it is
/// derived from the Deployment's uid and the hash (stable across ticks).
pub(crate) fn replica_set_uid(deployment_uid: &str, hash: &str) -> String {
    clock::stable_uid(&(deployment_uid, hash))
}

/// Five random characters, as the API server completes a `generateName`.
fn name_suffix() -> String {
    clock::short_hash(&crate::net::random_u64())
        .chars()
        .take(5)
        .collect()
}

/// A name for `generate_name` as the API server picks it: the prefix cut
/// to 58 characters, then five random ones.
pub(crate) fn generated_name(generate_name: &str) -> String {
    let cut = generate_name.len().min(58);
    // Names are ASCII (DNS-1123), so any byte offset is a char boundary.
    let base = generate_name.get(..cut).unwrap_or(generate_name);
    format!("{base}{}", name_suffix())
}

/// The Deployment name, template hash and ReplicaSet uid a pod belongs to,
/// read from its controller ownerReference and `pod-template-hash` label.
pub(crate) fn owner(pod: &Value) -> Option<(String, String, String)> {
    let hash = pod
        .pointer("/metadata/labels")?
        .get(TEMPLATE_HASH)?
        .as_str()?;
    let owner = pod
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true && r["kind"] == "ReplicaSet")?;
    let deployment = owner["name"].as_str()?.strip_suffix(&format!("-{hash}"))?;
    let uid = owner["uid"].as_str()?;
    Some((deployment.to_string(), hash.to_string(), uid.to_string()))
}

/// The pod the ReplicaSet controller creates for `deployment` (its pods of
/// template `hash`), after admission; `node` is where the scheduler put it.
pub(crate) fn build(
    deployment: &Value,
    hash: &str,
    name: &str,
    node: Option<&str>,
    with_init_container: bool,
) -> Value {
    let d_name = deployment["metadata"]["name"].as_str().unwrap_or_default();
    let d_uid = deployment["metadata"]["uid"].as_str().unwrap_or_default();
    let template = &deployment["spec"]["template"];
    let rs = replica_set(d_name, hash);
    let mut labels = template["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert(TEMPLATE_HASH.into(), hash.into());
    let mut meta = json!({
        "name": name,
        "generateName": format!("{rs}-"),
        "labels": labels,
        "ownerReferences": [{
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "name": rs,
            "uid": replica_set_uid(d_uid, hash),
            "controller": true,
            "blockOwnerDeletion": true,
        }],
    });
    if let Some(a) = template["metadata"]
        .get("annotations")
        .filter(|a| a.is_object())
    {
        meta["annotations"] = a.clone();
    }
    let mut spec = template["spec"].as_object().cloned().unwrap_or_default();
    if with_init_container && !has_items(&spec, "initContainers") {
        spec.insert("initContainers".into(), json!([init_container(&spec)]));
    }
    admit(&mut spec);
    if let Some(n) = node {
        spec.insert("nodeName".into(), n.into());
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// What the API server's `PrepareForCreate` puts in a new pod's status
/// (phase Pending, the QoS class), kept through later status writes.
fn prepare_status(pod: &mut Value) {
    let qos = pod["spec"].as_object().map_or("BestEffort", qos_class);
    let Some(status) = pod.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    status.entry("phase").or_insert("Pending".into());
    status.entry("qosClass").or_insert(qos.into());
}

fn has_items(spec: &Map<String, Value>, field: &str) -> bool {
    spec.get(field)
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty())
}

/// The init container a scenario that needs one adds to a template without:
/// named `init`, with the first container's image and defaults.
fn init_container(spec: &Map<String, Value>) -> Value {
    let first = spec
        .get("containers")
        .and_then(|c| c.get(0))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let image = first["image"].as_str().unwrap_or_default();
    json!({
        "name": "init",
        "image": image,
        "imagePullPolicy": first["imagePullPolicy"].as_str().unwrap_or("IfNotPresent"),
        "resources": {},
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    })
}

/// What pod defaulting and the default admission plugins add on create
/// (ServiceAccount, DefaultTolerationSeconds, Priority).
fn admit(spec: &mut Map<String, Value>) {
    let sa = spec
        .get("serviceAccountName")
        .or_else(|| spec.get("serviceAccount"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    spec.insert("serviceAccountName".into(), sa.clone().into());
    spec.insert("serviceAccount".into(), sa.into());
    spec.entry("enableServiceLinks").or_insert(true.into());
    spec.entry("priority").or_insert(0.into());
    spec.entry("preemptionPolicy")
        .or_insert("PreemptLowerPriority".into());
    add_default_tolerations(spec);
    if spec.get("automountServiceAccountToken") != Some(&Value::Bool(false)) {
        mount_token(spec);
    }
}

/// DefaultTolerationSeconds: tolerate a not-ready or unreachable node for 300 s.
fn add_default_tolerations(spec: &mut Map<String, Value>) {
    let tolerations = spec
        .entry("tolerations")
        .or_insert_with(|| json!([]))
        .as_array_mut();
    let Some(tolerations) = tolerations else {
        return;
    };
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let present = tolerations
            .iter()
            .any(|t| t["key"] == key && (t["effect"] == "NoExecute" || t.get("effect").is_none()));
        if !present {
            tolerations.push(json!({"key": key, "operator": "Exists",
                                    "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// ServiceAccount admission: the projected token volume, mounted in every
/// container that does not mount something there already.
fn mount_token(spec: &mut Map<String, Value>) {
    let volume = format!("kube-api-access-{}", name_suffix());
    let mount = json!({"name": volume, "readOnly": true, "mountPath": TOKEN_PATH});
    for field in ["initContainers", "containers"] {
        for c in spec
            .get_mut(field)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            if let Some(mounts) = mounts.as_array_mut() {
                if !mounts.iter().any(|m| m["mountPath"] == TOKEN_PATH) {
                    mounts.push(mount.clone());
                }
            }
        }
    }
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(volumes) = volumes.as_array_mut() {
        volumes.push(json!({
            "name": volume,
            "projected": {
                "defaultMode": 420,
                "sources": [
                    {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt",
                                   "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace", "fieldRef":
                        {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        }));
    }
}

/// The pod's QoS class (`qos.GetPodQOS`): BestEffort without any cpu or
/// memory request or limit, Guaranteed when every container limits both and
/// requests (if given) equal the limits, else Burstable.
fn qos_class(spec: &Map<String, Value>) -> &'static str {
    let containers: Vec<&Value> = ["initContainers", "containers"]
        .iter()
        .filter_map(|f| spec.get(*f).and_then(Value::as_array))
        .flatten()
        .collect();
    let amount = |c: &Value, kind: &str, res: &str| {
        c["resources"][kind][res]
            .as_str()
            .map(String::from)
            .or_else(|| c["resources"][kind][res].as_i64().map(|n| n.to_string()))
    };
    let resources = ["cpu", "memory"];
    let any = containers.iter().any(|c| {
        resources
            .iter()
            .any(|r| amount(c, "requests", r).is_some() || amount(c, "limits", r).is_some())
    });
    if !any {
        return "BestEffort";
    }
    let guaranteed = containers.iter().all(|c| {
        resources.iter().all(|r| {
            let limit = amount(c, "limits", r);
            let request = amount(c, "requests", r);
            limit.is_some() && (request.is_none() || request == limit)
        })
    });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({
            "metadata": {"name": "web", "uid": "d-uid"},
            "spec": {"template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}],
                         "restartPolicy": "Always"},
            }},
        })
    }

    #[test]
    fn a_pod_carries_its_replica_sets_owner_reference_and_hash() {
        let d = deployment();
        let hash = template_hash(&d["spec"]["template"]);
        let pod = build(&d, &hash, "web-x-abcde", Some("edge-1"), false);
        assert_eq!(pod["metadata"]["labels"]["app"], "web");
        assert_eq!(pod["metadata"]["labels"][TEMPLATE_HASH], hash.as_str());
        let r = &pod["metadata"]["ownerReferences"][0];
        assert_eq!(r["name"], format!("web-{hash}").as_str());
        assert_eq!(r["uid"], replica_set_uid("d-uid", &hash).as_str());
        assert_eq!(
            owner(&pod),
            Some(("web".into(), hash.clone(), replica_set_uid("d-uid", &hash)))
        );
        assert_eq!(pod["spec"]["nodeName"], "edge-1");
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
        let mount = &pod["spec"]["containers"][0]["volumeMounts"][0];
        assert_eq!(mount["mountPath"], TOKEN_PATH);
        assert_eq!(mount["name"], pod["spec"]["volumes"][0]["name"]);
        let mut stored = pod.clone();
        stored["status"] = json!({});
        prepare_status(&mut stored);
        assert_eq!(
            stored["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn qos_follows_requests_and_limits() {
        let spec = |res: Value| {
            json!({"containers": [{"name": "a", "resources": res}]})
                .as_object()
                .cloned()
                .unwrap()
        };
        assert_eq!(qos_class(&spec(json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&spec(json!({"requests": {"memory": "1Gi"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&spec(json!({"limits": {"memory": "1Gi", "cpu": "1"}}))),
            "Guaranteed"
        );
    }
}
