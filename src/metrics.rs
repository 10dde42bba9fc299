//! `/metrics`: Prometheus text format 0.0.4. Every label value comes from a
//! fixed set or is a validated workload name, so cardinality stays bounded.

use std::fmt::Write;
use std::time::{Instant, SystemTime};

use crate::clock::unix_secs;
use crate::scheduler::JobId;
use crate::state::State;
use crate::workloads::Health;

pub fn render(state: &State, now: Instant, _wall: SystemTime) -> String {
    let mut m = Metrics(String::with_capacity(2048));
    m.family(
        "wm_build_info",
        "gauge",
        "Always 1; the version is a label.",
    );
    m.sample("wm_build_info", &[("version", state.identity.version)], 1);
    m.family(
        "wm_uptime_seconds",
        "gauge",
        "Seconds since the manager started.",
    );
    m.sample(
        "wm_uptime_seconds",
        &[],
        now.saturating_duration_since(state.started).as_secs(),
    );
    m.family(
        "wm_ready",
        "gauge",
        "1 once the Kubernetes API has answered.",
    );
    m.sample("wm_ready", &[], u64::from(state.kube_answered));
    if let Some(bytes) = crate::memory::heap_in_use() {
        m.family(
            "wm_heap_bytes",
            "gauge",
            "Heap memory in use (allocated, not yet freed).",
        );
        m.sample("wm_heap_bytes", &[], bytes);
    }
    m.family(
        "wm_leader",
        "gauge",
        "1 while this instance holds the leader-election Lease.",
    );
    m.sample(
        "wm_leader",
        &[],
        u64::from(state.role == crate::lease::Role::Leading),
    );
    m.family(
        "wm_outbox_reports",
        "gauge",
        "Health reports waiting for the backend.",
    );
    m.sample("wm_outbox_reports", &[], state.outbox.len() as u64);
    m.family(
        "wm_outbox_dropped_total",
        "counter",
        "Health reports dropped because the outbox was full.",
    );
    m.sample("wm_outbox_dropped_total", &[], state.outbox.dropped());

    m.family(
        "wm_http_requests_total",
        "counter",
        "Requests answered, by route and status code.",
    );
    for ((route, code), n) in &state.http {
        m.sample(
            "wm_http_requests_total",
            &[("route", route.as_str()), ("code", &code.to_string())],
            *n,
        );
    }

    let timeout = state.workloads.timeout();
    m.family("wm_workloads", "gauge", "Workloads by health.");
    for health in Health::ALL {
        let n = state
            .workloads
            .iter()
            .filter(|(_, w)| w.health(now, timeout) == health)
            .count();
        m.sample("wm_workloads", &[("health", health.as_str())], n as u64);
    }
    m.family(
        "wm_workload_healthy",
        "gauge",
        "1 when the workload's last heartbeat is healthy and recent.",
    );
    for (name, w) in state.workloads.iter() {
        let healthy = w.health(now, timeout) == Health::Healthy;
        m.sample(
            "wm_workload_healthy",
            &[("workload", name)],
            u64::from(healthy),
        );
    }
    m.family(
        "wm_workload_heartbeat_age_seconds",
        "gauge",
        "Seconds since the workload's last heartbeat.",
    );
    for (name, w) in state.workloads.iter() {
        if let Some(h) = &w.heartbeat {
            let age = now.saturating_duration_since(h.at).as_secs();
            m.sample(
                "wm_workload_heartbeat_age_seconds",
                &[("workload", name)],
                age,
            );
        }
    }

    m.family(
        "wm_workload_rollout",
        "gauge",
        "1 for the rollout state each workload is in.",
    );
    for (name, d) in &state.deployments {
        m.sample(
            "wm_workload_rollout",
            &[("workload", name), ("state", d.rollout.as_str())],
            1,
        );
    }
    m.family(
        "wm_workload_ready_replicas",
        "gauge",
        "Ready replicas of each workload's Deployment.",
    );
    for (name, d) in &state.deployments {
        if let Some((ready, _)) = d.ready {
            m.sample(
                "wm_workload_ready_replicas",
                &[("workload", name)],
                ready.max(0) as u64,
            );
        }
    }
    m.family(
        "wm_workload_restarts",
        "gauge",
        "Container restarts of each workload's current pods.",
    );
    for (name, g) in &state.diagnoses {
        m.sample("wm_workload_restarts", &[("workload", name)], g.restarts);
    }
    node(&mut m, state);
    m.family(
        "wm_sentry_events_total",
        "counter",
        "Error events for Sentry: delivered, dropped (queue full, refused or undeliverable), held back as repeats.",
    );
    let e = &state.events;
    for (outcome, n) in [
        ("delivered", e.delivered),
        ("dropped", e.dropped),
        ("held_back", e.held_back),
    ] {
        m.sample("wm_sentry_events_total", &[("outcome", outcome)], n);
    }
    m.family(
        "wm_job_runs_total",
        "counter",
        "Job runs, by job and outcome.",
    );
    for job in JobId::ALL {
        for (outcome, n) in &state.jobs[&job].runs {
            m.sample(
                "wm_job_runs_total",
                &[("job", job.name()), ("outcome", outcome)],
                *n,
            );
        }
    }
    m.family(
        "wm_job_last_run_timestamp_seconds",
        "gauge",
        "Unix time of the job's last run.",
    );
    for job in JobId::ALL {
        if let Some(run) = &state.jobs[&job].last {
            m.sample(
                "wm_job_last_run_timestamp_seconds",
                &[("job", job.name())],
                unix_secs(run.at),
            );
        }
    }
    m.family(
        "wm_job_last_success_timestamp_seconds",
        "gauge",
        "Unix time of the job's last success.",
    );
    for job in JobId::ALL {
        if let Some(at) = state.jobs[&job].last_success {
            m.sample(
                "wm_job_last_success_timestamp_seconds",
                &[("job", job.name())],
                unix_secs(at),
            );
        }
    }
    m.0
}

