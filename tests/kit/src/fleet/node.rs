//! One simulated node: the manager's own schedule, outbox, report-window
//! rule, reconcile plan and update decision, with its calls answered by
//! the simulated backend instead of the network.
//!
//! Each job run makes the backend calls the real job makes, in its order
//! (`src/jobs/`), with no time passing between them; Kubernetes calls cost
//! the backend nothing and always succeed. The Lease is held without calls.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use workload_manager::backend::asked_to_wait;
use workload_manager::config::Config;
use workload_manager::jobs;
use workload_manager::outbox::{Outbox, Queued};
use workload_manager::reconcile::{self, Action, Applied, Observed};
use workload_manager::scheduler::{JobId, Next, Rng, Scheduler};
use workload_manager::update::{self, Decision, Version};

use super::backend::{Answer, Backend, Endpoint};

/// A Deployment's rollout on the node's cluster.
#[derive(Debug, Clone)]
struct Rollout {
    /// When its new pods are ready (virtual ms).
    done_at: u64,
}

pub struct Node {
    pub index: usize,
    scheduler: Scheduler,
    pub outbox: Outbox,
    /// Virtual ms the current report window opened.
    window_opened: u64,
    /// Process starts so far; the run part of report ids.
    pub run: u32,
    /// Reports this process built.
    seq: u32,
    /// Reports built over all runs.
    pub produced: u64,
    etag: Option<usize>,
    desired: Option<BTreeMap<String, String>>,
    /// The cluster: Deployments that outlive the manager's restarts.
    actual: BTreeMap<String, Observed>,
    rollouts: BTreeMap<String, Rollout>,
    /// What this process applied (memory only, as in the manager).
    applied: BTreeMap<String, Applied>,
    /// Manifests this process fetched.
    manifests: Vec<(String, String)>,
    /// Versions applied and not yet acknowledged (kept on disk by the manager).
    owed: Vec<(String, String)>,
    pub version: Version,
    /// The image patch went out: the new pod, of this version, is ready then.
    replacing: Option<(u64, Version)>,
    /// When this node patched its own Deployment and when the new pod took over.
    pub self_patched: Option<u64>,
    pub self_replaced: Option<u64>,
    /// The node loses power then and comes back then (virtual ms).
    pub power_cut: Option<(u64, u64)>,
    down_until: Option<u64>,
    /// Virtual ms the node's workloads first ran each version of "web".
    pub web_running: BTreeMap<String, u64>,
    /// Virtual ms this node's manager applied each version of "web".
    pub web_applied: BTreeMap<String, u64>,
    rng: Rng,
}

/// Virtual time: milliseconds since the simulation's start, on an `Instant`
/// base the scheduler can use.
#[derive(Clone, Copy)]
pub struct Clock {
    pub base: Instant,
}

impl Clock {
    pub fn at(self, ms: u64) -> Instant {
        self.base + Duration::from_millis(ms)
    }

    pub fn ms(self, at: Instant) -> u64 {
        at.saturating_duration_since(self.base).as_millis() as u64
    }
}

/// What the fleet shares: the manager's configuration and the cluster's pace.
pub struct Shared<'a> {
    pub config: &'a Config,
    pub clock: Clock,
    /// How long a new version's pods take to be ready (pull and start), ms.
    pub rollout_ms: (u64, u64),
    /// The manager's image, to decide self-updates on.
    pub image: &'a str,
}

impl Node {
    /// A node whose cluster already runs `installed`, its manager starting at `now`.
    pub fn new(
        index: usize,
        installed: &BTreeMap<String, String>,
        version: Version,
        shared: &Shared,
        now: u64,
    ) -> Node {
        let actual = installed
            .iter()
            .map(|(name, version)| {
                (
                    name.clone(),
                    Observed {
                        managed: true,
                        version: Some(version.clone()),
                        generation: 1,
                    },
                )
            })
            .collect();
        let mut node = Node {
            index,
            scheduler: Scheduler::new(1),
            outbox: Outbox::in_memory(),
            window_opened: now,
            run: 0,
            seq: 0,
            produced: 0,
            etag: None,
            desired: None,
            actual,
            rollouts: BTreeMap::new(),
            applied: BTreeMap::new(),
            manifests: Vec::new(),
            owed: Vec::new(),
            version,
            replacing: None,
            self_patched: None,
            self_replaced: None,
            power_cut: None,
            down_until: None,
            web_running: BTreeMap::new(),
            web_applied: BTreeMap::new(),
            rng: Rng::new(0x9e37_79b9_7f4a_7c15 ^ index as u64),
        };
        node.start(shared, now);
        node
    }

