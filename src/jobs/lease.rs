//! The Lease job: leader election.

use super::{Context, Done, Job, Step};
use crate::kube::KubeError;
use crate::scheduler::Next;
use crate::state::Outcome;

/// Lease: renews the leader-election Lease while this instance holds it,
/// otherwise looks at it and takes it over when its holder is gone (see
/// `lease.rs`). At most a read and a write per run; failures are retried
/// at the next period, not backed off, so a holder renews in time.
#[derive(Default)]
pub(super) struct LeaseJob {
    calls: u8,
}

impl Job for LeaseJob {
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        use crate::lease::{Answer, Call};
        let call = cx
            .state
            .election
            .next_call(&cx.config.namespace, cx.boot, cx.wall);
        let result = match &call {
            Call::Wait => {
                cx.state.election.waited();
                return self.done(cx, Outcome::Ok, String::new());
            }
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
                cx.state.election.answered(&call, Answer::Failed, cx.boot);
                return self.done(cx, Outcome::Error, format!("Lease: {e}"));
            }
        };
        if !cx.state.kube_answered {
            log::info!("Kubernetes API answered");
        }
        cx.state.kube_answered = true;
        let conflict = answer == Answer::Conflict;
        cx.state.election.answered(&call, answer, cx.boot);
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
        use crate::lease::{Role, NAME};
        let e = &cx.state.election;
        let role = match e.role(cx.boot) {
            Role::Leading => format!("leader: {} holds Lease {NAME}", e.identity()),
            Role::Lapsed(since) => format!(
                "not leading: Lease {NAME} names this instance ({}) but was not renewed for {}",
                e.identity(),
                crate::clock::human(since)
            ),
            Role::Following(h) => format!("follower: {h} holds Lease {NAME}"),
            Role::NoLeader => "no leader yet".to_string(),
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
