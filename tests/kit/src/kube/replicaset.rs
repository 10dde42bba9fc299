//! The simulated ReplicaSet controller, scheduler and kubelet behind the
//! Deployment controller: keeps each Deployment's pods at the counts it
//! decided (pods of the current template, and how many ready pods of older
//! templates stay), has the node write their status for the Deployment's
//! [`PodScenario`] (or an image marked broken), and garbage-collects pods
//! whose Deployment is gone, as background propagation does.
//!
//! The fake stores no ReplicaSet objects: a pod's ReplicaSet is its
//! controller ownerReference, named `<deployment>-<hash>`, whose uid is
//! derived from the Deployment's. Pods are created and deleted at once (no
//! Terminating phase, as under KWOK), and at most [`MAX_PODS`] per
//! Deployment exist.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use serde_json::Value;

use super::kubelet::{self, PodScenario};
use super::nodes::HOST_IP;
use super::pods::{self, PODS};
use super::resource::{self, WriteCtx};
use super::state::{Config, State};

/// The pods a node takes (the kubelet's default `maxPods`); the fake creates
/// no more per Deployment.
pub(crate) const MAX_PODS: i64 = 110;

/// What the Deployment controller wants of one Deployment's pods.
pub(crate) struct Target {
    /// The current template's `pod-template-hash`.
    pub hash: String,
    /// Pods of the current template.
    pub current: i64,
    /// Ready pods of older templates to keep (the rest go).
    pub keep_old: i64,
}

/// The pods after a sync, as the Deployment status counts them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub replicas: i64,
    pub updated: i64,
    pub updated_ready: i64,
    pub ready: i64,
    /// A pod's status will still change by itself (a pull that backs off).
    pub pending: bool,
}

/// What the controller remembers of the pods.
#[derive(Debug, Default)]
pub(crate) struct Memory {
    /// By pod uid.
    pods: HashMap<String, PodMemory>,
    /// The last pod IP handed out (10.42.0.x).
    last_ip: u32,
    /// Deployments (by uid) removed with `Orphan` propagation: their pods stay.
    pub orphaned: BTreeSet<String>,
}

#[derive(Debug)]
struct PodMemory {
    created: Instant,
    /// What its status was last written from.
    applied: String,
}

/// The pods of Deployment `d` (its ReplicaSets' uids match its uid), by name.
fn pods_of(state: &State, d: &Value) -> Vec<Value> {
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let uid = d["metadata"]["uid"].as_str().unwrap_or_default();
    state
        .store
        .list(PODS.resource)
        .filter(|s| {
            pods::owner(&s.value).is_some_and(|(dep, hash, rs_uid)| {
                dep == name && rs_uid == pods::replica_set_uid(uid, &hash)
            })
        })
        .map(|s| s.value.clone())
        .collect()
}

fn meta<'a>(pod: &'a Value, field: &str) -> &'a str {
    pod["metadata"][field].as_str().unwrap_or_default()
}

fn hash_of(pod: &Value) -> &str {
    pod["metadata"]["labels"][pods::TEMPLATE_HASH]
        .as_str()
        .unwrap_or_default()
}

fn is_ready(pod: &Value) -> bool {
    kubelet::is_ready(&pod["status"])
}

