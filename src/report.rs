//! Health reports: one per report window, in the shape of the backend
//! contract (the README's "Backend API"), built from the heartbeat and uptime
//! state. Building is pure; sending goes through the outbox.

use std::time::{Duration, Instant, SystemTime};

use serde_json::json;

use crate::clock::rfc3339;
use crate::kube::Deployment;
use crate::outbox::Queued;
use crate::state::{DeploymentView, State};

/// Whether a report run closes the window, `age` after it opened: at 90 % of
/// the interval, so a run a little early (the scheduler's jitter, a retry)
/// still reports, and a retry soon after a report only delivers.
pub fn window_due(age: Duration, interval: Duration) -> bool {
    age >= interval.mul_f64(0.9)
}

/// When the report job runs again after a delivery failed, `age` into the
/// window: as the backend asked (`retry_after`), else backing off but by the
/// time the next window falls due, so windows keep their length through an
/// outage and a fleet's deliveries come back at their usual pace.
pub fn after_failed_delivery(
    retry_after: Option<Duration>,
    age: Duration,
    interval: Duration,
) -> crate::scheduler::Next {
    use crate::scheduler::Next;
    match retry_after {
        Some(wait) => Next::After(wait),
        None => Next::BackoffWithin(interval.saturating_sub(age)),
    }
}

/// Closes the current report window and builds its report.
pub fn close_window(state: &mut State, now: Instant, wall: SystemTime) -> Queued {
    let (window, healthy) = state.workloads.close_window(now);
    state.reports_built += 1;
    let address = state.identity.node_address.as_deref().unwrap_or("0x");
    let id = format!("{address}-{}-{:06}", state.run_id, state.reports_built);
    let workloads: Vec<serde_json::Value> = healthy
        .iter()
        .map(|(name, healthy)| {
            let heartbeat = state
                .workloads
                .get(name)
                .and_then(|w| w.heartbeat.as_ref());
            let health = state.workloads.health(name, now);
            let view = state.deployments.get(name);
            let diagnosis = state.diagnoses.get(name);
            json!({
                "name": name,
                "desiredVersion": state.desired.as_ref().and_then(|d| d.get(name)),
                "deployedVersion": view.and_then(|d| d.version.as_deref()),
                "health": health.as_str(),
                "message": heartbeat.map(|h| h.message.as_str()),
                "lastHeartbeatAt": heartbeat.map(|h| rfc3339(h.at_wall)),
                "healthySeconds": round_secs(*healthy),
                "rollout": view.map(|d| d.rollout.as_str()),
                "replicas": view.and_then(|d| d.ready).map(|(ready, desired)| json!({"desired": desired, "ready": ready})),
                "restarts": diagnosis.map(|d| d.restarts),
                "reason": diagnosis.and_then(|d| d.reason.as_deref()),
                "reasonMessage": diagnosis.and_then(|d| d.message.as_deref()),
                "lastTermination": state.terminations.get(name).map(|t| json!({
                    "reason": t.reason, "exitCode": t.exit_code, "at": t.at,
                })),
            })
        })
        .collect();
    let report = json!({
        "id": id,
        "at": rfc3339(wall),
        "windowSeconds": round_secs(window),
        "manager": {
            "version": state.identity.version,
            "uptimeSeconds": now.saturating_duration_since(state.started).as_secs(),
        },
        "node": serde_json::from_str::<serde_json::Value>(&state.node.json_text()).unwrap_or_default(),
        "workloads": workloads,
    });
    Queued {
        id,
        json: report.to_string(),
    }
}

/// Brings the rollout and replicas of the workloads' views up to date from
/// the managed Deployments listed in this window (a sync may be minutes
/// away). Views the sync marked without a Deployment stay as they are.
pub fn refresh_views(state: &mut State, listed: &[Deployment]) {
    for d in listed {
        if let Some(view) = state.deployments.get_mut(&d.metadata.name) {
            if view.ready.is_some() {
                let error = view.error.take();
                *view = DeploymentView::of(d);
                view.error = error;
            }
        }
    }
}

/// Explains each desired workload's readiness from its Deployment and its
/// pods, matched by owner (no label of ours on the pods).
pub fn diagnose(state: &mut State, listed: &[Deployment], pods: &[crate::pods::Pod]) {
    let by_deployment = crate::pods::by_deployment(pods);
    state.diagnoses.clear();
    let desired = |name: &str| state.workloads.get(name).is_some();
    for d in listed.iter().filter(|d| desired(&d.metadata.name)) {
        let name = d.metadata.name.as_str();
        let wanted = d.spec.replicas.unwrap_or(1);
        let fully_ready = d.status.ready_replicas >= wanted;
        let own = by_deployment.get(name).map_or(&[][..], Vec::as_slice);
        let mut diagnosis = crate::pods::diagnose(name, fully_ready, own, &mut state.terminations);
        if diagnosis.reason.is_none() && !fully_ready {
            if let Some((reason, message)) = deployment_reason(d) {
                diagnosis.reason = Some(reason);
                diagnosis.message = message;
            }
        }
        state.diagnoses.insert(name.to_string(), diagnosis);
    }
    let workloads = &state.workloads;
    state
        .terminations
        .forget_except(|name| workloads.get(name).is_some());
    state.pods_error = None;
}

