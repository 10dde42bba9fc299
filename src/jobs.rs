//! The periodic jobs, each a small state machine the main loop steps through
//! one outbound call at a time, serving HTTP in between.
//!
//! A job never sleeps and never decides when it runs again: it ends with a
//! [`Done`] that says how it went and what it asks of the scheduler.

use std::time::{Instant, SystemTime};

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::backend::{Backend, Desired};
use crate::config::Config;
use crate::kube::{Deployment, Kube, KubeError};
use crate::reconcile::{self, Action, Applied, Observed, Rollout};
use crate::report;
use crate::scheduler::{JobId, Next};
use crate::state::DeploymentView;
use crate::state::{Outcome, State};

/// While a rollout is in progress the next sync comes this soon, so its
/// outcome shows without waiting a whole sync interval.
pub const ROLLOUT_RECHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// What a job step may use.
pub struct Context<'a> {
    pub state: &'a mut State,
    pub kube: &'a mut Kube,
    pub backend: &'a Backend,
    pub config: &'a Config,
    pub now: Instant,
    pub wall: SystemTime,
}

/// The end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub outcome: Outcome,
    pub detail: String,
    pub next: Next,
}

impl Done {
    fn ok(detail: String) -> Step {
        Step::Done(Done {
            outcome: Outcome::Ok,
            detail,
            next: Next::Regular,
        })
    }

    fn failed(detail: String, retry_after: Option<std::time::Duration>) -> Step {
        let next = retry_after.map_or(Next::Backoff, Next::After);
        Step::Done(Done {
            outcome: Outcome::Error,
            detail,
            next,
        })
    }
}

/// Where a run stands after one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// More steps to go; the loop serves requests first.
    Continue,
    Done(Done),
}

/// A run of a job.
pub trait Job {
    /// Does at most one outbound call.
    fn step(&mut self, cx: &mut Context<'_>) -> Step;
}

/// A fresh run of `id`.
pub fn start(id: JobId) -> Box<dyn Job> {
    match id {
        JobId::Sync => Box::new(Sync::default()),
        JobId::Report => Box::new(Report::default()),
        JobId::UpdateCheck => Box::new(UpdateCheck),
        JobId::Lease => Box::new(LeaseJob::default()),
    }
}

/// Sync: lists the Deployments we manage, fetches the desired state (a 304
/// is the usual, cheap answer), tells missing names from names taken by
/// someone else, then performs the plan one call at a time. One workload's
/// failure does not stop the others; it is shown per workload.
#[derive(Default)]
struct Sync {
    phase: SyncPhase,
    actual: BTreeMap<String, Observed>,
    /// Desired names whose state could not be read this time.
    unknown: BTreeSet<String>,
    /// The backend answered 304.
    unchanged: bool,
    tally: Tally,
}

#[derive(Default)]
enum SyncPhase {
    #[default]
    List,
    Fetch,
    /// Desired names the managed list lacks: GET each.
    Probe(Vec<String>),
    Act(VecDeque<Task>),
}

/// One outbound call of the plan.
enum Task {
    /// Create or apply `name` at `version` (fetching its manifest first if needed).
    Write {
        name: String,
        version: String,
        create: bool,
    },
    /// Tell the backend a version was applied.
    PutVersion {
        name: String,
        version: String,
    },
    Delete {
        name: String,
    },
}

#[derive(Default)]
struct Tally {
    created: usize,
    applied: usize,
    deleted: usize,
    errors: Vec<String>,
}

impl Job for Sync {
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        match std::mem::take(&mut self.phase) {
            SyncPhase::List => self.list(cx),
            SyncPhase::Fetch => self.fetch(cx),
            SyncPhase::Probe(names) => self.probe(cx, names),
            SyncPhase::Act(tasks) => self.act(cx, tasks),
        }
    }
}

impl Sync {
    fn list(&mut self, cx: &mut Context<'_>) -> Step {
        match cx.kube.list_managed(cx.now) {
            Ok(deployments) => {
                if !cx.state.kube_answered {
                    log::info!(
                        "Kubernetes API answered: {} managed Deployment(s)",
                        deployments.len()
                    );
                }
                cx.state.kube_answered = true;
                for d in deployments {
                    let name = d.metadata.name.clone();
                    self.actual.insert(name.clone(), observe(&d));
                    cx.state.deployments.insert(name, DeploymentView::of(&d));
                }
                self.phase = SyncPhase::Fetch;
                Step::Continue
            }
            Err(e) => Done::failed(e.to_string(), e.retry_after()),
        }
    }

