//! Leader election through the real binary: two managers against one fake
//! node (the same node key, namespace and Lease), told apart by POD_NAME.
//! Exactly one leads and does the leader-only work (sync, reports); both
//! serve the API; a leader that stops with SIGTERM hands over at once, one
//! killed with SIGKILL only after its Lease expired.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use wm_testkit::kube::LoggedRequest;
use wm_testkit::node::FakeNode;
use wm_testkit::proc::{wait_for, Manager};

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");
/// The Deployments collection of the fake node's namespace.
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/edge/deployments";
/// The election Lease's name and path.
const LEASE: &str = "workload-manager";
const LEASE_PATH: &str = "/apis/coordination.k8s.io/v1/namespaces/edge/leases/workload-manager";

/// One manager, with the identity it was started under.
struct Instance {
    pod: &'static str,
    m: Manager,
}

/// The call timeout of these tests, and the Lease duration it gives.
const HTTP_TIMEOUT: &str = "2s";
const LEASE_SECONDS: u64 = 13;

fn start(node: &FakeNode, pod: &'static str, report_interval: &str) -> Instance {
    let m = node.start(
        BIN,
        &[
            ("POD_NAME", pod),
            ("WM_REPORT_INTERVAL", report_interval),
            ("WM_HTTP_TIMEOUT", HTTP_TIMEOUT),
        ],
    );
    Instance { pod, m }
}

fn status(i: &Instance) -> Value {
    let r = i.m.get("/v1/status");
    assert_eq!(r.status, 200, "{} /v1/status: {}", i.pod, r.body);
    r.json()
}

fn leads(i: &Instance) -> bool {
    status(i)["manager"]["leader"] == true
}

/// The Lease as the fake stores it.
fn lease(node: &FakeNode) -> Value {
    node.kube
        .lease(LEASE)
        .unwrap_or_else(|| panic!("no Lease {LEASE} in the fake"))
}

fn holder(lease: &Value) -> &str {
    lease["spec"]["holderIdentity"].as_str().unwrap_or_default()
}

fn transitions(lease: &Value) -> i64 {
    lease["spec"]["leaseTransitions"]
        .as_i64()
        .unwrap_or_else(|| panic!("no leaseTransitions in {lease}"))
}

/// Waits until `i` leads, and checks what it says about it.
fn wait_leading(i: &Instance, limit: Duration) {
    let v = wait_for(&format!("{} to lead", i.pod), limit, || {
        let v = status(i);
        (v["manager"]["leader"] == true).then_some(v)
    });
    assert_eq!(v["manager"]["leaseHolder"], i.pod, "{v}");
    assert_eq!(v["manager"]["podName"], i.pod, "{v}");
}

/// Waits until `i` has looked at the Lease and found `leader` holding it.
fn wait_following(i: &Instance, leader: &str, limit: Duration) {
    let v = wait_for(
        &format!("{} to see {leader} holding the Lease", i.pod),
        limit,
        || {
            let v = status(i);
            // Seen mid-run after the read; the run's record comes at its end.
            (v["manager"]["leaseHolder"] == leader && v["lastLease"]["outcome"] == "ok")
                .then_some(v)
        },
    );
    assert_eq!(v["manager"]["leader"], false, "{v}");
    assert_eq!(v["manager"]["podName"], i.pod, "{v}");
    let detail = format!("follower: {leader} holds Lease {LEASE}");
    assert_eq!(v["lastLease"]["detail"], detail, "{v}");
}

/// Starts wm-a, waits until it leads, then starts wm-b and waits until it
/// follows; the Lease names wm-a.
fn a_leads_b_follows(node: &FakeNode, report_interval: &str) -> (Instance, Instance) {
    let a = start(node, "wm-a", report_interval);
    wait_leading(&a, Duration::from_secs(15));
    let b = start(node, "wm-b", report_interval);
    wait_following(&b, "wm-a", Duration::from_secs(15));
    assert!(leads(&a), "wm-a still leads once wm-b follows");
    assert_eq!(holder(&lease(node)), "wm-a");
    (a, b)
}

