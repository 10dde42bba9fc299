//! The sync job: makes the namespace match the desired state.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{Context, Done, Job, Step};
use crate::backend::Desired;
use crate::kube::{Deployment, KubeError};
use crate::reconcile::{self, Action, Applied, Observed, Rollout};
use crate::scheduler::Next;
use crate::state::DeploymentView;
use crate::state::{Outcome, State};

/// While a rollout is in progress the next sync comes this soon, so its
/// outcome shows without waiting a whole sync interval.
pub const ROLLOUT_RECHECK: std::time::Duration = std::time::Duration::from_secs(15);

/// Above this many desired names missing from the managed list, one list
/// of every Deployment in the namespace replaces a GET per name (a first
/// sync of many workloads, on a slow API server, saves a call per workload).
pub const PROBES_AT_MOST: usize = 8;

/// Sync: lists the Deployments we manage, fetches the desired state (a 304
/// is the usual, cheap answer), tells missing names from names taken by
/// someone else, then performs the plan one call at a time. One workload's
/// failure does not stop the others; it is shown per workload.
#[derive(Default)]
pub(super) struct Sync {
    phase: SyncPhase,
    actual: BTreeMap<String, Observed>,
    /// Desired names whose state could not be read this time.
    unknown: BTreeSet<String>,
    /// The backend answered 304.
    unchanged: bool,
    /// Listing the whole namespace failed: look up names one by one.
    probe_singly: bool,
    /// Deletions held back until a prune to empty is confirmed.
    prune_held: usize,
    /// Desired workloads whose version was refused (now or before).
    invalid: Vec<String>,
    /// Listed Deployments whose create-time fields are not yet our apply's
    /// (`reconcile::ownership_patch`): handed over before their next apply.
    ownership: BTreeMap<String, serde_json::Value>,
    tally: Tally,
}

#[derive(Default)]
enum SyncPhase {
    #[default]
    List,
    Fetch,
    /// Desired names the managed list lacks: GET each, or list the whole
    /// namespace once when there are more than [`PROBES_AT_MOST`].
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
    /// Tell the backend a version was applied (at `at`, RFC 3339).
    PutVersion {
        name: String,
        version: String,
        at: String,
    },
    Delete {
        name: String,
    },
    /// Hand the fields its create left to our server-side apply (a JSON patch
    /// of `metadata.managedFields`), so the apply after it removes dropped fields.
    Own {
        name: String,
        ops: serde_json::Value,
    },
}

#[derive(Default)]
pub(super) struct Tally {
    created: usize,
    applied: usize,
    deleted: usize,
    /// Versions the backend acknowledged.
    acknowledged: usize,
    errors: Vec<String>,
    /// The longest wait the backend asked for while a call of the plan failed.
    retry_after: Option<std::time::Duration>,
}

