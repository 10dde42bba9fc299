//! The periodic jobs, each a small state machine the main loop steps through
//! one outbound call at a time, serving HTTP in between.
//!
//! A job never sleeps and never decides when it runs again: it ends with a
//! [`Done`] that says how it went and what it asks of the scheduler.

use std::time::{Instant, SystemTime};

use std::collections::{BTreeMap, BTreeSet};

use crate::backend::{Backend, Desired};
use crate::config::Config;
use crate::kube::Kube;
use crate::report;
use crate::scheduler::{JobId, Next};
use crate::state::{Outcome, State};

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
    }
}

/// Sync: checks that the Kubernetes API answers and lists what we manage,
/// then fetches the desired state (a 304 is the usual, cheap answer). Making
/// the cluster match it plugs in here.
#[derive(Default)]
struct Sync {
    managed: Option<usize>,
}

impl Job for Sync {
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        let Some(managed) = self.managed else {
            return match cx.kube.list_managed(cx.now) {
                Ok(names) => {
                    if !cx.state.kube_answered {
                        log::info!(
                            "Kubernetes API answered: {} managed Deployment(s)",
                            names.len()
                        );
                    }
                    cx.state.kube_answered = true;
                    self.managed = Some(names.len());
                    Step::Continue
                }
                Err(e) => Done::failed(e.to_string(), e.retry_after()),
            };
        };
        let etag = cx.state.desired_etag.clone();
        match cx.backend.fetch_workloads(etag.as_deref(), cx.wall) {
            Ok(Desired::Unchanged) => Done::ok(format!(
                "desired state unchanged ({} workloads); {managed} managed Deployments; applying it is not built yet",
                cx.state.desired.as_ref().map_or(0, |d| d.len())
            )),
            Ok(Desired::Changed { workloads, etag }) => {
                let names: BTreeSet<String> = workloads.iter().map(|w| w.name.clone()).collect();
                log::info!("desired state: {} workload(s)", workloads.len());
                cx.state.workloads.set_desired(names, cx.now);
                let desired: BTreeMap<String, String> =
                    workloads.into_iter().map(|w| (w.name, w.version)).collect();
                cx.state.manifests.retain(&desired);
                cx.state.desired = Some(desired);
                cx.state.desired_etag = etag;
                Done::ok(format!(
                    "desired state fetched ({} workloads); {managed} managed Deployments; applying it is not built yet",
                    cx.state.desired.as_ref().map_or(0, |d| d.len())
                ))
            }
            Err(e) => Done::failed(e.to_string(), e.retry_after()),
        }
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
