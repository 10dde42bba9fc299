//! Health reports: one per report window, in the shape of the backend
//! contract (the README's "Backend API"), built from the heartbeat and uptime
//! state. Building is pure; sending goes through the outbox.

use std::time::{Instant, SystemTime};

use serde_json::json;

use crate::clock::rfc3339;
use crate::outbox::Queued;
use crate::state::State;

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
                .iter()
                .find(|(n, _)| n == name)
                .and_then(|(_, w)| w.heartbeat.as_ref());
            let health = state.workloads.health(name, now);
            json!({
                "name": name,
                "desiredVersion": state.desired.as_ref().and_then(|d| d.get(name)),
                "deployedVersion": state.deployments.get(name).and_then(|d| d.version.as_deref()),
                "health": health.as_str(),
                "message": heartbeat.map(|h| h.message.as_str()),
                "lastHeartbeatAt": heartbeat.map(|h| rfc3339(h.at_wall)),
                "healthySeconds": round_secs(*healthy),
                "rollout": state.deployments.get(name).map(|d| d.rollout.as_str()),
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
        "workloads": workloads,
    });
    Queued {
        id,
        json: report.to_string(),
    }
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
                 "message": null, "lastHeartbeatAt": null, "healthySeconds": 0, "rollout": null},
                {"name": "web", "desiredVersion": "1.4.0", "deployedVersion": null, "health": "healthy",
                 "message": "ok", "lastHeartbeatAt": "2026-11-28T12:00:00Z", "healthySeconds": 20, "rollout": null},
            ])
        );
        let next = close_window(&mut state, t0 + Duration::from_secs(120), wall0);
        assert!(next.id.ends_with("-000002"));
    }
}
