//! What happens to the manager during a soak, chosen by one seeded RNG
//! (`workload_manager::scheduler::Rng`), so a seed replays the same
//! schedule: faults of the fake Kubernetes API, backend and S3 (single
//! requests answered badly, and outages or slow answers that last, so they
//! overlap), changes of the desired state and of the self-update file, and
//! when the instances are killed, stopped and started ([`Lifecycle`]).
//!
//! The self-update file only ever names newer releases in increasing order
//! (besides equal, older, unreadable and refused files and no file at all):
//! the soak runs one binary, so a release it "updated to" never really
//! replaces it, and a file naming a release between the running one and the
//! Deployment's would be a downgrade only this simulation could cause.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::json;
use workload_manager::scheduler::Rng;

use super::workloads::NAMES;
use super::{Plan, World, BUCKET, KEY, OWN_REPO};
use crate::backend::{self, sample_manifest};
use crate::kube;
use crate::node::TEST_ADDRESS;
use crate::s3;

/// The seeded RNG with the few shapes of choice the soak needs.
pub struct Dice(Rng);

impl Dice {
    pub fn new(rng: Rng) -> Dice {
        Dice(rng)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.0.next_u64() % (hi.saturating_sub(lo) + 1)
    }

    /// Uniform in `[lo, hi)` (`lo` when the range is empty).
    pub fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        lo + self.0.below(hi.saturating_sub(lo))
    }

    /// True `percent` times in 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.range(0, 99) < percent
    }

    /// One of `items` (which must not be empty).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.range(0, items.len().saturating_sub(1) as u64) as usize]
    }
}

/// A fault that lasts until its end time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lasting {
    KubeDown,
    KubeSlow,
    NodesDenied,
    BackendDown,
    BackendSlow,
    S3Down,
}

impl Lasting {
    /// Puts the fakes back as they were.
    fn end(self, world: &World) {
        match self {
            Lasting::KubeDown => world.node.kube.set_reachable(true),
            Lasting::KubeSlow => world.node.kube.set_latency(Duration::ZERO),
            Lasting::NodesDenied => world.node.kube.deny_nodes(false),
            Lasting::BackendDown => world.node.backend.set_reachable(true),
            Lasting::BackendSlow => world.node.backend.set_latency(Duration::ZERO),
            Lasting::S3Down => world.s3.set_reachable(true),
        }
    }
}

/// One thing the soak did to the world.
#[derive(Debug, Clone)]
pub struct Event {
    /// Since the soak started.
    pub at: Duration,
    pub what: String,
    /// A fault that makes calls slow or hang (a manager's loop waits on it).
    pub stall: bool,
}

/// The desired state, the update file and the faults over time.
pub struct Chaos {
    dice: Dice,
    t0: Instant,
    next_fault: Instant,
    next_desired: Instant,
    next_release: Instant,
    plan: Plan,
    lasting: Vec<(Lasting, Instant)>,
    desired: Vec<(String, String)>,
    /// The last minor version given to each workload (`1.<n>.0`).
    minors: BTreeMap<String, u64>,
    /// The minor of the newest release published (`0.<n>.0`; 1 is the running one).
    release: u64,
    pub events: Vec<Event>,
    /// How often each kind of fault or change happened.
    pub counts: BTreeMap<String, u64>,
    log: Option<File>,
}

fn secs(lo: u64, hi: u64) -> (Duration, Duration) {
    (Duration::from_secs(lo), Duration::from_secs(hi))
}

impl Chaos {
    pub fn new(seed: u64, plan: &Plan, t0: Instant, log: Option<File>) -> Chaos {
        Chaos {
            dice: Dice::new(Rng::new(seed)),
            t0,
            next_fault: t0 + Duration::from_secs(5),
            next_desired: t0 + Duration::from_secs(15),
            next_release: t0 + Duration::from_secs(20),
            plan: plan.clone(),
            lasting: Vec::new(),
            desired: Vec::new(),
            minors: BTreeMap::new(),
            release: 1,
            events: Vec::new(),
            counts: BTreeMap::new(),
            log,
        }
    }

