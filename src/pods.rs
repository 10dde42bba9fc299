//! Pods, read once per report window to explain a workload's health: which
//! Deployment each pod belongs to, kubectl's STATUS column for a pod, and the
//! last termination of a workload's containers.
//!
//! Pure: no I/O. The Kubernetes client lists the namespace's pods and hands
//! the decoded [`PodList`] here. Pods are only ever read (README, "Ownership"),
//! and a pod is matched to its Deployment through its owner's name, never
//! through the pod template, so no manager upgrade can roll out a workload.
//!
//! Only the fields diagnosis reads are decoded, and every string is cut to
//! [`MAX_NAME`] or [`MAX_MESSAGE`] bytes while decoding, so a list of a
//! thousand pods stays small whatever its JSON carries.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use crate::text::{clean, truncate};
use crate::workloads::MAX_WORKLOADS;

/// Longest name, reason or timestamp kept, in bytes.
pub const MAX_NAME: usize = 128;
/// Longest message kept, in bytes.
pub const MAX_MESSAGE: usize = 256;

/// The answer of `GET /api/v1/namespaces/{ns}/pods`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PodList {
    pub items: Vec<Pod>,
}

/// The fields of a pod that diagnosis reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Pod {
    pub metadata: PodMeta,
    pub spec: PodSpec,
    pub status: StatusFields,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodMeta {
    #[serde(deserialize_with = "name")]
    pub name: String,
    pub labels: PodLabels,
    pub owner_references: Vec<OwnerReference>,
    /// `deletionTimestamp` is set: the pod is being deleted.
    #[serde(rename = "deletionTimestamp", deserialize_with = "present")]
    pub deleting: bool,
    /// RFC 3339, as the API gave it.
    #[serde(deserialize_with = "name")]
    pub creation_timestamp: String,
}

/// The one label read; the others are skipped while decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PodLabels {
    /// Set by the Deployment controller on every pod of a ReplicaSet.
    #[serde(rename = "pod-template-hash", deserialize_with = "optional_name")]
    pub pod_template_hash: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct OwnerReference {
    #[serde(deserialize_with = "name")]
    pub kind: String,
    #[serde(deserialize_with = "name")]
    pub name: String,
    pub controller: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PodSpec {
    pub init_containers: Vec<InitContainer>,
}

/// An init container of the spec: its name, to match its status, and whether
/// it is a sidecar (`restartPolicy: Always`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct InitContainer {
    #[serde(deserialize_with = "name")]
    pub name: String,
    #[serde(deserialize_with = "optional_name")]
    pub restart_policy: Option<String>,
}

/// The fields of a pod's `status` that diagnosis reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StatusFields {
    #[serde(deserialize_with = "name")]
    pub phase: String,
    #[serde(deserialize_with = "name")]
    pub reason: String,
    #[serde(deserialize_with = "message")]
    pub message: String,
    pub conditions: Vec<PodCondition>,
    pub init_container_statuses: Vec<ContainerStatus>,
    pub container_statuses: Vec<ContainerStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct PodCondition {
    #[serde(rename = "type", deserialize_with = "name")]
    pub kind: String,
    /// `True`, `False` or `Unknown`.
    #[serde(deserialize_with = "name")]
    pub status: String,
    #[serde(deserialize_with = "name")]
    pub reason: String,
    #[serde(deserialize_with = "message")]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStatus {
    #[serde(deserialize_with = "name")]
    pub name: String,
    pub ready: bool,
    pub started: Option<bool>,
    pub restart_count: i32,
    pub state: ContainerState,
    /// `lastState` in the API (`LastTerminationState` in Go).
    pub last_state: ContainerState,
}

/// At most one of the three is set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ContainerState {
    pub waiting: Option<ContainerStateWaiting>,
    #[serde(deserialize_with = "present")]
    pub running: bool,
    pub terminated: Option<ContainerStateTerminated>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct ContainerStateWaiting {
    #[serde(deserialize_with = "name")]
    pub reason: String,
    #[serde(deserialize_with = "message")]
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContainerStateTerminated {
    #[serde(deserialize_with = "name")]
    pub reason: String,
    #[serde(deserialize_with = "message")]
    pub message: String,
    pub exit_code: i32,
    pub signal: i32,
    /// RFC 3339, as the API gave it; empty when it gave none.
    #[serde(deserialize_with = "name")]
    pub finished_at: String,
}

/// A string field, cut to [`MAX_NAME`] bytes; `null` reads as empty.
fn name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    bounded(d, MAX_NAME)
}

/// A message field, cut to [`MAX_MESSAGE`] bytes; `null` reads as empty.
fn message<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    bounded(d, MAX_MESSAGE)
}

fn optional_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.map(|s| cut(s, MAX_NAME)))
}

fn bounded<'de, D: Deserializer<'de>>(d: D, max: usize) -> Result<String, D::Error> {
    Ok(cut(
        Option::<String>::deserialize(d)?.unwrap_or_default(),
        max,
    ))
}

fn cut(s: String, max: usize) -> String {
    if s.len() > max {
        truncate(&s, max)
    } else {
        s
    }
}

/// Whether the field is there and not `null`; its content is skipped.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<IgnoredAny>::deserialize(d)?.is_some())
}

/// The Deployment that owns a pod, from its controller: a ReplicaSet named
/// `<deployment>-<pod-template-hash>`, which is how the Deployment controller
/// names them. `None` for pods of any other owner, or of none.
pub fn deployment_of(pod: &Pod) -> Option<&str> {
    let meta = &pod.metadata;
    let owner = meta
        .owner_references
        .iter()
        .find(|o| o.controller == Some(true))?;
    if owner.kind != "ReplicaSet" {
        return None;
    }
    let hash = meta.labels.pod_template_hash.as_deref()?;
    if hash.is_empty() {
        return None;
    }
    let deployment = owner.name.strip_suffix(hash)?.strip_suffix('-')?;
    (!deployment.is_empty()).then_some(deployment)
}

/// The pods of each Deployment, in list order; pods of no Deployment are left out.
pub fn by_deployment(pods: &[Pod]) -> BTreeMap<&str, Vec<&Pod>> {
    let mut map: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for pod in pods {
        if let Some(deployment) = deployment_of(pod) {
            map.entry(deployment).or_default().push(pod);
        }
    }
    map
}

/// The current pods of one Deployment: those with the `pod-template-hash` of
/// its most recently created pod (`creationTimestamp`, compared as text,
/// which orders the API's RFC 3339 UTC times; ties go to the greater name).
///
/// During a rollout the new ReplicaSet is the one creating pods, so this
/// picks it without reading ReplicaSets or the Deployment's template. It can
/// pick the old one while a rollout is stuck and an old pod is recreated
/// (evicted, node lost); it settles once the new ReplicaSet creates a pod.
pub fn current_pods<'a>(pods: &[&'a Pod]) -> Vec<&'a Pod> {
    let newest = pods.iter().max_by(|a, b| created(a).cmp(&created(b)));
    let Some(newest) = newest else {
        return Vec::new();
    };
    let hash = &newest.metadata.labels.pod_template_hash;
    pods.iter()
        .copied()
        .filter(|p| &p.metadata.labels.pod_template_hash == hash)
        .collect()
}