    /// A manager process starts: a fresh schedule and memory; the outbox and
    /// the acknowledgements owed come back from the state directory.
    pub fn start(&mut self, shared: &Shared, now: u64) {
        self.run += 1;
        self.seq = 0;
        self.window_opened = now;
        self.etag = None;
        self.desired = None;
        self.applied.clear();
        self.manifests.clear();
        let seed = self.rng.next_u64();
        let at = shared.clock.at(now);
        self.scheduler = jobs::schedule(shared.config, seed, at);
        // The Lease is won at once and held without calls here.
        self.scheduler.pause(JobId::Lease);
        for id in JobId::ALL.into_iter().filter(|id| id.leader_only()) {
            self.scheduler.resume(id, at);
        }
    }

    /// The next time something happens to this node.
    pub fn wake(&self, clock: Clock) -> u64 {
        if let Some(back) = self.down_until {
            return back;
        }
        let due = self
            .scheduler
            .next_due(|_| true)
            .map_or(u64::MAX, |at| clock.ms(at));
        let cut = self.power_cut.map_or(u64::MAX, |(at, _)| at);
        let replaced = self.replacing.as_ref().map_or(u64::MAX, |(at, _)| *at);
        due.min(replaced).min(cut)
    }

    /// What happens at `now`: a power cut or the return from one, the new
    /// pod of a self-update taking over (the old one flushes first), and
    /// every job due.
    pub fn wake_up(&mut self, shared: &Shared, backend: &mut Backend, now: u64) {
        if let Some((at, back)) = self.power_cut {
            if now >= at {
                self.power_cut = None;
                self.down_until = Some(back);
            }
        }
        if let Some(back) = self.down_until {
            if now < back {
                return;
            }
            self.down_until = None;
            self.start(shared, now);
        }
        if let Some((at, version)) = self.replacing.take() {
            if now >= at {
                self.stop(backend, now);
                self.version = version;
                self.self_replaced = Some(now);
                self.start(shared, now);
            } else {
                self.replacing = Some((at, version));
            }
        }
        self.run_due(shared, backend, now);
    }

    /// Records the rollouts of "web" finished by `now`.
    pub fn settle(&mut self, now: u64) {
        for (name, rollout) in &self.rollouts {
            if rollout.done_at <= now && name == "web" {
                if let Some(v) = self.actual.get(name).and_then(|o| o.version.clone()) {
                    self.web_running.entry(v).or_insert(rollout.done_at);
                }
            }
        }
        self.rollouts.retain(|_, r| r.done_at > now);
    }

    /// Runs every job due at `now`.
    fn run_due(&mut self, shared: &Shared, backend: &mut Backend, now: u64) {
        let at = shared.clock.at(now);
        while let Some(id) = self.scheduler.due(at, |_| true) {
            let next = match id {
                JobId::Sync => self.sync(shared, backend, now),
                JobId::Report => self.report(shared, backend, now),
                JobId::UpdateCheck => self.update_check(shared, backend, now),
                JobId::Lease => Next::Regular,
            };
            self.scheduler.finished(id, next, at);
        }
    }

    /// The report job: closes the window if due, then delivers the outbox.
    fn report(&mut self, shared: &Shared, backend: &mut Backend, now: u64) -> Next {
        let age = Duration::from_millis(now.saturating_sub(self.window_opened));
        if workload_manager::report::window_due(age, shared.config.report_interval) {
            self.close_window(now);
        }
        self.deliver(backend, now, shared.config.report_interval)
    }

    fn close_window(&mut self, now: u64) {
        self.window_opened = now;
        self.seq += 1;
        self.produced += 1;
        let id = format!("{}.{}.{now}", self.run, self.seq);
        let _ = self.outbox.push(Queued {
            json: id.clone(),
            id,
        });
    }

    fn deliver(&mut self, backend: &mut Backend, now: u64, interval: Duration) -> Next {
        while !self.outbox.is_empty() {
            let n = self.outbox.batch().count();
            let (up, down) = backend.sizes.delivery(n);
            match backend.call(now, Endpoint::Health, up, down) {
                Answer::Served { .. } => {
                    let ids = self.outbox.batch().map(|q| parse_id(&q.id));
                    backend.accept(self.index, now, ids);
                    let _ = self.outbox.delivered(n);
                }
                refused => {
                    let age = Duration::from_millis(now.saturating_sub(self.window_opened));
                    return workload_manager::report::after_failed_delivery(
                        wait_asked(&refused),
                        age,
                        interval,
                    );
                }
            }
        }
        Next::Regular
    }

    /// The last report of a process stopped by SIGTERM (the manager's flush).
    pub fn stop(&mut self, backend: &mut Backend, now: u64) {
        if now > self.window_opened {
            self.close_window(now);
        }
        let _ = self.deliver(backend, now, Duration::ZERO);
    }

