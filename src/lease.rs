//! Leader election with a coordination.k8s.io/v1 Lease, by client-go's
//! rules: the holder renews every [`PERIOD`]; it stops acting once it has
//! not renewed for the renew deadline; another instance takes over only
//! when the holder has left the record unchanged for the whole lease
//! duration as measured on the taker's own clock (so clock skew between
//! pods does not matter), or at once when the holder released it.
//!
//! All of it is judged on boot time ([`crate::clock::Clock::boot`]), which
//! counts the time a machine was suspended: a leader that wakes up after
//! its Lease ran out knows it.
//!
//! Pure: [`Election`] says which call comes next and digests the answers;
//! the Lease job performs the calls; [`Timing`] derives the durations from
//! `WM_HTTP_TIMEOUT` so that one slow call can never cost the Lease.

use std::time::{Duration, SystemTime};

use serde::Deserialize;
use serde_json::{json, Value};

/// The Lease's name, in the manager's namespace.
pub const NAME: &str = "workload-manager";
/// How often the holder renews and a follower looks again (client-go's
/// retry period).
pub const PERIOD: Duration = Duration::from_secs(5);
/// Room in each bound for what the loop does besides outbound calls
/// (serving a turn's requests, writing the state directory).
pub const SLACK: Duration = Duration::from_secs(1);
/// The longest `WM_HTTP_TIMEOUT` accepted: beyond it the Lease would last
/// over two minutes, and so would a takeover after a crash.
pub const MAX_CALL: Duration = Duration::from_secs(60);

/// The election's durations, derived from the longest an outbound call may
/// take (`WM_HTTP_TIMEOUT`), so that two invariants hold by construction:
///
/// 1. **Renewals are never starved.** A renewal falls due [`PERIOD`] after
///    the last one. The loop finishes at most one other call first (at most
///    `call`), then makes the renewal (at most `lease_call`), so the holder
///    has renewed again within `PERIOD + call + lease_call`, which stays
///    below `renew_deadline` by [`SLACK`].
/// 2. **Nothing leader-only happens on a Lease that may have lapsed.** A
///    leader-only call starts only within `renew_deadline` of the last
///    renewal (stamped before that renewal was sent) and ends within `call`,
///    so before `renew_deadline + call`, which stays below `duration` by
///    [`SLACK`]: no other instance can have taken over, as it waits
///    `duration` from when it saw that renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// The longest any other outbound call may block the loop.
    pub call: Duration,
    /// The timeout of one Lease call.
    pub lease_call: Duration,
    /// A holder that has not renewed for this long stops acting.
    pub renew_deadline: Duration,
    /// How long a claim lasts without renewal (whole seconds, as the
    /// Lease's `leaseDurationSeconds`).
    pub duration: Duration,
}

impl Timing {
    /// The timing for outbound calls of at most `call` (1 ms to [`MAX_CALL`]).
    pub fn for_call_timeout(call: Duration) -> Timing {
        let call = call.clamp(Duration::from_millis(1), MAX_CALL);
        let lease_call = call.min(PERIOD);
        let renew_deadline = PERIOD + call + lease_call + SLACK;
        let duration = renew_deadline + call + SLACK;
        let duration =
            Duration::from_secs(duration.as_secs() + u64::from(duration.subsec_nanos() > 0));
        Timing {
            call,
            lease_call,
            renew_deadline,
            duration,
        }
    }
}

impl Default for Timing {
    /// The timing of the default `WM_HTTP_TIMEOUT` (10 s).
    fn default() -> Timing {
        Timing::for_call_timeout(Duration::from_secs(10))
    }
}

/// A Lease as read from the API (the fields election needs).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Lease {
    pub metadata: Metadata,
    #[serde(default)]
    pub spec: Spec,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub resource_version: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub holder_identity: Option<String>,
    pub lease_duration_seconds: Option<i64>,
    pub acquire_time: Option<String>,
    pub renew_time: Option<String>,
    pub lease_transitions: Option<i64>,
}