/// The Lease requests among `requests`, one line each, for failure messages.
fn lease_calls(requests: &[LoggedRequest]) -> String {
    requests
        .iter()
        .filter(|r| r.path == LEASE_PATH || r.path.ends_with("/leases"))
        .map(|r| {
            let h = r
                .json()
                .map(|v| v["spec"]["holderIdentity"].to_string())
                .unwrap_or_default();
            format!("{} {} -> {:?} {h}", r.method, r.path, r.status)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn two_instances_one_leader() {
    let node = FakeNode::new();
    node.want(&[("web", "1.0.0")]);
    // Started together: both race for the Lease.
    let both = [start(&node, "wm-a", "1h"), start(&node, "wm-b", "1h")];
    let (leader, follower) = wait_for(
        "exactly one leader, and the other following it",
        Duration::from_secs(20),
        || {
            let v = [status(&both[0]), status(&both[1])];
            let leading: Vec<usize> = (0..2)
                .filter(|&n| v[n]["manager"]["leader"] == true)
                .collect();
            let [l] = leading[..] else { return None };
            let f = 1 - l;
            (v[f]["manager"]["leader"] == false
                && v[f]["manager"]["leaseHolder"] == both[l].pod
                && v[l]["manager"]["leaseHolder"] == both[l].pod)
                .then_some((&both[l], &both[f]))
        },
    );
    assert_ne!(leader.pod, follower.pod);
    let l = lease(&node);
    assert_eq!(holder(&l), leader.pod, "{l}");
    assert_eq!(transitions(&l), 0, "nobody held it before: {l}");
    assert_eq!(l["spec"]["leaseDurationSeconds"], LEASE_SECONDS, "{l}");

    wait_for("web created", Duration::from_secs(20), || {
        node.kube.deployment("web").map(|_| ())
    });
    // Two more syncs of the leader, both started after the Deployment
    // existed, while the follower is asked to sync too.
    for _ in 0..2 {
        let n = leader.m.job_runs("sync");
        assert_eq!(
            leader.m.post("/v1/sync", "application/json", "").status,
            202
        );
        assert_eq!(
            follower.m.post("/v1/sync", "application/json", "").status,
            202
        );
        wait_for("a sync of the leader", Duration::from_secs(20), || {
            (leader.m.job_runs("sync") > n).then_some(())
        });
    }
    let lv = status(leader);
    assert_eq!(lv["lastSync"]["outcome"], "ok", "{lv}");
    assert_eq!(lv["manager"]["leader"], true, "{lv}");

    let creates: Vec<_> = node
        .kube
        .log()
        .into_iter()
        .filter(|r| r.method == "POST" && r.path == DEPLOYMENTS)
        .collect();
    assert_eq!(creates.len(), 1, "{creates:#?}");
    assert_eq!(creates[0].status, Some(201), "{creates:#?}");

    let fv = status(follower);
    assert_eq!(fv["manager"]["leader"], false, "{fv}");
    assert_eq!(fv["manager"]["leaseHolder"], leader.pod, "{fv}");
    assert_eq!(fv["lastSync"]["outcome"], "never", "{fv}");
    assert_eq!(fv["lastReport"]["outcome"], "never", "{fv}");
    assert_eq!(follower.m.job_runs("sync"), 0);
    assert_eq!(follower.m.metric("wm_leader"), Some(0.0));
    assert_eq!(leader.m.metric("wm_leader"), Some(1.0));
    assert!(
        follower.m.log().iter().all(|l| !l.contains("leading:")),
        "the follower never led: {:#?}",
        follower.m.log()
    );
    assert!(leader.m.log().iter().any(|l| l.contains("leading:")));

    // Every instance serves the API.
    for i in [leader, follower] {
        assert_eq!(i.m.get("/healthz").status, 200, "{} /healthz", i.pod);
        let r = i.m.heartbeat("web");
        assert_eq!(r.status, 204, "{} heartbeat: {}", i.pod, r.body);
        let v = status(i);
        let web = v["workloads"]
            .as_array()
            .unwrap()
            .iter()
            .find(|w| w["name"] == "web")
            .cloned()
            .unwrap_or_else(|| panic!("{}: no workload web in {v}", i.pod));
        assert_eq!(web["health"], "healthy", "{}: {web}", i.pod);
    }
    assert_eq!(holder(&lease(&node)), leader.pod);
}

#[test]
fn sigterm_hands_over_at_once() {
    let node = FakeNode::new();
    node.want(&[("web", "1.0.0")]);
    let (mut a, b) = a_leads_b_follows(&node, "1h");
    let before = lease(&node);

    a.m.signal(libc::SIGTERM);
    let exit = a.m.wait_exit(Duration::from_secs(15));
    let exited = Instant::now();
    let mark = node.kube.mark();
    assert!(exit.success(), "wm-a exits cleanly on SIGTERM: {exit}");
    assert!(
        a.m.log()
            .iter()
            .any(|l| l.contains(&format!("released Lease {LEASE}"))),
        "{:#?}",
        a.m.log()
    );
    // The release: a successful PUT naming no holder.
    let released = node.kube.log().into_iter().any(|r| {
        r.method == "PUT"
            && r.path == LEASE_PATH
            && r.status == Some(200)
            && r.json().is_some_and(|v| v["spec"]["holderIdentity"] == "")
    });
    assert!(released, "{}", lease_calls(&node.kube.log()));

    // PERIOD (5 s) and slack for a busy machine, still short of the
    // 13 s an expiry would take: the follower looks again within a period
    // and takes a released Lease at once.
    let limit = Duration::from_secs(9);
    while !leads(&b) {
        assert!(
            exited.elapsed() < limit,
            "wm-b does not lead {limit:?} after wm-a released the Lease; \
             Lease now {}; wm-b's Lease calls since:\n{}\nwm-b's status: {}",
            lease(&node),
            lease_calls(&node.kube.requests_since(mark)),
            status(&b)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_leading(&b, Duration::from_secs(1));
    let after = lease(&node);
    assert_eq!(holder(&after), "wm-b", "{after}");
    assert_eq!(
        after["spec"]["leaseDurationSeconds"], LEASE_SECONDS,
        "{after}"
    );
    assert_eq!(
        transitions(&after),
        transitions(&before) + 1,
        "a new holder is one transition (as client-go counts): {before} -> {after}"
    );
    assert_ne!(
        after["spec"]["acquireTime"], before["spec"]["acquireTime"],
        "a new holder, a new acquire time"
    );
    // The leader-only jobs start on the new leader.
    wait_for("a sync of wm-b", Duration::from_secs(20), || {
        (status(&b)["lastSync"]["outcome"] == "ok").then_some(())
    });
    assert_eq!(b.m.metric("wm_leader"), Some(1.0));
}

#[test]
fn sigkill_hands_over_after_the_lease_expires() {
    let node = FakeNode::new();
    node.want(&[("web", "1.0.0")]);
    let (mut a, b) = a_leads_b_follows(&node, "1h");
    let before = lease(&node);

    a.m.signal(libc::SIGKILL);
    a.m.wait_exit(Duration::from_secs(5));
    let killed = Instant::now();
    let mark = node.kube.mark();

    // The record stayed unchanged for less than the lease duration (13 s)
    // on wm-b's clock: no takeover yet.
    let mut polls = 0;
    while killed.elapsed() < Duration::from_secs(8) {
        let v = status(&b);
        assert_eq!(
            v["manager"]["leader"],
            false,
            "wm-b leads {:?} after the kill: {v}",
            killed.elapsed()
        );
        assert_eq!(holder(&lease(&node)), "wm-a");
        polls += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(polls > 10, "wm-b was watched while it must not lead");

    let limit = Duration::from_secs(30);
    while !leads(&b) {
        assert!(
            killed.elapsed() < limit,
            "wm-b does not lead {limit:?} after wm-a was killed; \
             Lease now {}; wm-b's Lease calls since:\n{}",
            lease(&node),
            lease_calls(&node.kube.requests_since(mark))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    wait_leading(&b, Duration::from_secs(1));
    let after = lease(&node);
    assert_eq!(holder(&after), "wm-b", "{after}");
    assert_eq!(
        transitions(&after),
        transitions(&before) + 1,
        "taken from a holder: one transition: {before} -> {after}"
    );
    assert!(b
        .m
        .log()
        .iter()
        .any(|l| l.contains("leading: this instance (wm-b)")));
    assert_eq!(b.m.metric("wm_leader"), Some(1.0));
}

#[test]
fn only_the_leader_reports() {
    let node = FakeNode::new();
    node.want(&[("web", "1.0.0")]);
    let a_from = unix_ms();
    let a = start(&node, "wm-a", "2s");
    wait_leading(&a, Duration::from_secs(15));
    let a_until = unix_ms();
    let b = start(&node, "wm-b", "2s");
    wait_following(&b, "wm-a", Duration::from_secs(15));

    // About 10 s of reports at one every 2 s, both instances running.
    let first = node.backend.delivery_log().len();
    wait_for(
        "five more report deliveries",
        Duration::from_secs(30),
        || {
            let log = node.backend.delivery_log();
            (log.len() >= first + 5 && log.iter().filter(|d| !d.ids.is_empty()).count() >= 5)
                .then_some(())
        },
    );
    let deliveries = node.backend.delivery_log();
    let ids: Vec<&String> = deliveries.iter().flat_map(|d| &d.ids).collect();
    assert!(ids.len() >= 5, "{deliveries:#?}");
    assert!(
        deliveries.iter().all(|d| d.status == Some(202)),
        "{deliveries:#?}"
    );
    // `<address>-<start ms>.<random>-<seq>`: one run, that of wm-a.
    let boots: std::collections::BTreeSet<u64> = ids
        .iter()
        .map(|id| {
            let mut parts = id.rsplitn(3, '-');
            let _seq = parts.next();
            parts
                .next()
                .and_then(|run| run.split_once('.')?.0.parse().ok())
                .unwrap_or_else(|| {
                    panic!("report id {id:?} is not <address>-<start ms>.<random>-<seq>")
                })
        })
        .collect();
    assert_eq!(
        boots.len(),
        1,
        "reports from more than one process: {ids:#?}"
    );
    let boot = *boots.first().unwrap();
    assert!(
        (a_from..=a_until).contains(&boot),
        "the reports' boot {boot} is not wm-a's (started within {a_from}..={a_until}): {ids:#?}"
    );
    let reports = node.backend.reports();
    assert!(reports.len() >= 5, "{reports:#?}");
    assert!(reports.iter().all(|r| ids.contains(&&r.id)));

    let av = status(&a);
    assert_eq!(av["manager"]["leader"], true, "{av}");
    assert_eq!(av["lastReport"]["outcome"], "ok", "{av}");
    let bv = status(&b);
    assert_eq!(bv["manager"]["leader"], false, "{bv}");
    assert_eq!(bv["lastReport"]["outcome"], "never", "{bv}");
    assert_eq!(bv["outbox"]["queued"], 0, "{bv}");
}
