//! `/v1/status`: the node state for operators, as JSON or as an aligned table.

use std::time::{Instant, SystemTime};

use serde_json::{json, Value};

use crate::clock::{human, rfc3339};
use crate::lease::Role;
use crate::scheduler::JobId;
use crate::state::{DeploymentView, Outcome, State};

/// The status document (see the README's HTTP API section for its fields).
pub fn json(state: &State, now: Instant, _wall: SystemTime) -> Value {
    let id = &state.identity;
    let timeout = state.workloads.timeout();
    let workloads: Vec<Value> = state
        .workloads
        .iter()
        .map(|(name, w)| {
            let hb = w.heartbeat.as_ref();
            json!({
                "name": name,
                "desiredVersion": desired_version(state, name),
                "deployedVersion": deployment(state, name).and_then(|d| d.version.as_deref()),
                "health": w.health(now, timeout).as_str(),
                "message": hb.map(|h| h.message.as_str()),
                "lastHeartbeatAt": hb.map(|h| rfc3339(h.at_wall)),
                "heartbeatAgeSeconds": hb.map(|h| now.saturating_duration_since(h.at).as_secs()),
                "ready": deployment(state, name).and_then(DeploymentView::ready_text),
                "rollout": deployment(state, name).map(|d| d.rollout.as_str()),
                "error": deployment(state, name).and_then(|d| d.error.as_deref()),
                "healthySeconds": state.workloads.healthy_so_far(name, now).as_secs(),
            })
        })
        .collect();
    let job = |id: JobId| {
        let record = &state.jobs[&id];
        match &record.last {
            None => json!({"at": null, "outcome": "never", "error": null, "detail": null}),
            Some(run) => json!({
                "at": rfc3339(run.at),
                "outcome": run.outcome.as_str(),
                "error": (run.outcome == Outcome::Error).then_some(run.detail.as_str()),
                "detail": run.detail,
                "tookMs": run.took.as_millis() as u64,
                "lastSuccessAt": record.last_success.map(rfc3339),
            }),
        }
    };
    json!({
        "manager": {
            "version": id.version,
            "uptimeSeconds": now.saturating_duration_since(state.started).as_secs(),
            "namespace": id.namespace,
            "podName": id.pod_name,
            "nodeAddress": id.node_address,
            "leader": state.role == Role::Leading,
            "leaseHolder": state.election.holder(),
            "ready": state.kube_answered,
        },
        "workloads": workloads,
        "lastSync": job(JobId::Sync),
        "lastReport": job(JobId::Report),
        "lastUpdateCheck": job(JobId::UpdateCheck),
        "lastLease": job(JobId::Lease),
        "outbox": {
            "queued": state.outbox.len(),
            "bytes": state.outbox.bytes(),
            "dropped": state.outbox.dropped(),
        },
    })
}

/// The same, as a table for a terminal.
pub fn text(state: &State, now: Instant, wall: SystemTime) -> String {
    let id = &state.identity;
    let timeout = state.workloads.timeout();
    let mut out = format!(
        "workload-manager {}  up {}  namespace {}  node {}  {}  {}\n\n",
        id.version,
        human(now.saturating_duration_since(state.started)),
        id.namespace,
        id.node_address.as_deref().unwrap_or("-"),
        match &state.role {
            Role::Leading => "leader".to_string(),
            Role::Lapsed(since) => format!("not leading (Lease not renewed for {})", human(*since)),
            Role::Following(holder) => format!("follower (leader: {holder})"),
            Role::NoLeader => "follower (leader: none yet)".to_string(),
        },
        if state.kube_answered {
            "ready"
        } else {
            "not ready (Kubernetes API not reached yet)"
        },
    );
    let mut rows = vec![row(&[
        "WORKLOAD",
        "DESIRED",
        "DEPLOYED",
        "HEALTH",
        "HEARTBEAT",
        "ROLLOUT",
        "HEALTHY",
        "MESSAGE",
    ])];
    for (name, w) in state.workloads.iter() {
        let hb = w.heartbeat.as_ref();
        rows.push(vec![
            name.to_string(),
            desired_version(state, name).unwrap_or("-").into(),
            deployment(state, name)
                .and_then(|d| d.version.as_deref())
                .unwrap_or("-")
                .into(),
            w.health(now, timeout).as_str().into(),
            hb.map_or("never".into(), |h| {
                format!("{} ago", human(now.saturating_duration_since(h.at)))
            })
            .to_string(),
            deployment(state, name)
                .map_or("-", |d| d.rollout.as_str())
                .into(),
            human(state.workloads.healthy_so_far(name, now)),
            hb.map_or(String::new(), |h| printable(&h.message)),
        ]);
    }
    if state.workloads.is_empty() {
        rows.push(row(&["(none yet)"]));
    }
    out += &table(&rows);
    out += "\n";
    let mut rows = vec![row(&["JOB", "LAST RUN", "OUTCOME", "DETAIL"])];
    for job in JobId::ALL {
        let record = &state.jobs[&job];
        rows.push(match &record.last {
            None => row(&[job.name(), "never", "-", ""]),
            Some(run) => vec![
                job.name().into(),
                format!(
                    "{} ago",
                    human(wall.duration_since(run.at).unwrap_or_default())
                ),
                run.outcome.as_str().into(),
                printable(&run.detail),
            ],
        });
    }
    out += &table(&rows);
    out
}

