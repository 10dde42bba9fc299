//! `/v1/status`: the node state for operators, as JSON or as an aligned table.

use crate::text::printable;
use std::time::{Instant, SystemTime};

use std::fmt::Write;

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
    out.raw("},\"outbox\":{\"bytes\":");
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
    out.raw(",\"workloads\":[");
    let timeout = state.workloads.timeout();
    // All three are in name order: walked side by side, not looked up.
    let mut deployments = state.deployments.iter().peekable();
    let mut desired = state.desired.iter().flatten().peekable();
    for (i, (name, w)) in state.workloads.iter().enumerate() {
        let hb = w.heartbeat.as_ref();
        let d = next_named(&mut deployments, name);
        let desired_version = next_named(&mut desired, name).map(String::as_str);
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
        out.raw(",\"rollout\":");
        out.opt_str(d.map(|d| d.rollout.as_str()));
        out.raw("}");
    }
    out.raw("]}");
    out.0
}

/// The same document as a JSON value (for tests and tools).
pub fn json(state: &State, now: Instant, wall: SystemTime) -> serde_json::Value {
    serde_json::from_str(&json_text(state, now, wall)).unwrap_or_default()
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

/// A JSON text being written: values as serde_json writes them.
struct Json(String);

impl Json {
    /// JSON text as it is (punctuation, keys).
    fn raw(&mut self, s: &str) {
        self.0.push_str(s);
    }

    fn str(&mut self, s: &str) {
        self.raw("\"");
        let plain = |b: u8| b >= 0x20 && b != b'"' && b != b'\\';
        if s.bytes().all(plain) {
            self.0.push_str(s);
        } else {
            for c in s.chars() {
                match c {
                    '"' => self.0.push_str("\\\""),
                    '\\' => self.0.push_str("\\\\"),
                    '\n' => self.0.push_str("\\n"),
                    '\r' => self.0.push_str("\\r"),
                    '\t' => self.0.push_str("\\t"),
                    '\u{8}' => self.0.push_str("\\b"),
                    '\u{c}' => self.0.push_str("\\f"),
                    c if (c as u32) < 0x20 => {
                        let _ = write!(self.0, "\\u{:04x}", c as u32);
                    }
                    c => self.0.push(c),
                }
            }
        }
        self.raw("\"");
    }

    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.raw("null"),
        }
    }

    fn num(&mut self, n: u64) {
        let mut digits = [0u8; 20];
        let mut i = digits.len();
        let mut n = n;
        loop {
            i -= 1;
            digits[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        // Only ASCII digits were written.
        self.0
            .push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
    }

    fn int(&mut self, n: i64) {
        if n < 0 {
            self.raw("-");
        }
        self.num(n.unsigned_abs());
    }

    /// A wall time as an RFC 3339 string.
    fn time(&mut self, t: SystemTime) {
        self.raw("\"");
        crate::clock::push_rfc3339(&mut self.0, t);
        self.raw("\"");
    }

    fn opt_num(&mut self, n: Option<u64>) {
        match n {
            Some(n) => self.num(n),
            None => self.raw("null"),
        }
    }

    fn bool(&mut self, b: bool) {
        self.raw(if b { "true" } else { "false" });
    }
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
                r#""outbox":{"bytes":0,"dropped":0,"queued":0},"pendingPrune":null,"#,
                r#""workloads":[{"deployedVersion":null,"desiredVersion":null,"error":null,"#,
                r#""health":"degraded","healthySeconds":0,"heartbeatAgeSeconds":3,"#,
                r#""lastHeartbeatAt":"2026-11-28T12:00:00Z","message":"slow","name":"web","#,
                r#""ready":null,"rollout":null}]}"#
            )
        );
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