    fn fetch(&mut self, cx: &mut Context<'_>) -> Step {
        let etag = cx.state.desired_etag.clone();
        match cx.backend.fetch_workloads(etag.as_deref(), cx.wall) {
            Ok(Desired::Unchanged) => self.unchanged = true,
            Ok(Desired::Changed { workloads, etag }) => {
                let names: BTreeSet<String> = workloads.iter().map(|w| w.name.clone()).collect();
                log::info!("desired state: {} workload(s)", workloads.len());
                cx.state.workloads.set_desired(names, cx.now);
                let desired: BTreeMap<String, String> =
                    workloads.into_iter().map(|w| (w.name, w.version)).collect();
                cx.state.manifests.retain(&desired);
                cx.state.desired = Some(desired);
                cx.state.desired_etag = etag;
            }
            Err(e) => return Done::failed(e.to_string(), e.retry_after()),
        }
        let desired = cx.state.desired.clone().unwrap_or_default();
        cx.state
            .deployments
            .retain(|name, _| desired.contains_key(name) || self.actual.contains_key(name));
        let unlisted: Vec<String> = desired
            .keys()
            .filter(|n| !self.actual.contains_key(*n))
            .cloned()
            .collect();
        self.phase = SyncPhase::Probe(unlisted);
        Step::Continue
    }

    fn probe(&mut self, cx: &mut Context<'_>, mut names: Vec<String>) -> Step {
        let Some(name) = names.pop() else {
            let desired = cx.state.desired.clone().unwrap_or_default();
            let actions = reconcile::plan(&desired, &self.actual, &cx.state.applied)
                .into_iter()
                .filter(|a| !self.unknown.contains(a.name()));
            let mut tasks = VecDeque::new();
            for action in actions {
                match action {
                    Action::Create { name, version } => tasks.push_back(Task::Write {
                        name,
                        version,
                        create: true,
                    }),
                    Action::Apply { name, version, why } => {
                        log::info!("{name}: applying {version} ({why:?})");
                        tasks.push_back(Task::Write {
                            name,
                            version,
                            create: false,
                        })
                    }
                    Action::Delete { name } => tasks.push_back(Task::Delete { name }),
                    Action::Conflict { name } => {
                        cx.state.deployments.insert(name, DeploymentView::marked(Rollout::Conflict, "a Deployment of this name exists and is not managed by workload-manager; left untouched"));
                    }
                }
            }
            return self.act(cx, tasks);
        };
        match cx.kube.get(&name, cx.now) {
            Ok(None) => {
                cx.state
                    .deployments
                    .insert(name, DeploymentView::marked(Rollout::Missing, ""));
            }
            Ok(Some(d)) => {
                self.actual.insert(name, observe(&d));
            }
            Err(e) => {
                // Unknown whether it exists: leave it out of this sync rather than guess.
                self.tally.errors.push(format!("{name}: {e}"));
                self.unknown.insert(name);
            }
        }
        self.phase = SyncPhase::Probe(names);
        Step::Continue
    }

    fn act(&mut self, cx: &mut Context<'_>, mut tasks: VecDeque<Task>) -> Step {
        let Some(task) = tasks.pop_front() else {
            return self.finish(cx);
        };
        match task {
            Task::Write {
                name,
                version,
                create,
            } => {
                if !cx.state.manifests.contains(&name, &version) {
                    match cx
                        .state
                        .manifests
                        .fetch(cx.backend, &name, &version, cx.wall)
                    {
                        Ok(_) => tasks.push_front(Task::Write {
                            name,
                            version,
                            create,
                        }),
                        Err(e) => self.fail(
                            cx,
                            &name,
                            format!("manifest of {version}: {e}"),
                            Rollout::Invalid,
                        ),
                    }
                } else {
                    self.write(cx, &mut tasks, name, version, create);
                }
            }
            Task::PutVersion { name, version } => {
                let at = crate::clock::rfc3339(cx.wall);
                if let Err(e) = cx.backend.put_version(&name, &version, &at, cx.wall) {
                    self.tally
                        .errors
                        .push(format!("{name}: reporting version {version}: {e}"));
                }
            }
            Task::Delete { name } => match cx.kube.delete(&name, cx.now) {
                Ok(()) => {
                    log::info!("{name}: deleted (no longer desired)");
                    self.tally.deleted += 1;
                    cx.state.applied.remove(&name);
                    cx.state.deployments.remove(&name);
                }
                Err(e) => self.tally.errors.push(format!("{name}: delete: {e}")),
            },
        }
        self.phase = SyncPhase::Act(tasks);
        Step::Continue
    }

