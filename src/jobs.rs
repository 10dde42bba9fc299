//! The periodic jobs, each a small state machine the main loop steps through
//! one outbound call at a time, serving HTTP in between.
//!
//! A job never sleeps and never decides when it runs again: it ends with a
//! [`Done`] that says how it went and what it asks of the scheduler.

use std::time::{Instant, SystemTime};

use crate::config::Config;
use crate::kube::Kube;
use crate::scheduler::{JobId, Next};
use crate::state::{Outcome, State};

/// What a job step may use.
pub struct Context<'a> {
    pub state: &'a mut State,
    pub kube: &'a mut Kube,
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
        JobId::Sync => Box::new(Sync),
        JobId::Report => Box::new(Report),
        JobId::UpdateCheck => Box::new(UpdateCheck),
    }
}

/// Sync: for now, checks that the Kubernetes API answers and lists what we
/// manage; fetching and applying the desired state plugs in here.
struct Sync;

impl Job for Sync {
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        let done = match cx.kube.list_managed(cx.now) {
            Ok(names) => {
                if !cx.state.kube_answered {
                    log::info!(
                        "Kubernetes API answered: {} managed Deployment(s)",
                        names.len()
                    );
                }
                cx.state.kube_answered = true;
                Done {
                    outcome: Outcome::Skipped,
                    detail: format!(
                        "Kubernetes API answered ({} managed Deployments); desired state not fetched: the backend client is not built yet",
                        names.len()
                    ),
                    next: Next::Regular,
                }
            }
            Err(e) => Done {
                outcome: Outcome::Error,
                detail: e.to_string(),
                next: e.retry_after().map_or(Next::Backoff, Next::After),
            },
        };
        Step::Done(done)
    }
}

/// Report: closes the uptime window; sending it to the backend plugs in here.
struct Report;

impl Job for Report {
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        let (window, healthy) = cx.state.workloads.close_window(cx.now);
        Step::Done(Done {
            outcome: Outcome::Skipped,
            detail: format!(
                "window of {}s closed for {} workload(s); reports are not sent yet: the backend client is not built",
                window.as_secs(),
                healthy.len()
            ),
            next: Next::Regular,
        })
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
