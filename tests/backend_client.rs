//! The backend client, used as a library against the fake backend: the calls
//! the reconcile needs (manifests, version reports) and their errors.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use wm_testkit::backend::{sample_manifest, FakeBackend};
use wm_testkit::proc::TEST_KEY;
use workload_manager::backend::{Backend, BackendError, ManifestCache};
use workload_manager::identity::NodeIdentity;

fn client(fake: &FakeBackend) -> Backend {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Backend::new(
        &fake.url(),
        NodeIdentity::from_hex(TEST_KEY).unwrap(),
        Duration::from_secs(5),
    )
}

#[test]
fn manifests_are_fetched_once_per_version() {
    let fake = FakeBackend::start();
    fake.put_manifest("web", "1.4.0", sample_manifest("web", "nginx:1.27"));
    fake.put_manifest("web", "1.5.0", sample_manifest("web", "nginx:1.28"));
    let backend = client(&fake);
    let mut cache = ManifestCache::default();
    let now = SystemTime::now();
    let mark = fake.mark();
    let first = cache.fetch(&backend, "web", "1.4.0", now).unwrap();
    assert_eq!(first, sample_manifest("web", "nginx:1.27"));
    cache.fetch(&backend, "web", "1.4.0", now).unwrap();
    assert_eq!(
        fake.requests_since(mark).len(),
        1,
        "the second read came from the cache"
    );
    cache.fetch(&backend, "web", "1.5.0", now).unwrap();
    assert_eq!(cache.len(), 2);
    cache.retain(&BTreeMap::from([("web".to_string(), "1.5.0".to_string())]));
    assert_eq!(cache.len(), 1, "versions no longer desired are forgotten");
    let err = cache.fetch(&backend, "web", "9.9.9", now).unwrap_err();
    assert!(
        matches!(err, BackendError::Status { code: 404, .. }),
        "{err}"
    );
    assert!(fake.log().iter().all(|r| r.verified));
}

#[test]
fn applied_versions_are_reported() {
    let fake = FakeBackend::start();
    let backend = client(&fake);
    backend
        .put_version("web", "1.4.0", "2026-11-28T12:00:00Z", SystemTime::now())
        .unwrap();
    let applied = fake.applied_versions();
    assert_eq!(applied.len(), 1);
    assert_eq!(
        (applied[0].workload.as_str(), applied[0].version.as_str()),
        ("web", "1.4.0")
    );
    assert_eq!(applied[0].applied_at, "2026-11-28T12:00:00Z");
    assert_eq!(applied[0].node, backend.address().to_lowercase());
}

#[test]
fn a_wrong_clock_is_refused_with_a_clear_error() {
    let fake = FakeBackend::start();
    fake.clock_offset(3600);
    let backend = client(&fake);
    let err = backend
        .fetch_workloads(None, SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Status { code: 401, .. }),
        "{err}"
    );
}
