//! A simulated Deployment controller and garbage collector.
//!
//! After `controller_delay` from a generation change, a Deployment's pods
//! follow its spec ([`super::replicaset`] creates and deletes them and has
//! the node write their status) and its status follows its pods the way the
//! real controller reports it (the shapes `kubectl rollout status` reads):
//! `observedGeneration`, replica counts from the pods' readiness (zero
//! counts omitted, but `terminatingReplicas` always there), `Available` and
//! `Progressing` conditions, and the `deployment.kubernetes.io/revision`
//! annotation. A rollout whose pods never become ready (an image marked
//! broken, a not-ready [`super::kubelet::PodScenario`]) never completes: its
//! new ReplicaSet is scaled as far as the RollingUpdate strategy allows next
//! to the old ready pods, and after `progress_deadline` `Progressing` turns
//! False with `ProgressDeadlineExceeded`. Pods of a completed rollout that
//! turn unready later make the Deployment unavailable; `Progressing` stays
//! `NewReplicaSetAvailable`, as for real.
//!
//! Objects deleted with `Foreground` or `Orphan` propagation disappear
//! `controller_delay` after their deletion; a Deployment's pods go with it
//! (but stay after `Orphan`).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::clock;
use super::deployments::DEPLOYMENTS;
use super::leases::LEASES;
use super::pods;
use super::replicaset::{self, Target};
use super::resource::write_status;
use super::state::{Config, State};

const MANAGER: &str = "kube-controller-manager";
const REVISION: &str = "deployment.kubernetes.io/revision";

/// What the controller remembers of one Deployment (by uid).
#[derive(Debug)]
struct Rollout {
    generation: i64,
    template: Value,
    revision: u64,
    /// When the generation last changed: the status follows after the delay.
    changed: Instant,
    /// When the current template's rollout began: the progress deadline's start.
    started: Instant,
    /// The current template's rollout completed (all its pods were ready).
    completed: bool,
    /// The resourceVersion after the last tick that left nothing pending:
    /// while the object keeps it, there is nothing to do.
    settled: Option<String>,
}

/// The controller's memory.
#[derive(Debug, Default)]
pub(crate) struct Controller {
    rollouts: HashMap<String, Rollout>,
    /// Broken images or pod scenarios changed since the last tick.
    pub recheck: bool,
    /// When each deleting object (by uid) was first seen.
    deleting: HashMap<String, Instant>,
    /// The ReplicaSet controller's and the node's memory of the pods.
    pub pods: replicaset::Memory,
}

/// Resolves an int-or-percent (`2`, `"25%"`) against `total`, rounding up or down.
fn scaled(v: Option<&Value>, total: i64, round_up: bool) -> i64 {
    match v {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let x = total * pct;
            if round_up {
                (x + 99) / 100
            } else {
                x / 100
            }
        }
        _ => 0,
    }
}