    /// The world before the first manager starts: three workloads and an
    /// update file naming the running release.
    pub fn begin(&mut self, world: &World) {
        for name in ["web", "api", "cache"] {
            let version = self.next_version(name);
            publish_manifest(world, name, &version);
            self.desired.push((name.to_string(), version));
        }
        self.set_desired(world);
        world.s3.put_object(BUCKET, KEY, "0.1.0");
        self.note("desired web, api, cache at 1.1.0; update file 0.1.0", false);
    }

    /// Does whatever is due at `now`.
    pub fn tick(&mut self, now: Instant, world: &World) {
        self.end_lasting(now, world, false);
        if now >= self.next_fault {
            self.fault(world);
            self.next_fault = now
                + self
                    .dice
                    .between(self.plan.fault_every.0, self.plan.fault_every.1);
        }
        if now >= self.next_desired {
            let (lo, hi) = self.change_desired(world);
            self.next_desired = now + self.dice.between(lo, hi);
        }
        if now >= self.next_release {
            self.publish_release(world);
            self.next_release = now
                + self
                    .dice
                    .between(self.plan.release_every.0, self.plan.release_every.1);
        }
    }

    /// Ends every fault: for the end of the soak.
    pub fn calm(&mut self, world: &World) {
        self.end_lasting(Instant::now(), world, true);
        world.node.kube.clear_faults();
        world.node.backend.clear_faults();
        world.s3.clear_faults();
        self.note(
            "calm: every fault cleared, every fake reachable and fast",
            false,
        );
    }

    /// When faults that make calls slow or hang were injected, and what they were.
    pub fn stalls(&self) -> Vec<(Instant, String)> {
        self.events
            .iter()
            .filter(|e| e.stall)
            .map(|e| (self.t0 + e.at, e.what.clone()))
            .collect()
    }

    /// Records `what` (and writes it to the chaos log).
    pub fn note(&mut self, what: &str, stall: bool) {
        let at = self.t0.elapsed();
        if let Some(f) = self.log.as_mut() {
            let _ = writeln!(f, "{:>8.1}s {what}", at.as_secs_f64());
        }
        self.events.push(Event {
            at,
            what: what.to_string(),
            stall,
        });
    }

    fn count(&mut self, kind: &str) {
        *self.counts.entry(kind.to_string()).or_default() += 1;
    }

    fn end_lasting(&mut self, now: Instant, world: &World, all: bool) {
        let (over, on): (Vec<_>, Vec<_>) = self
            .lasting
            .iter()
            .partition(|(_, until)| all || now >= *until);
        self.lasting = on;
        for (l, _) in over {
            l.end(world);
            self.note(&format!("end of {l:?}"), false);
        }
    }

    /// Starts a lasting fault unless one of its kind is on; whether it started.
    fn last(&mut self, l: Lasting, (lo, hi): (Duration, Duration)) -> Option<Duration> {
        if self.lasting.iter().any(|(k, _)| *k == l) {
            return None;
        }
        let d = self.dice.between(lo, hi);
        self.lasting.push((l, Instant::now() + d));
        Some(d)
    }

    /// Starts the lasting fault `name` (`start` sets it off and says what it
    /// did and whether it stalls calls) unless one of its kind is on.
    fn lasting(
        &mut self,
        l: Lasting,
        span: (Duration, Duration),
        name: &str,
        start: impl FnOnce(Duration) -> (String, bool),
    ) -> (String, String, bool) {
        match self.last(l, span) {
            Some(d) => {
                let (what, stall) = start(d);
                (name.to_string(), what, stall)
            }
            None => (
                format!("{name} (already)"),
                format!("{name}: still on"),
                false,
            ),
        }
    }

    fn fault(&mut self, world: &World) {
        let roll = self.dice.range(0, 99);
        let (kind, what, stall) = if roll < 40 {
            self.kube_fault(world)
        } else if roll < 80 {
            self.backend_fault(world)
        } else {
            self.s3_fault(world)
        };
        self.count(&kind);
        self.note(&what, stall);
    }

