//! `bench --soak DURATION [--seed N]`: an accelerated soak of the release
//! binary. Not a CI test: it runs for as long as asked and judges, from
//! what the fakes recorded, the invariants that only show over time.
//!
//! The real manager runs against the test kit's fakes (the Kubernetes API
//! and the backend of [`FakeNode`], and [`FakeS3`] for self-update) with
//! short intervals (sync 100 ms, reports 20 ms, update checks 3 s; the
//! Lease is renewed every 5 s, as the product fixes it) and a state directory that
//! survives its restarts. Workloads heartbeat to it; the desired state and
//! the update file change; faults of all three fakes overlap; the primary
//! instance is killed every few minutes and started again at once (now and
//! then stopped with SIGTERM instead, and started again once the second
//! instance took the Lease), and a second instance contends for the Lease
//! part of the time (see [`chaos`]).
//! A seed fixes that schedule; it is printed so a run can be replayed.
//!
//! The invariants are checked while it runs (a miss is printed when first
//! seen) and at the end, one line each ([`invariants`]); the exit status is
//! non-zero if any was missed. The managers' logs and the schedule of what
//! was done (`chaos.log`) stay in a directory under the system's temp
//! directory, whose path is printed.

mod chaos;
mod instances;
mod invariants;
mod workloads;

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::node::FakeNode;
use crate::s3::FakeS3;
use chaos::{Action, Chaos, Lifecycle};
use instances::{Fleet, Pod};
use invariants::{Evidence, Line, Verdict};
use workloads::Heartbeats;

/// The shortest soak: enough for one start, a few faults and the end.
pub const MIN_DURATION: Duration = Duration::from_secs(40);

/// The manager's own Deployment and container (the product's defaults).
const OWN: &str = "workload-manager";
/// The repository its image comes from.
const OWN_REPO: &str = "registry.example/workload-manager";
/// A second container in its Deployment, which must never change.
const SIDECAR_IMAGE: &str = "registry.example/shipper:1.0.0";
/// Where the update file is.
const BUCKET: &str = "releases";
const KEY: &str = "workload-manager/latest";
const S3_KEY_ID: &str = "AKIDSOAK";
const S3_SECRET: &str = "soak-secret-that-must-not-leak";

/// How often the main loop looks at the schedule.
const TICK: Duration = Duration::from_millis(200);
/// How often the log-based invariants are checked during the run.
const AUDIT_EVERY: Duration = Duration::from_secs(15);
const PROGRESS_EVERY: Duration = Duration::from_secs(30);
/// How long a graceful restart of `wm-a` waits for `wm-b` to take the Lease.
const HANDOVER_LIMIT: Duration = Duration::from_secs(10);
/// Kept free at the end for the last checks and the summary.
const FINAL_MARGIN: Duration = Duration::from_secs(3);

/// `30m`, `1h`, `90s` (or bare seconds), at least [`MIN_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = workload_manager::config::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 90s, 30m or 1h"))?;
    if d < MIN_DURATION {
        return Err(format!("a soak lasts at least {}", human(MIN_DURATION)));
    }
    Ok(d)
}

/// `2m05s`, `1h00m`, `4.2s`.
fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{:.1}s", d.as_secs_f64()),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
    }
}

/// The soak's timing, scaled to its length.
#[derive(Debug, Clone)]
pub struct Plan {
    pub total: Duration,
    /// Faults, changes, kills: the first part.
    pub chaos: Duration,
    /// Then, for at most this long, everything calms down, the outboxes
    /// drain and the instances stop.
    pub settle: Duration,
    /// Between two kills (or stops) of the primary.
    pub kill_every: (Duration, Duration),
    /// How long the second instance runs, and is off.
    pub b_on: (Duration, Duration),
    pub b_off: (Duration, Duration),
    pub fault_every: (Duration, Duration),
    pub desired_every: (Duration, Duration),
    pub release_every: (Duration, Duration),
}

