//! The report job: closes report windows and delivers the outbox.

use super::{Context, Done, Job, Step};
use crate::report;

/// Report: once per report window, closes the window into a report in the
/// outbox; then delivers the outbox, oldest first, a batch per step. A retry
/// after a failure only delivers.
#[derive(Default)]
pub(super) struct Report {
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