    /// One Kubernetes API fault: (kind, what was done, whether it stalls calls).
    fn kube_fault(&mut self, world: &World) -> (String, String, bool) {
        let k = &world.node.kube;
        let times = self.dice.range(1, 3) as usize;
        let retry = self.dice.range(1, 5);
        let kind = match self.dice.range(0, 12) {
            0 => kube::FaultKind::TooManyRequestsText {
                retry_after: Some(retry),
            },
            1 => kube::FaultKind::TooManyRequestsStatus {
                retry_after: Some(retry),
            },
            2 => kube::FaultKind::InternalError,
            3 => kube::FaultKind::ServerTimeout {
                retry_after: self.dice.range(1, 3),
            },
            4 => kube::FaultKind::ServiceUnavailable,
            5 => kube::FaultKind::GatewayTimeout,
            6 => kube::FaultKind::Hang(
                self.dice
                    .between(Duration::from_secs(2), Duration::from_secs(12)),
            ),
            7 => kube::FaultKind::Reset,
            8 => {
                return self.lasting(Lasting::KubeDown, secs(3, 45), "kube down", |d| {
                    k.set_reachable(false);
                    (format!("kube down for {d:.1?}"), false)
                });
            }
            9 => {
                let latency = Duration::from_millis(self.dice.range(100, 800));
                return self.lasting(Lasting::KubeSlow, secs(10, 40), "kube slow", |d| {
                    k.set_latency(latency);
                    (format!("kube answers after {latency:?} for {d:.1?}"), true)
                });
            }
            10 => {
                k.rotate_token();
                return (
                    "kube 401".into(),
                    "kube token rotated (wm-a's next call gets 401)".into(),
                    false,
                );
            }
            11 => {
                let touched = k.touch_lease("workload-manager");
                return (
                    "kube 409".into(),
                    if touched {
                        "Lease changed by another writer (the holder's next renewal gets 409)"
                    } else {
                        "Lease changed by another writer: no Lease yet"
                    }
                    .into(),
                    false,
                );
            }
            _ => {
                return self.lasting(Lasting::NodesDenied, secs(10, 60), "kube 403", |d| {
                    k.deny_nodes(true);
                    (format!("kube nodes grant removed (403) for {d:.1?}"), false)
                });
            }
        };
        let stall = matches!(kind, kube::FaultKind::Hang(_));
        let scope = *self
            .dice
            .pick(&[None, Some("/leases/"), Some("/deployments")]);
        let times = if stall { 1 } else { times };
        let mut fault = kube::Fault::new(kind.clone()).times(times);
        if let Some(part) = scope {
            fault = fault.path_contains(part);
        }
        k.inject(fault);
        let name = format!("kube {}", kube_name(&kind));
        let what = format!(
            "{name}: {kind:?} × {times} on {}",
            scope.unwrap_or("any path")
        );
        (name, what, stall)
    }

    /// One backend fault.
    fn backend_fault(&mut self, world: &World) -> (String, String, bool) {
        use backend::FaultKind as F;
        let b = &world.node.backend;
        let retry = self.dice.range(1, 5);
        // (method, path part): the desired state is the only GET under /nodes/.
        let desired = (Some("GET"), Some("/nodes/"));
        let manifest = (Some("GET"), Some("/manifest"));
        let scopes = [
            (None, None),
            (Some("POST"), Some("/health")),
            desired,
            manifest,
            (Some("PUT"), Some("/version")),
        ];
        let mut scope = *self.dice.pick(&scopes);
        let kind = match self.dice.range(0, 13) {
            0 => F::InternalError,
            1 => F::BadGateway,
            2 => F::Unavailable { retry_after: retry },
            3 => F::TooManyRequests { retry_after: retry },
            4 => F::Hang(
                self.dice
                    .between(Duration::from_secs(2), Duration::from_secs(15)),
            ),
            5 => F::Reset,
            6 => {
                scope = desired;
                F::MalformedJson
            }
            7 => {
                scope = *self.dice.pick(&[desired, manifest]);
                F::HugeBody(self.dice.range(2, 20) << 20)
            }
            8 if self.dice.chance(30) => {
                scope = desired;
                F::EndlessBody
            }
            8 | 9 => {
                scope = manifest;
                if self.dice.chance(50) {
                    F::ManifestKind("Service".into())
                } else {
                    F::ManifestNamespace("kube-system".into())
                }
            }
            10 => {
                return self.lasting(Lasting::BackendDown, secs(5, 60), "backend down", |d| {
                    b.set_reachable(false);
                    (format!("backend down for {d:.1?}"), false)
                });
            }
            11 => F::Drip(Duration::from_millis(self.dice.range(50, 400))),
            _ => {
                let latency = Duration::from_millis(self.dice.range(200, 2000));
                return self.lasting(Lasting::BackendSlow, secs(10, 30), "backend slow", |d| {
                    b.set_latency(latency);
                    (
                        format!("backend answers after {latency:?} for {d:.1?}"),
                        true,
                    )
                });
            }
        };
        let stall = matches!(
            kind,
            F::Hang(_) | F::Drip(_) | F::HugeBody(_) | F::EndlessBody
        );
        let times = if stall {
            1
        } else {
            self.dice.range(1, 3) as usize
        };
        let mut fault = backend::Fault::new(kind.clone()).times(times);
        if let Some(m) = scope.0 {
            fault = fault.method(m);
        }
        if let Some(p) = scope.1 {
            fault = fault.path_contains(p);
        }
        b.inject(fault);
        let name = format!("backend {}", backend_name(&kind));
        let what = format!(
            "{name}: {kind:?} × {times} on {} {}",
            scope.0.unwrap_or("any"),
            scope.1.unwrap_or("path")
        );
        (name, what, stall)
    }