/// Ready pods of `d` whose template is not `hash` (what a rollout may keep).
pub(crate) fn ready_old(state: &State, d: &Value, hash: &str) -> i64 {
    let n = pods_of(state, d)
        .iter()
        .filter(|p| hash_of(p) != hash && is_ready(p))
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Brings `d`'s pods to `target` and their status up to date.
pub(crate) fn sync(
    state: &mut State,
    cfg: &Config,
    d: &Value,
    target: &Target,
    now: Instant,
    ignore_delay: bool,
) -> Counts {
    let all = pods_of(state, d);
    let (current, old): (Vec<Value>, Vec<Value>) =
        all.into_iter().partition(|p| hash_of(p) == target.hash);

    // Old pods: unready ones go first, then ready ones beyond what is kept.
    let mut kept_old = 0;
    let mut old_ready = 0;
    for p in old {
        if is_ready(&p) && kept_old < target.keep_old {
            kept_old += 1;
            old_ready += 1;
        } else {
            remove(state, meta(&p, "name"));
        }
    }
    let want = target.current.clamp(0, MAX_PODS);
    let mut current: Vec<Value> = current;
    while i64::try_from(current.len()).unwrap_or(i64::MAX) > want {
        if let Some(p) = current.pop() {
            remove(state, meta(&p, "name"));
        }
    }
    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let scenario = state.scenarios.get(name).cloned().unwrap_or_default();
    while i64::try_from(current.len()).unwrap_or(i64::MAX) < want {
        match create(state, cfg, d, &target.hash, &scenario, now) {
            Some(p) => current.push(p),
            None => break,
        }
    }

    let mut counts = Counts {
        replicas: kept_old + i64::try_from(current.len()).unwrap_or(0),
        updated: i64::try_from(current.len()).unwrap_or(0),
        ready: old_ready,
        ..Counts::default()
    };
    for p in &current {
        let (pod, pending) = node_writes(state, cfg, p, &scenario, now, ignore_delay);
        counts.pending |= pending;
        if is_ready(&pod) {
            counts.ready += 1;
            counts.updated_ready += 1;
        }
    }
    counts
}

/// Creates one pod of `d`'s template `hash` as the ReplicaSet controller
/// would (POST with generateName), scheduled unless the scenario says it
/// does not fit.
fn create(
    state: &mut State,
    cfg: &Config,
    d: &Value,
    hash: &str,
    scenario: &PodScenario,
    now: Instant,
) -> Option<Value> {
    let d_name = d["metadata"]["name"].as_str().unwrap_or_default();
    let rs = pods::replica_set(d_name, hash);
    let name = (0..10)
        .map(|_| pods::generated_name(&format!("{rs}-")))
        .find(|n| state.store.get(PODS.resource, n).is_none())?;
    let node = scenario.schedules().then_some(cfg.node_name.as_str());
    let pod = pods::build(d, hash, &name, node, scenario.needs_init_container());
    let ctx = WriteCtx {
        namespace: &cfg.namespace,
        manager: "kube-controller-manager",
        dry_run: false,
        subresource: None,
    };
    // A pod built from a stored Deployment's template is valid: no error here.
    let (_, created) = resource::create_value(&mut state.store, &PODS, &ctx, &name, pod).ok()?;
    let uid = meta(&created, "uid").to_string();
    state.controller.pods.pods.insert(
        uid,
        PodMemory {
            created: now,
            applied: String::new(),
        },
    );
    Some(created)
}

/// Has the node (or the scheduler) write `pod`'s status for `scenario` if
/// what it follows from changed; returns the pod as stored and whether its
/// status will change by itself later.
fn node_writes(
    state: &mut State,
    cfg: &Config,
    pod: &Value,
    scenario: &PodScenario,
    now: Instant,
    ignore_delay: bool,
) -> (Value, bool) {
    let uid = meta(pod, "uid").to_string();
    let created = state
        .controller
        .pods
        .pods
        .get(&uid)
        .map_or(now, |m| m.created);
    let images: Vec<&str> = ["initContainers", "containers"]
        .iter()
        .flat_map(|f| pod["spec"][*f].as_array().into_iter().flatten())
        .filter_map(|c| c["image"].as_str())
        .collect();
    let pulls_fail = images.iter().any(|i| state.broken_images.contains(*i));
    let backing_off = ignore_delay || now.duration_since(created) >= cfg.controller_delay;
    let pending = pulls_fail && !backing_off;
    let applied = format!(
        "{scenario:?} broken={:?} backoff={backing_off}",
        images
            .iter()
            .filter(|i| state.broken_images.contains(**i))
            .collect::<Vec<_>>()
    );
    let memory = state.controller.pods.pods.get(&uid);
    if memory.is_some_and(|m| m.applied == applied) {
        return (pod.clone(), pending);
    }
    let pod_ip = match pod["status"]["podIP"].as_str() {
        Some(ip) => ip.to_string(),
        None => next_ip(state),
    };
    let clock_now = super::clock::now();
    let node = kubelet::NodeState {
        host_ip: HOST_IP,
        pod_ip: &pod_ip,
        broken_images: &state.broken_images,
        pull_backing_off: backing_off,
        now: &clock_now,
    };
    let mut new = pod.clone();
    new["status"] = kubelet::status(pod, scenario, &node, &pod["status"]);
    let manager = if scenario.schedules() {
        "kubelet"
    } else {
        "kube-scheduler"
    };
    let name = meta(pod, "name").to_string();
    let written =
        resource::write_status(&mut state.store, &PODS, &cfg.namespace, manager, &name, new);
    state
        .controller
        .pods
        .pods
        .insert(uid, PodMemory { created, applied });
    (written.unwrap_or_else(|_| pod.clone()), pending)
}

/// The next pod IP in the node's pod CIDR (10.42.0.1–254, reused in turn).
fn next_ip(state: &mut State) -> String {
    let m = &mut state.controller.pods;
    m.last_ip = m.last_ip % 254 + 1;
    format!("10.42.0.{}", m.last_ip)
}

fn remove(state: &mut State, name: &str) {
    if let Some(gone) = state.store.remove(PODS.resource, name) {
        let uid = meta(&gone.value, "uid").to_string();
        state.controller.pods.pods.remove(&uid);
    }
}

/// Deletes pods whose ReplicaSet belongs to no stored Deployment (nor to
/// one removed with `Orphan` propagation).
pub(crate) fn collect_garbage(state: &mut State) {
    let live: Vec<(String, String)> = state
        .store
        .list(super::deployments::DEPLOYMENTS.resource)
        .map(|s| (meta(&s.value, "name").into(), meta(&s.value, "uid").into()))
        .collect();
    let orphaned = &state.controller.pods.orphaned;
    let doomed: Vec<String> = state
        .store
        .list(PODS.resource)
        .filter(|s| {
            let Some((dep, hash, rs_uid)) = pods::owner(&s.value) else {
                return false;
            };
            let owned = |uid: &str| pods::replica_set_uid(uid, &hash) == rs_uid;
            let alive = live.iter().any(|(n, uid)| *n == dep && owned(uid));
            !alive && !orphaned.iter().any(|uid| owned(uid))
        })
        .map(|s| meta(&s.value, "name").to_string())
        .collect();
    for name in doomed {
        remove(state, &name);
    }
}
