//! `/v1/status`: the node state for operators, as JSON or as an aligned table.

use std::time::{Instant, SystemTime};

use crate::json::Json;
use crate::text::printable;

use crate::clock::human;
use crate::lease::Role;
use crate::scheduler::JobId;
use crate::state::{Outcome, State};

/// The status document, written straight from the state into one buffer
/// (no value tree, no serializer: at the size-optimized build a generic
/// serializer cost more than the rest of the request). Its fields, in this
/// order, are the README's (HTTP API section); keys stay in alphabetical
/// order within each object, as they always were.
pub fn json_text(state: &State, now: Instant, _wall: SystemTime) -> String {
    let id = &state.identity;
    // About 230 bytes a workload: one allocation, no regrowth.
    let mut out = Json(String::with_capacity(2048 + 256 * state.workloads.len()));
    out.raw("{\"lastLease\":");
    job(&mut out, state, JobId::Lease);
    out.raw(",\"lastReport\":");
    job(&mut out, state, JobId::Report);
    out.raw(",\"lastSync\":");
    job(&mut out, state, JobId::Sync);
    out.raw(",\"lastUpdateCheck\":");
    job(&mut out, state, JobId::UpdateCheck);
    out.raw(",\"manager\":{\"leader\":");
    out.bool(state.role == Role::Leading);
    out.raw(",\"leaseHolder\":");
    out.opt_str(state.election.holder());
    out.raw(",\"namespace\":");
    out.str(&id.namespace);
    out.raw(",\"nodeAddress\":");
    out.opt_str(id.node_address.as_deref());
    out.raw(",\"podName\":");
    out.str(&id.pod_name);
    out.raw(",\"ready\":");
    out.bool(state.kube_answered);
    out.raw(",\"uptimeSeconds\":");
    out.num(now.saturating_duration_since(state.started).as_secs());
    out.raw(",\"version\":");
    out.str(id.version);
    out.raw("},\"node\":");
    write_node(&mut out, state);
    out.raw(",\"outbox\":{\"bytes\":");
    out.num(state.outbox.bytes() as u64);
    out.raw(",\"dropped\":");
    out.num(state.outbox.dropped());
    out.raw(",\"queued\":");
    out.num(state.outbox.len() as u64);
    out.raw("},\"pendingPrune\":");
    match &state.pending_prune {
        None => out.raw("null"),
        Some(p) => {
            out.raw("{\"firstSeenAt\":");
            out.time(p.since_wall);
            out.raw(",\"names\":[");
            for (i, name) in p.names.iter().enumerate() {
                if i > 0 {
                    out.raw(",");
                }
                out.str(name);
            }
            out.raw("]}");
        }
    }
    out.raw(",\"podsError\":");
    out.opt_str(state.pods_error.as_deref());
    out.raw(",\"workloads\":[");
    let timeout = state.workloads.timeout();
    // All three are in name order: walked side by side, not looked up.
    let mut deployments = state.deployments.iter().peekable();
    let mut desired = state.desired.iter().flatten().peekable();
    let mut diagnoses = state.diagnoses.iter().peekable();
    for (i, (name, w)) in state.workloads.iter().enumerate() {
        let hb = w.heartbeat.as_ref();
        let d = next_named(&mut deployments, name);
        let desired_version = next_named(&mut desired, name).map(String::as_str);
        let diagnosis = next_named(&mut diagnoses, name);
        out.raw(if i == 0 { "{" } else { ",{" });
        out.raw("\"deployedVersion\":");
        out.opt_str(d.and_then(|d| d.version.as_deref()));
        out.raw(",\"desiredVersion\":");
        out.opt_str(desired_version);
        out.raw(",\"error\":");
        out.opt_str(d.and_then(|d| d.error.as_deref()));
        out.raw(",\"health\":");
        out.str(w.health(now, timeout).as_str());
        out.raw(",\"healthySeconds\":");
        out.num(state.workloads.healthy_of(w, now).as_secs());
        out.raw(",\"heartbeatAgeSeconds\":");
        out.opt_num(hb.map(|h| now.saturating_duration_since(h.at).as_secs()));
        out.raw(",\"lastHeartbeatAt\":");
        match hb {
            Some(h) => out.time(h.at_wall),
            None => out.raw("null"),
        }
        out.raw(",\"lastTermination\":");
        match state.terminations.get(name) {
            Some(t) => {
                out.raw("{\"at\":");
                out.str(&t.at);
                out.raw(",\"exitCode\":");
                out.int(i64::from(t.exit_code));
                out.raw(",\"reason\":");
                out.str(&t.reason);
                out.raw("}");
            }
            None => out.raw("null"),
        }
        out.raw(",\"message\":");
        out.opt_str(hb.map(|h| h.message.as_str()));
        out.raw(",\"name\":");
        out.str(name);
        out.raw(",\"ready\":");
        match d.and_then(|d| d.ready) {
            // `ready/wanted`, as DeploymentView::ready_text says it.
            Some((ready, wanted)) => {
                out.raw("\"");
                out.int(ready);
                out.raw("/");
                out.int(wanted);
                out.raw("\"");
            }
            None => out.raw("null"),
        }
        out.raw(",\"reason\":");
        out.opt_str(diagnosis.and_then(|g| g.reason.as_deref()));
        out.raw(",\"reasonMessage\":");
        out.opt_str(diagnosis.and_then(|g| g.message.as_deref()));
        out.raw(",\"replicas\":");
        match d.and_then(|d| d.ready) {
            Some((ready, desired)) => {
                out.raw("{\"desired\":");
                out.int(desired);
                out.raw(",\"ready\":");
                out.int(ready);
                out.raw("}");
            }
            None => out.raw("null"),
        }
        out.raw(",\"restarts\":");
        out.opt_num(diagnosis.map(|g| g.restarts));
        out.raw(",\"rollout\":");
        out.opt_str(d.map(|d| d.rollout.as_str()));
        out.raw("}");
    }
    out.raw("]}");
    out.0
}