/// Orders pods by creation, then by name.
fn created(pod: &Pod) -> (&str, &str) {
    (&pod.metadata.creation_timestamp, &pod.metadata.name)
}

/// What kubectl's STATUS column would say of a pod, with our two additions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodStatus {
    /// `Running`, `CrashLoopBackOff`, `Init:0/2`, `Unschedulable`, …
    pub reason: String,
    /// The message that goes with the reason, when the API gave one.
    pub message: Option<String>,
    /// The pod's Ready condition is True.
    pub ready: bool,
    /// kubectl's RESTARTS: the init containers' restarts while initializing,
    /// else the containers' (and sidecars') restarts.
    pub restarts: u64,
}

/// A pod's status by kubectl's rules (ported in `kubectl_status`), then:
/// - a `Pending` pod whose PodScheduled condition is False with reason
///   `Unschedulable` is `Unschedulable`, with the scheduler's message;
/// - a pod kubectl shows as `Running` that is not Ready is `NotReady`, and a
///   `NotReady` pod carries its Ready condition's message. kubectl counts
///   such a pod in the READY column instead; one word is all a report has.
pub fn status_of(pod: &Pod) -> PodStatus {
    let (mut shown, restarts) = kubectl_status(pod);
    let ready = has_pod_ready_condition(pod);
    if shown.reason == "Pending" {
        if let Some(c) = condition(pod, "PodScheduled")
            .filter(|c| c.status == "False" && c.reason == "Unschedulable")
        {
            shown.set("Unschedulable", &c.message);
        }
    }
    if shown.reason == "Running" && !ready {
        shown.reason = "NotReady".to_string();
    }
    if shown.reason == "NotReady" {
        let message = condition(pod, "Ready").map_or("", |c| c.message.as_str());
        shown.set("NotReady", message);
    }
    PodStatus {
        reason: shown.reason,
        message: shown.message,
        ready,
        restarts,
    }
}

/// A reason and the message that goes with it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Shown {
    reason: String,
    message: Option<String>,
}

impl Shown {
    fn set(&mut self, reason: &str, message: &str) {
        self.reason = reason.to_string();
        self.message = (!message.is_empty()).then(|| message.to_string());
    }
}

/// kubectl's STATUS and RESTARTS, ported from `printPod` in kubernetes
/// `pkg/printers/internalversion/printers.go`, as it reads after
/// kubernetes/kubernetes#124766 (merged September 2025, first released in
/// v1.35: a completed container no longer hides a failed one); read at commit
/// 212194ab8a9e7b32eb1035cde155572bb8823b92. The order of the checks is
/// upstream's; only the message that goes with each reason is ours.
fn kubectl_status(pod: &Pod) -> (Shown, u64) {
    let status = &pod.status;
    let mut shown = Shown::default();
    shown.set(&status.phase, &status.message);
    if !status.reason.is_empty() {
        shown.set(&status.reason, &status.message);
    }
    for c in &status.conditions {
        if c.kind == "PodScheduled" && c.reason == "SchedulingGated" {
            shown.set("SchedulingGated", &c.message);
        }
    }
    let init = init_containers(pod, &mut shown);
    let mut restarts = init.restarts;
    if !init.initializing || is_pod_initialized_condition_true(pod) {
        restarts = containers(pod, &mut shown, init.sidecar_restarts);
    }
    // "NodeLost" is upstream's `node.NodeUnreachablePodReason`.
    if pod.metadata.deleting && status.reason == "NodeLost" {
        shown.set("Unknown", &status.message);
    } else if pod.metadata.deleting && !is_phase_terminal(&status.phase) {
        shown.set("Terminating", "");
    }
    (shown, restarts)
}

#[derive(Debug, Default)]
struct Init {
    initializing: bool,
    restarts: u64,
    sidecar_restarts: u64,
}

/// upstream's loop over `InitContainerStatuses`: stops at the first init
/// container that has not completed, skipping started sidecars.
fn init_containers(pod: &Pod, shown: &mut Shown) -> Init {
    let mut init = Init::default();
    let total = pod.spec.init_containers.len();
    for (i, c) in pod.status.init_container_statuses.iter().enumerate() {
        let count = restart_count(c);
        init.restarts = init.restarts.saturating_add(count);
        let sidecar = is_restartable_init_container(pod, &c.name);
        if sidecar {
            init.sidecar_restarts = init.sidecar_restarts.saturating_add(count);
        }
        match (&c.state.terminated, &c.state.waiting) {
            (Some(t), _) if t.exit_code == 0 => continue,
            _ if sidecar && c.started == Some(true) => continue,
            (Some(t), _) => shown.set(&terminated_reason("Init:", t), &t.message),
            (None, Some(w)) if !w.reason.is_empty() && w.reason != "PodInitializing" => {
                shown.set(&format!("Init:{}", w.reason), &w.message)
            }
            _ => shown.set(&format!("Init:{i}/{total}"), ""),
        }
        init.initializing = true;
        break;
    }
    init
}

/// upstream's loop over `ContainerStatuses`, last to first, so the first
/// container's reason wins; returns the restarts.
fn containers(pod: &Pod, shown: &mut Shown, sidecar_restarts: u64) -> u64 {
    let mut restarts = sidecar_restarts;
    let mut has_running = false;
    let mut error: Option<Shown> = None;
    for c in pod.status.container_statuses.iter().rev() {
        restarts = restarts.saturating_add(restart_count(c));
        match (&c.state.waiting, &c.state.terminated) {
            (Some(w), _) if !w.reason.is_empty() => shown.set(&w.reason, &w.message),
            (_, Some(t)) => {
                shown.set(&terminated_reason("", t), &t.message);
                if t.exit_code != 0 {
                    error = Some(shown.clone());
                }
            }
            _ if c.ready && c.state.running => has_running = true,
            _ => {}
        }
    }
    // Back to Running if a container still runs; a failed one beats Completed.
    if shown.reason == "Completed" {
        if has_running && has_pod_ready_condition(pod) {
            shown.set("Running", "");
        } else if let Some(error) = error {
            *shown = error;
        } else if has_running {
            shown.set("NotReady", "");
        }
    }
    restarts
}

/// `<prefix><reason>`, else `<prefix>Signal:N`, else `<prefix>ExitCode:N`.
fn terminated_reason(prefix: &str, t: &ContainerStateTerminated) -> String {
    if !t.reason.is_empty() {
        format!("{prefix}{}", t.reason)
    } else if t.signal != 0 {
        format!("{prefix}Signal:{}", t.signal)
    } else {
        format!("{prefix}ExitCode:{}", t.exit_code)
    }
}

