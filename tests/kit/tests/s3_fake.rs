//! The fake S3: objects and S3's headers, every error body, SigV4 header and
//! presigned verification (through rust-s3 + ureq, as the product will read
//! its version object), faults, reachability, HTTPS, framing and the log.

mod s3_support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use s3_support::{agent, bucket, error_shape, get, presign_get, send, Reply};
use wm_testkit::s3::{Auth, FakeS3, Fault, FaultKind};

const AK: &str = "AKIDWMTEST";
const SECRET: &str = "wm/test+secret";

fn url(s3: &FakeS3, bucket: &str, key: &str) -> String {
    format!("{}/{bucket}/{key}", s3.url())
}

/// The exact S3 error body for `reply`, given the elements after Message.
fn assert_error(reply: &Reply, status: u16, code: &str, message: &str, extra: &[(&str, &str)]) {
    let rid = reply.header("x-amz-request-id").expect("x-amz-request-id");
    let hid = reply.header("x-amz-id-2").expect("x-amz-id-2");
    let extra: String = extra
        .iter()
        .map(|(k, v)| format!("<{k}>{v}</{k}>"))
        .collect();
    let want = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>{extra}<RequestId>{rid}</RequestId><HostId>{hid}</HostId></Error>"
    );
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (status, want.as_str()),
        "{reply:?}"
    );
    assert_eq!(reply.header("content-type"), Some("application/xml"));
}