struct Metrics(String);

impl Metrics {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = write!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// Node gauges, from the latest report window; absent while unknown.
fn node(m: &mut Metrics, state: &State) {
    let node = &state.node;
    if let Some(s) = &node.sample {
        let used = [
            ("cpu", s.cpu.used_percent),
            ("memory", s.memory.as_ref().map(|x| x.used_percent)),
            ("disk", s.disk.as_ref().map(|x| x.used_percent)),
        ];
        m.family(
            "wm_node_used_ratio",
            "gauge",
            "Share of the node's CPU (since the previous window), memory and disk in use, 0 to 1.",
        );
        for (resource, p) in used {
            if let Some(p) = p {
                m.sample("wm_node_used_ratio", &[("resource", resource)], p / 100.0);
            }
        }
    }
    m.family(
        "wm_node_resource_status",
        "gauge",
        "1 for the level (healthy, warning, critical, unknown) each resource is judged at.",
    );
    for (resource, level) in [
        ("cpu", node.cpu),
        ("memory", node.memory),
        ("disk", node.disk),
    ] {
        m.sample(
            "wm_node_resource_status",
            &[("resource", resource), ("status", level.as_str())],
            1,
        );
    }
    if let Ok(o) = &node.object {
        m.family(
            "wm_node_condition",
            "gauge",
            "1 when the Node's condition has this status (True, False, Unknown).",
        );
        for (kind, status) in crate::node::view::CONDITIONS.iter().zip(&o.conditions) {
            if let Some(status) = status
                .as_deref()
                .filter(|s| ["True", "False", "Unknown"].contains(s))
            {
                m.sample(
                    "wm_node_condition",
                    &[("condition", kind), ("status", status)],
                    1,
                );
            }
        }
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Identity, Outcome, Route};
    use crate::workloads::Reported;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn renders_the_text_format() {
        let now = Instant::now();
        let identity = Identity {
            version: "0.1.0",
            namespace: "edge".into(),
            pod_name: "wm-0".into(),
            node_address: None,
        };
        let mut s = State::new(identity, Duration::from_secs(30), now);
        s.workloads
            .record("web", Reported::Healthy, "", now, UNIX_EPOCH)
            .unwrap();
        s.count_request(Route::Heartbeat, 204);
        s.count_request(Route::Heartbeat, 204);
        let at = UNIX_EPOCH + Duration::from_secs(1000);
        s.job_done(JobId::Sync, Outcome::Ok, String::new(), at, Duration::ZERO);
        let out = render(&s, now + Duration::from_secs(5), UNIX_EPOCH);
        for line in [
            "wm_build_info{version=\"0.1.0\"} 1",
            "wm_uptime_seconds 5",
            "wm_ready 0",
            "wm_http_requests_total{route=\"heartbeat\",code=\"204\"} 2",
            "wm_workloads{health=\"healthy\"} 1",
            "wm_workloads{health=\"unknown\"} 0",
            "wm_workload_healthy{workload=\"web\"} 1",
            "wm_workload_heartbeat_age_seconds{workload=\"web\"} 5",
            "wm_job_runs_total{job=\"sync\",outcome=\"ok\"} 1",
            "wm_job_last_success_timestamp_seconds{job=\"sync\"} 1000",
        ] {
            assert!(out.lines().any(|l| l == line), "missing {line:?} in\n{out}");
        }
        for l in out.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = l.rsplit_once(' ').unwrap();
            value.parse::<u64>().unwrap();
        }
        assert_eq!(escape("a\"b\\c\nd"), r#"a\"b\\c\nd"#);
    }
}