fn restart_count(c: &ContainerStatus) -> u64 {
    u64::try_from(c.restart_count).unwrap_or(0)
}

/// A sidecar: an init container with `restartPolicy: Always`.
fn is_restartable_init_container(pod: &Pod, name: &str) -> bool {
    pod.spec
        .init_containers
        .iter()
        .find(|c| c.name == name)
        .is_some_and(|c| c.restart_policy.as_deref() == Some("Always"))
}

fn has_pod_ready_condition(pod: &Pod) -> bool {
    pod.status
        .conditions
        .iter()
        .any(|c| c.kind == "Ready" && c.status == "True")
}

fn is_pod_initialized_condition_true(pod: &Pod) -> bool {
    condition(pod, "Initialized").is_some_and(|c| c.status == "True")
}

fn condition<'a>(pod: &'a Pod, kind: &str) -> Option<&'a PodCondition> {
    pod.status.conditions.iter().find(|c| c.kind == kind)
}

fn is_phase_terminal(phase: &str) -> bool {
    phase == "Failed" || phase == "Succeeded"
}

/// A container's termination, as the REPORT's `lastTermination` gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Termination {
    /// The API's reason, else `Signal:N` or `ExitCode:N` as kubectl writes it.
    pub reason: String,
    pub exit_code: i32,
    /// finishedAt as the API gave it.
    pub at: String,
}

/// What a workload's pods say about it, for one report window.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Diagnosis {
    pub restarts: u64,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_termination: Option<Termination>,
}

/// The last termination seen per workload, kept across report windows.
#[derive(Debug, Default)]
pub struct Terminations {
    last: BTreeMap<String, Termination>,
}

impl Terminations {
    /// Drops the workloads no longer desired.
    pub fn forget_except(&mut self, keep: impl Fn(&str) -> bool) {
        self.last.retain(|name, _| keep(name));
    }

    pub fn len(&self) -> usize {
        self.last.len()
    }

    /// The last termination kept for `workload`.
    pub fn get(&self, workload: &str) -> Option<&Termination> {
        self.last.get(workload)
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }

    /// Keeps `found` if it is newer than what is kept for `workload`, and
    /// returns the newer of the two. At most [`MAX_WORKLOADS`] workloads are
    /// kept; past that a new one is returned but not remembered.
    fn keep_newer(&mut self, workload: &str, found: Option<Termination>) -> Option<Termination> {
        let kept = self.last.get(workload);
        let Some(found) = found.filter(|f| kept.is_none_or(|k| f.at > k.at)) else {
            return kept.cloned();
        };
        if kept.is_some() || self.last.len() < MAX_WORKLOADS {
            self.last.insert(workload.to_string(), found.clone());
        }
        Some(found)
    }
}

/// Diagnoses one workload from its pods (all of them, old ReplicaSets'
/// included). `fully_ready`: the Deployment's status says readyReplicas ≥
/// desired replicas.
///
/// - `restarts`: the restarts of every container and init container of its
///   current pods ([`current_pods`]).
/// - `reason`/`message`: `None` when fully ready; else the status of the
///   first current pod by name that is not Ready, or `None` when every one
///   is (the caller falls back to the Deployment's own conditions).
/// - `last_termination`: the newest termination of any of its pods, or the
///   one `seen` keeps if that is newer.
pub fn diagnose(
    name: &str,
    fully_ready: bool,
    pods: &[&Pod],
    seen: &mut Terminations,
) -> Diagnosis {
    let current = current_pods(pods);
    let restarts = current
        .iter()
        .flat_map(|p| statuses(p))
        .fold(0u64, |sum, c| sum.saturating_add(restart_count(c)));
    let status = if fully_ready {
        None
    } else {
        first_not_ready(&current).filter(|s| !s.reason.is_empty())
    };
    let (reason, message) = match status {
        Some(s) => (
            Some(clean(&s.reason, MAX_NAME)),
            s.message.map(|m| clean(&m, MAX_MESSAGE)),
        ),
        None => (None, None),
    };
    Diagnosis {
        restarts,
        reason,
        message,
        last_termination: seen.keep_newer(name, newest_termination(pods)),
    }
}

fn first_not_ready(pods: &[&Pod]) -> Option<PodStatus> {
    let mut by_name = pods.to_vec();
    by_name.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    by_name.into_iter().map(status_of).find(|s| !s.ready)
}

fn statuses(pod: &Pod) -> impl Iterator<Item = &ContainerStatus> {
    let status = &pod.status;
    status
        .init_container_statuses
        .iter()
        .chain(&status.container_statuses)
}

/// The newest termination, by finishedAt, in the state or last state of any
/// container or init container. Not counted: init containers that completed
/// normally (exit 0, `Completed`), and terminations without a finishedAt,
/// which cannot be ordered against the one kept.
fn newest_termination(pods: &[&Pod]) -> Option<Termination> {
    let mut newest: Option<&ContainerStateTerminated> = None;
    for t in pods.iter().flat_map(|p| terminations(p)) {
        if !t.finished_at.is_empty() && newest.is_none_or(|n| t.finished_at > n.finished_at) {
            newest = Some(t);
        }
    }
    newest.map(|t| Termination {
        reason: clean(&terminated_reason("", t), MAX_NAME),
        exit_code: t.exit_code,
        at: clean(&t.finished_at, MAX_NAME),
    })
}

fn terminations(pod: &Pod) -> impl Iterator<Item = &ContainerStateTerminated> {
    let status = &pod.status;
    let init = status
        .init_container_statuses
        .iter()
        .flat_map(terminated_states)
        .filter(|t| !(t.exit_code == 0 && t.reason == "Completed"));
    let main = status.container_statuses.iter().flat_map(terminated_states);
    init.chain(main)
}

