//! Errors reported to Sentry, through the real binary against the fake
//! Sentry (which checks the auth header and the envelope format as Relay
//! does): which errors become events, repeats held back, Sentry's rate
//! limits kept, and nothing secret in any byte sent.

use std::time::Duration;

use serde_json::Value;
use wm_testkit::backend::{Fault, FaultKind};
use wm_testkit::node::{FakeNode, TEST_ADDRESS};
use wm_testkit::proc::{wait_for, Manager, TEST_KEY};
use wm_testkit::s3::FakeS3;
use wm_testkit::sentry::FakeSentry;

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");
const LIMIT: Duration = Duration::from_secs(30);

fn start(node: &FakeNode, sentry: &FakeSentry, env: &[(&str, &str)]) -> Manager {
    let dsn = sentry.dsn();
    let mut all = vec![
        ("SENTRY_DSN", dsn.as_str()),
        ("WM_SYNC_INTERVAL", "1s"),
        ("WM_REPORT_INTERVAL", "1h"),
    ];
    all.extend_from_slice(env);
    node.start(BIN, &all)
}

/// The events about `job`'s failures, in arrival order.
fn job_events(sentry: &FakeSentry, job: &str) -> Vec<Value> {
    sentry
        .events()
        .into_iter()
        .filter(|e| e["tags"]["job"] == job)
        .collect()
}

#[test]
fn a_failing_sync_is_one_event_until_it_recovers_and_fails_again() {
    let node = FakeNode::new();
    node.want(&[("web", "1")]);
    let sentry = FakeSentry::start();
    node.backend.set_reachable(false);
    let m = start(&node, &sentry, &[]);
    let first = wait_for("the sync failure's event", LIMIT, || {
        job_events(&sentry, "sync").into_iter().next()
    });
    assert_eq!(first["level"], "error", "{first}");
    assert!(
        first["message"]["formatted"]
            .as_str()
            .unwrap_or_default()
            .starts_with("sync failed: "),
        "{first}"
    );
    assert_eq!(first["server_name"], TEST_ADDRESS, "{first}");
    assert_eq!(first["tags"]["namespace"], "edge", "{first}");
    assert!(first["release"]
        .as_str()
        .unwrap_or_default()
        .starts_with("workload-manager@"));
    assert_eq!(first["fingerprint"][0], "workload-manager");
    assert_eq!(first["fingerprint"][1], "sync");
    // The same failure again and again (retried with backoff): held back.
    let failed = m.job_runs("sync");
    wait_for("two more failed syncs", LIMIT, || {
        (m.job_runs("sync") >= failed + 2).then_some(())
    });
    assert_eq!(
        job_events(&sentry, "sync").len(),
        1,
        "repeats within the hour"
    );
    let held = m.metric("wm_sentry_events_total{outcome=\"held_back\"}");
    assert!(held >= Some(1.0), "{held:?}");
    // Recovery ends the repetition: the next failure is sent at once.
    node.backend.set_reachable(true);
    wait_for("a good sync", LIMIT, || {
        (m.status()["lastSync"]["outcome"] == "ok").then_some(())
    });
    node.backend.set_reachable(false);
    wait_for("the new failure's event", LIMIT, || {
        (job_events(&sentry, "sync").len() == 2).then_some(())
    });
    assert_eq!(
        m.metric("wm_sentry_events_total{outcome=\"delivered\"}"),
        Some(2.0)
    );
    // Every envelope passed the fake's checks of auth and format.
    assert!(
        sentry.log().iter().all(|r| r.status == Some(200)),
        "{:?}",
        sentry.log()
    );
}