/// The status document as [`json_text`] writes it, from a cache while
/// nothing it shows can have changed: the state's generation is the same
/// (every job step and every write through the API moves it) and no time
/// shown in whole seconds (uptime, heartbeat ages, healthy time) nor any
/// heartbeat's timeout has passed since it was written. A dashboard or a
/// scraper polling it costs one render per change, not one per request.
pub fn json_cached(state: &mut State, now: Instant, wall: SystemTime) -> String {
    if let Some(c) = &state.status_cache {
        if c.generation == state.generation && now < c.until {
            return c.body.clone();
        }
    }
    let body = json_text(state, now, wall);
    let until = state
        .workloads
        .iter()
        .filter_map(|(_, w)| state.workloads.next_change_of(w, now))
        .fold(
            crate::workloads::next_second(state.started, now),
            Instant::min,
        );
    state.status_cache = Some(crate::state::StatusCache {
        generation: state.generation,
        until,
        body: body.clone(),
    });
    body
}

/// The same document as a JSON value (for tests and tools).
pub fn json(state: &State, now: Instant, wall: SystemTime) -> serde_json::Value {
    serde_json::from_str(&json_text(state, now, wall)).unwrap_or_default()
}

/// The REPORT's `node` object, and why the Node's own fields are null.
fn write_node(out: &mut Json, state: &State) {
    state.node.write_fields(out);
    out.raw(",\"error\":");
    out.opt_str(state.node.object.as_ref().err().map(String::as_str));
    out.raw("}");
}

/// Advances a name-ordered iterator to `name` and returns its value there.
fn next_named<'a, V: 'a>(
    it: &mut std::iter::Peekable<impl Iterator<Item = (&'a String, &'a V)>>,
    name: &str,
) -> Option<&'a V> {
    while it.next_if(|(k, _)| k.as_str() < name).is_some() {}
    it.next_if(|(k, _)| k.as_str() == name).map(|(_, v)| v)
}