    /// One S3 fault.
    fn s3_fault(&mut self, world: &World) -> (String, String, bool) {
        use s3::FaultKind as F;
        let kind = match self.dice.range(0, 5) {
            0 => F::InternalError,
            1 => F::SlowDown,
            2 => F::AccessDenied,
            3 => F::Hang(
                self.dice
                    .between(Duration::from_secs(2), Duration::from_secs(12)),
            ),
            4 => F::Reset,
            _ => {
                return self.lasting(Lasting::S3Down, secs(5, 30), "s3 down", |d| {
                    world.s3.set_reachable(false);
                    (format!("s3 down for {d:.1?}"), false)
                });
            }
        };
        let stall = matches!(kind, F::Hang(_));
        let times = if stall {
            1
        } else {
            self.dice.range(1, 3) as usize
        };
        world.s3.inject(s3::Fault::new(kind.clone()).times(times));
        let name = format!("s3 {}", s3_name(&kind));
        (name.clone(), format!("{name}: {kind:?} × {times}"), stall)
    }

    /// `1.<n>.0`, the next version of `name`.
    fn next_version(&mut self, name: &str) -> String {
        let n = self.minors.entry(name.to_string()).or_insert(0);
        *n += 1;
        format!("1.{n}.0")
    }

    fn set_desired(&self, world: &World) {
        let list: Vec<(&str, &str)> = self
            .desired
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        world.node.backend.set_workloads(TEST_ADDRESS, &list);
    }

    /// Changes the desired state; returns when to change it next.
    fn change_desired(&mut self, world: &World) -> (Duration, Duration) {
        let (lo, hi) = self.plan.desired_every;
        let what = if self.desired.is_empty() {
            self.refill(world)
        } else {
            match self.dice.range(0, 99) {
                0..=49 => self.bump(world, Manifest::Good),
                50..=64 => self.add(world),
                65..=79 => self.remove(),
                80..=86 => self.bump(world, Manifest::Missing),
                87..=93 => self.bump(world, Manifest::Broken),
                _ => {
                    self.desired.clear();
                    self.set_desired(world);
                    self.count("desired emptied");
                    self.note("desired: the empty list (confirmed after 60 s)", false);
                    // Long enough for the confirmation and the prune.
                    return (Duration::from_secs(65), Duration::from_secs(100));
                }
            }
        };
        self.set_desired(world);
        self.note(&format!("desired: {what}"), false);
        (lo, hi)
    }

    fn refill(&mut self, world: &World) -> String {
        let n = self.dice.range(2, 4) as usize;
        let mut names: Vec<&str> = NAMES.to_vec();
        while names.len() > n {
            let i = self.dice.range(0, names.len() as u64 - 1) as usize;
            names.remove(i);
        }
        for name in &names {
            let version = self.next_version(name);
            publish_manifest(world, name, &version);
            self.desired.push((name.to_string(), version));
        }
        self.count("desired refilled");
        format!("refilled with {}", names.join(", "))
    }

