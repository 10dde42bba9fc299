//! The periodic jobs, each a small state machine the main loop steps through
//! one outbound call at a time, serving HTTP in between.
//!
//! A job never sleeps and never decides when it runs again: it ends with a
//! [`Done`] that says how it went and what it asks of the scheduler.

mod lease;
mod report;
mod sync;
mod update;

use std::time::{Duration, Instant, SystemTime};

use crate::backend::Backend;
use crate::config::Config;
use crate::kube::Kube;
use crate::scheduler::{JobId, Next, Scheduler, Timing};
use crate::state::{Outcome, State};

pub use sync::{after_sync, ROLLOUT_RECHECK};
pub use update::UPDATE_RECHECK;

/// First sync within this long of start (jittered), so a node is ready soon.
pub const FIRST_SYNC_WITHIN: Duration = Duration::from_secs(5);

/// The schedule of a manager started at `now`: every job with its timing,
/// the leader-only ones paused until this instance leads (then
/// [`Scheduler::resume`] starts each within its `first_within`).
pub fn schedule(config: &Config, seed: u64, now: Instant) -> Scheduler {
    let mut scheduler = Scheduler::new(seed);
    let timing = |interval: Duration, first_within: Duration| Timing {
        interval,
        first_within,
        spread: 0.1,
    };
    scheduler.add(
        JobId::Sync,
        timing(config.sync_interval, FIRST_SYNC_WITHIN),
        now,
    );
    // Reports keep their period exactly; only the phase is random.
    let report = Timing {
        spread: 0.0,
        ..timing(config.report_interval, config.report_interval)
    };
    scheduler.add(JobId::Report, report, now);
    scheduler.add(
        JobId::UpdateCheck,
        timing(config.update_interval, config.update_interval),
        now,
    );
    // The Lease comes first; the other jobs wait until this instance leads.
    scheduler.add(
        JobId::Lease,
        Timing {
            interval: crate::lease::PERIOD,
            first_within: Duration::ZERO,
            spread: 0.0,
        },
        now,
    );
    for id in JobId::ALL.into_iter().filter(|id| id.leader_only()) {
        scheduler.pause(id);
    }
    scheduler
}

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
        let next = Next::failed(retry_after);
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