impl Plan {
    pub fn new(total: Duration) -> Plan {
        let s = Duration::from_secs;
        // Draining takes seconds; the rest of this reserve is not waited out.
        let settle = (total / 12).clamp(s(20), s(60));
        let chaos = total.saturating_sub(settle);
        // Kills every 2–5 minutes in a long soak; a short one gets a few too.
        let base = (chaos / 3).min(s(240));
        Plan {
            total,
            chaos,
            settle,
            kill_every: (base / 2, base * 5 / 4),
            b_on: ((chaos / 4).max(s(30)), (chaos / 2).max(s(45))),
            b_off: ((chaos / 10).min(s(30)), (chaos / 5).min(s(90))),
            fault_every: (s(2), s(8)),
            desired_every: (s(10), s(40)),
            release_every: (s(20), s(60)),
        }
    }

    fn describe(&self) -> String {
        let range = |(lo, hi): (Duration, Duration)| format!("{}–{}", human(lo), human(hi));
        format!(
            "{} of faults and changes, then up to {} to calm down, drain the outboxes and stop; wm-a killed every {}; \
             wm-b on for {}, off for {}; a fault every {}, a desired-state change every {}, \
             an update file every {}",
            human(self.chaos),
            human(self.settle),
            range(self.kill_every),
            range(self.b_on),
            range(self.b_off),
            range(self.fault_every),
            range(self.desired_every),
            range(self.release_every)
        )
    }
}

/// The fakes the managers run against.
struct World {
    node: FakeNode,
    s3: FakeS3,
    /// The hand-made Deployments without the managed-by label, as created.
    unmanaged: Vec<Value>,
}

/// The manager's own Deployment as the manifests install it, plus a sidecar.
fn own_deployment() -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": OWN, "labels": {"app.kubernetes.io/name": OWN}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/name": OWN}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": OWN}},
                "spec": {"containers": [
                    {"name": "log-shipper", "image": SIDECAR_IMAGE},
                    {"name": OWN, "image": format!("{OWN_REPO}:0.1.0")}
                ]}
            }
        }
    })
}

/// A Deployment someone made by hand (no managed-by label).
fn unmanaged(name: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": name, "image": "someone/else:1"}]}}}})
}

impl World {
    fn start() -> World {
        let node = FakeNode::new();
        node.kube.put_deployment_raw("kubectl", own_deployment());
        // `db` is sometimes desired: a conflict the manager must leave alone.
        let unmanaged = invariants::UNMANAGED
            .iter()
            .map(|n| node.kube.put_deployment_raw("kubectl", unmanaged(n)))
            .collect();
        node.kube.settle();
        let s3 = FakeS3::builder().credentials(S3_KEY_ID, S3_SECRET).start();
        s3.create_bucket(BUCKET);
        World {
            node,
            s3,
            unmanaged,
        }
    }

    /// What both instances run with (besides POD_NAME, token and state dir).
    fn env(&self) -> Vec<(String, String)> {
        let kube = &self.node.kube;
        [
            ("NODE_NAME", kube.node_name().to_string()),
            ("NODE_SYSTEM_ENDPOINT", self.node.backend.url()),
            ("WM_KUBE_API_URL", kube.url()),
            ("WM_KUBE_CA_FILE", kube.ca_file().display().to_string()),
            // Short enough that an hour covers 30 days of syncs and reports
            // at the default intervals, faults, outages and kills included
            // (a run's work, not its interval, then sets the pace).
            ("WM_SYNC_INTERVAL", "100ms".into()),
            ("WM_REPORT_INTERVAL", "20ms".into()),
            ("WM_UPDATE_INTERVAL", "3s".into()),
            ("WM_UPDATE_S3_BUCKET", BUCKET.into()),
            ("WM_UPDATE_S3_KEY", KEY.into()),
            ("WM_UPDATE_S3_ENDPOINT", self.s3.url()),
            ("WM_UPDATE_S3_REGION", self.s3.region().to_string()),
            ("AWS_ACCESS_KEY_ID", S3_KEY_ID.into()),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET.into()),
            ("WM_LOG", "info".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The pod the Lease names, if any.
    fn holder(&self) -> Option<Pod> {
        let lease = self.node.kube.lease("workload-manager")?;
        match lease["spec"]["holderIdentity"].as_str()? {
            "wm-a" => Some(Pod::A),
            "wm-b" => Some(Pod::B),
            _ => None,
        }
    }

    /// Whether the hand-made Deployments still have their labels and spec.
    fn unmanaged_intact(&self) -> bool {
        self.unmanaged.iter().all(|before| {
            let name = before["metadata"]["name"].as_str().unwrap_or_default();
            self.node.kube.deployment(name).is_some_and(|now| {
                now["metadata"]["labels"] == before["metadata"]["labels"]
                    && now["spec"] == before["spec"]
            })
        })
    }
}

/// The ids in an outbox left on disk.
fn outbox_ids(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("outbox.jsonl")).unwrap_or_default();
    text.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_string))
        .collect()
}