    fn bump(&mut self, world: &World, manifest: Manifest) -> String {
        let i = self.dice.range(0, self.desired.len() as u64 - 1) as usize;
        let name = self.desired[i].0.clone();
        let version = self.next_version(&name);
        match manifest {
            Manifest::Good => publish_manifest(world, &name, &version),
            Manifest::Missing => {}
            Manifest::Broken => {
                world.node.kube.mark_broken_image(&image(&name, &version));
                publish_manifest(world, &name, &version);
            }
        }
        self.desired[i].1 = version.clone();
        let kind = match manifest {
            Manifest::Good => "desired version",
            Manifest::Missing => "desired version without manifest",
            Manifest::Broken => "desired version with broken image",
        };
        self.count(kind);
        format!("{name} at {version} ({kind})")
    }

    fn add(&mut self, world: &World) -> String {
        let free: Vec<&str> = NAMES
            .iter()
            .copied()
            .filter(|n| self.desired.iter().all(|(d, _)| d != n))
            .collect();
        if free.is_empty() {
            return self.bump(world, Manifest::Good);
        }
        let name = *self.dice.pick(&free);
        let version = self.next_version(name);
        publish_manifest(world, name, &version);
        self.desired.push((name.to_string(), version.clone()));
        self.count("desired addition");
        format!("{name} added at {version}")
    }

    fn remove(&mut self) -> String {
        if self.desired.len() < 2 {
            return "unchanged (one left)".into();
        }
        let i = self.dice.range(0, self.desired.len() as u64 - 1) as usize;
        let (name, _) = self.desired.remove(i);
        self.count("desired removal");
        format!("{name} removed")
    }

    /// Writes a new update file (or removes it).
    fn publish_release(&mut self, world: &World) {
        let s3 = &world.s3;
        let (kind, body) = match self.dice.range(0, 99) {
            0..=34 => {
                self.release += 1;
                ("newer release", Some(format!("0.{}.0", self.release)))
            }
            35..=49 => {
                self.release += 1;
                let version = format!("0.{}.0", self.release);
                world
                    .node
                    .kube
                    .mark_broken_image(&format!("{OWN_REPO}:{version}"));
                ("newer broken release", Some(version))
            }
            50..=69 => {
                let v = *self.dice.pick(&["0.1.0", "v0.0.9", "0.1.0-rc.1"]);
                ("equal or older release", Some(v.to_string()))
            }
            70..=79 => {
                let big = "9".repeat(5000);
                let garbage = [String::from("latest"), "\u{0}\u{1}garbage".into(), big];
                ("unreadable file", Some(self.dice.pick(&garbage).clone()))
            }
            80..=89 => (
                "refused file (names an image)",
                Some(json!({"version": "9.9.9", "image": "evil.example/x:9.9.9"}).to_string()),
            ),
            _ => ("no file", None),
        };
        let shown = match &body {
            Some(b) => {
                s3.put_object(BUCKET, KEY, b.clone());
                format!("{:?}", b.chars().take(60).collect::<String>())
            }
            None => {
                s3.delete_object(BUCKET, KEY);
                "deleted".into()
            }
        };
        self.count(&format!("update file: {kind}"));
        self.note(&format!("update file: {kind}: {shown}"), false);
    }
}

/// What a new desired version comes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Manifest {
    Good,
    Missing,
    Broken,
}

fn image(name: &str, version: &str) -> String {
    format!("registry.example/{name}:{version}")
}

fn publish_manifest(world: &World, name: &str, version: &str) {
    world
        .node
        .backend
        .put_manifest(name, version, sample_manifest(name, &image(name, version)));
}

fn kube_name(k: &kube::FaultKind) -> &'static str {
    use kube::FaultKind as F;
    match k {
        F::TooManyRequestsText { .. } | F::TooManyRequestsStatus { .. } => "429",
        F::InternalError | F::ServerTimeout { .. } => "500",
        F::ServiceUnavailable => "503",
        F::GatewayTimeout => "504",
        F::Hang(_) => "hang",
        F::Reset => "reset",
    }
}