/// This window has no pod diagnoses, for `why`; last terminations are kept.
pub fn no_diagnoses(state: &mut State, why: String) {
    state.diagnoses.clear();
    state.pods_error = Some(why);
}

/// When no pod says why: the Deployment's own failure condition
/// (`ReplicaFailure`, e.g. a quota refusing pods; or a progress deadline).
fn deployment_reason(d: &Deployment) -> Option<(String, Option<String>)> {
    let c = d.status.conditions.iter().find(|c| {
        (c.kind == "ReplicaFailure" && c.status == "True")
            || (c.kind == "Progressing" && c.status == "False")
    })?;
    let reason = crate::text::clean(&c.reason, 128);
    let message = (!c.message.is_empty()).then(|| crate::text::clean(&c.message, 256));
    (!reason.is_empty()).then_some((reason, message))
}

/// Whole seconds, rounded to the nearest: a 59.98 s window is 60 s.
fn round_secs(d: std::time::Duration) -> u64 {
    d.as_secs_f64().round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Identity;
    use crate::workloads::Reported;
    use serde_json::Value;
    use std::collections::{BTreeMap, BTreeSet};
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn a_report_has_the_contract_shape() {
        let t0 = Instant::now();
        let identity = Identity {
            version: "0.1.0",
            namespace: "edge".into(),
            pod_name: "wm-0".into(),
            node_address: Some("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23".into()),
        };
        let mut state = State::new(identity, Duration::from_secs(30), t0);
        state.run_id = "1795867200000.3f9a0c21".into();
        state.desired = Some(BTreeMap::from([
            ("web".to_string(), "1.4.0".to_string()),
            ("db".to_string(), "2".to_string()),
        ]));
        state
            .workloads
            .set_desired(BTreeSet::from(["web".to_string(), "db".to_string()]), t0);
        let wall0 = UNIX_EPOCH + Duration::from_secs(1_795_867_200);
        state
            .workloads
            .record(
                "web",
                Reported::Healthy,
                "ok",
                t0 + Duration::from_secs(40),
                wall0,
            )
            .unwrap();
        let r = close_window(
            &mut state,
            t0 + Duration::from_secs(60),
            wall0 + Duration::from_secs(60),
        );
        assert_eq!(
            r.id,
            "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23-1795867200000.3f9a0c21-000001"
        );
        let v: serde_json::Value = serde_json::from_str(&r.json).unwrap();
        assert_eq!(v["id"], r.id.as_str());
        assert_eq!(v["at"], "2026-11-28T12:01:00Z");
        assert_eq!(v["windowSeconds"], 60);
        assert_eq!(
            v["manager"],
            json!({"version": "0.1.0", "uptimeSeconds": 60})
        );
        assert_eq!(
            v["workloads"],
            json!([
                {"name": "db", "desiredVersion": "2", "deployedVersion": null, "health": "unknown",
                 "message": null, "lastHeartbeatAt": null, "healthySeconds": 0, "rollout": null,
                 "replicas": null, "restarts": null, "reason": null, "reasonMessage": null, "lastTermination": null},
                {"name": "web", "desiredVersion": "1.4.0", "deployedVersion": null, "health": "healthy",
                 "message": "ok", "lastHeartbeatAt": "2026-11-28T12:00:00Z", "healthySeconds": 20, "rollout": null,
                 "replicas": null, "restarts": null, "reason": null, "reasonMessage": null, "lastTermination": null},
            ])
        );
        // Nothing sampled or read yet: every node field is null or unknown.
        assert_eq!(v["node"]["name"], Value::Null);
        assert_eq!(v["node"]["conditions"], Value::Null);
        assert_eq!(v["node"]["cpu"]["status"], "unknown");
        let next = close_window(&mut state, t0 + Duration::from_secs(120), wall0);
        assert!(next.id.ends_with("-000002"));
    }

    fn bare_state() -> (State, Instant) {
        let t0 = Instant::now();
        let identity = Identity {
            version: "0.1.0",
            namespace: "edge".into(),
            pod_name: "wm-0".into(),
            node_address: None,
        };
        (State::new(identity, Duration::from_secs(30), t0), t0)
    }

    fn deployment(name: &str, replicas: i64, ready: i64) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": name, "generation": 1,
                         "labels": {"app.kubernetes.io/managed-by": "workload-manager"},
                         "annotations": {"workload-manager/version": "1.4.0"}},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                       "readyReplicas": ready, "availableReplicas": ready}
        }))
        .unwrap()
    }

    /// A pod of `deployment`'s ReplicaSet `<deployment>-5d8f7c9b4`.
    fn pod(deployment: &str, name: &str, status: Value) -> Value {
        json!({
            "metadata": {"name": name, "creationTimestamp": "2026-11-28T11:00:00Z",
                         "labels": {"app": deployment, "pod-template-hash": "5d8f7c9b4"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                              "name": format!("{deployment}-5d8f7c9b4"), "controller": true}]},
            "spec": {"containers": [{"name": deployment, "image": "registry.example/web:1"}]},
            "status": status,
        })
    }

    #[test]
    fn a_report_says_why_a_workload_is_down_from_its_pods() {
        let (mut state, t0) = bare_state();
        let names = BTreeSet::from(["web".to_string(), "db".to_string()]);
        state.workloads.set_desired(names, t0);
        let listed = [deployment("web", 1, 0), deployment("db", 1, 1)];
        for d in &listed {
            state.deployments.insert(
                d.metadata.name.clone(),
                DeploymentView::marked(crate::reconcile::Rollout::Progressing, ""),
            );
            // A view the sync saw from a Deployment: refreshed below.
            state.deployments.get_mut(&d.metadata.name).unwrap().ready = Some((0, 0));
        }
        let crash = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "False", "reason": "ContainersNotReady"}],
            "containerStatuses": [{"name": "web", "ready": false, "restartCount": 7,
                "state": {"waiting": {"reason": "CrashLoopBackOff",
                                      "message": "back-off 5m0s restarting failed container=web pod=web-5d8f7c9b4-x2x9q"}},
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137,
                                             "finishedAt": "2026-11-28T11:42:10Z"}}}]});
        let ready = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "db", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": "2026-11-28T11:00:05Z"}}}]});
        let stranger = json!({"metadata": {"name": "other-abc"}, "status": {"phase": "Failed"}});
        let pods: crate::pods::PodList = serde_json::from_value(json!({"items": [
            pod("web", "web-5d8f7c9b4-x2x9q", crash),
            pod("db", "db-5d8f7c9b4-aaaaa", ready),
            stranger,
        ]}))
        .unwrap();
        refresh_views(&mut state, &listed);
        diagnose(&mut state, &listed, &pods.items);
        let r = close_window(&mut state, t0 + Duration::from_secs(60), UNIX_EPOCH);
        let v: Value = serde_json::from_str(&r.json).unwrap();
        let web = &v["workloads"][1];
        assert_eq!(web["name"], "web");
        assert_eq!(web["replicas"], json!({"desired": 1, "ready": 0}));
        assert_eq!(web["rollout"], "progressing");
        assert_eq!(web["restarts"], 7);
        assert_eq!(web["reason"], "CrashLoopBackOff");
        assert_eq!(
            web["reasonMessage"],
            "back-off 5m0s restarting failed container=web pod=web-5d8f7c9b4-x2x9q"
        );
        assert_eq!(
            web["lastTermination"],
            json!({"reason": "OOMKilled", "exitCode": 137, "at": "2026-11-28T11:42:10Z"})
        );
        let db = &v["workloads"][0];
        assert_eq!(db["replicas"], json!({"desired": 1, "ready": 1}));
        assert_eq!(db["rollout"], "complete");
        assert_eq!(db["reason"], Value::Null);
        assert_eq!(db["restarts"], 0);

        // The pod recovers: no reason, the OOM kill still shows. Then the
        // list fails: no diagnoses, the last termination is kept.
        let recovered = json!({"phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{"name": "web", "ready": true, "restartCount": 8,
                "state": {"running": {"startedAt": "2026-11-28T11:50:00Z"}}}]});
        let pods: crate::pods::PodList = serde_json::from_value(
            json!({"items": [pod("web", "web-5d8f7c9b4-y3y3y", recovered)]}),
        )
        .unwrap();
        let listed = [deployment("web", 1, 1), deployment("db", 1, 1)];
        diagnose(&mut state, &listed, &pods.items);
        assert_eq!(state.diagnoses["web"].reason, None);
        assert_eq!(state.terminations.get("web").unwrap().reason, "OOMKilled");
        no_diagnoses(&mut state, "cannot list pods: timed out".into());
        let r = close_window(&mut state, t0 + Duration::from_secs(120), UNIX_EPOCH);
        let v: Value = serde_json::from_str(&r.json).unwrap();
        assert_eq!(v["workloads"][1]["restarts"], Value::Null);
        assert_eq!(v["workloads"][1]["lastTermination"]["exitCode"], 137);
        assert_eq!(
            state.pods_error.as_deref(),
            Some("cannot list pods: timed out")
        );
    }

    #[test]
    fn with_no_pod_to_blame_the_deployment_condition_says_why() {
        let (mut state, t0) = bare_state();
        state
            .workloads
            .set_desired(BTreeSet::from(["web".to_string()]), t0);
        let mut d = deployment("web", 1, 0);
        d.status.conditions.push(crate::kube::Condition {
            kind: "ReplicaFailure".into(),
            status: "True".into(),
            reason: "FailedCreate".into(),
            message: "pods \"web-5d8f7c9b4-x\" is forbidden: exceeded quota: compute".into(),
        });
        diagnose(&mut state, &[d], &[]);
        assert_eq!(
            state.diagnoses["web"].reason.as_deref(),
            Some("FailedCreate")
        );
        assert!(state.diagnoses["web"]
            .message
            .as_deref()
            .unwrap()
            .contains("exceeded quota"));
    }
}
