//! The report job: reads what explains the node's health, closes the report
//! window and delivers the outbox.

use super::{Context, Done, Job, Step};
use crate::events::{Event, Level};
use crate::kube::KubeError;
use crate::report;

/// Report: once per report window, reads the Node, the managed Deployments
/// and the namespace's pods (one call each, a step each; see
/// `report::diagnose`), then samples the kernel and applies all of it at
/// once (so `/v1/status` never shows half a window), and closes the window
/// into a report in the outbox; then delivers the outbox, oldest first, a
/// batch per step. A retry after a failure only delivers. A Kubernetes read
/// that fails leaves its fields null in this window's report; it never holds
/// the report back.
#[derive(Default)]
pub(super) struct Report {
    phase: Phase,
    delivered: usize,
    /// What this window read of Kubernetes, applied when it closes.
    node: Option<Result<Option<crate::kube::Node>, KubeError>>,
    deployments: Option<Vec<crate::kube::Deployment>>,
    pods: Option<crate::pods::PodList>,
    /// Why the window has no pod diagnoses, if a read failed.
    no_pods: Option<String>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Is a window due? Then read the Node.
    #[default]
    Node,
    Deployments,
    Pods,
    Close,
    Deliver,
}

impl Job for Report {
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        match self.phase {
            Phase::Node => {
                let age = cx.state.workloads.window_age(cx.now);
                if !report::window_due(age, cx.config.report_interval) {
                    self.phase = Phase::Deliver;
                    return self.deliver(cx);
                }
                self.phase = Phase::Deployments;
                let Some(name) = cx.state.node.name.clone() else {
                    return Step::Continue;
                };
                let got = cx.kube.get_node(&name, cx.now);
                if let Err(e @ KubeError::Unreachable(_)) = &got {
                    // The next reads of this window would only wait as long.
                    self.no_pods = Some(format!("cannot list pods: {e}"));
                    self.phase = Phase::Close;
                }
                self.node = Some(got);
                Step::Continue
            }
            Phase::Deployments => {
                self.phase = Phase::Pods;
                match cx.kube.list_managed(cx.now) {
                    Ok(list) => self.deployments = Some(list),
                    Err(e) => {
                        self.no_pods = Some(format!("cannot list Deployments: {e}"));
                        self.phase = Phase::Close;
                    }
                }
                Step::Continue
            }
            Phase::Pods => {
                self.phase = Phase::Close;
                match cx.kube.list_pods(cx.now) {
                    Ok(pods) => self.pods = Some(pods),
                    Err(e) => self.no_pods = Some(format!("cannot list pods: {e}")),
                }
                Step::Continue
            }
            Phase::Close => {
                if let Some(got) = self.node.take() {
                    cx.state.node.set_object(got);
                }
                if let Some(deployments) = self.deployments.take() {
                    report::refresh_views(cx.state, &deployments);
                    if let Some(pods) = self.pods.take() {
                        report::diagnose(cx.state, &deployments, &pods.items);
                    }
                }
                if let Some(why) = self.no_pods.take() {
                    report::no_diagnoses(cx.state, why);
                }
                let sample = cx.host.sample();
                cx.state.node.observe(sample, cx.now);
                let report = report::close_window(cx.state, cx.now, cx.wall);
                let dropped = cx.state.outbox.dropped();
                if let Err(e) = cx.state.outbox.push(report) {
                    log::warn!(
                        "cannot write the outbox to disk (the report stays queued in memory): {e}"
                    );
                }
                if cx.state.outbox.dropped() > dropped {
                    let message = format!(
                        "the outbox is full: its oldest report was dropped ({} dropped since start; {} queued)",
                        cx.state.outbox.dropped(),
                        cx.state.outbox.len()
                    );
                    let mut event = Event::new(Level::Warning, "outbox", &message, cx.wall);
                    event.job = Some("report");
                    cx.state.events.raise(event, cx.now);
                }
                self.phase = Phase::Deliver;
                Step::Continue
            }
            Phase::Deliver => self.deliver(cx),
        }
    }
}

impl Report {
    fn deliver(&mut self, cx: &mut Context<'_>) -> Step {
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
            Err(e) => Step::Done(Done {
                outcome: crate::state::Outcome::Error,
                detail: format!("{e}; {} report(s) queued", cx.state.outbox.len()),
                next: report::after_failed_delivery(
                    e.retry_after(),
                    cx.state.workloads.window_age(cx.now),
                    cx.config.report_interval,
                ),
            }),
        }
    }
}