    /// The sync job: fetch (a 304 is the usual answer), plan, and for each
    /// write fetch the manifest unless known, apply, then acknowledge.
    fn sync(&mut self, shared: &Shared, backend: &mut Backend, now: u64) -> Next {
        let sizes = backend.sizes;
        let generation = backend.desired(now).0;
        let unchanged = self.etag == Some(generation);
        let down = if unchanged {
            sizes.not_modified
        } else {
            sizes.workloads_answer
        };
        match backend.call(now, Endpoint::Workloads, sizes.get_request, down) {
            Answer::Served { .. } if unchanged => {}
            Answer::Served { .. } => {
                self.desired = Some(backend.desired(now).1.clone());
                self.etag = Some(generation);
            }
            refused => return failed(&refused),
        }
        self.settle(now);
        let desired = self.desired.clone().unwrap_or_default();
        let mut errors = 0;
        let mut wait = None;
        let mut note = |answer: &Answer, errors: &mut usize| {
            *errors += 1;
            if let Answer::Refused { code, retry_after } = answer {
                wait = wait.max(asked_to_wait(*code, retry_after.as_deref()));
            }
        };
        // Acknowledgements owed from before go first.
        for ack in std::mem::take(&mut self.owed) {
            if let Some(refused) = acknowledge(backend, now, &mut self.owed, ack) {
                note(&refused, &mut errors);
            }
        }
        for action in reconcile::plan(&desired, &self.actual, &self.applied) {
            let (name, version) = match action {
                Action::Create { name, version } | Action::Apply { name, version, .. } => {
                    (name, version)
                }
                Action::Delete { .. } | Action::Conflict { .. } => continue,
            };
            let key = (name.clone(), version.clone());
            if !self.manifests.contains(&key) {
                match backend.call(
                    now,
                    Endpoint::Manifest,
                    sizes.get_request,
                    sizes.manifest_answer,
                ) {
                    Answer::Served { .. } => self.manifests.push(key),
                    refused => {
                        note(&refused, &mut errors);
                        continue;
                    }
                }
            }
            let generation = self.actual.get(&name).map_or(0, |o| o.generation) + 1;
            self.actual.insert(
                name.clone(),
                Observed {
                    managed: true,
                    version: Some(version.clone()),
                    generation,
                },
            );
            self.applied.insert(
                name.clone(),
                Applied {
                    version: version.clone(),
                    generation,
                },
            );
            if name == "web" {
                self.web_applied.entry(version.clone()).or_insert(now);
            }
            let (lo, hi) = shared.rollout_ms;
            let pull = lo + self.rng.next_u64() % (hi - lo).max(1);
            self.rollouts.insert(
                name.clone(),
                Rollout {
                    done_at: now + pull,
                },
            );
            if let Some(refused) = acknowledge(backend, now, &mut self.owed, (name, version)) {
                note(&refused, &mut errors);
            }
        }
        jobs::after_sync(errors, wait, false, !self.rollouts.is_empty())
    }

    /// The update check: read the file, decide with the manager's own rule,
    /// patch its own Deployment. While that rollout is pending, only the
    /// Deployment is read.
    fn update_check(&mut self, shared: &Shared, backend: &mut Backend, now: u64) -> Next {
        if self.replacing.is_some() {
            return Next::Recheck(jobs::UPDATE_RECHECK);
        }
        let file = backend.update_file(now).to_string();
        backend.call(now, Endpoint::S3, backend.sizes.s3, 0);
        let Ok(latest) = update::parse_file(file.as_bytes()) else {
            return Next::Backoff;
        };
        match update::decide(&self.version, &latest, None, shared.image) {
            Ok(Decision::Update { version, .. }) => {
                let (lo, hi) = shared.rollout_ms;
                let pull = lo + self.rng.next_u64() % (hi - lo).max(1);
                self.replacing = Some((now + pull, version));
                self.self_patched = Some(now);
                Next::Recheck(jobs::UPDATE_RECHECK)
            }
            Ok(_) => Next::Regular,
            Err(_) => Next::Backoff,
        }
    }
}

/// The wait a refused call asks for, by the manager's own rule.
fn wait_asked(answer: &Answer) -> Option<Duration> {
    match answer {
        Answer::Refused { code, retry_after } => asked_to_wait(*code, retry_after.as_deref()),
        _ => None,
    }
}

/// How a refused or unanswered call ends a run, by the manager's own rules.
fn failed(answer: &Answer) -> Next {
    Next::failed(wait_asked(answer))
}

/// Report ids here are `run.seq.built`.
fn parse_id(id: &str) -> (u32, u32, u64) {
    let mut parts = id.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    let mut next = || parts.next().unwrap_or(0);
    (next() as u32, next() as u32, next())
}

/// `PUT version` of one applied workload, as the sync makes it; a refused
/// one is owed to the next sync and its answer returned.
fn acknowledge(
    backend: &mut Backend,
    now: u64,
    owed: &mut Vec<(String, String)>,
    ack: (String, String),
) -> Option<Answer> {
    let size = backend.sizes.put_version;
    match backend.call(now, Endpoint::PutVersion, size, 0) {
        Answer::Served { .. } => None,
        refused => {
            owed.push(ack);
            Some(refused)
        }
    }
}