/// Sends raw bytes and reads until the server closes.
fn raw(s3: &FakeS3, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", s3.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn anonymous_get_and_head_return_the_object_with_s3_headers() {
    let s3 = FakeS3::start();
    s3.put_object("releases", "wm/stable/latest", "v0.4.0\n");
    let a = agent(None);

    let r = get(&a, &url(&s3, "releases", "wm/stable/latest"));
    assert_eq!((r.status, r.text.as_str()), (200, "v0.4.0\n"));
    let md5: String = Md5::digest(b"v0.4.0\n")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(r.header("etag"), Some(format!("\"{md5}\"").as_str()));
    assert_eq!(r.header("content-length"), Some("7"));
    assert_eq!(r.header("content-type"), Some("binary/octet-stream"));
    let lm = r.header("last-modified").unwrap();
    assert!(lm.ends_with(" GMT") && lm.len() == 29, "{lm}");
    assert_eq!(r.header("x-amz-request-id").unwrap().len(), 16);
    assert_eq!(r.header("server"), Some("AmazonS3"));

    let h = send(&a, "HEAD", &url(&s3, "releases", "wm/stable/latest")).unwrap();
    assert_eq!((h.status, h.text.as_str()), (200, ""));
    assert_eq!(h.header("content-length"), Some("7"));
    assert_eq!(h.header("etag"), r.header("etag"));

    s3.put_object_with_type(
        "releases",
        "v.json",
        r#"{"version":"0.4.0"}"#,
        "application/json",
    );
    let r = get(&a, &url(&s3, "releases", "v.json"));
    assert_eq!(r.text, r#"{"version":"0.4.0"}"#);
    assert_eq!(r.header("content-type"), Some("application/json"));

    // rust-s3 with anonymous credentials names the same object URL.
    let b = bucket(&s3.url(), s3.region(), "releases", None);
    assert_eq!(
        format!("{}/v.json", b.url()),
        url(&s3, "releases", "v.json")
    );
}

#[test]
fn missing_key_and_bucket_have_the_real_error_bodies() {
    let s3 = FakeS3::start();
    s3.create_bucket("empty");
    let a = agent(None);
    let r = get(&a, &url(&s3, "empty", "wm/stable/latest"));
    assert_error(
        &r,
        404,
        "NoSuchKey",
        "The specified key does not exist.",
        &[("Key", "wm/stable/latest")],
    );
    let r = get(&a, &url(&s3, "nope", "latest"));
    assert_error(
        &r,
        404,
        "NoSuchBucket",
        "The specified bucket does not exist",
        &[("BucketName", "nope")],
    );
    // HEAD errors carry the status and headers only.
    let h = send(&a, "HEAD", &url(&s3, "empty", "latest")).unwrap();
    assert_eq!((h.status, h.text.as_str()), (404, ""));

    s3.put_object("empty", "latest", "0.1.0");
    assert_eq!(get(&a, &url(&s3, "empty", "latest")).status, 200);
    assert!(s3.delete_object("empty", "latest"));
    assert!(!s3.delete_object("empty", "latest"));
    assert_eq!(get(&a, &url(&s3, "empty", "latest")).status, 404);
}

#[test]
fn presigned_get_through_rust_s3_and_ureq_reads_the_version() {
    let s3 = FakeS3::builder().credentials(AK, SECRET).start();
    s3.put_object("releases", "wm/latest.json", r#"{"version":"0.4.0"}"#);
    let b = bucket(&s3.url(), s3.region(), "releases", Some((AK, SECRET)));
    let mark = s3.mark();
    let r = get(&agent(None), &presign_get(&b, "wm/latest.json", 300));
    assert_eq!((r.status, r.text.as_str()), (200, r#"{"version":"0.4.0"}"#));
    let log = s3.requests_since(mark);
    assert_eq!(log.len(), 1);
    assert_eq!(
        log[0].auth,
        Auth::Presigned {
            access_key: AK.into()
        }
    );
    assert_eq!(
        (log[0].bucket.as_str(), log[0].key.as_str()),
        ("releases", "wm/latest.json")
    );
    assert_eq!(log[0].query_param("X-Amz-Expires").as_deref(), Some("300"));

    // A missing key through the same path is NoSuchKey, not an auth error.
    let r = get(&agent(None), &presign_get(&b, "wm/missing", 300));
    assert_eq!(error_shape(&r.text).1, "NoSuchKey");
}

#[test]
fn header_signed_requests_from_rust_s3_are_verified() {
    let s3 = FakeS3::builder().credentials(AK, SECRET).start();
    s3.put_object("releases", "latest", "0.4.0");
    let b = bucket(&s3.url(), s3.region(), "releases", Some((AK, SECRET)));
    let resp = b.get_object("latest").expect("rust-s3 GET");
    assert_eq!((resp.status_code(), resp.as_str().unwrap()), (200, "0.4.0"));
    let last = s3.log().pop().unwrap();
    assert_eq!(
        last.auth,
        Auth::Header {
            access_key: AK.into()
        }
    );
    assert!(last
        .header("authorization")
        .unwrap()
        .starts_with("AWS4-HMAC-SHA256 Credential="));

    let wrong = bucket(
        &s3.url(),
        s3.region(),
        "releases",
        Some((AK, "not-the-secret")),
    );
    let resp = wrong.get_object("latest").expect("rust-s3 GET");
    let text = resp.as_str().unwrap();
    assert_eq!(resp.status_code(), 403);
    assert_eq!(error_shape(text).1, "SignatureDoesNotMatch");
    for el in [
        "AWSAccessKeyId",
        "StringToSign",
        "SignatureProvided",
        "StringToSignBytes",
        "CanonicalRequest",
        "CanonicalRequestBytes",
    ] {
        assert!(text.contains(&format!("<{el}>")), "{el} missing: {text}");
    }
    assert!(
        text.contains("<CanonicalRequest>GET\n/releases/latest\n\n"),
        "{text}"
    );

    // 20 minutes of clock difference: too skewed for a signed header.
    s3.advance_clock(Duration::from_secs(20 * 60));
    let resp = b.get_object("latest").expect("rust-s3 GET");
    let text = resp.as_str().unwrap();
    assert_eq!(resp.status_code(), 403);
    assert_eq!(error_shape(text).1, "RequestTimeTooSkewed");
    assert!(text.contains("<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>"));
}

#[test]
fn wrong_key_bad_signature_expiry_and_unsigned_answer_403() {
    let s3 = FakeS3::builder().credentials(AK, SECRET).start();
    s3.put_object("releases", "latest", "0.4.0");
    let a = agent(None);

    let other = bucket(
        &s3.url(),
        s3.region(),
        "releases",
        Some(("AKIDOTHER", SECRET)),
    );
    let r = get(&a, &presign_get(&other, "latest", 60));
    assert_error(
        &r,
        403,
        "InvalidAccessKeyId",
        "The AWS Access Key Id you provided does not exist in our records.",
        &[("AWSAccessKeyId", "AKIDOTHER")],
    );

    let b = bucket(&s3.url(), s3.region(), "releases", Some((AK, SECRET)));
    let good = presign_get(&b, "latest", 60);
    let tampered =
        format!("{}0", &good[..good.len() - 1]).replace("X-Amz-Signature=", "X-Amz-Signature=0");
    let r = get(&a, &tampered);
    assert_eq!(
        (r.status, error_shape(&r.text).1.as_str()),
        (403, "SignatureDoesNotMatch")
    );
    assert!(r.text.contains("<CanonicalRequest>GET\n/releases/latest\nX-Amz-Algorithm=AWS4-HMAC-SHA256&amp;X-Amz-Credential="), "{}", r.text);
    // Changing what was signed (the key) breaks the signature too.
    let r = get(&a, &good.replace("/latest?", "/latesT?"));
    assert_eq!(error_shape(&r.text).1, "SignatureDoesNotMatch");

    let r = get(&a, &url(&s3, "releases", "latest"));
    assert_error(&r, 403, "AccessDenied", "Access Denied", &[]);

    assert_eq!(get(&a, &good).status, 200);
    s3.advance_clock(Duration::from_secs(120));
    let r = get(&a, &good);
    assert_eq!(
        (
            r.status,
            error_shape(&r.text).1.as_str(),
            error_shape(&r.text).2.as_str()
        ),
        (403, "AccessDenied", "Request has expired")
    );
    let expires = s3_support::element(&r.text, "Expires").unwrap();
    let server_time = s3_support::element(&r.text, "ServerTime").unwrap();
    assert!(
        expires.ends_with('Z') && server_time > expires,
        "{}",
        r.text
    );
    assert!(r.text.contains(
        "<Message>Request has expired</Message><X-Amz-Expires>60</X-Amz-Expires><Expires>"
    ));

    let eu = bucket(&s3.url(), "eu-west-1", "releases", Some((AK, SECRET)));
    let r = get(&a, &presign_get(&eu, "latest", 60));
    assert_error(
        &r,
        400,
        "AuthorizationQueryParametersError",
        "Error parsing the X-Amz-Credential parameter; the region &apos;eu-west-1&apos; is wrong; expecting &apos;us-east-1&apos;",
        &[("Region", "us-east-1")],
    );

    let r = get(
        &a,
        &format!(
            "{}?X-Amz-Algorithm=AWS4-HMAC-SHA256",
            url(&s3, "releases", "latest")
        ),
    );
    assert_eq!(
        (r.status, error_shape(&r.text).1.as_str()),
        (400, "AuthorizationQueryParametersError")
    );
}

#[test]
fn anonymous_fake_refuses_signed_requests_as_unknown_keys() {
    let s3 = FakeS3::start();
    s3.put_object("releases", "latest", "0.4.0");
    let b = bucket(&s3.url(), s3.region(), "releases", Some((AK, SECRET)));
    let r = get(&agent(None), &presign_get(&b, "latest", 60));
    assert_eq!(
        (r.status, error_shape(&r.text).1.as_str()),
        (403, "InvalidAccessKeyId")
    );
    let log = s3.log();
    assert_eq!(log[0].auth.access_key(), Some(AK));
    assert_eq!(log[0].error_code.as_deref(), Some("InvalidAccessKeyId"));
}

#[test]
fn injected_errors_have_s3_bodies_and_run_out() {
    let s3 = FakeS3::start();
    s3.put_object("releases", "latest", "0.4.0");
    let a = agent(None);
    let u = url(&s3, "releases", "latest");

    s3.inject(Fault::new(FaultKind::InternalError));
    assert_error(
        &get(&a, &u),
        500,
        "InternalError",
        "We encountered an internal error. Please try again.",
        &[],
    );
    s3.inject(Fault::new(FaultKind::SlowDown).times(2));
    assert_error(
        &get(&a, &u),
        503,
        "SlowDown",
        "Please reduce your request rate.",
        &[],
    );
    assert_eq!(get(&a, &u).status, 503);
    s3.inject(Fault::new(FaultKind::AccessDenied));
    assert_error(&get(&a, &u), 403, "AccessDenied", "Access Denied", &[]);
    s3.inject(Fault::new(FaultKind::Error {
        status: 400,
        code: "ExpiredToken".into(),
        message: "The provided token has expired.".into(),
    }));
    assert_error(
        &get(&a, &u),
        400,
        "ExpiredToken",
        "The provided token has expired.",
        &[],
    );
    assert_eq!(get(&a, &u).status, 200);

    // Filters: only HEAD, only another path.
    s3.inject(Fault::new(FaultKind::InternalError).method("HEAD"));
    s3.inject(Fault::new(FaultKind::SlowDown).path_prefix("/other/"));
    assert_eq!(get(&a, &u).status, 200);
    assert_eq!(send(&a, "HEAD", &u).unwrap().status, 500);
    assert_eq!(get(&a, &url(&s3, "other", "x")).status, 503);
    s3.inject(Fault::new(FaultKind::SlowDown).times(5));
    s3.clear_faults();
    assert_eq!(get(&a, &u).status, 200);
}

#[test]
fn hang_delays_and_reset_cuts_the_connection() {
    let s3 = FakeS3::start();
    s3.put_object("releases", "latest", "0.4.0");
    let a = agent(None);
    let u = url(&s3, "releases", "latest");

    s3.inject(Fault::new(FaultKind::Hang(Duration::from_millis(400))));
    let t = Instant::now();
    assert_eq!(get(&a, &u).status, 200);
    assert!(t.elapsed() >= Duration::from_millis(400));

    s3.inject(Fault::new(FaultKind::Reset));
    assert!(send(&a, "GET", &u).is_err());
    assert_eq!(s3.log().last().unwrap().status, None);
    assert_eq!(get(&a, &u).status, 200);
}

#[test]
fn unreachable_refuses_then_serves_again_on_the_same_port() {
    let s3 = FakeS3::start();
    s3.put_object("releases", "latest", "0.4.0");
    let u = url(&s3, "releases", "latest");
    s3.set_reachable(false);
    let e = TcpStream::connect(("127.0.0.1", s3.port())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    assert!(send(&agent(None), "GET", &u).is_err());
    s3.set_reachable(true);
    assert_eq!(get(&agent(None), &u).text, "0.4.0");
}

#[test]
fn request_log_records_requests_since_a_mark() {
    let s3 = FakeS3::start();
    s3.put_object("releases", "a b/ü", "0.4.0");
    let a = agent(None);
    get(&a, &url(&s3, "releases", "x"));
    let mark = s3.mark();
    let r = get(&a, &url(&s3, "releases", "a%20b/%C3%BC?versionId=null"));
    assert_eq!(r.status, 200);
    let r2 = get(&a, &url(&s3, "releases", "missing"));
    let log = s3.requests_since(mark);
    assert_eq!(log.len(), 2);
    assert_eq!(s3.log().len(), 3);
    let l = &log[0];
    assert_eq!(
        (l.method.as_str(), l.path.as_str(), l.query.as_str()),
        ("GET", "/releases/a%20b/%C3%BC", "versionId=null")
    );
    assert_eq!((l.bucket.as_str(), l.key.as_str()), ("releases", "a b/ü"));
    assert_eq!(
        (l.auth.clone(), l.status, l.error_code.clone()),
        (Auth::Unsigned, Some(200), None)
    );
    assert!(!l.auth.is_signed());
    assert_eq!(Some(l.request_id.as_str()), r.header("x-amz-request-id"));
    assert!(l.header("Host").unwrap().starts_with("127.0.0.1:"));
    assert_eq!(
        (log[1].status, log[1].error_code.as_deref()),
        (Some(404), Some("NoSuchKey"))
    );
    assert_eq!(
        Some(log[1].request_id.as_str()),
        r2.header("x-amz-request-id")
    );
}

#[test]
fn https_mode_serves_with_a_per_run_ca() {
    let s3 = FakeS3::builder().https().credentials(AK, SECRET).start();
    assert!(s3.url().starts_with("https://127.0.0.1:"));
    s3.put_object("releases", "latest", "0.4.0");
    let ca = s3.ca_file().unwrap();
    let b = bucket(&s3.url(), s3.region(), "releases", Some((AK, SECRET)));
    let url = presign_get(&b, "latest", 60);
    assert_eq!(get(&agent(Some(&ca)), &url).text, "0.4.0");
    // Without the CA the server is not trusted.
    assert!(send(&agent(None), "GET", &url).is_err());
    drop(s3);
    assert!(!ca.exists());
}

#[test]
fn bad_framing_and_unsupported_operations_answer_without_breaking_the_fake() {
    let s3 = FakeS3::start();
    s3.put_object("releases", "latest", "0.4.0");
    let out = raw(&s3, b"NOT HTTP\r\n\r\n");
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    assert!(out.contains("<Code>BadRequest</Code>"), "{out}");
    let out = raw(
        &s3,
        b"GET /releases/latest HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert!(
        out.starts_with("HTTP/1.1 501 Not Implemented\r\n")
            && out.contains("<Header>Transfer-Encoding</Header>"),
        "{out}"
    );
    let out = raw(
        &s3,
        b"GET /releases/%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(out.contains("<Code>InvalidURI</Code>"), "{out}");
    let out = raw(
        &s3,
        b"GET /releases/%ff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(out.contains("<Code>InvalidURI</Code>"), "{out}");

    let a = agent(None);
    // (ureq sends an empty PUT chunked; this one has a length.)
    let out = raw(
        &s3,
        b"PUT /releases/latest HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert!(
        out.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{out}"
    );
    assert!(
        out.contains("<Code>MethodNotAllowed</Code><Message>The specified method is not allowed against this resource.</Message><Method>PUT</Method><ResourceType>OBJECT</ResourceType>"),
        "{out}"
    );
    assert_eq!(
        send(&a, "GET", &format!("{}/releases", s3.url()))
            .unwrap()
            .status,
        501
    );
    assert_eq!(
        send(&a, "GET", &format!("{}/", s3.url())).unwrap().status,
        501
    );
    let r = send(&a, "GET", &url(&s3, "releases", "latest")).unwrap();
    let r2 = {
        let mut c = ureq::http::Request::builder()
            .method("GET")
            .uri(url(&s3, "releases", "latest"));
        c = c.header("Authorization", "AWS AKID:c2ln");
        a.run(c.body(()).unwrap())
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    };
    assert_eq!(r.text, "0.4.0");
    assert!(
        r2.contains(
            "<Code>InvalidArgument</Code><Message>Unsupported Authorization Type</Message>"
        ),
        "{r2}"
    );
}
