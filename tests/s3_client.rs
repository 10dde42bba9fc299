//! The self-update file's S3 client, used as a library: signed and
//! anonymous reads, S3's errors, the size cap, HTTPS trusting only the
//! configured roots, and the real S3 protocol against moto (CI starts it:
//! `eval "$(bash .ci/moto.sh start)"`; elsewhere the kit starts its own,
//! `wm_testkit::provision`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ureq::tls::{Certificate, RootCerts, TlsConfig};
use wm_testkit::s3::FakeS3;
use workload_manager::config::{Secret, UpdateConfig};
use workload_manager::s3::{S3Error, S3};

const KEY: &str = "workload-manager/latest";

fn config(endpoint: &str, region: &str, bucket: &str, creds: Option<(&str, &str)>) -> UpdateConfig {
    UpdateConfig {
        bucket: bucket.to_string(),
        key: KEY.to_string(),
        region: region.to_string(),
        endpoint: Some(endpoint.to_string()),
        credentials: creds.map(|(k, s)| (k.to_string(), Secret::new(s.to_string()))),
    }
}

fn client(c: &UpdateConfig) -> S3 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    S3::new(c, Duration::from_secs(5)).expect("a client")
}

#[test]
fn signed_and_anonymous_reads_and_s3_errors() {
    let signed = FakeS3::builder().credentials("AKIDTEST", "secret").start();
    signed.create_bucket("releases");
    signed.put_object("releases", KEY, "0.4.0\n");
    let c = config(
        &signed.url(),
        signed.region(),
        "releases",
        Some(("AKIDTEST", "secret")),
    );
    assert_eq!(client(&c).fetch(), Ok(b"0.4.0\n".to_vec()));
    assert_eq!(client(&c).name(), "s3://releases/workload-manager/latest");

    let wrong = config(
        &signed.url(),
        signed.region(),
        "releases",
        Some(("AKIDTEST", "nope")),
    );
    match client(&wrong).fetch() {
        Err(S3Error::Answer {
            status: 403, code, ..
        }) => {
            assert_eq!(code, "SignatureDoesNotMatch")
        }
        other => panic!("expected a 403, got {other:?}"),
    }
    let unsigned = config(&signed.url(), signed.region(), "releases", None);
    assert!(matches!(
        client(&unsigned).fetch(),
        Err(S3Error::Answer { status: 403, .. })
    ));

    let open = FakeS3::start();
    open.create_bucket("releases");
    open.put_object("releases", KEY, r#"{"version":"0.4.0"}"#);
    let c = config(&open.url(), open.region(), "releases", None);
    assert_eq!(client(&c).fetch(), Ok(br#"{"version":"0.4.0"}"#.to_vec()));
    let missing = config(&open.url(), open.region(), "nope", None);
    let e = client(&missing).fetch().unwrap_err();
    assert!(
        e.to_string().starts_with("S3 answered 404 NoSuchBucket"),
        "{e}"
    );

    open.put_object("releases", KEY, vec![b'1'; 5000]);
    let e = client(&c).fetch().unwrap_err();
    assert!(e.to_string().contains("larger than 4096 bytes"), "{e}");

    open.set_reachable(false);
    assert!(matches!(client(&c).fetch(), Err(S3Error::Unreachable(_))));
}

#[test]
fn https_trusts_only_the_configured_roots() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let s3 = FakeS3::builder()
        .credentials("AKIDTEST", "secret")
        .https()
        .start();
    s3.create_bucket("releases");
    s3.put_object("releases", KEY, "0.4.0");
    assert!(s3.url().starts_with("https://"));
    let c = config(
        &s3.url(),
        s3.region(),
        "releases",
        Some(("AKIDTEST", "secret")),
    );
    let pem = std::fs::read(s3.ca_file().expect("a CA")).unwrap();
    let ca = Certificate::from_pem(&pem).unwrap().to_owned();
    let tls = TlsConfig::builder()
        .root_certs(RootCerts::new_with_certs(&[ca]))
        .build();
    let trusting = S3::with_tls(&c, Duration::from_secs(5), tls).unwrap();
    assert_eq!(trusting.fetch(), Ok(b"0.4.0".to_vec()));
    // The compiled-in public roots do not know the test CA.
    match client(&c).fetch() {
        Err(S3Error::Unreachable(m)) => assert!(!m.contains("secret"), "{m}"),
        other => panic!("expected a TLS failure, got {other:?}"),
    }
}

#[test]
fn moto_serves_the_version_file_to_the_product_client() {
    let Some(endpoint) = wm_testkit::s3::moto_endpoint() else {
        return;
    };
    use s3::creds::Credentials;
    use s3::region::Region;
    use s3::{Bucket, BucketConfiguration};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("wm-client-{}-{nanos}", std::process::id());
    let region = Region::Custom {
        region: "eu-west-1".into(),
        endpoint: endpoint.clone(),
    };
    let creds = Credentials::new(Some("testing"), Some("testing"), None, None, None).unwrap();
    let created =
        Bucket::create_with_path_style(&name, region, creds, BucketConfiguration::default())
            .expect("create the bucket");
    assert!(created.success(), "CreateBucket: {}", created.response_code);
    let c = config(&endpoint, "eu-west-1", &name, Some(("testing", "testing")));
    let e = client(&c).fetch().unwrap_err();
    assert!(
        e.to_string().starts_with("S3 answered 404 NoSuchKey"),
        "{e}"
    );
    // Upload through rust-s3's own (plain HTTP) client.
    let put = created
        .bucket
        .put_object(KEY, b"v0.5.0\n")
        .expect("PutObject");
    assert_eq!(put.status_code(), 200);
    let body = client(&c).fetch().expect("the object");
    assert_eq!(body, b"v0.5.0\n");
    assert_eq!(
        workload_manager::update::parse_file(&body).map(|v| v.to_string()),
        Ok("0.5.0".to_string())
    );
}