/// A job's last run; `lastSuccessAt` and `tookMs` only once it ran.
fn job(out: &mut Json, state: &State, id: JobId) {
    let record = &state.jobs[&id];
    let Some(run) = &record.last else {
        out.raw(r#"{"at":null,"detail":null,"error":null,"outcome":"never"}"#);
        return;
    };
    out.raw("{\"at\":");
    out.time(run.at);
    out.raw(",\"detail\":");
    out.str(&run.detail);
    out.raw(",\"error\":");
    out.opt_str((run.outcome == Outcome::Error).then_some(run.detail.as_str()));
    out.raw(",\"lastSuccessAt\":");
    match record.last_success {
        Some(t) => out.time(t),
        None => out.raw("null"),
    }
    out.raw(",\"outcome\":");
    out.str(run.outcome.as_str());
    out.raw(",\"tookMs\":");
    out.num(run.took.as_millis() as u64);
    out.raw("}");
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
    out += &node_line(state);
    let mut rows = vec![row(&[
        "WORKLOAD",
        "DESIRED",
        "DEPLOYED",
        "HEALTH",
        "HEARTBEAT",
        "ROLLOUT",
        "READY",
        "RESTARTS",
        "REASON",
        "LAST EXIT",
        "HEALTHY",
        "MESSAGE",
    ])];
    for (name, w) in state.workloads.iter() {
        let hb = w.heartbeat.as_ref();
        let diagnosis = state.diagnoses.get(name);
        let reason = diagnosis.and_then(|g| g.reason.as_deref());
        // Why it is down says more than its last heartbeat.
        let message = match (reason, diagnosis.and_then(|g| g.message.as_deref())) {
            (Some(_), Some(m)) => printable(m),
            _ => hb.map_or(String::new(), |h| printable(&h.message)),
        };
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
            deployment(state, name)
                .and_then(|d| d.ready_text())
                .unwrap_or_else(|| "-".into()),
            diagnosis.map_or("-".into(), |g| g.restarts.to_string()),
            printable(reason.unwrap_or("-")),
            state.terminations.get(name).map_or("-".into(), |t| {
                printable(&format!("{} ({}) at {}", t.reason, t.exit_code, t.at))
            }),
            human(state.workloads.healthy_so_far(name, now)),
            message,
        ]);
    }
    if state.workloads.is_empty() {
        rows.push(row(&["(none yet)"]));
    }
    out += &table(&rows);
    out += "\n";
    if let Some(p) = &state.pending_prune {
        out += &format!(
            "PENDING PRUNE: the desired list is empty; {} Deployment(s) ({}) are deleted only if a fetch at least {}s after {} still says so\n\n",
            p.names.len(),
            printable(&p.names.join(", ")),
            crate::reconcile::PRUNE_CONFIRM_AFTER.as_secs(),
            crate::clock::rfc3339(p.since_wall),
        );
    }
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