/// Reconciles every object once at `now`; `ignore_delay` observes pending
/// changes at once (broken rollouts still wait for their deadline).
pub(crate) fn tick(state: &mut State, cfg: &Config, now: Instant, ignore_delay: bool) {
    collect_garbage(state, cfg, now, ignore_delay);
    let recheck_all = std::mem::take(&mut state.controller.recheck) || ignore_delay;
    let mut live = BTreeSet::new();
    let mut work = Vec::new();
    for s in state.store.list(DEPLOYMENTS.resource) {
        let meta = &s.value["metadata"];
        let uid = meta["uid"].as_str().unwrap_or_default().to_string();
        let rv = meta["resourceVersion"].as_str();
        let settled = state
            .controller
            .rollouts
            .get(&uid)
            .and_then(|r| r.settled.as_deref());
        if recheck_all || settled.is_none() || settled != rv {
            work.push(s.value.clone());
        }
        live.insert(uid);
    }
    for d in work {
        let uid = d["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let rv = d["metadata"]["resourceVersion"]
            .as_str()
            .map(str::to_string);
        let (new, pending) = reconcile(state, cfg, &uid, &d, now, ignore_delay);
        let mut after = rv;
        if let Some(new) = new {
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            // A status write the fake itself computed cannot fail validation.
            if let Ok(written) = write_status(
                &mut state.store,
                &DEPLOYMENTS,
                &cfg.namespace,
                MANAGER,
                name,
                new,
            ) {
                after = written["metadata"]["resourceVersion"]
                    .as_str()
                    .map(str::to_string);
            }
        }
        if let Some(r) = state.controller.rollouts.get_mut(&uid) {
            r.settled = if pending { None } else { after };
        }
    }
    state
        .controller
        .rollouts
        .retain(|uid, _| live.contains(uid));
    replicaset::collect_garbage(state);
}

/// Removes objects whose Foreground/Orphan deletion is due.
fn collect_garbage(state: &mut State, cfg: &Config, now: Instant, ignore_delay: bool) {
    let mut due = Vec::new();
    let mut deleting = BTreeSet::new();
    for rt in [&DEPLOYMENTS, &LEASES] {
        for s in state.store.list(rt.resource) {
            let meta = &s.value["metadata"];
            if meta.get("deletionTimestamp").is_none() {
                continue;
            }
            let uid = meta["uid"].as_str().unwrap_or_default().to_string();
            let seen = *state.controller.deleting.entry(uid.clone()).or_insert(now);
            if ignore_delay || now.duration_since(seen) >= cfg.controller_delay {
                due.push((
                    rt.resource,
                    meta["name"].as_str().unwrap_or_default().to_string(),
                ));
            }
            deleting.insert(uid);
        }
    }
    for (resource, name) in due {
        let Some(gone) = state.store.remove(resource, &name) else {
            continue;
        };
        let meta = &gone.value["metadata"];
        let orphan = meta["finalizers"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f == "orphan"));
        if resource == DEPLOYMENTS.resource && orphan {
            let uid = meta["uid"].as_str().unwrap_or_default().to_string();
            state.controller.pods.orphaned.insert(uid);
        }
    }
    state
        .controller
        .deleting
        .retain(|uid, _| deleting.contains(uid));
}

/// The Deployment with its status brought up to date, if it is time to,
/// and whether a later tick has more to do (a delay or a deadline pending).
fn reconcile(
    state: &mut State,
    cfg: &Config,
    uid: &str,
    d: &Value,
    now: Instant,
    ignore_delay: bool,
) -> (Option<Value>, bool) {
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(1);
    let template = d["spec"]["template"].clone();
    let r = state
        .controller
        .rollouts
        .entry(uid.to_string())
        .or_insert_with(|| Rollout {
            generation: 0,
            template: Value::Null,
            revision: 0,
            changed: now,
            started: now,
            completed: false,
            settled: None,
        });
    if r.generation != generation {
        r.generation = generation;
        r.changed = now;
        if r.template != template {
            r.template = template.clone();
            r.revision += 1;
            r.started = now;
            r.completed = false;
        }
    }
    if !ignore_delay && now.duration_since(r.changed) < cfg.controller_delay {
        return (None, true);
    }
    if d.pointer("/metadata/deletionTimestamp").is_some() {
        // Being deleted (Foreground or Orphan): left as it is until it goes.
        return (None, false);
    }
    let (started, revision, was_completed) = (r.started, r.revision, r.completed);

    let name = d["metadata"]["name"].as_str().unwrap_or_default();
    let hash = pods::template_hash(&template);
    let pulls = ["containers", "initContainers"]
        .iter()
        .flat_map(|f| template["spec"][*f].as_array().into_iter().flatten())
        .filter_map(|c| c["image"].as_str())
        .all(|i| !state.broken_images.contains(i));
    let scenario_ready = state.scenarios.get(name).is_none_or(|s| s.ready());
    // Whether pods of the current template become ready.
    let healthy = pulls && scenario_ready;

    let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
    let strategy = &d["spec"]["strategy"];
    let max_unavailable = scaled(
        strategy.pointer("/rollingUpdate/maxUnavailable"),
        desired,
        false,
    );
    let max_surge = scaled(strategy.pointer("/rollingUpdate/maxSurge"), desired, true);
    let recreate = strategy["type"] == "Recreate";
    let old_ready = replicaset::ready_old(state, d, &hash);
    let target = if healthy || recreate || old_ready == 0 {
        Target {
            hash: hash.clone(),
            current: desired,
            keep_old: 0,
        }
    } else {
        // A rollout that cannot finish: the new ReplicaSet is scaled as far
        // as the RollingUpdate strategy allows next to the old ready pods.
        Target {
            hash: hash.clone(),
            current: desired.min(max_surge + max_unavailable),
            keep_old: old_ready.min(desired - max_unavailable).max(0),
        }
    };
    let counts = replicaset::sync(state, cfg, d, &target, now, ignore_delay);
    let complete = counts.updated_ready >= desired && counts.replicas == counts.updated;
    let completed = was_completed || complete;
    if let Some(r) = state.controller.rollouts.get_mut(uid) {
        r.completed = completed;
    }
    let available = counts.ready;
    let replicas = counts.replicas;

    let rs = pods::replica_set(name, &hash);
    let mut timed_out = false;
    // Once a template's rollout completed, Progressing keeps saying so
    // (the real controller's DeploymentTimedOut ignores NewRSAvailableReason).
    let progressing = if completed {
        (
            "True",
            "NewReplicaSetAvailable",
            format!("ReplicaSet \"{rs}\" has successfully progressed."),
        )
    } else if now.duration_since(started) >= cfg.progress_deadline {
        timed_out = true;
        (
            "False",
            "ProgressDeadlineExceeded",
            format!("ReplicaSet \"{rs}\" has timed out progressing."),
        )
    } else {
        (
            "True",
            "ReplicaSetUpdated",
            format!("ReplicaSet \"{rs}\" is progressing."),
        )
    };
    let availability = if available >= desired - max_unavailable {
        (
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        )
    } else {
        (
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        )
    };
    let previous = d["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let conditions = vec![
        condition(
            &previous,
            "Available",
            availability.0,
            availability.1,
            availability.2,
        ),
        condition(
            &previous,
            "Progressing",
            progressing.0,
            progressing.1,
            &progressing.2,
        ),
    ];
    let mut status = json!({"observedGeneration": generation});
    for (k, v) in [
        ("replicas", replicas),
        ("updatedReplicas", counts.updated),
        ("readyReplicas", counts.ready),
        ("availableReplicas", available),
        ("unavailableReplicas", (replicas - available).max(0)),
    ] {
        if v != 0 {
            status[k] = v.into();
        }
    }
    // A pointer field since 1.33 (DeploymentReplicaSetTerminatingReplicas,
    // on by default): set, so 0 is shown. The fake's pods end at once.
    status["terminatingReplicas"] = 0.into();
    status["conditions"] = conditions.into();

    let pending = (!completed && !timed_out) || counts.pending;
    let mut out = d.clone();
    out["status"] = status;
    let Some(meta) = out["metadata"].as_object_mut() else {
        return (None, pending);
    };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    annotations[REVISION] = revision.to_string().into();
    (Some(out), pending)
}