    /// Prepares the cached manifest and creates or applies it.
    fn write(
        &mut self,
        cx: &mut Context<'_>,
        tasks: &mut VecDeque<Task>,
        name: String,
        version: String,
        create: bool,
    ) {
        let manifest = cx.state.manifests.get(&name, &version).unwrap_or_default();
        let prepared = match reconcile::prepare(&name, &version, &cx.config.namespace, &manifest) {
            Ok(p) => p,
            Err(e) => {
                return self.fail(
                    cx,
                    &name,
                    format!("manifest of {version} refused: {e}"),
                    Rollout::Invalid,
                )
            }
        };
        let result = if create {
            cx.kube.create(&prepared, cx.now)
        } else {
            cx.kube.apply(&name, &prepared, cx.now)
        };
        match result {
            Ok(d) => {
                log::info!(
                    "{name}: {} {version}",
                    if create { "created" } else { "applied" }
                );
                if create {
                    self.tally.created += 1;
                } else {
                    self.tally.applied += 1;
                }
                cx.state.applied.insert(
                    name.clone(),
                    Applied {
                        version: version.clone(),
                        generation: d.metadata.generation,
                    },
                );
                cx.state
                    .deployments
                    .insert(name.clone(), DeploymentView::of(&d));
                tasks.push_front(Task::PutVersion { name, version });
            }
            Err(e) => {
                let rollout = if matches!(e, KubeError::Api { code: 409, .. }) && create {
                    Rollout::Conflict
                } else {
                    Rollout::Failed
                };
                self.fail(
                    cx,
                    &name,
                    format!("{} {version}: {e}", if create { "create" } else { "apply" }),
                    rollout,
                )
            }
        }
    }

    fn fail(&mut self, cx: &mut Context<'_>, name: &str, error: String, rollout: Rollout) {
        log::warn!("{name}: {error}");
        cx.state
            .deployments
            .insert(name.to_string(), DeploymentView::marked(rollout, &error));
        self.tally.errors.push(format!("{name}: {error}"));
    }

    fn finish(&mut self, cx: &mut Context<'_>) -> Step {
        let t = &self.tally;
        let desired = cx.state.desired.as_ref().map_or(0, |d| d.len());
        let summary = format!(
            "{desired} desired ({}); {} created, {} applied, {} deleted",
            if self.unchanged {
                "unchanged"
            } else {
                "fetched"
            },
            t.created,
            t.applied,
            t.deleted
        );
        let moving = cx
            .state
            .deployments
            .values()
            .any(|d| d.rollout == Rollout::Progressing);
        if t.errors.is_empty() && moving {
            let next = Next::Recheck(ROLLOUT_RECHECK);
            Step::Done(Done {
                outcome: Outcome::Ok,
                detail: format!("{summary}; a rollout is in progress"),
                next,
            })
        } else if t.errors.is_empty() {
            Done::ok(summary)
        } else {
            Done::failed(
                format!(
                    "{summary}; {} error(s): {}",
                    t.errors.len(),
                    t.errors.join("; ")
                ),
                None,
            )
        }
    }
}

/// What the plan needs of a Deployment.
fn observe(d: &Deployment) -> Observed {
    Observed {
        managed: d.metadata.labels.managed_by.as_deref() == Some(reconcile::LABEL_MANAGED_BY.1),
        version: d.metadata.annotations.version.clone(),
        generation: d.metadata.generation,
    }
}

/// Report: once per report window, closes the window into a report in the
/// outbox; then delivers the outbox, oldest first, a batch per step. A retry
/// after a failure only delivers.
#[derive(Default)]
struct Report {
    delivered: usize,
}