impl Lease {
    /// The holder, if any (an empty identity means released).
    pub fn holder(&self) -> Option<&str> {
        self.spec
            .holder_identity
            .as_deref()
            .filter(|h| !h.is_empty())
    }

    /// The holder's claim as written, or `fallback` if the record has none.
    fn duration(&self, fallback: Duration) -> Duration {
        match self.spec.lease_duration_seconds {
            Some(s) if s > 0 => Duration::from_secs(s as u64),
            _ => fallback,
        }
    }
}

/// The next call to the Lease API.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Get,
    /// POST this Lease (there is none yet).
    Create(Value),
    /// PUT this Lease (renewal or takeover; carries the resourceVersion read).
    Update(Value),
    /// Nothing to do until the next period.
    Wait,
}

/// How a call went.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The Lease as the API server now has it.
    Lease(Lease),
    /// 404 on GET.
    Absent,
    /// 409 on create or update: someone else wrote first.
    Conflict,
    /// Any other failure: the API server could not be reached or refused.
    Failed,
}

/// Where this instance stands, for status and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Holds the Lease and renewed it within the renew deadline.
    Leading,
    /// The Lease names this instance, but it has not renewed for this long
    /// (past the renew deadline): it does nothing leader-only until it has.
    Lapsed(Duration),
    /// Another instance holds the Lease.
    Following(String),
    /// Nobody holds it, or it has not been read yet.
    NoLeader,
}

/// One instance's view of the election. Every time is boot time.
#[derive(Debug)]
pub struct Election {
    me: String,
    timing: Timing,
    /// The record last seen, and when it last changed.
    seen: Option<(Lease, Duration)>,
    /// When we last wrote the record as holder (stamped before the call);
    /// `None` once a read shows the record is not ours.
    renewed: Option<Duration>,
    /// When the last call was sent, whatever its answer.
    tried: Option<Duration>,
    /// Counts the times this instance acquired the Lease: work started in
    /// one term never continues in another.
    term: u64,
    /// Whether the next call must read first.
    stale: bool,
    /// Set when we took the Lease over from another holder.
    took_over: bool,
}

impl Election {
    pub fn new(me: &str, timing: Timing) -> Election {
        Election {
            me: me.to_string(),
            timing,
            seen: None,
            renewed: None,
            tried: None,
            term: 0,
            stale: true,
            took_over: false,
        }
    }