impl Tally {
    fn asked_to_wait(&mut self, wait: Option<std::time::Duration>) {
        self.retry_after = self.retry_after.max(wait);
    }
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
                    if let Some(ops) = reconcile::ownership_patch(&d.metadata.managed_fields) {
                        self.ownership.insert(name.clone(), ops);
                    }
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
        // A refused version is tried again once the backend wants another.
        cx.state
            .invalid
            .retain(|name, (version, _)| desired.get(name) == Some(version));
        let unlisted: Vec<String> = desired
            .keys()
            .filter(|n| !self.actual.contains_key(*n))
            .cloned()
            .collect();
        self.phase = SyncPhase::Probe(unlisted);
        Step::Continue
    }

    fn probe(&mut self, cx: &mut Context<'_>, mut names: Vec<String>) -> Step {
        if names.len() > PROBES_AT_MOST && !self.probe_singly {
            match cx.kube.list_all(cx.now) {
                Ok(all) => {
                    let mut found: BTreeMap<String, Observed> = all
                        .into_iter()
                        .map(|d| (d.metadata.name.clone(), observe(&d)))
                        .collect();
                    for name in std::mem::take(&mut names) {
                        match found.remove(&name) {
                            Some(o) => {
                                self.actual.insert(name, o);
                            }
                            None => {
                                let view = missing_or_invalid(cx.state, &name);
                                cx.state.deployments.insert(name, view);
                            }
                        }
                    }
                }
                Err(e) => {
                    log::debug!("listing every Deployment: {e}; looking up each name");
                    self.probe_singly = true;
                }
            }
            self.phase = SyncPhase::Probe(names);
            return Step::Continue;
        }
        let Some(name) = names.pop() else {
            let desired = cx.state.desired.clone().unwrap_or_default();
            let mut actions: Vec<Action> =
                reconcile::plan(&desired, &self.actual, &cx.state.applied)
                    .into_iter()
                    .filter(|a| !self.unknown.contains(a.name()))
                    .collect();
            let deletes: Vec<String> = actions
                .iter()
                .filter_map(|a| match a {
                    Action::Delete { name } => Some(name.clone()),
                    _ => None,
                })
                .collect();
            let go = reconcile::confirm_prune(
                desired.is_empty(),
                &deletes,
                &mut cx.state.pending_prune,
                cx.now,
                cx.wall,
            );
            if !go {
                log::warn!(
                    "the desired list is empty: the {} managed Deployment(s) are deleted only if a fetch at least {}s after the first still says so",
                    deletes.len(),
                    reconcile::PRUNE_CONFIRM_AFTER.as_secs()
                );
                actions.retain(|a| !matches!(a, Action::Delete { .. }));
                self.prune_held = deletes.len();
            }
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
                        if let Some(ops) = self.ownership.remove(&name) {
                            tasks.push_back(Task::Own {
                                name: name.clone(),
                                ops,
                            });
                        }
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
            self.owed_acks(cx, &mut tasks);
            return self.act(cx, tasks);
        };
        match cx.kube.get(&name, cx.now) {
            Ok(None) => {
                let view = missing_or_invalid(cx.state, &name);
                cx.state.deployments.insert(name, view);
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

    /// Acknowledgements owed for desired workloads whose managed Deployment
    /// this sync leaves as it is (a write is acknowledged after it).
    fn owed_acks(&self, cx: &mut Context<'_>, tasks: &mut VecDeque<Task>) {
        let written: BTreeSet<&str> = tasks
            .iter()
            .filter_map(|t| match t {
                Task::Write { name, .. } | Task::Delete { name } => Some(name.as_str()),
                Task::PutVersion { .. } | Task::Own { .. } => None,
            })
            .collect();
        let desired = cx.state.desired.as_ref();
        let now = crate::clock::rfc3339(cx.wall);
        let mut owed = Vec::new();
        for (name, o) in &self.actual {
            let Some(version) = o.version.as_deref() else {
                continue;
            };
            let wanted = desired.is_some_and(|d| d.contains_key(name));
            if !o.managed || !wanted || written.contains(name.as_str()) {
                continue;
            }
            if let Some(due) = cx.state.acks.owed(name, version, &now) {
                owed.push(Task::PutVersion {
                    name: name.clone(),
                    version: due.version,
                    at: due.applied_at,
                });
            }
        }
        if !owed.is_empty() {
            log::info!(
                "{} applied version(s) not yet acknowledged to the backend; sending them",
                owed.len()
            );
        }
        // Before the writes: they are what a short sync may not get to.
        for task in owed.into_iter().rev() {
            tasks.push_front(task);
        }
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
                if let Some(reason) = invalid_reason(cx.state, &name, &version) {
                    // Refused before: not fetched or tried again.
                    let view = DeploymentView::marked(Rollout::Invalid, &reason);
                    cx.state.deployments.insert(name.clone(), view);
                    self.invalid.push(name);
                } else if !cx.state.manifests.contains(&name, &version) {
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
                        Err(e) if refused(&e) => {
                            self.refuse(cx, &name, &version, format!("manifest of {version}: {e}"))
                        }
                        Err(e) => {
                            self.tally.asked_to_wait(e.retry_after());
                            self.fail(
                                cx,
                                &name,
                                format!("manifest of {version}: {e}"),
                                Rollout::Failed,
                            )
                        }
                    }
                } else {
                    self.write(cx, &mut tasks, name, version, create);
                }
            }
            Task::PutVersion { name, version, at } => {
                match cx.backend.put_version(&name, &version, &at, cx.wall) {
                    Ok(()) => {
                        self.tally.acknowledged += 1;
                        recorded(cx.state.acks.acknowledged(&name, &version));
                    }
                    Err(e) => {
                        self.tally.asked_to_wait(e.retry_after());
                        self.tally.errors.push(format!(
                            "{name}: reporting version {version} (sent again at the next sync): {e}"
                        ))
                    }
                }
            }
            Task::Delete { name } => match cx.kube.delete(&name, cx.now) {
                Ok(()) => {
                    log::info!("{name}: deleted (no longer desired)");
                    self.tally.deleted += 1;
                    cx.state.applied.remove(&name);
                    cx.state.deployments.remove(&name);
                    recorded(cx.state.acks.forget(&name));
                }
                Err(e) => self.tally.errors.push(format!("{name}: delete: {e}")),
            },
            Task::Own { name, ops } => match cx.kube.json_patch(&name, &ops, cx.now) {
                Ok(_) => log::info!("{name}: fields from its create handed to server-side apply"),
                Err(e) => self
                    .tally
                    .errors
                    .push(format!("{name}: field ownership: {e}")),
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
                return self.refuse(
                    cx,
                    &name,
                    &version,
                    format!("manifest of {version} refused: {e}"),
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
                let at = crate::clock::rfc3339(cx.wall);
                recorded(cx.state.acks.applied(&name, &version, &at));
                tasks.push_front(Task::PutVersion { name, version, at });
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

    /// `version` of `name` was refused (unknown to the backend, or failing
    /// our checks): remembered, shown as invalid, and not an error of the
    /// sync (it would only fail the same way again).
    fn refuse(&mut self, cx: &mut Context<'_>, name: &str, version: &str, reason: String) {
        log::warn!("{name}: {reason}; not tried again until its desired version changes");
        cx.state.deployments.insert(
            name.to_string(),
            DeploymentView::marked(Rollout::Invalid, &reason),
        );
        cx.state
            .invalid
            .insert(name.to_string(), (version.to_string(), reason));
        self.invalid.push(name.to_string());
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
        let mut summary = format!(
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
        if t.acknowledged > 0 {
            summary.push_str(&format!("; {} version(s) acknowledged", t.acknowledged));
        }
        if !self.invalid.is_empty() {
            summary.push_str(&format!(
                "; invalid, not tried again until the desired version changes: {}",
                self.invalid.join(", ")
            ));
        }
        if self.prune_held > 0 {
            summary.push_str(&format!(
                "; {} deletion(s) wait for the empty desired list to be confirmed",
                self.prune_held
            ));
        }
        let moving = cx
            .state
            .deployments
            .values()
            .any(|d| d.rollout == Rollout::Progressing);
        let next = after_sync(t.errors.len(), t.retry_after, self.prune_held > 0, moving);
        if !t.errors.is_empty() {
            summary.push_str(&format!(
                "; {} error(s): {}",
                t.errors.len(),
                t.errors.join("; ")
            ));
        } else if moving && self.prune_held == 0 {
            summary.push_str("; a rollout is in progress");
        }
        let outcome = if t.errors.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Error
        };
        Step::Done(Done {
            outcome,
            detail: summary,
            next,
        })
    }
}

/// When the next sync comes after one that ended with `errors`: a failed
/// sync waits as the backend asked (`retry_after`) or backs off; a held
/// prune to empty is confirmed as soon as it may be; a rollout in motion is
/// looked at again after [`ROLLOUT_RECHECK`]; otherwise the regular interval.
pub fn after_sync(
    errors: usize,
    retry_after: Option<std::time::Duration>,
    prune_held: bool,
    moving: bool,
) -> Next {
    if errors > 0 {
        Next::failed(retry_after)
    } else if prune_held {
        Next::Recheck(reconcile::PRUNE_CONFIRM_AFTER)
    } else if moving {
        Next::Recheck(ROLLOUT_RECHECK)
    } else {
        Next::Regular
    }
}

/// Logs a change of the acknowledgement record that did not reach the disk
/// (it holds in memory; at worst a restart sends an acknowledgement again).
fn recorded(written: std::io::Result<()>) {
    if let Err(e) = written {
        log::warn!("cannot write the acknowledgement record: {e}");
    }
}

/// Why `version` of `name` was refused before, if it was.
fn invalid_reason(state: &State, name: &str, version: &str) -> Option<String> {
    state
        .invalid
        .get(name)
        .filter(|(v, _)| v == version)
        .map(|(_, reason)| reason.clone())
}

/// A desired workload with no Deployment: missing, or invalid if its
/// desired version was refused before (shown steadily, not as missing).
fn missing_or_invalid(state: &State, name: &str) -> DeploymentView {
    let desired = state.desired.as_ref().and_then(|d| d.get(name));
    match desired.and_then(|v| invalid_reason(state, name, v)) {
        Some(reason) => DeploymentView::marked(Rollout::Invalid, &reason),
        None => DeploymentView::marked(Rollout::Missing, ""),
    }
}

/// Whether a manifest fetch failed because the backend does not know the
/// version (404), as opposed to failing for now (unreachable, 5xx).
fn refused(e: &crate::backend::BackendError) -> bool {
    matches!(e, crate::backend::BackendError::Status { code: 404, .. })
}

/// What the plan needs of a Deployment.
fn observe(d: &Deployment) -> Observed {
    Observed {
        managed: d.metadata.labels.managed_by.as_deref() == Some(reconcile::LABEL_MANAGED_BY.1),
        version: d.metadata.annotations.version.clone(),
        generation: d.metadata.generation,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_next_sync_follows_how_this_one_ended() {
        let wait = Some(Duration::from_secs(30));
        assert_eq!(after_sync(0, None, false, false), Next::Regular);
        assert_eq!(
            after_sync(0, None, false, true),
            Next::Recheck(ROLLOUT_RECHECK)
        );
        assert_eq!(
            after_sync(0, None, true, true),
            Next::Recheck(reconcile::PRUNE_CONFIRM_AFTER)
        );
        assert_eq!(after_sync(2, None, true, true), Next::Backoff);
        assert_eq!(
            after_sync(1, wait, false, true),
            Next::After(Duration::from_secs(30)),
            "a manifest or version call told to wait makes the whole sync wait"
        );
    }
}
