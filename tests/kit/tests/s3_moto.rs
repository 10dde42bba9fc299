//! The product's S3 read path against moto, a real S3 emulator
//! (`eval "$(bash .ci/moto.sh start)"` sets WM_TEST_S3_ENDPOINT; without it
//! the kit starts a moto_server of its own from moto.sh's venv,
//! `wm_testkit::provision`), and the fake S3's error bodies compared with
//! moto's for the same request: this is what keeps the fake honest. Skipped
//! (with a message) where no moto can be had, except under CI=true, where
//! that is a failure.

mod s3_support;

use std::time::{SystemTime, UNIX_EPOCH};

use s3::creds::Credentials;
use s3::region::Region;
use s3::{Bucket, BucketConfiguration};
use s3_support::{agent, bucket, element, error_shape, get, presign_get, send, Reply};
use wm_testkit::s3::{moto_endpoint, FakeS3};

/// moto accepts any credentials; these are its documented test values.
const CREDS: (&str, &str) = ("testing", "testing");
/// Not us-east-1: rust-s3's CreateBucket sends a LocationConstraint, which
/// S3 (and moto) refuse for us-east-1 with `InvalidLocationConstraint`.
const REGION: &str = "eu-west-1";

/// Uploads `body` through a presigned PUT (rust-s3 signs, ureq sends).
fn put(b: &Bucket, key: &str, body: &[u8]) {
    let url = b.presign_put(key, 300, None, None).expect("presign_put");
    let resp = agent(None)
        .put(&url)
        .send(body)
        .unwrap_or_else(|e| panic!("PUT {url}: {e}"));
    assert_eq!(resp.status().as_u16(), 200, "PUT {key}");
}

/// The parts of a 404 both must agree on.
fn comparable(
    r: &Reply,
) -> (
    u16,
    Option<String>,
    (String, String, String),
    Option<String>,
) {
    (
        r.status,
        r.header("content-type").map(str::to_string),
        error_shape(&r.text),
        element(&r.text, "Key").map(str::to_string),
    )
}

#[test]
fn moto_serves_the_version_object_and_the_fake_errs_like_it() {
    let Some(endpoint) = moto_endpoint() else {
        return;
    };
    // moto keeps its state for as long as it runs: a fresh bucket per run.
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("wm-releases-{}-{nanos}", std::process::id());

    let region = Region::Custom {
        region: REGION.into(),
        endpoint: endpoint.clone(),
    };
    let creds = Credentials::new(Some(CREDS.0), Some(CREDS.1), None, None, None).unwrap();
    let created =
        Bucket::create_with_path_style(&name, region, creds, BucketConfiguration::default())
            .expect("create the bucket");
    assert!(
        created.success(),
        "CreateBucket: {} {}",
        created.response_code,
        created.response_text
    );

    let moto = bucket(&endpoint, REGION, &name, Some(CREDS));
    put(&moto, "wm/stable/latest", b"0.4.0");
    put(&moto, "wm/stable/latest.json", br#"{"version":"0.4.0"}"#);

    let fake = FakeS3::builder()
        .credentials(CREDS.0, CREDS.1)
        .region(REGION)
        .start();
    fake.put_object(&name, "wm/stable/latest", "0.4.0");
    fake.put_object(&name, "wm/stable/latest.json", r#"{"version":"0.4.0"}"#);
    let faked = bucket(&fake.url(), REGION, &name, Some(CREDS));

    let a = agent(None);
    for (key, body) in [
        ("wm/stable/latest", "0.4.0"),
        ("wm/stable/latest.json", r#"{"version":"0.4.0"}"#),
    ] {
        let m = get(&a, &presign_get(&moto, key, 300));
        let f = get(&a, &presign_get(&faked, key, 300));
        assert_eq!((m.status, m.text.as_str()), (200, body), "moto GET {key}");
        assert_eq!((f.status, f.text.as_str()), (200, body), "fake GET {key}");
        for h in ["etag", "content-length"] {
            assert_eq!(m.header(h), f.header(h), "{h} of {key}");
        }
        assert!(m
            .header("last-modified")
            .is_some_and(|v| v.ends_with(" GMT")));
    }

    // The point: a missing key answers the same error from both.
    let m = get(&a, &presign_get(&moto, "wm/stable/missing", 300));
    let f = get(&a, &presign_get(&faked, "wm/stable/missing", 300));
    eprintln!("moto's NoSuchKey:\n{}\nthe fake's:\n{}", m.text, f.text);
    assert_eq!(m.status, 404, "{}", m.text);
    assert_eq!(comparable(&m), comparable(&f));
    assert_eq!(
        error_shape(&f.text),
        (
            "Error".into(),
            "NoSuchKey".into(),
            "The specified key does not exist.".into()
        )
    );

    // And a missing bucket.
    let gone = format!("{name}-absent");
    let mb = bucket(&endpoint, REGION, &gone, Some(CREDS));
    let fb = bucket(&fake.url(), REGION, &gone, Some(CREDS));
    let m = get(&a, &presign_get(&mb, "latest", 300));
    let f = get(&a, &presign_get(&fb, "latest", 300));
    assert_eq!(comparable(&m), comparable(&f));
    assert_eq!(
        element(&m.text, "BucketName"),
        element(&f.text, "BucketName")
    );

    // HEAD of a missing key, unsigned (moto checks no signature, so the
    // comparison is with an anonymous fake): status only, no body.
    let anon = FakeS3::start();
    anon.create_bucket(&name);
    let m = send(&a, "HEAD", &format!("{}/wm/stable/missing", moto.url())).unwrap();
    let url = format!("{}/{name}/wm/stable/missing", anon.url());
    let f = send(&a, "HEAD", &url).unwrap();
    assert_eq!((m.status, m.text.as_str()), (404, ""));
    assert_eq!((f.status, f.text.as_str()), (404, ""));
}