    pub fn identity(&self) -> &str {
        &self.me
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Whether this instance may act at boot time `now`: it holds the Lease
    /// and renewed it within the renew deadline.
    pub fn leading(&self, now: Duration) -> bool {
        self.act_until().is_some_and(|until| now < until)
    }

    /// The boot time until which this instance may act as leader: the
    /// renew deadline after its last renewal (`None` while not holding).
    pub fn act_until(&self) -> Option<Duration> {
        self.renewed.map(|at| at + self.timing.renew_deadline)
    }

    /// Whether the record names this instance as far as it knows (a renewal
    /// may be overdue: see [`Election::leading`]).
    pub fn holds(&self) -> bool {
        self.renewed.is_some()
    }

    /// How many times this instance has acquired the Lease.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// Whether to renew at once rather than at the next period: the record
    /// names us, the renew deadline has passed, and no call was tried since
    /// (a process that was stopped, or a machine that slept, wakes up).
    pub fn renew_now(&self, now: Duration) -> bool {
        match self.renewed {
            Some(at) if !self.leading(now) => {
                let lapsed = at + self.timing.renew_deadline;
                self.tried.is_none_or(|t| t < lapsed)
            }
            _ => false,
        }
    }

    /// How long since the last renewal, while the record names us.
    pub fn since_renewal(&self, now: Duration) -> Option<Duration> {
        self.renewed.map(|at| now.saturating_sub(at))
    }

    /// Where this instance stands at boot time `now`.
    pub fn role(&self, now: Duration) -> Role {
        match (self.since_renewal(now), self.holder()) {
            (Some(_), _) if self.leading(now) => Role::Leading,
            (Some(since), _) => Role::Lapsed(since),
            (None, Some(h)) if h != self.me => Role::Following(h.to_string()),
            _ => Role::NoLeader,
        }
    }

    /// Who holds the Lease as last seen.
    pub fn holder(&self) -> Option<&str> {
        self.seen.as_ref().and_then(|(l, _)| l.holder())
    }

    /// After a run that only looked: the next run reads the Lease again, so
    /// a follower sees renewals and releases as they happen.
    pub fn waited(&mut self) {
        self.stale = true;
    }

    /// True once after this instance took the Lease from another holder
    /// (whose reports cover the time before).
    pub fn take_over_flag(&mut self) -> bool {
        std::mem::take(&mut self.took_over)
    }

    /// The next call at boot time `now` (`wall` stamps what we write).
    pub fn next_call(&self, namespace: &str, now: Duration, wall: SystemTime) -> Call {
        if self.stale {
            return Call::Get;
        }
        let Some((lease, changed)) = self.seen.as_ref() else {
            return Call::Create(self.create(namespace, wall));
        };
        let stamp = micro_time(wall);
        match lease.holder() {
            Some(h) if h == self.me => Call::Update(self.record(lease, false, &stamp)),
            Some(_) if now.saturating_sub(*changed) < lease.duration(self.timing.duration) => {
                Call::Wait
            }
            _ => Call::Update(self.record(lease, true, &stamp)),
        }
    }

    /// A new Lease naming us.
    fn create(&self, namespace: &str, wall: SystemTime) -> Value {
        let stamp = micro_time(wall);
        object(
            json!({"name": NAME, "namespace": namespace}),
            json!({
                "holderIdentity": self.me,
                "leaseDurationSeconds": self.timing.duration.as_secs(),
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseTransitions": 0,
            }),
        )
    }

    /// `lease` renewed by us, or taken over (a new acquire time, one more transition).
    fn record(&self, lease: &Lease, takeover: bool, stamp: &str) -> Value {
        let spec = &lease.spec;
        let transitions = spec.lease_transitions.unwrap_or(0).max(0);
        object(
            json!({"name": NAME, "resourceVersion": lease.metadata.resource_version}),
            json!({
                "holderIdentity": self.me,
                "leaseDurationSeconds": self.timing.duration.as_secs(),
                "acquireTime": if takeover { Some(stamp) } else { spec.acquire_time.as_deref() },
                "renewTime": stamp,
                "leaseTransitions": if takeover { transitions + 1 } else { transitions },
            }),
        )
    }

    /// The Lease given up: no holder, so a successor takes over at once.
    pub fn release(&self, wall: SystemTime) -> Option<Value> {
        let (lease, _) = self.seen.as_ref()?;
        if lease.holder() != Some(self.me.as_str()) {
            return None;
        }
        let stamp = micro_time(wall);
        Some(object(
            json!({"name": NAME, "resourceVersion": lease.metadata.resource_version}),
            json!({
                "holderIdentity": "",
                "leaseDurationSeconds": 1,
                "acquireTime": lease.spec.acquire_time,
                "renewTime": stamp,
                "leaseTransitions": lease.spec.lease_transitions.unwrap_or(0),
            }),
        ))
    }

    /// Digests the answer to `call`, which was sent at boot time `now`.
    pub fn answered(&mut self, call: &Call, answer: Answer, now: Duration) {
        self.tried = Some(now);
        match answer {
            Answer::Lease(lease) => {
                let wrote = matches!(call, Call::Create(_) | Call::Update(_));
                let mine = lease.holder() == Some(self.me.as_str());
                if wrote && mine {
                    if self.holder().is_some_and(|h| h != self.me) {
                        self.took_over = true;
                    }
                    if self.renewed.is_none() {
                        self.term += 1;
                    }
                    self.renewed = Some(now);
                }
                if !mine {
                    self.renewed = None;
                }
                let changed = match &self.seen {
                    Some((old, at))
                        if old.holder() == lease.holder()
                            && old.spec.renew_time == lease.spec.renew_time =>
                    {
                        *at
                    }
                    _ => now,
                };
                self.seen = Some((lease, changed));
                self.stale = false;
            }
            Answer::Absent => {
                self.seen = None;
                self.renewed = None;
                self.stale = false;
            }
            Answer::Conflict => self.stale = true,
            Answer::Failed => {}
        }
    }
}

/// A coordination.k8s.io/v1 Lease with this metadata and spec.
fn object(metadata: Value, spec: Value) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": spec,
    })
}