fn deployment<'a>(state: &'a State, name: &str) -> Option<&'a crate::state::DeploymentView> {
    state.deployments.get(name)
}

fn desired_version<'a>(state: &'a State, name: &str) -> Option<&'a str> {
    state.desired.as_ref()?.get(name).map(String::as_str)
}

fn row(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// Left-aligned columns two spaces apart; the last column is not padded.
fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let last = r.len().saturating_sub(1);
        for (c, cell) in r.iter().enumerate() {
            out += cell;
            if c < last {
                out.extend(std::iter::repeat_n(
                    ' ',
                    widths[c] - cell.chars().count() + 2,
                ));
            }
        }
        out.push('\n');
    }
    out
}

/// Control characters escaped, so a workload's message cannot rewrite a terminal.
pub fn printable(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Identity;
    use crate::workloads::Reported;
    use std::time::{Duration, UNIX_EPOCH};

    fn state() -> (State, Instant) {
        let now = Instant::now();
        let identity = Identity {
            version: "0.1.0",
            namespace: "edge".into(),
            pod_name: "wm-0".into(),
            node_address: None,
        };
        (State::new(identity, Duration::from_secs(30), now), now)
    }

    #[test]
    fn json_has_the_documented_fields() {
        let (mut s, t0) = state();
        let wall = UNIX_EPOCH + Duration::from_secs(1_795_867_200);
        s.workloads
            .record("web", Reported::Healthy, "ok", t0, wall)
            .unwrap();
        s.job_done(
            JobId::Sync,
            Outcome::Error,
            "Kubernetes API: connection refused".into(),
            wall,
            Duration::ZERO,
        );
        let now = t0 + Duration::from_secs(12);
        let v = json(&s, now, wall);
        assert_eq!(v["manager"]["version"], "0.1.0");
        assert_eq!(v["manager"]["uptimeSeconds"], 12);
        assert_eq!(v["manager"]["namespace"], "edge");
        assert_eq!(v["manager"]["ready"], false);
        let w = &v["workloads"][0];
        assert_eq!(w["name"], "web");
        assert_eq!(w["health"], "healthy");
        assert_eq!(w["message"], "ok");
        assert_eq!(w["lastHeartbeatAt"], "2026-11-28T12:00:00Z");
        assert_eq!(w["heartbeatAgeSeconds"], 12);
        assert_eq!(w["healthySeconds"], 12);
        assert_eq!(v["lastSync"]["outcome"], "error");
        assert_eq!(v["lastSync"]["error"], "Kubernetes API: connection refused");
        assert_eq!(v["lastReport"]["outcome"], "never");
        assert_eq!(v["lastUpdateCheck"]["outcome"], "never");
    }

    #[test]
    fn text_is_aligned_and_escaped() {
        let (mut s, t0) = state();
        s.workloads
            .record("web", Reported::Healthy, "ok", t0, UNIX_EPOCH)
            .unwrap();
        s.workloads
            .record(
                "database",
                Reported::Unhealthy,
                "bad\r\n\x1b[2Jx",
                t0,
                UNIX_EPOCH,
            )
            .unwrap();
        let out = text(&s, t0 + Duration::from_secs(3), UNIX_EPOCH);
        let lines: Vec<&str> = out.lines().collect();
        let header = lines
            .iter()
            .position(|l| l.starts_with("WORKLOAD"))
            .unwrap();
        let col = lines[header].find("HEALTH ").unwrap();
        assert_eq!(&lines[header + 1][col..col + 9], "unhealthy");
        assert_eq!(&lines[header + 2][col..col + 7], "healthy");
        assert!(out.contains(r"bad\r\n\u{1b}[2Jx"), "{out}");
        assert!(!out.contains('\x1b'));
    }
}