fn backend_name(k: &backend::FaultKind) -> &'static str {
    use backend::FaultKind as F;
    match k {
        F::InternalError => "500",
        F::BadGateway => "502",
        F::Unavailable { .. } => "503",
        F::TooManyRequests { .. } => "429",
        F::Error { .. } => "error",
        F::Hang(_) => "hang",
        F::Drip(_) => "slow drip",
        F::Reset => "reset",
        F::MalformedJson => "malformed body",
        F::HugeBody(_) => "huge body",
        F::EndlessBody => "endless body",
        F::ManifestKind(_) => "manifest of another kind",
        F::ManifestNamespace(_) => "manifest for another namespace",
    }
}

fn s3_name(k: &s3::FaultKind) -> &'static str {
    use s3::FaultKind as F;
    match k {
        F::InternalError => "500",
        F::SlowDown => "503",
        F::AccessDenied => "403",
        F::Error { .. } => "error",
        F::Hang(_) => "hang",
        F::Reset => "reset",
    }
}

/// What the schedule does to the instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// SIGKILL `wm-a` and start it again at once.
    KillA,
    /// SIGTERM `wm-a` (it releases the Lease), and start it again once
    /// `wm-b` has taken the Lease over, as in a rolling update.
    RestartA,
    StartB,
    /// SIGTERM `wm-b`.
    StopB,
    KillB,
}

/// When the instances are killed, stopped and started.
pub struct Lifecycle {
    dice: Dice,
    plan: Plan,
    next_a: Instant,
    next_b: Instant,
}

impl Lifecycle {
    pub fn new(seed: u64, plan: &Plan, t0: Instant) -> Lifecycle {
        let mut dice = Dice::new(Rng::new(seed));
        let next_a = t0 + dice.between(plan.kill_every.0, plan.kill_every.1);
        let next_b = t0 + dice.between(plan.b_off.0, plan.b_off.1);
        Lifecycle {
            dice,
            plan: plan.clone(),
            next_a,
            next_b,
        }
    }

    /// The action due at `now`, if any (one at a time).
    pub fn due(&mut self, now: Instant, b_running: bool) -> Option<Action> {
        let p = &self.plan;
        if now >= self.next_a {
            self.next_a = now + self.dice.between(p.kill_every.0, p.kill_every.1);
            let graceful = b_running && self.dice.chance(35);
            return Some(if graceful {
                Action::RestartA
            } else {
                Action::KillA
            });
        }
        if now >= self.next_b {
            if b_running {
                self.next_b = now + self.dice.between(p.b_off.0, p.b_off.1);
                return Some(if self.dice.chance(33) {
                    Action::KillB
                } else {
                    Action::StopB
                });
            }
            self.next_b = now + self.dice.between(p.b_on.0, p.b_on.1);
            return Some(Action::StartB);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dice_stay_in_range_and_replay_from_a_seed() {
        let (mut a, mut b) = (Dice::new(Rng::new(7)), Dice::new(Rng::new(7)));
        for _ in 0..1000 {
            let x = a.range(3, 5);
            assert!((3..=5).contains(&x));
            assert_eq!(x, b.range(3, 5));
            let d = a.between(Duration::from_secs(1), Duration::from_secs(2));
            assert!(d >= Duration::from_secs(1) && d < Duration::from_secs(2));
            let _ = b.between(Duration::from_secs(1), Duration::from_secs(2));
        }
        assert_eq!(
            a.between(Duration::from_secs(4), Duration::from_secs(4)),
            Duration::from_secs(4)
        );
        assert_eq!(*a.pick(&[9]), 9);
    }

    #[test]
    fn the_lifecycle_kills_a_and_alternates_b() {
        let plan = Plan::new(Duration::from_secs(1800));
        let t0 = Instant::now();
        let mut life = Lifecycle::new(1, &plan, t0);
        let (mut b_running, mut kills, mut b_starts) = (false, 0, 0);
        let mut t = t0;
        while t < t0 + plan.chaos {
            match life.due(t, b_running) {
                Some(Action::KillA | Action::RestartA) => kills += 1,
                Some(Action::StartB) => {
                    b_running = true;
                    b_starts += 1;
                }
                Some(Action::StopB | Action::KillB) => b_running = false,
                None => {}
            }
            t += Duration::from_secs(1);
        }
        // Every 2 to 5 minutes over 29 minutes.
        assert!((5..=15).contains(&kills), "{kills}");
        assert!(b_starts >= 1, "{b_starts}");
    }
}