/// The node in one line: its Node's readiness and kubelet, then each
/// resource with its level.
fn node_line(state: &State) -> String {
    let node = &state.node;
    let mut line = match &node.object {
        Ok(o) => format!(
            "node {}  kubelet {}  Ready={}",
            node.name.as_deref().unwrap_or("-"),
            o.kubelet.as_deref().unwrap_or("-"),
            o.conditions[0].as_deref().unwrap_or("?"),
        ),
        Err(why) => format!("node: {}", printable(why)),
    };
    if let Ok(o) = &node.object {
        for (kind, status) in crate::node::view::CONDITIONS
            .iter()
            .zip(&o.conditions)
            .skip(1)
        {
            if status.as_deref() == Some("True") {
                line += &format!(" {kind}");
            }
        }
    }
    match &node.sample {
        None => line += "  (not sampled yet)",
        Some(s) => {
            let pct = |p: Option<f64>| p.map_or("?".to_string(), |p| format!("{p:.1}%"));
            line += &format!(
                "  cpu {} {}  memory {} {}  disk {} {}",
                pct(s.cpu.used_percent),
                node.cpu.as_str(),
                pct(s.memory.as_ref().map(|m| m.used_percent)),
                node.memory.as_str(),
                pct(s.disk.as_ref().map(|d| d.used_percent)),
                node.disk.as_str(),
            );
            if let Some(up) = s.uptime {
                line += &format!("  booted {} ago", human(up));
            }
        }
    }
    if let Some(why) = &state.pods_error {
        line += &format!("\npods: {}", printable(why));
    }
    line + "\n\n"
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
    fn strings_and_numbers_are_written_as_serde_json_writes_them() {
        for s in [
            "plain",
            "",
            "quote \" and \\ backslash",
            "line\nbreak\ttab\r\u{8}\u{c}\u{1}\u{1f}",
            "ünïcødé ✓ \u{7f}",
        ] {
            let mut out = Json(String::new());
            out.str(s);
            assert_eq!(out.0, serde_json::to_string(s).unwrap(), "{s:?}");
        }
        for n in [0, 7, 10, 99, 1_000_000, u64::MAX] {
            let mut out = Json(String::new());
            out.num(n);
            assert_eq!(out.0, n.to_string());
        }
    }

    /// A node sample as the kernel of the REPORT example gives it.
    fn sample() -> crate::node::proc::Sample {
        use crate::node::proc::{Cpu, Disk, Sample};
        Sample {
            boot_id: Some("5c1e0c0e-8a8b-4a43-9e3d-7a1f6f0c2b11".into()),
            uptime: Some(Duration::from_secs(864_000)),
            kernel: Some("6.1.0-18-amd64".into()),
            arch: Some("x86_64".into()),
            cpu: Cpu {
                used_percent: Some(12.5),
                cores: Some(4),
            },
            memory: None,
            disk: Some(Disk {
                used_percent: 83.0,
                free_bytes: 21_474_836_480,
                total_bytes: 126_340_374_528,
            }),
        }
    }

    #[test]
    fn the_document_keeps_its_exact_text() {
        let (mut s, t0) = state();
        let wall = UNIX_EPOCH + Duration::from_secs(1_795_867_200);
        s.workloads
            .record("web", Reported::Degraded, "slow", t0, wall)
            .unwrap();
        s.job_done(
            JobId::Lease,
            Outcome::Ok,
            "leader".into(),
            wall,
            Duration::from_millis(7),
        );
        s.node = crate::node::view::NodeView::new(None, t0);
        s.node.observe(sample(), t0);
        s.diagnoses.insert(
            "web".into(),
            crate::pods::Diagnosis {
                restarts: 3,
                reason: Some("CrashLoopBackOff".into()),
                message: Some("back-off 40s".into()),
                last_termination: None,
            },
        );
        let text = json_text(&s, t0 + Duration::from_secs(3), wall);
        assert_eq!(
            text,
            concat!(
                r#"{"lastLease":{"at":"2026-11-28T12:00:00Z","detail":"leader","error":null,"#,
                r#""lastSuccessAt":"2026-11-28T12:00:00Z","outcome":"ok","tookMs":7},"#,
                r#""lastReport":{"at":null,"detail":null,"error":null,"outcome":"never"},"#,
                r#""lastSync":{"at":null,"detail":null,"error":null,"outcome":"never"},"#,
                r#""lastUpdateCheck":{"at":null,"detail":null,"error":null,"outcome":"never"},"#,
                r#""manager":{"leader":false,"leaseHolder":null,"namespace":"edge","nodeAddress":null,"#,
                r#""podName":"wm-0","ready":false,"uptimeSeconds":3,"version":"0.1.0"},"#,
                r#""node":{"arch":"x86_64","bootId":"5c1e0c0e-8a8b-4a43-9e3d-7a1f6f0c2b11","#,
                r#""conditions":null,"cpu":{"cores":4,"status":"healthy","usedPercent":12.5},"#,
                r#""disk":{"freeBytes":21474836480,"status":"healthy","totalBytes":126340374528,"usedPercent":83.0},"#,
                r#""kernel":"6.1.0-18-amd64","kubelet":null,"#,
                r#""memory":{"status":"unknown","totalBytes":null,"usedBytes":null,"usedPercent":null},"#,
                r#""name":null,"uptimeSeconds":864000,"#,
                r#""error":"NODE_NAME is not set (the manifests set it from spec.nodeName)"},"#,
                r#""outbox":{"bytes":0,"dropped":0,"queued":0},"pendingPrune":null,"podsError":null,"#,
                r#""workloads":[{"deployedVersion":null,"desiredVersion":null,"error":null,"#,
                r#""health":"degraded","healthySeconds":0,"heartbeatAgeSeconds":3,"#,
                r#""lastHeartbeatAt":"2026-11-28T12:00:00Z","lastTermination":null,"message":"slow","name":"web","#,
                r#""ready":null,"reason":"CrashLoopBackOff","reasonMessage":"back-off 40s","#,
                r#""replicas":null,"restarts":3,"rollout":null}]}"#
            )
        );
    }

    #[test]
    fn the_cached_document_is_always_the_one_written_fresh() {
        let (mut s, t0) = state();
        let wall = UNIX_EPOCH + Duration::from_secs(1_795_867_200);
        s.workloads.set_desired(
            ["web", "api", "db"].iter().map(|n| n.to_string()).collect(),
            t0,
        );
        let ms = |n: u64| t0 + Duration::from_millis(n);
        s.workloads
            .record("web", Reported::Healthy, "ok", ms(130), wall)
            .unwrap();
        s.workloads
            .record("api", Reported::Degraded, "slow", ms(770), wall)
            .unwrap();
        let mut renders = 0;
        // Every 7 ms for 40 s: ages, healthy time, uptime and a timeout
        // (30 s after a heartbeat) all pass whole seconds on the way.
        for step in 0..(40_000 / 7) {
            let now = ms(1000 + step * 7);
            if step == 2000 {
                s.workloads
                    .record("db", Reported::Healthy, "up", now, wall)
                    .unwrap();
                s.changed();
            }
            let before = s.status_cache.as_ref().map(|c| (c.generation, c.until));
            let cached = json_cached(&mut s, now, wall);
            assert_eq!(cached, json_text(&s, now, wall), "at {}ms", step * 7 + 1000);
            if s.status_cache.as_ref().map(|c| (c.generation, c.until)) != before {
                renders += 1;
            }
        }
        // Most requests are answered from the cache.
        assert!(renders < 400, "{renders} renders for 5714 requests");
        assert!(renders >= 40, "at least one a second (uptime): {renders}");
    }

    #[test]
    fn the_table_shows_why_a_workload_is_down_and_how_the_node_is() {
        let (mut s, t0) = state();
        s.workloads
            .record("web", Reported::Healthy, "serving", t0, UNIX_EPOCH)
            .unwrap();
        s.node = crate::node::view::NodeView::new(Some("edge-1".into()), t0);
        s.node.set_object(Ok(Some(
            serde_json::from_value(serde_json::json!({"status": {
                "conditions": [{"type": "Ready", "status": "True"},
                               {"type": "DiskPressure", "status": "True"}],
                "nodeInfo": {"kubeletVersion": "v1.31.4+k3s1"}}}))
            .unwrap(),
        )));
        s.node.observe(sample(), t0);
        s.diagnoses.insert(
            "web".into(),
            crate::pods::Diagnosis {
                restarts: 7,
                reason: Some("CrashLoopBackOff".into()),
                message: Some("back-off 5m0s".into()),
                last_termination: None,
            },
        );
        let out = text(&s, t0 + Duration::from_secs(3), UNIX_EPOCH);
        let node = out.lines().nth(2).unwrap();
        assert!(
            node.starts_with(
                "node edge-1  kubelet v1.31.4+k3s1  Ready=True DiskPressure  cpu 12.5% healthy"
            ),
            "{out}"
        );
        let header = out.lines().find(|l| l.starts_with("WORKLOAD")).unwrap();
        let row = out.lines().find(|l| l.starts_with("web")).unwrap();
        let column = |name: &str| {
            let at = header.find(name).unwrap();
            row[at..].split("  ").next().unwrap().trim().to_string()
        };
        assert_eq!(column("REASON"), "CrashLoopBackOff");
        assert_eq!(column("RESTARTS"), "7");
        // The reason's message, not the last heartbeat's.
        assert!(row.ends_with("back-off 5m0s"), "{row}");

        s.node.set_object(Err(crate::kube::KubeError::Api {
            code: 403,
            reason: "Forbidden".into(),
            message: "nodes \"edge-1\" is forbidden".into(),
            retry_after: None,
        }));
        let out = text(&s, t0 + Duration::from_secs(3), UNIX_EPOCH);
        assert!(out.contains("node: not allowed to get Node edge-1: the ClusterRole workload-manager-node-reader"), "{out}");
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
