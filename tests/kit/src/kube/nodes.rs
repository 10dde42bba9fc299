//! The one Node the fake's pods run on (core/v1, cluster-scoped), shaped as
//! a single-server K3S v1.31 node reports itself, and the kubelet's texts
//! for its conditions.
//!
//! Which real output this follows:
//!
//! - Conditions are the kubelet's four, in its order (nodestatus/setters.go):
//!   MemoryPressure, DiskPressure, PIDPressure, Ready, each with `reason`,
//!   `message`, `lastHeartbeatTime`, `lastTransitionTime`; `Unknown` is what
//!   the node lifecycle controller writes when the kubelet stops posting
//!   (`NodeStatusUnknown`, `Kubelet stopped posting node status.`).
//! - `status.nodeInfo` has the ten fields a v1.31 kubelet fills
//!   (kubeProxyVersion still set before v1.33); addresses, capacity and
//!   allocatable, daemonEndpoints, and the labels, annotations and spec
//!   (`providerID: k3s://…`, podCIDR) K3S writes.
//! - Compared with the v1.36 control plane of `.ci/cluster.sh`: the same
//!   envelope and condition shape; KWOK's node there differs by design (its
//!   own nodeInfo strings, a fifth condition `NetworkUnavailable`, Ready
//!   first, `kubeletEndpoint.Port` 0, no Hostname address or podCIDR).

use serde_json::{json, Value};

use super::clock;
use super::resource::ResourceType;

pub(crate) static NODES: ResourceType = ResourceType {
    group: "",
    version: "v1",
    resource: "nodes",
    kind: "Node",
    namespaced: false,
    put_creates: false,
    put_requires_rv: false,
    has_status: true,
    tracks_generation: false,
    defaults: |_| {},
    validate: |_, _| Vec::new(),
};

/// The node's InternalIP (and every pod's hostIP).
pub(crate) const HOST_IP: &str = "192.168.50.10";

/// The pods' CIDR on this node (K3S's default cluster CIDR is 10.42.0.0/16).
pub(crate) const POD_CIDR: &str = "10.42.0.0/24";

/// The condition types a kubelet reports, in its order.
pub(crate) const CONDITIONS: [&str; 4] = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"];

/// The Node object as first registered and made Ready by its kubelet.
pub(crate) fn object(name: &str, kubelet_version: &str) -> Value {
    let now = clock::now();
    let conditions: Vec<Value> = CONDITIONS
        .iter()
        .map(|t| {
            let healthy = if *t == "Ready" { "True" } else { "False" };
            condition(t, healthy, &now, &now)
        })
        .collect();
    let capacity = json!({
        "cpu": "4", "ephemeral-storage": "123329260Ki", "hugepages-1Gi": "0",
        "hugepages-2Mi": "0", "memory": "8141056Ki", "pods": "110",
    });
    // Less the kubelet's default hard eviction thresholds (memory.available
    // 100Mi, nodefs.available 10 %), K3S reserving nothing else.
    let mut allocatable = capacity.clone();
    allocatable["ephemeral-storage"] = "113660246016".into();
    allocatable["memory"] = "8038656Ki".into();
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "uid": clock::uid(),
            "creationTimestamp": now,
            "labels": {
                "beta.kubernetes.io/arch": "amd64",
                "beta.kubernetes.io/instance-type": "k3s",
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/control-plane": "true",
                "node-role.kubernetes.io/master": "true",
                "node.kubernetes.io/instance-type": "k3s",
            },
            "annotations": {
                "alpha.kubernetes.io/provided-node-ip": HOST_IP,
                "k3s.io/hostname": name,
                "k3s.io/internal-ip": HOST_IP,
                "k3s.io/node-args": "[\"server\"]",
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
            },
        },
        "spec": {
            "podCIDR": POD_CIDR,
            "podCIDRs": [POD_CIDR],
            "providerID": format!("k3s://{name}"),
        },
        "status": {
            "addresses": [
                {"type": "InternalIP", "address": HOST_IP},
                {"type": "Hostname", "address": name},
            ],
            "allocatable": allocatable,
            "capacity": capacity,
            "conditions": conditions,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "architecture": "amd64",
                "bootID": clock::uid(),
                "containerRuntimeVersion": "containerd://1.7.23-k3s2",
                "kernelVersion": "6.1.0-18-amd64",
                "kubeProxyVersion": kubelet_version,
                "kubeletVersion": kubelet_version,
                "machineID": &clock::hex64(name)[..32],
                "operatingSystem": "linux",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "systemUUID": clock::stable_uid(name),
            },
        },
    })
}

/// Sets one condition's status as the kubelet (or, for `Unknown`, the node
/// lifecycle controller) would; the transition time moves only when the
/// status changes. Returns whether `kind` is a condition the node has.
pub(crate) fn set_condition(node: &mut Value, kind: &str, status: &str) -> bool {
    let now = clock::now();
    let Some(conds) = node
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let Some(c) = conds.iter_mut().find(|c| c["type"] == kind) else {
        return false;
    };
    let since = if c["status"] == status {
        c["lastTransitionTime"].as_str().unwrap_or(&now).to_string()
    } else {
        now.clone()
    };
    *c = condition(kind, status, &now, &since);
    true
}

/// One node condition with the texts its writer uses for `status`.
fn condition(kind: &str, status: &str, heartbeat: &str, since: &str) -> Value {
    let (reason, message) = match (kind, status) {
        (_, "Unknown") => ("NodeStatusUnknown", "Kubelet stopped posting node status."),
        ("Ready", "True") => ("KubeletReady", "kubelet is posting ready status"),
        ("Ready", _) => (
            "KubeletNotReady",
            "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady \
             message:Network plugin returns error: cni plugin not initialized",
        ),
        ("MemoryPressure", "True") => (
            "KubeletHasInsufficientMemory",
            "kubelet has insufficient memory available",
        ),
        ("MemoryPressure", _) => (
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        ("DiskPressure", "True") => ("KubeletHasDiskPressure", "kubelet has disk pressure"),
        ("DiskPressure", _) => ("KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "True") => (
            "KubeletHasInsufficientPID",
            "kubelet has insufficient PID available",
        ),
        (_, _) => (
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available",
        ),
    };
    json!({
        "type": kind,
        "status": status,
        "lastHeartbeatTime": heartbeat,
        "lastTransitionTime": since,
        "reason": reason,
        "message": message,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_change_with_the_kubelets_texts() {
        let mut n = object("edge-1", "v1.31.4+k3s1");
        let types: Vec<&str> = n["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(types, CONDITIONS);
        assert!(set_condition(&mut n, "MemoryPressure", "True"));
        let c = &n["status"]["conditions"][0];
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("True"), Some("KubeletHasInsufficientMemory"))
        );
        assert!(set_condition(&mut n, "Ready", "Unknown"));
        assert_eq!(n["status"]["conditions"][3]["reason"], "NodeStatusUnknown");
        assert!(!set_condition(&mut n, "NetworkUnavailable", "True"));
    }
}