/// A directory for this run's logs and state, kept afterwards.
fn run_dir(seed: u64) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("wm-soak-{seed}-{}", std::process::id()));
    for sub in ["state-a", "state-b"] {
        std::fs::create_dir_all(dir.join(sub))
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    Ok(dir)
}

/// Everything a run keeps while it goes on.
struct Soak {
    t0: Instant,
    plan: Plan,
    world: World,
    fleet: Fleet,
    chaos: Chaos,
    /// Backend log positions right after each kill or stop.
    stops: Vec<usize>,
    /// Invariants already reported as missed during the run.
    reported: Vec<&'static str>,
    actions: Vec<String>,
}

/// Runs a soak of `bin` for `duration` with `seed`; whether every invariant held.
pub fn run(bin: &Path, duration: Duration, seed: u64) -> bool {
    let plan = Plan::new(duration);
    let dir = match run_dir(seed) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("soak: {e}");
            return false;
        }
    };
    eprintln!(
        "soak: {} with seed {seed} (replay the same schedule: --soak {} --seed {seed}); logs in {}",
        human(duration),
        workload_manager::config::format_duration(duration),
        dir.display()
    );
    eprintln!("soak: {}", plan.describe());
    let t0 = Instant::now();
    let world = World::start();
    let tokens = [
        world.node.kube.token_file(),
        world.node.kube.issue_token(Pod::B.name()),
    ];
    let fleet = Fleet::new(
        bin,
        &dir,
        world.env(),
        tokens,
        [dir.join("state-a"), dir.join("state-b")],
    );
    let chaos = Chaos::new(seed, &plan, t0, File::create(dir.join("chaos.log")).ok());
    let mut soak = Soak {
        t0,
        plan,
        world,
        fleet,
        chaos,
        stops: Vec::new(),
        reported: Vec::new(),
        actions: Vec::new(),
    };
    soak.chaos.begin(&soak.world);
    soak.start(Pod::A);
    if !soak.fleet.is_running(Pod::A) {
        return false;
    }
    let heartbeats = Heartbeats::start(seed.rotate_left(17) ^ 0x5eed, soak.fleet.targets.clone());
    soak.churn(Lifecycle::new(
        seed.rotate_left(31) ^ 0x11fe,
        &soak.plan,
        t0,
    ));
    soak.settle();
    let tally = heartbeats.stop();
    let (lines, info) = soak.judge(&tally);
    print!("{}", summary(&soak, seed, &lines, &info));
    lines.iter().all(|l| l.verdict != Verdict::Missed)
}

impl Soak {
    /// The first part: faults, changes, kills, until the plan's chaos ends.
    fn churn(&mut self, mut lifecycle: Lifecycle) {
        let end = self.t0 + self.plan.chaos;
        let (mut next_audit, mut next_progress) = (self.t0 + AUDIT_EVERY, self.t0 + PROGRESS_EVERY);
        while Instant::now() < end {
            let now = Instant::now();
            self.chaos.tick(now, &self.world);
            if let Some(action) = lifecycle.due(now, self.fleet.is_running(Pod::B)) {
                self.act(action);
            }
            if !self.fleet.is_running(Pod::A) {
                // A start that failed is tried again.
                self.start(Pod::A);
            }
            self.fleet.scan_logs();
            if now >= next_audit {
                self.audit();
                next_audit = now + AUDIT_EVERY;
            }
            if now >= next_progress {
                self.progress();
                next_progress = now + PROGRESS_EVERY;
            }
            // Pacing: the schedule's times are seconds apart.
            std::thread::sleep(TICK);
        }
    }

    fn start(&mut self, pod: Pod) {
        if self.fleet.is_running(pod) {
            return;
        }
        match self.fleet.start(pod) {
            Ok(()) => {
                let label = self.fleet.label(pod).unwrap_or_default();
                self.chaos.note(&format!("started {label}"), false);
            }
            Err(e) => {
                self.chaos.note(&e, false);
                eprintln!("soak: {e}");
            }
        }
    }