/// A condition, keeping the previous timestamps when nothing changed.
fn condition(previous: &[Value], kind: &str, status: &str, reason: &str, message: &str) -> Value {
    let now = clock::now();
    let prev = previous.iter().find(|c| c["type"] == kind);
    if let Some(p) = prev {
        if p["status"] == status && p["reason"] == reason && p["message"] == message {
            return p.clone();
        }
    }
    let transition = match prev {
        Some(p) if p["status"] == status => p["lastTransitionTime"].clone(),
        _ => now.clone().into(),
    };
    json!({
        "type": kind,
        "status": status,
        "lastUpdateTime": now,
        "lastTransitionTime": transition,
        "reason": reason,
        "message": message,
    })
}

/// Whether `kubectl rollout status` would call this Deployment's rollout
/// complete: `Ok(true)` complete, `Ok(false)` waiting, `Err` failed.
pub fn rollout_complete(d: &Value) -> Result<bool, String> {
    let count = |k: &str| d["status"][k].as_i64().unwrap_or(0);
    let generation = d["metadata"]["generation"].as_i64().unwrap_or(0);
    if generation > count("observedGeneration") {
        return Ok(false);
    }
    let conditions = d["status"]["conditions"].as_array().into_iter().flatten();
    for c in conditions {
        if c["type"] == "Progressing" && c["reason"] == "ProgressDeadlineExceeded" {
            let name = d["metadata"]["name"].as_str().unwrap_or_default();
            return Err(format!(
                "deployment {name:?} exceeded its progress deadline"
            ));
        }
    }
    let desired = d["spec"]["replicas"].as_i64().unwrap_or(1);
    Ok(count("updatedReplicas") >= desired
        && count("replicas") <= count("updatedReplicas")
        && count("availableReplicas") >= count("updatedReplicas"))
}

/// How often the background thread reconciles.
pub(crate) const TICK: Duration = Duration::from_millis(10);
