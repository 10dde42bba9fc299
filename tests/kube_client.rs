//! The Kubernetes client, used as a library against the fake API server:
//! TLS by IP, token rotation, the calls the reconcile makes, and the rule
//! that it never takes over a Deployment it does not own.

use std::time::{Duration, Instant};

use serde_json::json;
use wm_testkit::kube::{FakeKube, Fault, FaultKind};
use workload_manager::config::KubeConfig;
use workload_manager::kube::{Kube, KubeError};
use workload_manager::reconcile::prepare;

fn client(kube: &FakeKube) -> Kube {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = KubeConfig {
        api_url: kube.url(),
        token_file: Some(kube.token_file()),
        ca_file: kube.ca_file(),
    };
    Kube::new(
        &config,
        kube.namespace(),
        Duration::from_secs(5),
        Duration::from_secs(5),
    )
}

fn manifest(name: &str, image: &str, version: &str) -> serde_json::Value {
    let m = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": name, "image": image}]}}
        }
    });
    prepare(name, version, "edge", &m).unwrap()
}

#[test]
fn creates_applies_lists_and_deletes_only_its_own() {
    let kube = FakeKube::builder().namespace("edge").start();
    let mut k = client(&kube);
    let now = Instant::now();
    // Someone else's Deployment, with a name we might want.
    kube.put_deployment_raw("kubectl", json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "db", "namespace": "edge"},
        "spec": {"selector": {"matchLabels": {"app": "db"}},
                 "template": {"metadata": {"labels": {"app": "db"}}, "spec": {"containers": [{"name": "db", "image": "postgres:17"}]}}}
    }));
    let created = k
        .create(&manifest("web", "nginx:1.27", "1.4.0"), now)
        .unwrap();
    assert_eq!(created.metadata.generation, 1);
    assert_eq!(
        created
            .metadata
            .annotations
            .version
            .as_deref()
            .unwrap_or_default(),
        "1.4.0"
    );
    let listed: Vec<String> = k
        .list_managed(now)
        .unwrap()
        .into_iter()
        .map(|d| d.metadata.name)
        .collect();
    assert_eq!(listed, ["web"], "only ours are listed");
    // Creating over someone else's name fails instead of taking it over.
    let err = k
        .create(&manifest("db", "postgres:18", "1"), now)
        .unwrap_err();
    assert!(
        matches!(err, KubeError::Api { code: 409, ref reason, .. } if reason == "AlreadyExists"),
        "{err}"
    );
    assert_eq!(
        kube.deployment("db").unwrap()["spec"]["template"]["spec"]["containers"][0]["image"],
        "postgres:17"
    );
    // A new version is applied.
    let applied = k
        .apply("web", &manifest("web", "nginx:1.28", "1.5.0"), now)
        .unwrap();
    assert_eq!(applied.metadata.generation, 2);
    assert_eq!(
        k.get("web", now)
            .unwrap()
            .unwrap()
            .metadata
            .annotations
            .version
            .as_deref()
            .unwrap_or_default(),
        "1.5.0"
    );
    assert_eq!(k.get("nope", now).unwrap(), None);
    // Deleting is done, also when already gone.
    k.delete("web", now).unwrap();
    kube.settle();
    k.delete("web", now).unwrap();
    assert!(k.list_managed(now).unwrap().is_empty());
    assert!(kube.deployment("db").is_some());
}

#[test]
fn a_rotated_token_is_read_again_after_a_401() {
    let kube = FakeKube::builder().namespace("edge").start();
    let mut k = client(&kube);
    let now = Instant::now();
    k.list_managed(now).unwrap();
    kube.rotate_token();
    let mark = kube.mark();
    k.list_managed(now).expect("the retry uses the new token");
    let statuses: Vec<Option<u16>> = kube.requests_since(mark).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(401), Some(200)]);
}

#[test]
fn the_fence_is_checked_once_the_request_is_built() {
    use std::cell::Cell;
    use std::rc::Rc;
    use workload_manager::outbound::Fence;
    let kube = Rc::new(FakeKube::builder().namespace("edge").start());
    // The fence's first check rotates the token: a request built before the
    // check carries the token read before it, and gets a 401.
    let checked = Rc::new(Cell::new(0u32));
    let (k2, c2) = (kube.clone(), checked.clone());
    let fence = Fence::new(move || {
        if c2.get() == 0 {
            k2.rotate_token();
        }
        c2.set(c2.get() + 1);
        Duration::ZERO
    });
    fence.set(Some(Duration::from_secs(60)));
    let mut k = client(&kube).with_fence(fence);
    let mark = kube.mark();
    k.list_managed(Instant::now())
        .expect("the retry reads the new token");
    let statuses: Vec<Option<u16>> = kube.requests_since(mark).iter().map(|r| r.status).collect();
    assert_eq!(statuses, [Some(401), Some(200)]);
    assert_eq!(checked.get(), 2, "each attempt is checked");
}

#[test]
fn retry_after_and_errors_are_reported() {
    let kube = FakeKube::builder().namespace("edge").start();
    let mut k = client(&kube);
    let now = Instant::now();
    kube.inject(Fault::new(FaultKind::TooManyRequestsText {
        retry_after: Some(7),
    }));
    let err = k.list_managed(now).unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)), "{err}");
    kube.set_reachable(false);
    assert!(matches!(
        k.list_managed(now),
        Err(KubeError::Unreachable(_))
    ));
    kube.set_reachable(true);
    k.list_managed(now).unwrap();
}