    /// Ends `pod`'s process (SIGKILL or SIGTERM) and remembers where the
    /// backend's log was then.
    fn end(&mut self, pod: Pod, kill: bool) {
        let label = self.fleet.label(pod).unwrap_or_default();
        if kill {
            self.fleet.kill(pod);
        } else {
            self.fleet.stop(pod);
        }
        self.stops.push(self.world.node.backend.mark().index());
        let what = format!("{} {label}", if kill { "SIGKILL" } else { "SIGTERM" });
        self.chaos.note(&what, false);
        self.actions.push(what);
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::KillA => {
                self.end(Pod::A, true);
                self.start(Pod::A);
            }
            Action::RestartA => {
                self.end(Pod::A, false);
                self.hand_over();
                self.start(Pod::A);
            }
            Action::StartB => self.start(Pod::B),
            Action::StopB => self.end(Pod::B, false),
            Action::KillB => self.end(Pod::B, true),
        }
    }

    /// Waits (at most [`HANDOVER_LIMIT`]) until `wm-b` holds the Lease
    /// `wm-a` released: it looks every 5 s, a restarted `wm-a` at once.
    fn hand_over(&mut self) {
        let world = &self.world;
        let taken = crate::net::log::wait_until(HANDOVER_LIMIT, || world.holder() == Some(Pod::B));
        let what = if taken {
            "wm-b holds the Lease"
        } else {
            "wm-b did not take the Lease in time"
        };
        self.chaos.note(what, false);
    }

    /// The log-based checks, now; prints a miss the first time it shows.
    fn audit(&mut self) {
        let kube = self.world.node.kube.log();
        let own = self.world.node.kube.deployment(OWN);
        let running = workload_manager::update::running();
        let lives = self.fleet.lives();
        let lines = [
            invariants::write_scope(&kube, true),
            invariants::lease_holder(&kube),
            invariants::self_update(&kube, &running, own.as_ref()),
            invariants::healthz(&lives, &self.chaos.stalls(), self.t0),
            invariants::panics(&lives),
        ];
        for l in lines.iter().filter(|l| l.verdict == Verdict::Missed) {
            if !self.reported.contains(&l.name) {
                self.reported.push(l.name);
                let first = l.examples.first().cloned().unwrap_or_default();
                eprintln!(
                    "soak: {} MISSED {}: {first}",
                    human(self.t0.elapsed()),
                    l.name
                );
            }
        }
    }

    fn progress(&self) {
        let who = |pod| self.fleet.label(pod).unwrap_or_else(|| "off".into());
        let holder = self.world.holder().map_or("nobody", Pod::name);
        eprintln!(
            "soak: {} of {}: wm-a {}, wm-b {}, Lease held by {holder}; {} reports accepted; {} events; misses so far: {}",
            human(self.t0.elapsed()),
            human(self.plan.total),
            who(Pod::A),
            who(Pod::B),
            self.world.node.backend.reports().len(),
            self.chaos.events.len(),
            if self.reported.is_empty() { "none".to_string() } else { self.reported.join(", ") }
        );
    }

    /// The end: no more faults; every outbox is delivered by the instance
    /// that holds it, and every instance stops with SIGTERM.
    fn settle(&mut self) {
        self.chaos.calm(&self.world);
        let deadline = self.t0 + self.plan.total.saturating_sub(FINAL_MARGIN);
        let first = self.world.holder().unwrap_or(Pod::A);
        let other = if first == Pod::A { Pod::B } else { Pod::A };
        if self.fleet.is_running(other) {
            self.end(other, false);
        }
        self.drain(first, deadline);
        for pod in [other, first] {
            if !outbox_ids(self.fleet.state_dir(pod)).is_empty() {
                self.drain(pod, deadline);
            }
        }
        self.fleet.scan_logs();
    }

    /// Starts `pod` if needed, waits until it holds the Lease with an empty
    /// outbox (or `deadline`), then stops it with SIGTERM.
    fn drain(&mut self, pod: Pod, deadline: Instant) {
        self.start(pod);
        let world = &self.world;
        let addr = self.fleet.addr(pod);
        let drained =
            crate::net::log::wait_until(deadline.saturating_duration_since(Instant::now()), || {
                world.holder() == Some(pod) && addr.is_some_and(|a| queued(a) == Some(0))
            });
        if !drained {
            self.chaos.note(
                &format!("{} did not drain its outbox in time", pod.name()),
                false,
            );
        }
        self.end(pod, false);
    }

    /// Every invariant's line, and the lines that only inform.
    fn judge(&self, tally: &workloads::Tally) -> (Vec<Line>, Vec<String>) {
        let kube = self.world.node.kube.log();
        let backend = self.world.node.backend.log();
        let stored: Vec<String> = self
            .world
            .node
            .backend
            .reports()
            .into_iter()
            .map(|r| r.id)
            .collect();
        let mut queued = outbox_ids(self.fleet.state_dir(Pod::A));
        queued.extend(outbox_ids(self.fleet.state_dir(Pod::B)));
        let lives = self.fleet.lives();
        let running = workload_manager::update::running();
        let own = self.world.node.kube.deployment(OWN);
        let e = Evidence {
            kube: &kube,
            backend: &backend,
            stored: &stored,
            stops: &self.stops,
            queued: &queued,
            dropped: lives.iter().map(|l| l.dropped).sum(),
        };
        let now = Instant::now();
        let lines = vec![
            invariants::reports(&e),
            invariants::write_scope(&kube, self.world.unmanaged_intact()),
            invariants::lease_holder(&kube),
            invariants::self_update(&kube, &running, own.as_ref()),
            invariants::healthz(&lives, &self.chaos.stalls(), self.t0),
            invariants::panics(&lives),
            invariants::resources(&lives, now),
        ];
        let mut info = invariants::coverage(&e);
        info.push(self.lifecycle_info(&lives));
        info.push(format!(
            "Kubernetes answers: {}",
            invariants::kube_answers(&kube)
        ));
        info.push(format!(
            "injected and changed: {}",
            counts(&self.chaos.counts)
        ));
        let by_code: Vec<String> = tally
            .answered
            .iter()
            .map(|(c, n)| format!("{c}: {n}"))
            .collect();
        info.push(format!(
            "heartbeats: {} sent, answered {}, {} unanswered within 2 s; {} status reads",
            tally.sent,
            by_code.join(", "),
            tally.unanswered,
            tally.status_reads
        ));
        (lines, info)
    }

    fn lifecycle_info(&self, lives: &[instances::Life]) -> String {
        let n = |what: &str| self.actions.iter().filter(|a| a.starts_with(what)).count();
        format!(
            "processes: {} ({} of wm-a, {} of wm-b); {} SIGKILLs, {} SIGTERMs; {} failed starts",
            lives.len(),
            lives.iter().filter(|l| l.pod == Pod::A).count(),
            lives.iter().filter(|l| l.pod == Pod::B).count(),
            n("SIGKILL"),
            n("SIGTERM"),
            self.fleet.failed_starts.len()
        )
    }
}