impl Job for Report {
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        let window_due =
            cx.state.workloads.window_age(cx.now) >= cx.config.report_interval.mul_f64(0.9);
        if window_due && self.delivered == 0 {
            let report = report::close_window(cx.state, cx.now, cx.wall);
            if let Err(e) = cx.state.outbox.push(report) {
                log::warn!(
                    "cannot write the outbox to disk (the report stays queued in memory): {e}"
                );
            }
        }
        if cx.state.outbox.is_empty() {
            return Done::ok(format!(
                "{} report(s) delivered; none queued",
                self.delivered
            ));
        }
        let batch = cx.state.outbox.batch().count();
        match cx
            .backend
            .post_health(&cx.state.outbox.batch_body(), None, cx.wall)
        {
            Ok(accepted) => {
                if let Err(e) = cx.state.outbox.delivered(batch) {
                    log::warn!("cannot rewrite the outbox on disk: {e}");
                }
                self.delivered += batch;
                log::debug!("delivered {batch} report(s), {accepted} new to the backend");
                Step::Continue
            }
            Err(e) => Done::failed(
                format!("{e}; {} report(s) queued", cx.state.outbox.len()),
                e.retry_after(),
            ),
        }
    }
}
/// Update check: self-update plugs in here.
struct UpdateCheck;

impl Job for UpdateCheck {
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        let detail = match &cx.config.update {
            None => "self-update is off: WM_UPDATE_S3_BUCKET is not set".to_string(),
            Some(u) => format!(
                "self-update from s3://{}/{} is not built yet",
                u.bucket, u.key
            ),
        };
        Step::Done(Done {
            outcome: Outcome::Skipped,
            detail,
            next: Next::Regular,
        })
    }
}

/// Lease: renews the leader-election Lease while this instance holds it,
/// otherwise looks at it and takes it over when its holder is gone (see
/// `lease.rs`). At most a read and a write per run; failures are retried
/// at the next period, not backed off, so a holder renews in time.
#[derive(Default)]
struct LeaseJob {
    calls: u8,
}

impl Job for LeaseJob {
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        use crate::lease::{Answer, Call};
        let call = cx
            .state
            .election
            .next_call(&cx.config.namespace, cx.now, cx.wall);
        let result = match &call {
            Call::Wait => return self.done(cx, Outcome::Ok, String::new()),
            Call::Get => cx
                .kube
                .get_lease(cx.now)
                .map(|l| l.map_or(Answer::Absent, Answer::Lease)),
            Call::Create(lease) => cx.kube.create_lease(lease, cx.now).map(Answer::Lease),
            Call::Update(lease) => cx.kube.update_lease(lease, cx.now).map(Answer::Lease),
        };
        self.calls += 1;
        let answer = match result {
            Ok(answer) => answer,
            Err(KubeError::Api { code: 409, .. }) => Answer::Conflict,
            Err(e) => {
                cx.state.election.answered(&call, Answer::Failed, cx.now);
                return self.done(cx, Outcome::Error, format!("Lease: {e}"));
            }
        };
        if !cx.state.kube_answered {
            log::info!("Kubernetes API answered");
        }
        cx.state.kube_answered = true;
        let conflict = answer == Answer::Conflict;
        cx.state.election.answered(&call, answer, cx.now);
        let wrote = matches!(call, Call::Create(_) | Call::Update(_));
        if (wrote && !conflict) || self.calls >= 3 {
            return self.done(cx, Outcome::Ok, String::new());
        }
        // After a read, or a write someone else beat: read or write once more.
        Step::Continue
    }
}

impl LeaseJob {
    fn done(&self, cx: &mut Context<'_>, outcome: Outcome, error: String) -> Step {
        let e = &cx.state.election;
        let role = if e.leading(cx.now) {
            format!(
                "leader: {} holds Lease {}",
                e.identity(),
                crate::lease::NAME
            )
        } else {
            match e.holder() {
                Some(h) => format!("follower: {h} holds Lease {}", crate::lease::NAME),
                None => "no leader yet".to_string(),
            }
        };
        let detail = if error.is_empty() {
            role
        } else {
            format!("{error}; {role}")
        };
        Step::Done(Done {
            outcome,
            detail,
            next: Next::Regular,
        })
    }
}
