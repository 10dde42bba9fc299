//! The periodic jobs, each a small state machine the main loop steps through
//! one outbound call at a time, serving HTTP in between.
//!
//! A job never sleeps and never decides when it runs again: it ends with a
//! [`Done`] that says how it went and what it asks of the scheduler.

mod lease;
mod report;
mod sync;
mod update;

use std::time::{Instant, SystemTime};

use crate::backend::Backend;
use crate::config::Config;
use crate::kube::Kube;
use crate::scheduler::{JobId, Next};
use crate::state::{Outcome, State};

/// What a job step may use.
pub struct Context<'a> {
    pub state: &'a mut State,
    pub kube: &'a mut Kube,
    pub backend: &'a Backend,
    pub config: &'a Config,
    /// The self-update file's client; `None` when self-update is off.
    pub s3: Option<&'a Result<crate::s3::S3, String>>,
    /// The kernel's view of the node, sampled once per report window.
    pub host: &'a mut crate::node::proc::Host,
    pub now: Instant,
    /// Boot time (counts suspended time): what the Lease is judged by.
    pub boot: std::time::Duration,
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
    pub(super) fn ok(detail: String) -> Step {
        Step::Done(Done {
            outcome: Outcome::Ok,
            detail,
            next: Next::Regular,
        })
    }

    pub(super) fn failed(detail: String, retry_after: Option<std::time::Duration>) -> Step {
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
        JobId::Sync => Box::new(sync::Sync::default()),
        JobId::Report => Box::new(report::Report::default()),
        JobId::UpdateCheck => Box::new(update::UpdateCheck::default()),
        JobId::Lease => Box::new(lease::LeaseJob::default()),
    }
}