/// A Kubernetes MicroTime: UTC with exactly six fractional digits.
pub fn micro_time(wall: SystemTime) -> String {
    let micros = wall
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    let secs = crate::clock::rfc3339(wall);
    format!("{}.{micros:06}Z", secs.trim_end_matches('Z'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    /// Boot time at the start of a test.
    const T0: Duration = Duration::from_secs(1000);
    /// The `leaseDurationSeconds` the records of [`lease`] carry.
    const CLAIM: Duration = Duration::from_secs(15);

    fn timing() -> Timing {
        Timing::for_call_timeout(Duration::from_secs(2))
    }

    #[test]
    fn the_timing_keeps_both_invariants_for_every_call_timeout() {
        for ms in [
            1, 100, 500, 999, 1000, 2000, 4999, 5000, 10_000, 30_000, 60_000, 600_000,
        ] {
            let t = Timing::for_call_timeout(Duration::from_millis(ms));
            assert!(t.call <= MAX_CALL && t.lease_call <= t.call, "{ms}: {t:?}");
            assert!(
                PERIOD + t.call + t.lease_call + SLACK <= t.renew_deadline,
                "{ms} ms: a renewal can starve: {t:?}"
            );
            assert!(
                t.renew_deadline + t.call + SLACK <= t.duration,
                "{ms} ms: a leader-only call can outlast the Lease: {t:?}"
            );
            assert_eq!(t.duration.subsec_nanos(), 0, "{t:?}");
        }
        let d = Timing::default();
        assert_eq!(
            (d.call, d.lease_call, d.renew_deadline, d.duration),
            (
                Duration::from_secs(10),
                Duration::from_secs(5),
                Duration::from_secs(21),
                Duration::from_secs(32)
            )
        );
        let t = timing();
        assert_eq!(
            (t.renew_deadline, t.duration),
            (Duration::from_secs(10), Duration::from_secs(13))
        );
    }

    #[test]
    fn a_term_counts_acquisitions_not_renewals() {
        let mut e = Election::new("pod-a", timing());
        e.answered(&Call::Get, Answer::Absent, T0);
        let call = e.next_call("edge", T0, wall());
        e.answered(&call, Answer::Lease(lease("pod-a", "r1", "1")), T0);
        assert_eq!(e.term(), 1);
        let renew = e.next_call("edge", T0 + PERIOD, wall());
        e.answered(
            &renew,
            Answer::Lease(lease("pod-a", "r2", "2")),
            T0 + PERIOD,
        );
        assert_eq!(e.term(), 1, "a renewal is the same term");
        // Lapsed for longer than the claim, then renewed: nobody wrote in
        // between (the resourceVersion still matched), so the same term.
        let late = T0 + PERIOD + CLAIM + PERIOD;
        assert_eq!(e.role(late), Role::Lapsed(CLAIM + PERIOD));
        let renew = e.next_call("edge", late, wall());
        e.answered(&renew, Answer::Lease(lease("pod-a", "r3", "3")), late);
        assert_eq!((e.term(), e.role(late)), (1, Role::Leading));
        // Lost to pod-b, then taken back: a new term.
        e.answered(&Call::Get, Answer::Lease(lease("pod-b", "r4", "4")), late);
        assert_eq!(e.role(late), Role::Following("pod-b".into()));
        assert!(!e.holds());
        let back = late + CLAIM;
        let call = e.next_call("edge", back, wall());
        e.answered(&call, Answer::Lease(lease("pod-a", "r5", "5")), back);
        assert_eq!((e.term(), e.role(back)), (2, Role::Leading));
    }

    fn lease(holder: &str, renew: &str, rv: &str) -> Lease {
        Lease {
            metadata: Metadata {
                resource_version: rv.into(),
            },
            spec: Spec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                acquire_time: Some("2026-01-01T00:00:00.000000Z".into()),
                renew_time: Some(renew.into()),
                lease_transitions: Some(2),
            },
        }
    }

    fn wall() -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456)
    }

    #[test]
    fn micro_time_has_six_fractional_digits() {
        assert_eq!(micro_time(wall()), "2023-11-14T22:13:20.123456Z");
        assert_eq!(micro_time(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn an_absent_lease_is_created_and_then_renewed() {
        let t0 = T0;
        let mut e = Election::new("pod-a", timing());
        assert_eq!(e.next_call("edge", t0, wall()), Call::Get);
        e.answered(&Call::Get, Answer::Absent, t0);
        let Call::Create(created) = e.next_call("edge", t0, wall()) else {
            panic!("an absent Lease is created");
        };
        assert_eq!(created["spec"]["holderIdentity"], "pod-a");
        assert_eq!(created["spec"]["leaseDurationSeconds"], 13);
        assert_eq!(created["metadata"]["namespace"], "edge");
        let call = Call::Create(created);
        e.answered(&call, Answer::Lease(lease("pod-a", "r1", "1")), t0);
        assert!(e.leading(t0));
        assert!(!e.take_over_flag(), "nobody held it before");
        match e.next_call("edge", t0 + PERIOD, wall()) {
            Call::Update(v) => {
                assert_eq!(v["metadata"]["resourceVersion"], "1");
                assert_eq!(v["spec"]["holderIdentity"], "pod-a");
                assert_eq!(
                    v["spec"]["leaseTransitions"], 2,
                    "a renewal is no transition"
                );
                assert_eq!(v["spec"]["acquireTime"], "2026-01-01T00:00:00.000000Z");
                assert_eq!(v["spec"]["renewTime"], micro_time(wall()));
            }
            other => panic!("expected a renewal, got {other:?}"),
        }
    }

    #[test]
    fn a_held_lease_is_respected_until_it_stays_unchanged_for_its_duration() {
        let t0 = T0;
        let mut e = Election::new("pod-b", timing());
        e.answered(&Call::Get, Answer::Lease(lease("pod-a", "r1", "5")), t0);
        assert_eq!(
            e.next_call("edge", t0 + Duration::from_secs(14), wall()),
            Call::Wait
        );
        // The holder renews: the clock starts again from when we saw that.
        let t1 = t0 + Duration::from_secs(10);
        e.answered(&Call::Get, Answer::Lease(lease("pod-a", "r2", "6")), t1);
        assert_eq!(
            e.next_call("edge", t0 + Duration::from_secs(20), wall()),
            Call::Wait
        );
        assert!(!e.leading(t1));
        assert_eq!(e.holder(), Some("pod-a"));
        // Unchanged for the whole duration: take over.
        match e.next_call("edge", t1 + CLAIM, wall()) {
            Call::Update(v) => {
                assert_eq!(v["spec"]["holderIdentity"], "pod-b");
                assert_eq!(v["spec"]["leaseTransitions"], 3);
                assert_eq!(v["spec"]["acquireTime"], micro_time(wall()));
                assert_eq!(v["metadata"]["resourceVersion"], "6");
            }
            other => panic!("expected a takeover, got {other:?}"),
        }
    }

    #[test]
    fn a_released_lease_is_taken_at_once_and_flags_the_takeover() {
        let t0 = T0;
        let mut e = Election::new("pod-b", timing());
        let mut released = lease("", "r3", "7");
        released.spec.lease_duration_seconds = Some(1);
        e.answered(&Call::Get, Answer::Lease(released), t0);
        let call = e.next_call("edge", t0, wall());
        let Call::Update(v) = &call else {
            panic!("expected a takeover, got {call:?}");
        };
        assert_eq!(v["spec"]["holderIdentity"], "pod-b");
        assert_eq!(
            v["spec"]["leaseTransitions"], 3,
            "a new holder is a transition"
        );
        e.answered(&call, Answer::Lease(lease("pod-b", "r4", "8")), t0);
        assert!(e.leading(t0));
        assert!(
            !e.take_over_flag(),
            "a released Lease has no holder to hand over from"
        );

        let mut e = Election::new("pod-c", timing());
        e.answered(&Call::Get, Answer::Lease(lease("pod-a", "r1", "1")), t0);
        let later = t0 + CLAIM;
        let call = e.next_call("edge", later, wall());
        e.answered(&call, Answer::Lease(lease("pod-c", "r9", "2")), later);
        assert!(e.leading(later));
        assert!(e.take_over_flag());
        assert!(!e.take_over_flag(), "the flag is read once");
    }

    #[test]
    fn a_holder_that_cannot_renew_stops_leading_before_anyone_may_take_over() {
        let t0 = T0;
        let mut e = Election::new("pod-a", timing());
        e.answered(&Call::Get, Answer::Absent, t0);
        let call = e.next_call("edge", t0, wall());
        assert!(matches!(call, Call::Create(_)));
        e.answered(&call, Answer::Lease(lease("pod-a", "r1", "1")), t0);
        let renew = e.next_call("edge", t0 + PERIOD, wall());
        e.answered(&renew, Answer::Failed, t0 + PERIOD);
        let deadline = timing().renew_deadline;
        assert!(e.leading(t0 + deadline - Duration::from_millis(1)));
        assert!(!e.leading(t0 + deadline));
        assert_eq!(e.role(t0 + deadline), Role::Lapsed(deadline));
        assert!(e.holds(), "the record still names it");
        assert!(!e.renew_now(t0 + deadline - Duration::from_millis(1)));
        assert!(e.renew_now(t0 + deadline), "none tried since it lapsed");
        let retry = e.next_call("edge", t0 + deadline, wall());
        e.answered(&retry, Answer::Failed, t0 + deadline);
        assert!(
            !e.renew_now(t0 + deadline + PERIOD),
            "tried since: back to the period"
        );
    }

    #[test]
    fn a_conflict_reads_again_and_losing_the_record_ends_leadership() {
        let t0 = T0;
        let mut e = Election::new("pod-a", timing());
        e.answered(&Call::Get, Answer::Lease(lease("pod-a", "r1", "1")), t0);
        let renew = e.next_call("edge", t0, wall());
        e.answered(&renew, Answer::Lease(lease("pod-a", "r2", "2")), t0);
        assert!(e.leading(t0));
        let renew = e.next_call("edge", t0 + PERIOD, wall());
        e.answered(&renew, Answer::Conflict, t0 + PERIOD);
        assert_eq!(e.next_call("edge", t0 + PERIOD, wall()), Call::Get);
        e.answered(
            &Call::Get,
            Answer::Lease(lease("pod-x", "r3", "3")),
            t0 + PERIOD,
        );
        assert!(!e.leading(t0 + PERIOD), "someone else holds it now");
        assert_eq!(e.next_call("edge", t0 + PERIOD, wall()), Call::Wait);
    }

    #[test]
    fn release_names_no_holder_and_only_a_holder_releases() {
        let t0 = T0;
        let mut e = Election::new("pod-a", timing());
        assert_eq!(e.release(wall()), None);
        e.answered(&Call::Get, Answer::Lease(lease("pod-b", "r1", "1")), t0);
        assert_eq!(e.release(wall()), None, "not ours to release");
        e.answered(&Call::Get, Answer::Lease(lease("pod-a", "r2", "2")), t0);
        let v = e.release(wall()).expect("ours");
        assert_eq!(v["spec"]["holderIdentity"], "");
        assert_eq!(v["spec"]["leaseDurationSeconds"], 1);
        assert_eq!(v["metadata"]["resourceVersion"], "2");
    }
}