fn terminated_states(c: &ContainerStatus) -> impl Iterator<Item = &ContainerStateTerminated> {
    c.state
        .terminated
        .iter()
        .chain(c.last_state.terminated.iter())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const SCHEDULER_MESSAGE: &str = "0/1 nodes are available: 1 Insufficient memory. \
        preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod.";

    /// What `kubectl get pod -o json` gives for a crash-looping pod whose
    /// last run was OOM-killed (K3S, one container, one restart policy).
    const CRASH_LOOP_OOM: &str = r#"{
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "creationTimestamp": "2026-11-28T10:02:11Z",
            "generateName": "web-5d8f7c9b4-",
            "labels": {
                "app.kubernetes.io/name": "web",
                "pod-template-hash": "5d8f7c9b4",
                "workload-manager/workload": "web"
            },
            "managedFields": [
                {
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:metadata": {
                            "f:generateName": {},
                            "f:labels": {".": {}, "f:app.kubernetes.io/name": {}, "f:pod-template-hash": {}, "f:workload-manager/workload": {}},
                            "f:ownerReferences": {".": {}, "k:{\"uid\":\"0b7c1f3e-53d4-4c1e-9a55-64b9f8e2a0c1\"}": {}}
                        },
                        "f:spec": {
                            "f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {},
                                "f:resources": {".": {}, "f:limits": {".": {}, "f:memory": {}}, "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}}},
                                "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                            "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {}, "f:schedulerName": {},
                            "f:securityContext": {}, "f:terminationGracePeriodSeconds": {}
                        }
                    },
                    "manager": "k3s",
                    "operation": "Update",
                    "time": "2026-11-28T10:02:11Z"
                },
                {
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {
                        "f:status": {
                            "f:conditions": {
                                "k:{\"type\":\"ContainersReady\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}},
                                "k:{\"type\":\"Ready\"}": {".": {}, "f:lastProbeTime": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {}, "f:status": {}, "f:type": {}}
                            },
                            "f:containerStatuses": {}, "f:hostIP": {}, "f:hostIPs": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {".": {}, "k:{\"ip\":\"10.42.0.17\"}": {".": {}, "f:ip": {}}}, "f:startTime": {}
                        }
                    },
                    "manager": "k3s",
                    "operation": "Update",
                    "subresource": "status",
                    "time": "2026-11-28T11:42:15Z"
                }
            ],
            "name": "web-5d8f7c9b4-x2x9q",
            "namespace": "default",
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "blockOwnerDeletion": true,
                    "controller": true,
                    "kind": "ReplicaSet",
                    "name": "web-5d8f7c9b4",
                    "uid": "0b7c1f3e-53d4-4c1e-9a55-64b9f8e2a0c1"
                }
            ],
            "resourceVersion": "184467",
            "uid": "a3c9e2d0-7f41-4b8e-8d0e-2f6f1c7b9e55"
        },
        "spec": {
            "containers": [
                {
                    "env": [{"name": "PORT", "value": "8080"}],
                    "image": "registry.example/web:1.4.0",
                    "imagePullPolicy": "IfNotPresent",
                    "livenessProbe": {"failureThreshold": 3, "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10, "successThreshold": 1, "timeoutSeconds": 1},
                    "name": "web",
                    "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                    "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-7xk2p", "readOnly": true}]
                }
            ],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "nodeName": "edge-1",
            "preemptionPolicy": "PreemptLowerPriority",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccount": "default",
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300},
                {"effect": "NoExecute", "key": "node.kubernetes.io/unreachable", "operator": "Exists", "tolerationSeconds": 300}
            ],
            "volumes": [
                {
                    "name": "kube-api-access-7xk2p",
                    "projected": {
                        "defaultMode": 420,
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"items": [{"key": "ca.crt", "path": "ca.crt"}], "name": "kube-root-ca.crt"}},
                            {"downwardAPI": {"items": [{"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}, "path": "namespace"}]}}
                        ]
                    }
                }
            ]
        },
        "status": {
            "conditions": [
                {"lastProbeTime": null, "lastTransitionTime": "2026-11-28T10:02:13Z", "status": "True", "type": "PodReadyToStartContainers"},
                {"lastProbeTime": null, "lastTransitionTime": "2026-11-28T10:02:11Z", "status": "True", "type": "Initialized"},
                {"lastProbeTime": null, "lastTransitionTime": "2026-11-28T11:42:11Z", "message": "containers with unready status: [web]", "reason": "ContainersNotReady", "status": "False", "type": "Ready"},
                {"lastProbeTime": null, "lastTransitionTime": "2026-11-28T11:42:11Z", "message": "containers with unready status: [web]", "reason": "ContainersNotReady", "status": "False", "type": "ContainersReady"},
                {"lastProbeTime": null, "lastTransitionTime": "2026-11-28T10:02:11Z", "status": "True", "type": "PodScheduled"}
            ],
            "containerStatuses": [
                {
                    "containerID": "containerd://4f1d0c2b9e8a7f6e5d4c3b2a19087f6e5d4c3b2a19087f6e5d4c3b2a19087f6e",
                    "image": "registry.example/web:1.4.0",
                    "imageID": "registry.example/web@sha256:9b2c6f0f3e8a1d4c5b6a7980e1f2d3c4b5a69788f9e0d1c2b3a4958677e8f9a0",
                    "lastState": {
                        "terminated": {
                            "containerID": "containerd://4f1d0c2b9e8a7f6e5d4c3b2a19087f6e5d4c3b2a19087f6e5d4c3b2a19087f6e",
                            "exitCode": 137,
                            "finishedAt": "2026-11-28T11:42:10Z",
                            "reason": "OOMKilled",
                            "startedAt": "2026-11-28T11:41:58Z"
                        }
                    },
                    "name": "web",
                    "ready": false,
                    "restartCount": 7,
                    "started": false,
                    "state": {
                        "waiting": {
                            "message": "back-off 5m0s restarting failed container=web pod=web-5d8f7c9b4-x2x9q_default(a3c9e2d0-7f41-4b8e-8d0e-2f6f1c7b9e55)",
                            "reason": "CrashLoopBackOff"
                        }
                    },
                    "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-7xk2p", "readOnly": true, "recursiveReadOnly": "Disabled"}]
                }
            ],
            "hostIP": "10.0.0.5",
            "hostIPs": [{"ip": "10.0.0.5"}],
            "phase": "Running",
            "podIP": "10.42.0.17",
            "podIPs": [{"ip": "10.42.0.17"}],
            "qosClass": "Burstable",
            "startTime": "2026-11-28T10:02:11Z"
        }
    }"#;

    /// Decodes the way the Kubernetes client does: `from_reader` on a PodList body.
    fn decode(items: Vec<Value>) -> PodList {
        let body = json!({
            "apiVersion": "v1",
            "kind": "PodList",
            "metadata": {"resourceVersion": "184470"},
            "items": items,
        })
        .to_string();
        serde_json::from_reader::<_, PodList>(body.as_bytes()).unwrap()
    }

    fn one(item: Value) -> Pod {
        decode(vec![item]).items.remove(0)
    }

    /// A pod of Deployment `web` as the API gives it: managedFields, a full
    /// spec (with `init` as its initContainers when not empty) and `status`
    /// merged over the fields every scheduled pod has.
    fn pod_json(name: &str, hash: &str, created: &str, init: Value, status: Value) -> Value {
        let mut spec = json!({
            "containers": [{
                "image": "registry.example/web:1.4.0",
                "imagePullPolicy": "IfNotPresent",
                "name": "web",
                "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"key": "url", "name": "db"}}}],
                "readinessProbe": {"failureThreshold": 3, "httpGet": {"path": "/ready", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 5, "successThreshold": 1, "timeoutSeconds": 1},
                "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "50m", "memory": "64Mi"}},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-7xk2p", "readOnly": true}]
            }],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "nodeName": "edge-1",
            "priority": 0,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "serviceAccountName": "default",
            "terminationGracePeriodSeconds": 30,
            "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300}],
            "volumes": [{"name": "kube-api-access-7xk2p", "projected": {"defaultMode": 420, "sources": [{"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}}]}}]
        });
        if init.as_array().is_some_and(|a| !a.is_empty()) {
            spec["initContainers"] = init;
        }
        let mut full_status = json!({
            "hostIP": "10.0.0.5",
            "hostIPs": [{"ip": "10.0.0.5"}],
            "podIP": "10.42.0.23",
            "podIPs": [{"ip": "10.42.0.23"}],
            "qosClass": "Burstable",
            "startTime": created,
        });
        if let (Some(to), Some(from)) = (full_status.as_object_mut(), status.as_object()) {
            to.extend(from.clone());
        }
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "creationTimestamp": created,
                "generateName": format!("web-{hash}-"),
                "labels": {"app.kubernetes.io/name": "web", "pod-template-hash": hash, "workload-manager/workload": "web"},
                "managedFields": [{
                    "apiVersion": "v1",
                    "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}, "f:pod-template-hash": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {".": {}, "f:image": {}}}}},
                    "manager": "k3s",
                    "operation": "Update",
                    "time": created
                }],
                "name": name,
                "namespace": "default",
                "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true, "controller": true, "kind": "ReplicaSet", "name": format!("web-{hash}"), "uid": "0b7c1f3e-53d4-4c1e-9a55-64b9f8e2a0c1"}],
                "resourceVersion": "184467",
                "uid": "a3c9e2d0-7f41-4b8e-8d0e-2f6f1c7b9e55"
            },
            "spec": spec,
            "status": full_status,
        })
    }

    /// The conditions of a scheduled, initialized pod, Ready or not.
    fn conditions(ready: bool) -> Value {
        let (status, reason, message) = if ready {
            ("True", Value::Null, Value::Null)
        } else {
            (
                "False",
                json!("ContainersNotReady"),
                json!("containers with unready status: [web]"),
            )
        };
        let mut ready = json!({"lastProbeTime": null, "lastTransitionTime": "2026-11-28T10:02:20Z", "status": status, "type": "Ready"});
        if !reason.is_null() {
            ready["reason"] = reason;
            ready["message"] = message;
        }
        json!([
            {"lastProbeTime": null, "lastTransitionTime": "2026-11-28T10:02:13Z", "status": "True", "type": "PodReadyToStartContainers"},
            {"lastProbeTime": null, "lastTransitionTime": "2026-11-28T10:02:11Z", "status": "True", "type": "Initialized"},
            ready,
            {"lastProbeTime": null, "lastTransitionTime": "2026-11-28T10:02:20Z", "status": status, "type": "ContainersReady"},
            {"lastProbeTime": null, "lastTransitionTime": "2026-11-28T10:02:11Z", "status": "True", "type": "PodScheduled"}
        ])
    }

    /// A container status as the kubelet writes it.
    fn container(name: &str, ready: bool, restarts: i32, state: Value, last: Value) -> Value {
        json!({
            "containerID": "containerd://4f1d0c2b9e8a7f6e5d4c3b2a19087f6e5d4c3b2a19087f6e5d4c3b2a19087f6e",
            "image": "registry.example/web:1.4.0",
            "imageID": "registry.example/web@sha256:9b2c6f0f3e8a1d4c5b6a7980e1f2d3c4b5a69788f9e0d1c2b3a4958677e8f9a0",
            "lastState": last,
            "name": name,
            "ready": ready,
            "restartCount": restarts,
            "started": state.get("running").is_some(),
            "state": state,
            "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-7xk2p", "readOnly": true, "recursiveReadOnly": "Disabled"}]
        })
    }

    fn running() -> Value {
        json!({"running": {"startedAt": "2026-11-28T10:02:14Z"}})
    }

    fn waiting(reason: &str, message: &str) -> Value {
        json!({"waiting": {"reason": reason, "message": message}})
    }

    fn terminated(reason: Option<&str>, exit_code: i32, signal: i32, finished: &str) -> Value {
        let mut t = json!({
            "containerID": "containerd://4f1d0c2b9e8a",
            "exitCode": exit_code,
            "finishedAt": finished,
            "startedAt": "2026-11-28T10:02:14Z"
        });
        if let Some(reason) = reason {
            t["reason"] = json!(reason);
        }
        if signal != 0 {
            t["signal"] = json!(signal);
        }
        json!({"terminated": t})
    }

    /// A Running pod of one container `web`.
    fn web(ready: bool, restarts: i32, state: Value, last: Value) -> Pod {
        one(web_json(
            "web-5d8f7c9b4-x2x9q",
            "5d8f7c9b4",
            "2026-11-28T10:02:11Z",
            ready,
            restarts,
            state,
            last,
        ))
    }

    fn web_json(
        name: &str,
        hash: &str,
        created: &str,
        ready: bool,
        restarts: i32,
        state: Value,
        last: Value,
    ) -> Value {
        pod_json(
            name,
            hash,
            created,
            json!([]),
            json!({
                "phase": "Running",
                "conditions": conditions(ready),
                "containerStatuses": [container("web", ready, restarts, state, last)],
            }),
        )
    }

    fn status(reason: &str, message: Option<&str>, ready: bool, restarts: u64) -> PodStatus {
        PodStatus {
            reason: reason.to_string(),
            message: message.map(str::to_string),
            ready,
            restarts,
        }
    }

    fn termination(reason: &str, exit_code: i32, at: &str) -> Termination {
        Termination {
            reason: reason.to_string(),
            exit_code,
            at: at.to_string(),
        }
    }

    #[test]
    fn running_and_ready() {
        let pod = web(true, 0, running(), json!({}));
        assert_eq!(status_of(&pod), status("Running", None, true, 0));
        let d = diagnose("web", true, &[&pod], &mut Terminations::default());
        assert_eq!(d, Diagnosis::default());
    }

    #[test]
    fn crash_loop_with_restarts_and_last_oom_kill() {
        let pod: Pod = serde_json::from_str(CRASH_LOOP_OOM).unwrap();
        let message = "back-off 5m0s restarting failed container=web pod=web-5d8f7c9b4-x2x9q_default(a3c9e2d0-7f41-4b8e-8d0e-2f6f1c7b9e55)";
        assert_eq!(
            status_of(&pod),
            status("CrashLoopBackOff", Some(message), false, 7)
        );
        assert_eq!(deployment_of(&pod), Some("web"));
        let mut seen = Terminations::default();
        let d = diagnose("web", false, &[&pod], &mut seen);
        assert_eq!(
            d,
            Diagnosis {
                restarts: 7,
                reason: Some("CrashLoopBackOff".to_string()),
                message: Some(message.to_string()),
                last_termination: Some(termination("OOMKilled", 137, "2026-11-28T11:42:10Z")),
            }
        );
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn waiting_reasons_of_containers_that_never_started() {
        let cases = [
            (
                "ImagePullBackOff",
                "Back-off pulling image \"registry.example/web:1.4.1\"",
            ),
            (
                "ErrImagePull",
                "failed to pull and unpack image \"registry.example/web:1.4.1\": not found",
            ),
            ("CreateContainerConfigError", "secret \"db\" not found"),
        ];
        for (reason, message) in cases {
            let pod = one(pod_json(
                "web-5d8f7c9b4-x2x9q",
                "5d8f7c9b4",
                "2026-11-28T10:02:11Z",
                json!([]),
                json!({
                    "phase": "Pending",
                    "conditions": conditions(false),
                    "containerStatuses": [container("web", false, 0, waiting(reason, message), json!({}))],
                }),
            ));
            assert_eq!(
                status_of(&pod),
                status(reason, Some(message), false, 0),
                "{reason}"
            );
        }
    }

    #[test]
    fn current_terminated_state_oom_killed_and_error() {
        let at = "2026-11-28T11:42:10Z";
        let oom = web(
            false,
            3,
            terminated(Some("OOMKilled"), 137, 0, at),
            json!({}),
        );
        assert_eq!(status_of(&oom), status("OOMKilled", None, false, 3));

        let error = web(false, 1, terminated(Some("Error"), 1, 0, at), json!({}));
        assert_eq!(status_of(&error), status("Error", None, false, 1));
        let d = diagnose("web", false, &[&error], &mut Terminations::default());
        assert_eq!(d.last_termination, Some(termination("Error", 1, at)));
    }

    #[test]
    fn exit_code_and_signal_without_a_reason() {
        let at = "2026-11-28T11:42:10Z";
        let code = web(false, 0, terminated(None, 2, 0, at), json!({}));
        assert_eq!(status_of(&code).reason, "ExitCode:2");
        let signal = web(false, 0, terminated(None, 137, 9, at), json!({}));
        assert_eq!(status_of(&signal).reason, "Signal:9");
        let d = diagnose("web", false, &[&signal], &mut Terminations::default());
        assert_eq!(d.last_termination, Some(termination("Signal:9", 137, at)));
    }

    /// A pod with two init containers, `migrate` and `seed`, in the given states.
    fn initializing(migrate: Value, seed: Value, restarts: i32) -> Pod {
        let init = json!([
            {"name": "migrate", "image": "registry.example/web:1.4.0", "command": ["/web", "migrate"], "terminationMessagePolicy": "File"},
            {"name": "seed", "image": "registry.example/web:1.4.0", "command": ["/web", "seed"]}
        ]);
        let mut conditions = conditions(false);
        conditions[1]["status"] = json!("False");
        conditions[1]["reason"] = json!("ContainersNotInitialized");
        conditions[1]["message"] = json!("containers with incomplete status: [migrate seed]");
        one(pod_json(
            "web-5d8f7c9b4-x2x9q",
            "5d8f7c9b4",
            "2026-11-28T10:02:11Z",
            init,
            json!({
                "phase": "Pending",
                "conditions": conditions,
                "initContainerStatuses": [
                    container("migrate", false, restarts, migrate, json!({})),
                    container("seed", false, 0, seed, json!({})),
                ],
                "containerStatuses": [container("web", false, 0, waiting("PodInitializing", ""), json!({}))],
            }),
        ))
    }

    #[test]
    fn init_containers() {
        let pod_initializing = waiting("PodInitializing", "");
        let back_off = "back-off 20s restarting failed container=migrate pod=web-5d8f7c9b4-x2x9q_default(a3c9)";
        let crash = initializing(
            waiting("CrashLoopBackOff", back_off),
            pod_initializing.clone(),
            4,
        );
        assert_eq!(
            status_of(&crash),
            status("Init:CrashLoopBackOff", Some(back_off), false, 4)
        );

        let first_running = initializing(running(), pod_initializing.clone(), 0);
        assert_eq!(status_of(&first_running).reason, "Init:0/2");

        let at = "2026-11-28T10:02:30Z";
        let exit_1 = initializing(terminated(None, 1, 0, at), pod_initializing.clone(), 0);
        assert_eq!(status_of(&exit_1).reason, "Init:ExitCode:1");
        let error = initializing(
            terminated(Some("Error"), 1, 0, at),
            pod_initializing.clone(),
            0,
        );
        assert_eq!(status_of(&error).reason, "Init:Error");

        let second = initializing(terminated(Some("Completed"), 0, 0, at), running(), 0);
        assert_eq!(status_of(&second).reason, "Init:1/2");
        let d = diagnose("web", false, &[&second], &mut Terminations::default());
        assert_eq!(
            d.last_termination, None,
            "a completed init container is no termination"
        );
    }

    #[test]
    fn a_started_sidecar_does_not_hold_initialization() {
        let init = json!([{"name": "proxy", "image": "registry.example/proxy:2.1", "restartPolicy": "Always"}]);
        let pod = one(pod_json(
            "web-5d8f7c9b4-x2x9q",
            "5d8f7c9b4",
            "2026-11-28T10:02:11Z",
            init,
            json!({
                "phase": "Running",
                "conditions": conditions(true),
                "initContainerStatuses": [container("proxy", true, 2, running(), json!({}))],
                "containerStatuses": [container("web", true, 1, running(), json!({}))],
            }),
        ));
        assert_eq!(status_of(&pod), status("Running", None, true, 3));
        let d = diagnose("web", false, &[&pod], &mut Terminations::default());
        assert_eq!((d.restarts, d.reason), (3, None));
    }

    fn pending(conditions: Value) -> Pod {
        one(json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "creationTimestamp": "2026-11-28T10:02:11Z",
                "labels": {"pod-template-hash": "5d8f7c9b4"},
                "name": "web-5d8f7c9b4-x2x9q",
                "namespace": "default",
                "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true, "controller": true, "kind": "ReplicaSet", "name": "web-5d8f7c9b4", "uid": "0b7c"}]
            },
            "spec": {"containers": [{"name": "web", "image": "registry.example/web:1.4.0", "resources": {"requests": {"memory": "16Gi"}}}]},
            "status": {"conditions": conditions, "phase": "Pending", "qosClass": "Burstable"}
        }))
    }

    #[test]
    fn pending_unschedulable_with_the_schedulers_message() {
        let pod = pending(json!([{
            "lastProbeTime": null,
            "lastTransitionTime": "2026-11-28T10:02:11Z",
            "message": SCHEDULER_MESSAGE,
            "reason": "Unschedulable",
            "status": "False",
            "type": "PodScheduled"
        }]));
        assert_eq!(
            status_of(&pod),
            status("Unschedulable", Some(SCHEDULER_MESSAGE), false, 0)
        );
        let d = diagnose("web", false, &[&pod], &mut Terminations::default());
        assert_eq!(d.reason.as_deref(), Some("Unschedulable"));
        assert_eq!(d.message.as_deref(), Some(SCHEDULER_MESSAGE));

        assert_eq!(
            status_of(&pending(json!([]))),
            status("Pending", None, false, 0)
        );
        let gated = pending(
            json!([{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated", "message": "Scheduling is blocked due to non-empty scheduling gates"}]),
        );
        assert_eq!(status_of(&gated).reason, "SchedulingGated");
    }

    #[test]
    fn deleted_pods_are_terminating_or_unknown() {
        let mut item = web_json(
            "web-5d8f7c9b4-x2x9q",
            "5d8f7c9b4",
            "2026-11-28T10:02:11Z",
            true,
            0,
            running(),
            json!({}),
        );
        item["metadata"]["deletionTimestamp"] = json!("2026-11-28T12:00:00Z");
        item["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        assert_eq!(
            status_of(&one(item.clone())),
            status("Terminating", None, true, 0)
        );

        item["status"]["reason"] = json!("NodeLost");
        item["status"]["message"] =
            json!("Node edge-1 which was running pod web-5d8f7c9b4-x2x9q is unresponsive");
        assert_eq!(status_of(&one(item)).reason, "Unknown");
    }

    /// Two containers: `job` completed, `web` running; `web` and the pod Ready or not.
    fn completed_and_running(web_ready: bool, pod_ready: bool) -> Pod {
        one(pod_json(
            "web-5d8f7c9b4-x2x9q",
            "5d8f7c9b4",
            "2026-11-28T10:02:11Z",
            json!([]),
            json!({
                "phase": "Running",
                "conditions": conditions(pod_ready),
                "containerStatuses": [
                    container("job", false, 0, terminated(Some("Completed"), 0, 0, "2026-11-28T10:02:40Z"), json!({})),
                    container("web", web_ready, 0, running(), json!({})),
                ],
            }),
        ))
    }

    #[test]
    fn completed_with_a_running_container() {
        assert_eq!(
            status_of(&completed_and_running(true, true)),
            status("Running", None, true, 0)
        );
        let unready = "containers with unready status: [web]";
        let pod_not_ready = completed_and_running(true, false);
        assert_eq!(
            status_of(&pod_not_ready),
            status("NotReady", Some(unready), false, 0)
        );
        // kubectl counts only Ready containers as running.
        assert_eq!(
            status_of(&completed_and_running(false, false)).reason,
            "Completed"
        );
    }

    #[test]
    fn a_failed_container_beats_a_completed_one() {
        let pod = one(pod_json(
            "web-5d8f7c9b4-x2x9q",
            "5d8f7c9b4",
            "2026-11-28T10:02:11Z",
            json!([]),
            json!({
                "phase": "Failed",
                "conditions": conditions(false),
                "containerStatuses": [
                    container("job", false, 0, terminated(Some("Completed"), 0, 0, "2026-11-28T10:02:40Z"), json!({})),
                    container("web", false, 0, terminated(Some("Error"), 1, 0, "2026-11-28T10:02:41Z"), json!({})),
                ],
            }),
        ));
        assert_eq!(status_of(&pod).reason, "Error");
    }

    #[test]
    fn running_but_not_ready_is_not_ready() {
        let pod = web(false, 0, running(), json!({}));
        let expected = status(
            "NotReady",
            Some("containers with unready status: [web]"),
            false,
            0,
        );
        assert_eq!(status_of(&pod), expected);
    }

    #[test]
    fn a_long_message_is_capped_on_a_char_boundary_and_printable() {
        let long = format!("\u{1b}[31mfailed\nto start: {}", "é€".repeat(410));
        assert!(long.len() > 2000);
        let pod = web(
            false,
            0,
            waiting("CreateContainerConfigError", &long),
            json!({}),
        );
        assert!(
            pod.status.container_statuses[0]
                .state
                .waiting
                .as_ref()
                .unwrap()
                .message
                .len()
                <= MAX_MESSAGE
        );

        let d = diagnose("web", false, &[&pod], &mut Terminations::default());
        let message = d.message.unwrap();
        assert!(
            message.len() <= MAX_MESSAGE && message.len() > MAX_MESSAGE - 4,
            "{}",
            message.len()
        );
        assert!(message.starts_with(" [31mfailed to start: é€"), "{message}");
        assert!(!message.chars().any(char::is_control));
    }

    #[test]
    fn owners_that_are_not_a_deployments_replica_set() {
        let mut item = web_json(
            "web-5d8f7c9b4-x2x9q",
            "5d8f7c9b4",
            "2026-11-28T10:02:11Z",
            true,
            0,
            running(),
            json!({}),
        );
        assert_eq!(deployment_of(&one(item.clone())), Some("web"));

        let owner = &mut item["metadata"]["ownerReferences"][0];
        owner["kind"] = json!("StatefulSet");
        owner["name"] = json!("web");
        assert_eq!(deployment_of(&one(item.clone())), None, "not a ReplicaSet");

        let owner = &mut item["metadata"]["ownerReferences"][0];
        owner["kind"] = json!("ReplicaSet");
        owner["name"] = json!("web");
        assert_eq!(deployment_of(&one(item.clone())), None, "no -<hash> suffix");
        item["metadata"]["ownerReferences"][0]["name"] = json!("5d8f7c9b4");
        assert_eq!(
            deployment_of(&one(item.clone())),
            None,
            "nothing before the hash"
        );

        item["metadata"]["ownerReferences"][0]["name"] = json!("web-5d8f7c9b4");
        item["metadata"]["ownerReferences"][0]["controller"] = json!(false);
        assert_eq!(
            deployment_of(&one(item.clone())),
            None,
            "not the controller"
        );

        item["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("ownerReferences");
        assert_eq!(deployment_of(&one(item)), None, "no owner");
    }

    #[test]
    fn by_deployment_groups_and_skips_other_owners() {
        let mut other = web_json(
            "api-7c6b5d4f8-abcde",
            "7c6b5d4f8",
            "2026-11-28T10:00:00Z",
            true,
            0,
            running(),
            json!({}),
        );
        other["metadata"]["ownerReferences"][0]["name"] = json!("api-7c6b5d4f8");
        let mut job = other.clone();
        job["metadata"]["ownerReferences"][0]["kind"] = json!("Job");
        let list = decode(vec![
            web_json(
                "web-5d8f7c9b4-x2x9q",
                "5d8f7c9b4",
                "2026-11-28T10:02:11Z",
                true,
                0,
                running(),
                json!({}),
            ),
            other,
            job,
        ]);
        let groups = by_deployment(&list.items);
        let sizes: Vec<(&str, usize)> = groups.iter().map(|(d, p)| (*d, p.len())).collect();
        assert_eq!(sizes, [("api", 1), ("web", 1)]);
    }

    #[test]
    fn current_pods_during_a_rollout_are_the_new_replica_sets() {
        let old_a = one(web_json(
            "web-5d8f7c9b4-aaaaa",
            "5d8f7c9b4",
            "2026-11-27T09:00:00Z",
            true,
            5,
            running(),
            json!({}),
        ));
        let old_b = one(web_json(
            "web-5d8f7c9b4-bbbbb",
            "5d8f7c9b4",
            "2026-11-27T09:00:00Z",
            true,
            4,
            running(),
            json!({}),
        ));
        let new = one(web_json(
            "web-6f9d8c7b5-ccccc",
            "6f9d8c7b5",
            "2026-11-28T10:02:11Z",
            false,
            2,
            waiting("ImagePullBackOff", "Back-off pulling image"),
            json!({}),
        ));
        let pods = [&old_a, &new, &old_b];
        let current = current_pods(&pods);
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].metadata.name, "web-6f9d8c7b5-ccccc");

        let d = diagnose("web", false, &pods, &mut Terminations::default());
        assert_eq!(d.restarts, 2, "old pods' restarts are not counted");
        assert_eq!(d.reason.as_deref(), Some("ImagePullBackOff"));

        let old_only = [&old_b, &old_a];
        assert_eq!(current_pods(&old_only).len(), 2);
        let d = diagnose("web", false, &old_only, &mut Terminations::default());
        assert_eq!(
            (d.restarts, d.reason),
            (9, None),
            "all current pods ready, Deployment not"
        );
    }

    #[test]
    fn the_first_not_ready_pod_by_name_explains() {
        let b = one(web_json(
            "web-5d8f7c9b4-bbbbb",
            "5d8f7c9b4",
            "2026-11-28T10:02:11Z",
            false,
            0,
            waiting("ErrImagePull", "pull failed"),
            json!({}),
        ));
        let a = one(web_json(
            "web-5d8f7c9b4-aaaaa",
            "5d8f7c9b4",
            "2026-11-28T10:02:11Z",
            false,
            0,
            waiting("CreateContainerConfigError", "secret \"db\" not found"),
            json!({}),
        ));
        let ready = one(web_json(
            "web-5d8f7c9b4-00000",
            "5d8f7c9b4",
            "2026-11-28T10:02:11Z",
            true,
            0,
            running(),
            json!({}),
        ));
        let d = diagnose(
            "web",
            false,
            &[&b, &ready, &a],
            &mut Terminations::default(),
        );
        assert_eq!(d.reason.as_deref(), Some("CreateContainerConfigError"));
        assert_eq!(d.message.as_deref(), Some("secret \"db\" not found"));
    }

    #[test]
    fn no_pods_and_not_ready_leaves_the_reason_to_the_caller() {
        let mut seen = Terminations::default();
        assert_eq!(diagnose("web", false, &[], &mut seen), Diagnosis::default());
        assert!(seen.is_empty());
    }

    #[test]
    fn last_termination_outlives_recovery_and_replacement() {
        let mut seen = Terminations::default();
        let oom_at = "2026-11-28T11:42:10Z";
        let crashed = web(
            false,
            1,
            terminated(Some("OOMKilled"), 137, 0, oom_at),
            json!({}),
        );
        let oom = Some(termination("OOMKilled", 137, oom_at));
        assert_eq!(
            diagnose("web", false, &[&crashed], &mut seen).last_termination,
            oom
        );

        // Recovered: running again, the OOM kill now its last state.
        let recovered = web(
            true,
            1,
            running(),
            terminated(Some("OOMKilled"), 137, 0, oom_at),
        );
        assert_eq!(
            diagnose("web", true, &[&recovered], &mut seen).last_termination,
            oom
        );

        // Replaced: a new pod that never terminated.
        let replaced = one(web_json(
            "web-5d8f7c9b4-zzzzz",
            "5d8f7c9b4",
            "2026-11-28T12:00:00Z",
            true,
            0,
            running(),
            json!({}),
        ));
        let d = diagnose("web", true, &[&replaced], &mut seen);
        assert_eq!(d.last_termination, oom, "an hour later, still visible");

        // An older termination does not replace it; a newer one does.
        let older = web(
            true,
            1,
            running(),
            terminated(Some("Error"), 1, 0, "2026-11-28T09:00:00Z"),
        );
        assert_eq!(
            diagnose("web", true, &[&older], &mut seen).last_termination,
            oom
        );
        let newer_at = "2026-11-28T12:30:00Z";
        let newer = web(
            false,
            2,
            terminated(Some("Error"), 2, 0, newer_at),
            json!({}),
        );
        let d = diagnose("web", false, &[&replaced, &newer], &mut seen);
        assert_eq!(d.last_termination, Some(termination("Error", 2, newer_at)));
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn terminations_are_forgotten_with_their_workload() {
        let mut seen = Terminations::default();
        let crashed = web(
            false,
            1,
            terminated(Some("OOMKilled"), 137, 0, "2026-11-28T11:42:10Z"),
            json!({}),
        );
        diagnose("web", false, &[&crashed], &mut seen);
        diagnose("api", false, &[&crashed], &mut seen);
        assert_eq!(seen.len(), 2);
        seen.forget_except(|name| name == "api");
        assert_eq!(seen.len(), 1);
        let d = diagnose("web", true, &[], &mut seen);
        assert_eq!(d.last_termination, None);
    }

    #[test]
    fn a_thousand_pods_decode() {
        let items: Vec<Value> = (0..1000)
            .map(|i| {
                let hash = format!("5d8f7c9b{}", i % 10);
                let mut item = web_json(
                    &format!("w{}-{hash}-{i:05}", i % 10),
                    &hash,
                    "2026-11-28T10:02:11Z",
                    true,
                    0,
                    running(),
                    json!({}),
                );
                item["metadata"]["ownerReferences"][0]["name"] =
                    json!(format!("w{}-{hash}", i % 10));
                item
            })
            .collect();
        assert!(items[0].to_string().len() > 3000, "real-sized pods");
        let list = decode(items);
        assert_eq!(list.items.len(), 1000);
        let groups = by_deployment(&list.items);
        assert_eq!(groups.len(), 10);
        assert!(groups.values().all(|pods| pods.len() == 100));
    }

    #[test]
    fn anything_missing_or_null_decodes_without_panic() {
        let pod = one(
            json!({"metadata": {"name": null, "ownerReferences": [{}]}, "status": {"containerStatuses": [{"state": {"terminated": {}}}]}}),
        );
        assert_eq!(deployment_of(&pod), None);
        assert_eq!(status_of(&pod).reason, "ExitCode:0");
        let d = diagnose("web", false, &[&pod], &mut Terminations::default());
        assert_eq!(d.last_termination, None, "no finishedAt");
    }
}
