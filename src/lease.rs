//! Leader election with a coordination.k8s.io/v1 Lease, by client-go's
//! rules: the holder renews every [`PERIOD`]; it stops acting once it has
//! not renewed for [`RENEW_DEADLINE`]; another instance takes over only
//! when the holder has left the record unchanged for the whole lease
//! duration as measured on the taker's own clock (so clock skew between
//! pods does not matter), or at once when the holder released it.
//!
//! Pure: [`Election`] says which call comes next and digests the answers;
//! the Lease job performs the calls.

use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde_json::{json, Value};

/// The Lease's name, in the manager's namespace.
pub const NAME: &str = "workload-manager";
/// How long a holder's claim lasts without renewal.
pub const DURATION: Duration = Duration::from_secs(15);
/// How often the holder renews and a follower looks again.
pub const PERIOD: Duration = Duration::from_secs(5);
/// A holder that has not renewed for this long stops acting; shorter than
/// [`DURATION`], so it stops before anyone may take over.
pub const RENEW_DEADLINE: Duration = Duration::from_secs(10);

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

    fn duration(&self) -> Duration {
        match self.spec.lease_duration_seconds {
            Some(s) if s > 0 => Duration::from_secs(s as u64),
            _ => DURATION,
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

/// One instance's view of the election.
#[derive(Debug)]
pub struct Election {
    me: String,
    /// The record last seen, and when (our clock) it last changed.
    seen: Option<(Lease, Instant)>,
    /// When we last wrote the record as holder.
    renewed: Option<Instant>,
    /// Whether the next call must read first.
    stale: bool,
    /// Set when we took the Lease over from another holder.
    took_over: bool,
}

impl Election {
    pub fn new(me: &str) -> Election {
        Election {
            me: me.to_string(),
            seen: None,
            renewed: None,
            stale: true,
            took_over: false,
        }
    }

    pub fn identity(&self) -> &str {
        &self.me
    }

    /// Whether this instance may act now: it holds the Lease and renewed it
    /// within [`RENEW_DEADLINE`].
    pub fn leading(&self, now: Instant) -> bool {
        self.renewed
            .is_some_and(|at| now.saturating_duration_since(at) < RENEW_DEADLINE)
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

    /// The next call at `now` (`wall` stamps what we write).
    pub fn next_call(&self, namespace: &str, now: Instant, wall: SystemTime) -> Call {
        if self.stale {
            return Call::Get;
        }
        let Some((lease, changed)) = self.seen.as_ref() else {
            return Call::Create(self.create(namespace, wall));
        };
        let stamp = micro_time(wall);
        match lease.holder() {
            Some(h) if h == self.me => Call::Update(self.record(lease, false, &stamp)),
            Some(_) if now.saturating_duration_since(*changed) < lease.duration() => Call::Wait,
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
                "leaseDurationSeconds": DURATION.as_secs(),
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
                "leaseDurationSeconds": DURATION.as_secs(),
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

    /// Digests the answer to `call`, made at `now`.
    pub fn answered(&mut self, call: &Call, answer: Answer, now: Instant) {
        match answer {
            Answer::Lease(lease) => {
                let wrote = matches!(call, Call::Create(_) | Call::Update(_));
                let mine = lease.holder() == Some(self.me.as_str());
                if wrote && mine {
                    if self.holder().is_some_and(|h| h != self.me) {
                        self.took_over = true;
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
        let t0 = Instant::now();
        let mut e = Election::new("pod-a");
        assert_eq!(e.next_call("edge", t0, wall()), Call::Get);
        e.answered(&Call::Get, Answer::Absent, t0);
        let Call::Create(created) = e.next_call("edge", t0, wall()) else {
            panic!("an absent Lease is created");
        };
        assert_eq!(created["spec"]["holderIdentity"], "pod-a");
        assert_eq!(created["spec"]["leaseDurationSeconds"], 15);
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
        let t0 = Instant::now();
        let mut e = Election::new("pod-b");
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
        match e.next_call("edge", t1 + DURATION, wall()) {
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
        let t0 = Instant::now();
        let mut e = Election::new("pod-b");
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

        let mut e = Election::new("pod-c");
        e.answered(&Call::Get, Answer::Lease(lease("pod-a", "r1", "1")), t0);
        let later = t0 + DURATION;
        let call = e.next_call("edge", later, wall());
        e.answered(&call, Answer::Lease(lease("pod-c", "r9", "2")), later);
        assert!(e.leading(later));
        assert!(e.take_over_flag());
        assert!(!e.take_over_flag(), "the flag is read once");
    }

    #[test]
    fn a_holder_that_cannot_renew_stops_leading_before_anyone_may_take_over() {
        let t0 = Instant::now();
        let mut e = Election::new("pod-a");
        e.answered(&Call::Get, Answer::Absent, t0);
        let call = e.next_call("edge", t0, wall());
        assert!(matches!(call, Call::Create(_)));
        e.answered(&call, Answer::Lease(lease("pod-a", "r1", "1")), t0);
        let renew = e.next_call("edge", t0 + PERIOD, wall());
        e.answered(&renew, Answer::Failed, t0 + PERIOD);
        assert!(e.leading(t0 + RENEW_DEADLINE - Duration::from_millis(1)));
        assert!(!e.leading(t0 + RENEW_DEADLINE));
        assert!(RENEW_DEADLINE < DURATION);
    }

    #[test]
    fn a_conflict_reads_again_and_losing_the_record_ends_leadership() {
        let t0 = Instant::now();
        let mut e = Election::new("pod-a");
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
        let t0 = Instant::now();
        let mut e = Election::new("pod-a");
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