/// `outbox.queued` of the instance at `addr`, if it answers within a second.
fn queued(addr: std::net::SocketAddr) -> Option<u64> {
    let reply = instances::get(addr, "/v1/status", Duration::from_secs(1)).ok()?;
    serde_json::from_str::<Value>(&reply.body).ok()?["outbox"]["queued"].as_u64()
}

fn counts(by: &std::collections::BTreeMap<String, u64>) -> String {
    by.iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The summary the run prints on stdout.
fn summary(soak: &Soak, seed: u64, lines: &[Line], info: &[String]) -> String {
    let mut out = String::new();
    let missed = lines
        .iter()
        .filter(|l| l.verdict == Verdict::Missed)
        .count();
    let judged = lines
        .iter()
        .filter(|l| l.verdict != Verdict::NotJudged)
        .count();
    let _ = writeln!(
        out,
        "workload-manager {} soak, {}: {} with seed {seed}",
        workload_manager::update::running(),
        crate::bench::sys::utc_now(),
        human(soak.t0.elapsed())
    );
    for l in lines {
        let _ = writeln!(out, "{}", l.render());
    }
    for i in info {
        let _ = writeln!(out, "  {i}");
    }
    let _ = writeln!(
        out,
        "{} of {judged} judged invariants held{}",
        judged - missed,
        if judged < lines.len() {
            format!(", {} not judged at this length", lines.len() - judged)
        } else {
            String::new()
        }
    );
    out
}