#[test]
fn sentrys_rate_limits_are_kept() {
    let node = FakeNode::new();
    node.want(&[("web", "1")]);
    let sentry = FakeSentry::start();
    // The first acceptance announces a limit of 2 s on errors.
    sentry.rate_limit_header_on_success(2, "error");
    // Two distinct failures: the sync's and the report's (backend down).
    node.backend.set_reachable(false);
    let m = start(&node, &sentry, &[("WM_REPORT_INTERVAL", "1s")]);
    wait_for("the first event", LIMIT, || {
        sentry.events().into_iter().next()
    });
    // Then a 429 for 4 s from now: the second try falls inside it.
    sentry.rate_limit(4, "error");
    wait_for("the second event", LIMIT, || {
        (sentry.events().len() >= 2).then_some(())
    });
    let log = sentry.log();
    let first = log.iter().find(|r| r.status == Some(200)).unwrap();
    let next = log
        .iter()
        .find(|r| r.received_at_ms > first.received_at_ms)
        .unwrap();
    assert!(
        next.received_at_ms - first.received_at_ms >= 2000,
        "the announced pause was kept: {log:?}"
    );
    let limited: Vec<_> = log.iter().filter(|r| r.in_rate_limit).collect();
    assert_eq!(
        limited.len(),
        1,
        "one try met the 429, the next waited it out: {log:?}"
    );
    assert_eq!(limited[0].status, Some(429));
    drop(m);
}

#[test]
fn no_secret_is_in_any_byte_sent_to_sentry() {
    let node = FakeNode::new();
    node.want(&[("web", "1")]);
    let (key_id, secret) = (
        "AKIASECRETKEYID12345",
        "s3-secret-access-key-value-0123456789",
    );
    let s3 = FakeS3::builder().credentials(key_id, secret).start();
    s3.create_bucket("releases");
    // The update check fails (no such object) and the backend refuses: two
    // failures whose texts carry URLs and answers.
    node.backend.inject(Fault::new(FaultKind::InternalError));
    let sentry = FakeSentry::start();
    let (endpoint, region) = (s3.url(), s3.region().to_string());
    let m = start(
        &node,
        &sentry,
        &[
            ("WM_UPDATE_S3_BUCKET", "releases"),
            ("WM_UPDATE_S3_ENDPOINT", endpoint.as_str()),
            ("WM_UPDATE_S3_REGION", region.as_str()),
            ("WM_UPDATE_INTERVAL", "1s"),
            ("AWS_ACCESS_KEY_ID", key_id),
            ("AWS_SECRET_ACCESS_KEY", secret),
        ],
    );
    wait_for("events of both failures", LIMIT, || {
        (!job_events(&sentry, "sync").is_empty() && !job_events(&sentry, "update-check").is_empty())
            .then_some(())
    });
    let token = node.kube.token();
    let dsn = sentry.dsn();
    let key_lower = TEST_KEY.trim_start_matches("0x").to_ascii_lowercase();
    for r in sentry.log() {
        let text = r.all_text().to_ascii_lowercase();
        for (what, secret) in [
            ("node key", key_lower.as_str()),
            ("Kubernetes token", &token.to_ascii_lowercase()),
            ("S3 secret", &secret.to_ascii_lowercase()),
            ("S3 key id", &key_id.to_ascii_lowercase()),
            ("DSN", &dsn.to_ascii_lowercase()),
            ("presigned signature", "x-amz-signature"),
        ] {
            assert!(
                !text.contains(secret),
                "the {what} was sent to Sentry: {text}"
            );
        }
        // The public key goes in the auth header, and nowhere else.
        let body = String::from_utf8_lossy(&r.body);
        assert!(!body.contains(sentry.public_key()), "{body}");
    }
    drop(m);
}

#[test]
fn a_dsn_that_does_not_parse_stops_the_start() {
    let out = std::process::Command::new(BIN)
        .env_clear()
        .env("NODE_SYSTEM_ENDPOINT", "http://127.0.0.1:9")
        .env("NODE_PRIVATE_KEY", TEST_KEY)
        .env("WM_KUBE_API_URL", "http://127.0.0.1:9")
        .env("SENTRY_DSN", "https://sentry.example/42")
        .output()
        .expect("the binary runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SENTRY_DSN: not a Sentry DSN: no public key"),
        "{err}"
    );
    assert!(
        !err.contains("sentry.example/42"),
        "the DSN is not repeated: {err}"
    );
}
