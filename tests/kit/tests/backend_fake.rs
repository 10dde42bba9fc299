//! The fake Node System backend: every endpoint of the contract, its
//! authentication (checked with a small signer written here, independent of
//! both the product and the fake, and against a published web3.js vector),
//! error shapes, faults, reachability, framing, and the logs.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k256::ecdsa::SigningKey;
use serde_json::{json, Value};
use sha2::Sha256;
use sha3::{Digest, Keccak256};
use wm_testkit::backend::{
    eip55, recover_personal_sign, sample_manifest, AppliedVersion, FakeBackend, Fault, FaultKind,
    SignatureError,
};

/// The key and address of the web3.js `accounts.sign` documentation example.
const WEB3_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
const WEB3_ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";
const WEB3_SIGNATURE: &str = "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a0291c";

/// secp256k1's group order n, big-endian.
const ORDER: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe,
    0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48, 0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41,
];

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn wall_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Waits until just after a second boundary, so that a timestamp taken now
/// is still the fake's second when the request lands.
fn fresh_second() {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    if nanos > 500_000_000 {
        std::thread::sleep(Duration::from_nanos(
            u64::from(1_000_000_000 - nanos) + 5_000_000,
        ));
    }
}

/// A node key and what it signs, written from the spec alone.
struct Signer {
    key: SigningKey,
    address: String,
}

impl Signer {
    fn from_hex(key: &str) -> Signer {
        let key = SigningKey::from_slice(&unhex(key)).unwrap();
        let point = key.verifying_key().to_encoded_point(false);
        let hash = Keccak256::digest(&point.as_bytes()[1..]);
        let lower = hex(&hash[12..]);
        let check = Keccak256::digest(lower.as_bytes());
        let spelled: String = lower
            .chars()
            .enumerate()
            .map(|(i, c)| {
                let nibble = if i % 2 == 0 {
                    check[i / 2] >> 4
                } else {
                    check[i / 2] & 15
                };
                if nibble >= 8 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        Signer {
            key,
            address: format!("0x{spelled}"),
        }
    }

    /// A distinct test node.
    fn node(n: u8) -> Signer {
        Signer::from_hex(&hex(&[n; 32]))
    }

    /// `personal_sign(message)`: `0x` + r‖s‖v, v = 27/28.
    fn personal_sign(&self, message: &[u8]) -> String {
        let mut prefixed = format!("\x19Ethereum Signed Message:\n{}", message.len()).into_bytes();
        prefixed.extend_from_slice(message);
        let digest = Keccak256::digest(&prefixed);
        let (sig, rid) = self.key.sign_prehash_recoverable(&digest).unwrap();
        format!("0x{}{:02x}", hex(&sig.to_bytes()), 27 + rid.to_byte())
    }

    /// The three auth headers for this request, at `ts`.
    fn headers(&self, method: &str, target: &str, body: &[u8], ts: i64) -> Vec<(String, String)> {
        let message = format!("{method}\n{target}\n{ts}\n{}", hex(&Sha256::digest(body)));
        vec![
            ("X-Node-Address".into(), self.address.clone()),
            ("X-Node-Timestamp".into(), ts.to_string()),
            (
                "X-Node-Signature".into(),
                self.personal_sign(message.as_bytes()),
            ),
        ]
    }
}

/// One answer: status, headers (names lower-cased), body as text.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    text: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }

    /// Asserts a JSON error answer with this status and code; its message.
    fn error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.header("content-type"),
            Some("application/json"),
            "{self:?}"
        );
        let v = self.json();
        assert_eq!(v["error"], code, "{self:?}");
        v["message"]
            .as_str()
            .unwrap_or_else(|| panic!("no message: {self:?}"))
            .to_string()
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent()
}

/// Sends `method` to the fake's `url()` + `rel` with these headers and body.
fn send_raw(
    backend: &FakeBackend,
    method: &str,
    rel: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> Result<Reply, ureq::Error> {
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{}{rel}", backend.url()));
    for (k, v) in headers {
        req = req.header(k, v);
    }
    if !body.is_empty() {
        req = req.header("Content-Type", "application/json");
    }
    let mut resp = agent().run(req.body(body.to_vec()).unwrap())?;
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string()?;
    Ok(Reply {
        status,
        headers,
        text,
    })
}

/// A request signed by `node` at the fake's current time.
fn call(
    backend: &FakeBackend,
    node: &Signer,
    method: &str,
    rel: &str,
    body: &[u8],
    extra: &[(&str, &str)],
) -> Reply {
    let target = format!("{}{rel}", backend.base_path());
    let mut headers = node.headers(method, &target, body, backend.now());
    headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    send_raw(backend, method, rel, &headers, body).unwrap_or_else(|e| panic!("{method} {rel}: {e}"))
}

fn get(backend: &FakeBackend, node: &Signer, rel: &str) -> Reply {
    call(backend, node, "GET", rel, b"", &[])
}

fn workloads_path(node: &Signer) -> String {
    format!("/v1/nodes/{}/workloads", node.address)
}

fn health_path(node: &Signer) -> String {
    format!("/v1/nodes/{}/health", node.address)
}

fn post_health(backend: &FakeBackend, node: &Signer, body: &Value) -> Reply {
    let body = body.to_string();
    call(
        backend,
        node,
        "POST",
        &health_path(node),
        body.as_bytes(),
        &[],
    )
}

/// A REPORT with the contract's shape.
fn report(id: &str) -> Value {
    json!({
        "id": id,
        "at": "2026-11-28T12:00:00Z",
        "windowSeconds": 60,
        "manager": {"version": "0.3.1", "uptimeSeconds": 3600},
        "workloads": [
            {"name": "web", "desiredVersion": "1.4.0", "deployedVersion": "1.4.0",
             "health": "healthy", "message": "ok", "lastHeartbeatAt": "2026-11-28T11:59:55Z",
             "healthySeconds": 60, "rollout": "complete"},
            {"name": "db", "desiredVersion": null, "deployedVersion": null,
             "health": "unknown", "message": null, "lastHeartbeatAt": null,
             "healthySeconds": 0, "rollout": null}
        ]
    })
}

/// Sends raw bytes and reads until the server closes (or 10 s pass).
fn raw(backend: &FakeBackend, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", backend.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let _ = s.shutdown(Shutdown::Write);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The malleable twin of a low-s signature `r‖s‖v`: `r‖(n - s)‖v'`, which
/// plain ECDSA accepts for the same key and message.
fn high_s_twin(sig: &[u8]) -> Vec<u8> {
    let mut high = sig.to_vec();
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(ORDER[i]) - i16::from(sig[32 + i]) - borrow;
        high[32 + i] = d.rem_euclid(256) as u8;
        borrow = i16::from(d < 0);
    }
    high[64] = if sig[64] == 27 { 28 } else { 27 };
    high
}

#[test]
fn published_web3_vector_recovers_to_its_address() {
    // web3.js: web3.eth.accounts.sign('Some data', '0x4c08…2318').
    assert_eq!(
        recover_personal_sign(b"Some data", WEB3_SIGNATURE).as_deref(),
        Ok(WEB3_ADDRESS)
    );
    // The test signer agrees with web3.js (RFC 6979 makes it deterministic).
    let signer = Signer::from_hex(WEB3_KEY);
    assert_eq!(signer.address, WEB3_ADDRESS);
    assert_eq!(signer.personal_sign(b"Some data"), WEB3_SIGNATURE);
    assert_eq!(
        eip55(&WEB3_ADDRESS.to_ascii_lowercase()).as_deref(),
        Some(WEB3_ADDRESS)
    );
    // Another message recovers to another address, not an error.
    let other = recover_personal_sign(b"Some datA", WEB3_SIGNATURE).unwrap();
    assert_ne!(other, WEB3_ADDRESS);
}

#[test]
fn malleable_and_odd_v_signatures_are_refused() {
    let sig = unhex(&WEB3_SIGNATURE[2..]);
    // The high-s twin (n - s, v flipped) is valid ECDSA for the same key.
    let high = high_s_twin(&sig);
    assert_eq!(
        recover_personal_sign(b"Some data", &format!("0x{}", hex(&high))),
        Err(SignatureError::HighS)
    );
    for v in [0u8, 1, 29, 35] {
        let mut odd = sig.clone();
        odd[64] = v;
        assert_eq!(
            recover_personal_sign(b"Some data", &format!("0x{}", hex(&odd))),
            Err(SignatureError::BadV(v))
        );
    }
    // Upper-case hex is still hex.
    assert_eq!(
        recover_personal_sign(
            b"Some data",
            &format!("0x{}", &WEB3_SIGNATURE[2..].to_uppercase())
        )
        .as_deref(),
        Ok(WEB3_ADDRESS)
    );
}

#[test]
fn desired_workloads_carry_an_etag_and_answer_304_when_unchanged() {
    let backend = FakeBackend::start();
    let node = Signer::node(1);
    assert!(backend.url().ends_with("/api"), "{}", backend.url());

    // A node nobody configured has an empty list.
    let r = get(&backend, &node, &workloads_path(&node));
    assert_eq!((r.status, r.json()), (200, json!({"workloads": []})));
    let empty_etag = r.header("etag").unwrap().to_string();

    backend.set_workloads(&node.address, &[("web", "1.4.0"), ("db", "16.2")]);
    let r = get(&backend, &node, &workloads_path(&node));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.json(),
        json!({"workloads": [{"name": "web", "version": "1.4.0"}, {"name": "db", "version": "16.2"}]})
    );
    let etag = r.header("etag").unwrap().to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_ne!(etag, empty_etag);
    assert_eq!(etag, backend.etag(&node.address));

    let r = call(
        &backend,
        &node,
        "GET",
        &workloads_path(&node),
        b"",
        &[("If-None-Match", &etag)],
    );
    assert_eq!((r.status, r.text.as_str()), (304, ""));
    assert_eq!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(r.header("content-length"), None);

    // A stale ETag gets the whole list; a new list gets a new ETag.
    let r = call(
        &backend,
        &node,
        "GET",
        &workloads_path(&node),
        b"",
        &[("If-None-Match", &empty_etag)],
    );
    assert_eq!(r.status, 200);
    backend.set_workloads(&node.address.to_ascii_lowercase(), &[("web", "1.5.0")]);
    let r = call(
        &backend,
        &node,
        "GET",
        &workloads_path(&node),
        b"",
        &[("If-None-Match", &etag)],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["workloads"][0]["version"], "1.5.0");
    assert_ne!(r.header("etag"), Some(etag.as_str()));
    assert_eq!(
        backend.workloads(&node.address),
        vec![("web".to_string(), "1.5.0".to_string())]
    );

    // Setting the same list again still changes the ETag.
    let before = backend.etag(&node.address);
    backend.set_workloads(&node.address, &[("web", "1.5.0")]);
    assert_ne!(backend.etag(&node.address), before);

    // An empty list is a list.
    backend.set_workloads(&node.address, &[]);
    let r = get(&backend, &node, &workloads_path(&node));
    assert_eq!((r.status, r.json()), (200, json!({"workloads": []})));
}

#[test]
fn the_path_node_must_be_the_signer_but_case_does_not_matter() {
    let backend = FakeBackend::start();
    let (a, b) = (Signer::node(1), Signer::node(2));
    backend.set_workloads(&a.address, &[("web", "1.4.0")]);

    let lower = format!("/v1/nodes/{}/workloads", a.address.to_ascii_lowercase());
    assert_eq!(get(&backend, &a, &lower).status, 200);
    let upper = format!(
        "/v1/nodes/0x{}/workloads",
        a.address[2..].to_ascii_uppercase()
    );
    assert_eq!(get(&backend, &a, &upper).status, 200);

    let msg = get(&backend, &b, &workloads_path(&a)).error(403, "forbidden");
    assert!(msg.contains(&a.address), "{msg}");
    let body = json!({"version": "1.4.0", "appliedAt": "2026-11-28T12:00:00Z"}).to_string();
    let r = call(
        &backend,
        &b,
        "PUT",
        &format!("/v1/nodes/{}/workloads/web/version", a.address),
        body.as_bytes(),
        &[],
    );
    r.error(403, "forbidden");
    post_health(&backend, &b, &json!({"reports": [report("x")]}));
    let r = call(
        &backend,
        &b,
        "POST",
        &health_path(&a),
        json!({"reports": [report("y")]}).to_string().as_bytes(),
        &[],
    );
    r.error(403, "forbidden");
    assert_eq!(backend.reports().len(), 1);
    assert!(backend.applied_versions().is_empty());
}

#[test]
fn manifests_are_served_and_unknown_ones_are_404() {
    let backend = FakeBackend::start();
    let node = Signer::node(1);
    let manifest = sample_manifest("web", "registry.example/web:1.4.0");
    assert_eq!(manifest["apiVersion"], "apps/v1");
    assert_eq!(manifest["kind"], "Deployment");
    assert_eq!(
        manifest["spec"]["selector"]["matchLabels"],
        manifest["spec"]["template"]["metadata"]["labels"]
    );
    backend.put_manifest("web", "1.4.0", manifest.clone());
    backend.put_manifest("web", "1.5.0+build.7", sample_manifest("web", "web:1.5.0"));

    let r = get(&backend, &node, "/v1/workloads/web/versions/1.4.0/manifest");
    assert_eq!((r.status, r.json()), (200, manifest));
    assert_eq!(r.header("content-type"), Some("application/json"));
    // A `+` in a version arrives percent-encoded.
    let r = get(
        &backend,
        &node,
        "/v1/workloads/web/versions/1.5.0%2Bbuild.7/manifest",
    );
    assert_eq!(r.status, 200, "{r:?}");

    let msg =
        get(&backend, &node, "/v1/workloads/web/versions/9.9.9/manifest").error(404, "not_found");
    assert!(msg.contains("9.9.9"), "{msg}");
    get(
        &backend,
        &node,
        "/v1/workloads/nope/versions/1.4.0/manifest",
    )
    .error(404, "not_found");
    get(&backend, &node, "/v1/nowhere").error(404, "not_found");
    call(
        &backend,
        &node,
        "DELETE",
        "/v1/workloads/web/versions/1.4.0/manifest",
        b"",
        &[],
    )
    .error(405, "method_not_allowed");
}

#[test]
fn applied_versions_are_recorded_and_bad_bodies_refused() {
    let backend = FakeBackend::start();
    let node = Signer::node(3);
    let path = format!("/v1/nodes/{}/workloads/web/version", node.address);
    let body =
        json!({"version": "1.4.0", "appliedAt": "2026-11-28T12:00:00.250+01:00"}).to_string();
    let r = call(&backend, &node, "PUT", &path, body.as_bytes(), &[]);
    assert_eq!((r.status, r.text.as_str()), (204, ""));
    assert!(backend.wait_for_applied(1, Duration::from_secs(1)));
    assert_eq!(
        backend.applied_versions(),
        vec![AppliedVersion {
            node: node.address.to_ascii_lowercase(),
            workload: "web".into(),
            version: "1.4.0".into(),
            applied_at: "2026-11-28T12:00:00.250+01:00".into(),
        }]
    );

    for (bad, want) in [
        ("", "not JSON"),
        ("{", "not JSON"),
        ("[]", "object"),
        (r#"{"appliedAt":"2026-11-28T12:00:00Z"}"#, "version"),
        (
            r#"{"version":"","appliedAt":"2026-11-28T12:00:00Z"}"#,
            "version",
        ),
        (
            r#"{"version":140,"appliedAt":"2026-11-28T12:00:00Z"}"#,
            "version",
        ),
        (r#"{"version":"1.4.0"}"#, "appliedAt"),
        (
            r#"{"version":"1.4.0","appliedAt":"yesterday"}"#,
            "appliedAt",
        ),
        (
            r#"{"version":"1.4.0","appliedAt":"2026-02-30T12:00:00Z"}"#,
            "appliedAt",
        ),
    ] {
        let headers = node.headers("PUT", &format!("/api{path}"), bad.as_bytes(), backend.now());
        let mut headers = headers;
        headers.push(("Content-Type".into(), "application/json".into()));
        let r = send_raw(&backend, "PUT", &path, &headers, bad.as_bytes()).unwrap();
        let msg = r.error(400, "bad_request");
        assert!(msg.contains(want), "{bad}: {msg}");
    }
    // A body that is not declared JSON.
    let mut headers = node.headers(
        "PUT",
        &format!("/api{path}"),
        body.as_bytes(),
        backend.now(),
    );
    headers.push(("Content-Type".into(), "text/plain".into()));
    let r = send_raw(&backend, "PUT", &path, &headers, body.as_bytes());
    r.unwrap().error(415, "unsupported_media_type");
    call(&backend, &node, "GET", &path, b"", &[]).error(405, "method_not_allowed");
    assert_eq!(backend.applied_versions().len(), 1);
}

#[test]
fn health_reports_are_counted_once_per_id_in_arrival_order() {
    let backend = FakeBackend::start();
    let node = Signer::node(4);
    let r = post_health(
        &backend,
        &node,
        &json!({"reports": [report("r1"), report("r2")]}),
    );
    assert_eq!((r.status, r.json()), (202, json!({"accepted": 2})));
    assert_eq!(r.header("content-type"), Some("application/json"));
    // A retry of r2 with a new r3: only r3 is new.
    let r = post_health(
        &backend,
        &node,
        &json!({"reports": [report("r2"), report("r3")]}),
    );
    assert_eq!((r.status, r.json()), (202, json!({"accepted": 1})));
    // The same batch again: nothing new, still 202.
    let r = post_health(
        &backend,
        &node,
        &json!({"reports": [report("r2"), report("r3")]}),
    );
    assert_eq!((r.status, r.json()), (202, json!({"accepted": 0})));
    // A duplicate inside one batch counts once.
    let r = post_health(
        &backend,
        &node,
        &json!({"reports": [report("r4"), report("r4")]}),
    );
    assert_eq!((r.status, r.json()), (202, json!({"accepted": 1})));

    assert!(backend.wait_for_reports(4, Duration::from_secs(1)));
    let stored = backend.reports();
    let ids: Vec<&str> = stored.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r1", "r2", "r3", "r4"]);
    assert_eq!(stored[0].report, report("r1"));
    assert!(stored
        .iter()
        .all(|r| r.node == node.address.to_ascii_lowercase()));

    let log = backend.delivery_log();
    let batches: Vec<Vec<&str>> = log
        .iter()
        .map(|d| d.ids.iter().map(String::as_str).collect())
        .collect();
    assert_eq!(
        batches,
        vec![
            vec!["r1", "r2"],
            vec!["r2", "r3"],
            vec!["r2", "r3"],
            vec!["r4", "r4"]
        ]
    );
    assert!(log.iter().all(|d| d.status == Some(202)));
    assert_eq!(
        log.iter().map(|d| d.accepted).collect::<Vec<_>>(),
        [Some(2), Some(1), Some(0), Some(1)]
    );
    assert_eq!(log[0].node, node.address);

    // 100 reports is the most one POST may carry.
    let hundred: Vec<Value> = (0..100).map(|i| report(&format!("b{i}"))).collect();
    let r = post_health(&backend, &node, &json!({ "reports": hundred }));
    assert_eq!((r.status, r.json()), (202, json!({"accepted": 100})));
}

#[test]
fn health_batches_of_a_bad_size_or_shape_are_refused_whole() {
    let backend = FakeBackend::start();
    let node = Signer::node(5);
    let msg = post_health(&backend, &node, &json!({"reports": []})).error(400, "bad_request");
    assert!(msg.contains("1 to 100"), "{msg}");
    let many: Vec<Value> = (0..101).map(|i| report(&format!("m{i}"))).collect();
    let msg = post_health(&backend, &node, &json!({ "reports": many })).error(400, "bad_request");
    assert!(msg.contains("not 101"), "{msg}");
    post_health(&backend, &node, &json!([report("a")])).error(400, "bad_request");
    post_health(&backend, &node, &json!({"reports": report("a")})).error(400, "bad_request");

    type Mutate = fn(&mut Value);
    let cases: Vec<(Mutate, &str)> = vec![
        (|r| r["id"] = json!(7), "reports[1].id must be a string"),
        (|r| r["id"] = json!(""), "reports[1].id must not be empty"),
        (
            |r| {
                r.as_object_mut().unwrap().remove("id");
            },
            "reports[1].id is missing",
        ),
        (|r| r["at"] = json!("noon"), "reports[1].at must be an RFC 3339"),
        (|r| r["at"] = json!(null), "reports[1].at must be an RFC 3339"),
        (|r| r["windowSeconds"] = json!("60"), "reports[1].windowSeconds"),
        (|r| r["windowSeconds"] = json!(-1), "reports[1].windowSeconds"),
        (|r| r["manager"] = json!("0.3.1"), "reports[1].manager must be an object"),
        (|r| r["manager"]["version"] = json!(3), "reports[1].manager.version"),
        (
            |r| {
                r["manager"].as_object_mut().unwrap().remove("uptimeSeconds");
            },
            "reports[1].manager.uptimeSeconds is missing",
        ),
        (|r| r["workloads"] = json!({}), "reports[1].workloads must be an array"),
        (|r| r["workloads"][1] = json!("db"), "reports[1].workloads[1] must be an object"),
        (|r| r["workloads"][0]["name"] = json!(null), "reports[1].workloads[0].name"),
        (
            |r| r["workloads"][0]["desiredVersion"] = json!(1.4),
            "reports[1].workloads[0].desiredVersion must be a string or null",
        ),
        (
            |r| r["workloads"][1]["deployedVersion"] = json!(false),
            "reports[1].workloads[1].deployedVersion",
        ),
        (
            |r| r["workloads"][0]["health"] = json!("fine"),
            "reports[1].workloads[0].health must be one of healthy, degraded, unhealthy, unresponsive, unknown",
        ),
        (
            |r| r["workloads"][1]["health"] = json!(null),
            "reports[1].workloads[1].health must be one of",
        ),
        (|r| r["workloads"][0]["message"] = json!(["ok"]), "reports[1].workloads[0].message"),
        (
            |r| r["workloads"][0]["lastHeartbeatAt"] = json!(12),
            "reports[1].workloads[0].lastHeartbeatAt must be an RFC 3339 date-time or null",
        ),
        (
            |r| r["workloads"][0]["healthySeconds"] = json!(null),
            "reports[1].workloads[0].healthySeconds",
        ),
        (
            |r| r["workloads"][0]["rollout"] = json!("done"),
            "reports[1].workloads[0].rollout must be one of complete, progressing, failed, missing, conflict, invalid or null",
        ),
        (
            |r| {
                r["workloads"][1].as_object_mut().unwrap().remove("rollout");
            },
            "reports[1].workloads[1].rollout is missing",
        ),
    ];
    for (mutate, want) in cases {
        let mut bad = report("bad");
        mutate(&mut bad);
        let body = json!({"reports": [report("good"), bad]});
        let msg = post_health(&backend, &node, &body).error(400, "bad_request");
        assert!(msg.contains(want), "want {want:?} in {msg:?}");
    }
    // Every enum value passes; nothing of the refused batches was stored.
    let healths = [
        "healthy",
        "degraded",
        "unhealthy",
        "unresponsive",
        "unknown",
    ];
    let rollouts = [
        "complete",
        "progressing",
        "failed",
        "missing",
        "conflict",
        "invalid",
    ];
    let mut ok = report("all-values");
    ok["workloads"] = json!(healths
        .iter()
        .zip(rollouts.iter().cycle())
        .map(
            |(h, r)| json!({"name": h, "desiredVersion": "1", "deployedVersion": "1",
            "health": h, "message": "", "lastHeartbeatAt": "2026-11-28T11:59:55+00:00",
            "healthySeconds": 0.5, "rollout": r})
        )
        .collect::<Vec<_>>());
    let r = post_health(&backend, &node, &json!({"reports": [ok]}));
    assert_eq!((r.status, r.json()), (202, json!({"accepted": 1})));
    let r = post_health(&backend, &node, &json!({"reports": [report("good")]}));
    assert_eq!((r.status, r.json()), (202, json!({"accepted": 1})));
}

#[test]
fn bodies_over_the_cap_get_413_and_the_fake_survives() {
    let backend = FakeBackend::start();
    let node = Signer::node(6);
    // ~1.2 MiB of valid reports.
    let pad = "x".repeat(12_000);
    let reports: Vec<Value> = (0..100)
        .map(|i| {
            let mut r = report(&format!("big{i}"));
            r["workloads"][0]["message"] = json!(pad);
            r
        })
        .collect();
    let body = json!({ "reports": reports }).to_string();
    assert!(body.len() > 1024 * 1024);
    let r = call(
        &backend,
        &node,
        "POST",
        &health_path(&node),
        body.as_bytes(),
        &[],
    );
    let msg = r.error(413, "payload_too_large");
    assert!(msg.contains("1048576"), "{msg}");
    assert!(backend.reports().is_empty());
    let log = backend.log();
    assert_eq!(log.last().unwrap().status, Some(413));
    assert_eq!(backend.delivery_log().last().unwrap().status, Some(413));

    // A chunked body past the cap, too; a smaller cap from the builder.
    let small = FakeBackend::builder().max_body(100).start();
    let chunk = "a".repeat(80);
    let out = raw(
        &small,
        format!(
            "POST /api/v1/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n{chunk}\r\n50\r\n{chunk}\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    assert!(out.starts_with("HTTP/1.1 413 "), "{out}");
    assert!(out.contains("\"payload_too_large\""), "{out}");

    let r = post_health(&backend, &node, &json!({"reports": [report("small")]}));
    assert_eq!(r.status, 202);
}

#[test]
fn requests_that_do_not_authenticate_get_401() {
    let backend = FakeBackend::start();
    let node = Signer::node(7);
    let stranger = Signer::node(8);
    backend.set_workloads(&node.address, &[("web", "1.4.0")]);
    let rel = workloads_path(&node);
    let target = format!("/api{rel}");
    let now = backend.now();
    let signed = node.headers("GET", &target, b"", now);
    let set = |name: &str, value: &str| -> Vec<(String, String)> {
        signed
            .iter()
            .map(|(k, v)| {
                let v = if k == name {
                    value.to_string()
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect()
    };
    let without = |name: &str| -> Vec<(String, String)> {
        signed.iter().filter(|(k, _)| k != name).cloned().collect()
    };
    let send =
        |headers: &[(String, String)]| send_raw(&backend, "GET", &rel, headers, b"").unwrap();

    assert_eq!(send(&signed).status, 200);
    // The address header in lower or upper case is the same node.
    assert_eq!(
        send(&set("X-Node-Address", &node.address.to_ascii_lowercase())).status,
        200
    );

    let sig = &signed[2].1;
    let mut raw_v = unhex(&sig[2..]);
    raw_v[64] -= 27;
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (vec![], "X-Node-Address header is missing"),
        (
            without("X-Node-Timestamp"),
            "X-Node-Timestamp header is missing",
        ),
        (
            without("X-Node-Signature"),
            "X-Node-Signature header is missing",
        ),
        (
            set("X-Node-Address", "node-7"),
            "not 0x followed by 40 hex digits",
        ),
        (
            set("X-Node-Address", &node.address.replace("0x", "0X")),
            "not 0x followed by 40 hex digits",
        ),
        (set("X-Node-Timestamp", "soon"), "not Unix seconds"),
        (
            set("X-Node-Timestamp", &format!("{now}.5")),
            "not Unix seconds",
        ),
        (set("X-Node-Signature", "0x1234"), "130 hex digits"),
        (set("X-Node-Signature", &sig[2..]), "130 hex digits"),
        (
            set("X-Node-Signature", &format!("0x{}", hex(&raw_v))),
            "not 27 or 28",
        ),
        (
            set("X-Node-Address", &stranger.address),
            "does not recover to",
        ),
        // Signed for another moment than the one claimed.
        (
            set("X-Node-Timestamp", &(now + 1).to_string()),
            "does not recover to",
        ),
    ];
    for (headers, want) in cases {
        let msg = send(&headers).error(401, "unauthorized");
        assert!(msg.contains(want), "want {want:?} in {msg:?}");
    }
    // A wrong EIP-55 checksum (mixed case, one letter flipped).
    let flipped: String = node
        .address
        .char_indices()
        .map(|(i, c)| {
            let first_letter = node.address[2..]
                .find(|c: char| c.is_ascii_alphabetic())
                .unwrap()
                + 2;
            if i == first_letter {
                if c.is_ascii_uppercase() {
                    c.to_ascii_lowercase()
                } else {
                    c.to_ascii_uppercase()
                }
            } else {
                c
            }
        })
        .collect();
    let msg = send(&set("X-Node-Address", &flipped)).error(401, "unauthorized");
    assert!(msg.contains("EIP-55"), "{msg}");

    // Signed without the base path: the path as sent is what counts.
    let headers = node.headers("GET", &rel, b"", now);
    send(&headers).error(401, "unauthorized");
    // Tampered path: signed for one query, sent with another.
    let headers = node.headers("GET", &format!("{target}?a=1"), b"", now);
    send_raw(&backend, "GET", &format!("{rel}?a=2"), &headers, b"")
        .unwrap()
        .error(401, "unauthorized");
    let r = send_raw(&backend, "GET", &format!("{rel}?a=1"), &headers, b"").unwrap();
    assert_eq!(r.status, 200);
    // Tampered method.
    let path = format!("/v1/nodes/{}/workloads/web/version", node.address);
    let body = json!({"version": "1.4.0", "appliedAt": "2026-11-28T12:00:00Z"}).to_string();
    let mut headers = node.headers("POST", &format!("/api{path}"), body.as_bytes(), now);
    headers.push(("Content-Type".into(), "application/json".into()));
    send_raw(&backend, "PUT", &path, &headers, body.as_bytes())
        .unwrap()
        .error(401, "unauthorized");
    // Tampered body.
    let mut headers = node.headers("PUT", &format!("/api{path}"), body.as_bytes(), now);
    headers.push(("Content-Type".into(), "application/json".into()));
    let tampered = body.replace("1.4.0", "1.4.1");
    send_raw(&backend, "PUT", &path, &headers, tampered.as_bytes())
        .unwrap()
        .error(401, "unauthorized");
    // An empty body signed as if it had one.
    let headers = node.headers("GET", &target, b"{}", now);
    send(&headers).error(401, "unauthorized");
    let r = send_raw(
        &backend,
        "PUT",
        &path,
        &headers_with_json(&headers),
        body.as_bytes(),
    );
    r.unwrap().error(401, "unauthorized");
    assert_eq!(
        send_raw(
            &backend,
            "PUT",
            &path,
            &{
                let mut h = node.headers("PUT", &format!("/api{path}"), body.as_bytes(), now);
                h.push(("Content-Type".into(), "application/json".into()));
                h
            },
            body.as_bytes()
        )
        .unwrap()
        .status,
        204
    );
    // Unauthenticated requests are refused before routing.
    send_raw(&backend, "GET", "/v1/nowhere", &[], b"")
        .unwrap()
        .error(401, "unauthorized");
    assert_eq!(backend.applied_versions().len(), 1);
}

fn headers_with_json(headers: &[(String, String)]) -> Vec<(String, String)> {
    let mut h = headers.to_vec();
    h.push(("Content-Type".into(), "application/json".into()));
    h
}

#[test]
fn timestamps_more_than_300_s_off_the_fake_clock_get_401() {
    let backend = FakeBackend::start();
    let node = Signer::node(9);
    let rel = workloads_path(&node);
    let target = format!("/api{rel}");
    let at = |ts: i64| {
        let headers = node.headers("GET", &target, b"", ts);
        send_raw(&backend, "GET", &rel, &headers, b"").unwrap()
    };
    fresh_second();
    let now = backend.now();
    for skew in [-301, 301, -3600, 86_400] {
        let msg = at(now + skew).error(401, "unauthorized");
        assert!(msg.contains("at most 300 s"), "{skew}: {msg}");
    }
    for skew in [-299, 0, 299] {
        assert_eq!(at(now + skew).status, 200, "{skew}");
    }
    let msg = at(0).error(401, "unauthorized");
    assert!(msg.contains("off the server clock"), "{msg}");

    // Shift the fake's clock: the node's own clock is now stale.
    backend.clock_offset(1000);
    fresh_second();
    let wall = wall_secs();
    assert!((backend.now() - wall - 1000).abs() <= 1);
    at(wall).error(401, "unauthorized");
    assert_eq!(at(backend.now()).status, 200);
    backend.clock_offset(-1000);
    fresh_second();
    at(wall_secs()).error(401, "unauthorized");
    assert_eq!(at(wall_secs() - 1000).status, 200);
    backend.clock_offset(0);
    fresh_second();
    assert_eq!(at(wall_secs()).status, 200);
}

#[test]
fn injected_errors_have_json_bodies_retry_after_and_run_out() {
    let backend = FakeBackend::start();
    let node = Signer::node(10);
    let rel = workloads_path(&node);

    backend.inject(Fault::new(FaultKind::InternalError));
    get(&backend, &node, &rel).error(500, "internal_error");
    backend.inject(Fault::new(FaultKind::BadGateway));
    get(&backend, &node, &rel).error(502, "bad_gateway");
    backend.inject(Fault::new(FaultKind::Unavailable { retry_after: 7 }).times(2));
    for _ in 0..2 {
        let r = get(&backend, &node, &rel);
        r.error(503, "unavailable");
        assert_eq!(r.header("retry-after"), Some("7"));
    }
    assert_eq!(get(&backend, &node, &rel).status, 200);
    backend.inject(Fault::new(FaultKind::TooManyRequests { retry_after: 3 }));
    let r = get(&backend, &node, &rel);
    r.error(429, "too_many_requests");
    assert_eq!(r.header("retry-after"), Some("3"));
    backend.inject(Fault::new(FaultKind::Error {
        status: 503,
        error: "maintenance".into(),
        message: "back at noon".into(),
        retry_after: None,
    }));
    let r = get(&backend, &node, &rel);
    assert_eq!(r.error(503, "maintenance"), "back at noon");
    assert_eq!(r.header("retry-after"), None);

    // Faults hit before authentication, as a front end would.
    backend.inject(Fault::new(FaultKind::Unavailable { retry_after: 1 }));
    send_raw(&backend, "GET", &rel, &[], b"")
        .unwrap()
        .error(503, "unavailable");

    // Method and path filters; unmatched requests pass untouched.
    backend.inject(
        Fault::new(FaultKind::InternalError)
            .method("post")
            .path_contains("/health"),
    );
    assert_eq!(get(&backend, &node, &rel).status, 200);
    let body = json!({"reports": [report("f1")]});
    post_health(&backend, &node, &body).error(500, "internal_error");
    assert_eq!(post_health(&backend, &node, &body).status, 202);

    backend.inject(Fault::new(FaultKind::InternalError).times(5));
    backend.clear_faults();
    assert_eq!(get(&backend, &node, &rel).status, 200);
}

#[test]
fn hang_reset_and_malformed_json_faults() {
    let backend = FakeBackend::start();
    let node = Signer::node(11);
    let rel = workloads_path(&node);

    backend.inject(Fault::new(FaultKind::Hang(Duration::from_millis(300))));
    let start = Instant::now();
    assert_eq!(get(&backend, &node, &rel).status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));

    backend.inject(Fault::new(FaultKind::Reset));
    let target = format!("/api{rel}");
    let headers = node.headers("GET", &target, b"", backend.now());
    assert!(send_raw(&backend, "GET", &rel, &headers, b"").is_err());
    assert_eq!(backend.log().last().unwrap().status, None);
    assert_eq!(get(&backend, &node, &rel).status, 200);

    backend.inject(Fault::new(FaultKind::MalformedJson));
    let r = get(&backend, &node, &rel);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert!(
        serde_json::from_str::<Value>(&r.text).is_err(),
        "{}",
        r.text
    );
}

#[test]
fn manifest_faults_change_kind_or_namespace_of_manifests_only() {
    let backend = FakeBackend::start();
    let node = Signer::node(12);
    backend.put_manifest("web", "1.4.0", sample_manifest("web", "web:1.4.0"));
    let rel = "/v1/workloads/web/versions/1.4.0/manifest";

    backend.inject(Fault::new(FaultKind::ManifestKind("Service".into())));
    // Not a manifest request: the fault waits.
    assert_eq!(get(&backend, &node, &workloads_path(&node)).status, 200);
    let m = get(&backend, &node, rel).json();
    assert_eq!(
        (m["apiVersion"].as_str(), m["kind"].as_str()),
        (Some("v1"), Some("Service"))
    );
    assert_eq!(m["metadata"]["name"], "web");

    backend.inject(Fault::new(FaultKind::ManifestNamespace(
        "kube-system".into(),
    )));
    let m = get(&backend, &node, rel).json();
    assert_eq!(m["kind"], "Deployment");
    assert_eq!(m["metadata"]["namespace"], "kube-system");

    // Used up: the stored manifest is untouched.
    assert_eq!(
        get(&backend, &node, rel).json(),
        sample_manifest("web", "web:1.4.0")
    );
    // A manifest fault does not turn a 404 into a manifest.
    backend.inject(Fault::new(FaultKind::ManifestKind("Service".into())));
    get(&backend, &node, "/v1/workloads/web/versions/0.0.1/manifest").error(404, "not_found");
}

#[test]
fn huge_and_endless_bodies_stream_until_the_client_cuts_them_off() {
    let backend = FakeBackend::start();
    let node = Signer::node(13);
    let rel = workloads_path(&node);
    let target = format!("/api{rel}");
    let request = |bytes_wanted: usize| {
        let headers = node.headers("GET", &target, b"", backend.now());
        let mut s = TcpStream::connect(("127.0.0.1", backend.port())).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut req = format!("GET {target} HTTP/1.1\r\nHost: x\r\n");
        for (k, v) in &headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = vec![0; bytes_wanted];
        s.read_exact(&mut out).unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };

    backend.inject(Fault::new(FaultKind::HugeBody(50 * 1024 * 1024)));
    let got = request(2 * 1024 * 1024);
    let (head, body) = got.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("Content-Length: 52428800"), "{head}");
    assert!(body.starts_with(r#"{"workloads":["#));

    backend.inject(Fault::new(FaultKind::EndlessBody));
    let got = request(4 * 1024 * 1024);
    let (head, _) = got.split_once("\r\n\r\n").unwrap();
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");

    // A client with a body limit gives up on both; the fake carries on.
    for kind in [
        FaultKind::HugeBody(50 * 1024 * 1024),
        FaultKind::EndlessBody,
    ] {
        backend.inject(Fault::new(kind));
        let headers = node.headers("GET", &target, b"", backend.now());
        let mut req = ureq::http::Request::builder()
            .method("GET")
            .uri(format!("{}{rel}", backend.url()));
        for (k, v) in &headers {
            req = req.header(k, v);
        }
        let mut resp = agent().run(req.body(()).unwrap()).unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let read = resp
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_vec();
        assert!(read.is_err());
    }
    assert_eq!(get(&backend, &node, &rel).status, 200);
    let faults: Vec<_> = backend
        .log()
        .iter()
        .filter_map(|r| r.fault.clone())
        .collect();
    assert_eq!(faults.len(), 4);
}

#[test]
fn unreachable_refuses_connections_then_serves_again_on_the_same_port() {
    let backend = FakeBackend::start();
    let node = Signer::node(14);
    let rel = workloads_path(&node);
    let url = backend.url();
    assert_eq!(get(&backend, &node, &rel).status, 200);
    // An idle keep-alive connection is cut too.
    let mut idle = TcpStream::connect(("127.0.0.1", backend.port())).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    idle.write_all(b"GET /api/x HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    while !answer.ends_with(b"}") {
        let mut chunk = [0u8; 1024];
        let n = idle.read(&mut chunk).unwrap();
        assert!(n > 0, "{}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&chunk[..n]);
    }
    assert!(answer.starts_with(b"HTTP/1.1 401 "));
    backend.set_reachable(false);
    assert!(TcpStream::connect(("127.0.0.1", backend.port())).is_err());
    let mut buf = [0u8; 1];
    assert!(!matches!(idle.read(&mut buf), Ok(n) if n > 0));
    let headers = node.headers("GET", &format!("/api{rel}"), b"", backend.now());
    assert!(send_raw(&backend, "GET", &rel, &headers, b"").is_err());
    backend.set_reachable(false);
    backend.set_reachable(true);
    backend.set_reachable(true);
    assert_eq!(backend.url(), url);
    assert_eq!(get(&backend, &node, &rel).status, 200);
}

#[test]
fn a_post_cut_by_going_down_is_stored_but_its_answer_logged_as_lost() {
    let backend = FakeBackend::start();
    let node = Signer::node(16);
    // Long enough to go down while the request waits on it.
    backend.set_latency(Duration::from_secs(5));
    let mark = backend.mark();
    let body = json!({"reports": [report("cut1")]}).to_string();
    let headers = node.headers(
        "POST",
        &format!("/api{}", health_path(&node)),
        body.as_bytes(),
        backend.now(),
    );
    let client = std::thread::scope(|s| {
        let post = s.spawn(|| {
            send_raw(
                &backend,
                "POST",
                &health_path(&node),
                &headers,
                body.as_bytes(),
            )
        });
        let arrived =
            backend.wait_for_request(mark, Duration::from_secs(5), |r| r.method == "POST");
        assert!(arrived.is_some_and(|r| r.status.is_none()));
        backend.set_reachable(false);
        post.join().unwrap()
    });
    assert!(client.is_err(), "{:?}", client.map(|r| r.status));
    // The fake still handles it: the report is stored, the 202 logged, and
    // the log says the client never got it.
    assert!(backend.wait_for_reports(1, Duration::from_secs(10)));
    let post = backend
        .wait_for_request(mark, Duration::from_secs(10), |r| r.answer_lost)
        .expect("the cut answer is logged as lost");
    assert_eq!(post.status, Some(202));
    backend.set_latency(Duration::ZERO);
    backend.set_reachable(true);
    let r = post_health(&backend, &node, &json!({"reports": [report("cut1")]}));
    assert_eq!((r.status, r.json()), (202, json!({"accepted": 0})));
    assert!(backend.log().iter().filter(|r| r.answer_lost).count() == 1);
}

#[test]
fn the_request_log_records_what_was_sent_and_answered() {
    let backend = FakeBackend::start();
    let node = Signer::node(15);
    assert_eq!(get(&backend, &node, &workloads_path(&node)).status, 200);
    let mark = backend.mark();
    let etag = backend.etag(&node.address);
    let rel = format!("{}?watch=0", workloads_path(&node));
    call(
        &backend,
        &node,
        "GET",
        &rel,
        b"",
        &[("If-None-Match", &etag)],
    );
    let body = json!({"reports": [report("l1")]}).to_string();
    call(
        &backend,
        &node,
        "POST",
        &health_path(&node),
        body.as_bytes(),
        &[],
    );
    send_raw(&backend, "GET", &workloads_path(&node), &[], b"").unwrap();
    backend.inject(Fault::new(FaultKind::BadGateway));
    get(&backend, &node, &workloads_path(&node));

    let reqs = backend.requests_since(mark);
    assert_eq!(reqs.len(), 4);
    let r = &reqs[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.query.as_str()),
        (
            "GET",
            format!("/api{}", workloads_path(&node)).as_str(),
            "watch=0"
        )
    );
    assert_eq!(r.if_none_match(), Some(etag.as_str()));
    assert_eq!(r.status, Some(304));
    assert!(r.verified && r.auth_error.is_none());
    assert_eq!(r.address(), Some(node.address.as_str()));
    assert!(r.timestamp().unwrap().parse::<i64>().is_ok());
    assert_eq!(r.signature().unwrap().len(), 132);
    assert!(r.body.is_empty() && r.fault.is_none());

    let r = &reqs[1];
    assert_eq!(r.method, "POST");
    assert_eq!(r.content_type(), Some("application/json"));
    assert_eq!(r.json().unwrap(), json!({"reports": [report("l1")]}));
    assert_eq!(r.status, Some(202));

    let r = &reqs[2];
    assert_eq!(r.status, Some(401));
    assert!(!r.verified);
    assert!(r.auth_error.as_deref().unwrap().contains("missing"));

    let r = &reqs[3];
    assert_eq!(
        (r.status, r.fault.clone()),
        (Some(502), Some(FaultKind::BadGateway))
    );
    assert!(r.verified);

    assert!(backend.requests_since(backend.mark()).is_empty());
    assert_eq!(backend.log().len(), 5);
    let found = backend.wait_for_request(mark, Duration::from_secs(1), |r| r.method == "POST");
    assert_eq!(found.unwrap().status, Some(202));
    assert!(backend
        .wait_for_request(mark, Duration::from_millis(50), |r| r.method == "DELETE")
        .is_none());
    assert!(!backend.wait_for_reports(2, Duration::from_millis(50)));
}

#[test]
fn delivery_log_keeps_every_post_with_its_ids_even_refused_ones() {
    let backend = FakeBackend::start();
    let node = Signer::node(16);
    backend.inject(
        Fault::new(FaultKind::Unavailable { retry_after: 1 })
            .method("POST")
            .path_contains("/health"),
    );
    let first = json!({"reports": [report("d1"), report("d2")]});
    post_health(&backend, &node, &first).error(503, "unavailable");
    assert_eq!(post_health(&backend, &node, &first).status, 202);
    backend.inject(Fault::new(FaultKind::Reset).method("POST"));
    let second = json!({"reports": [report("d3")]}).to_string();
    let headers = headers_with_json(&node.headers(
        "POST",
        &format!("/api{}", health_path(&node)),
        second.as_bytes(),
        backend.now(),
    ));
    assert!(send_raw(
        &backend,
        "POST",
        &health_path(&node),
        &headers,
        second.as_bytes()
    )
    .is_err());
    assert_eq!(
        call(
            &backend,
            &node,
            "POST",
            &health_path(&node),
            second.as_bytes(),
            &[]
        )
        .status,
        202
    );

    let log = backend.delivery_log();
    let summary: Vec<(Vec<String>, Option<u16>, Option<usize>)> = log
        .into_iter()
        .map(|d| (d.ids, d.status, d.accepted))
        .collect();
    let ids = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        summary,
        vec![
            (ids(&["d1", "d2"]), Some(503), None),
            (ids(&["d1", "d2"]), Some(202), Some(2)),
            (ids(&["d3"]), None, None),
            (ids(&["d3"]), Some(202), Some(1)),
        ]
    );
    // Each id stored exactly once, oldest first.
    let stored: Vec<String> = backend.reports().into_iter().map(|r| r.id).collect();
    assert_eq!(stored, ids(&["d1", "d2", "d3"]));
}

#[test]
fn a_custom_base_path_is_signed_and_served() {
    let node = Signer::node(17);
    let backend = FakeBackend::builder().base_path("/node-system/v0/").start();
    assert_eq!(backend.base_path(), "/node-system/v0");
    assert!(backend.url().ends_with("/node-system/v0"));
    backend.set_workloads(&node.address, &[("web", "1.4.0")]);
    assert_eq!(get(&backend, &node, &workloads_path(&node)).status, 200);

    let root = FakeBackend::builder().base_path("/").start();
    assert_eq!(root.base_path(), "");
    assert_eq!(root.url(), format!("http://127.0.0.1:{}", root.port()));
    assert_eq!(get(&root, &node, &workloads_path(&node)).status, 200);

    // Outside the base path there is nothing, even signed.
    let api = FakeBackend::start();
    let rel = workloads_path(&node);
    let headers = node.headers("GET", &rel, b"", api.now());
    let mut s = TcpStream::connect(("127.0.0.1", api.port())).unwrap();
    let mut req = format!("GET {rel} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
    for (k, v) in &headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 404 "), "{out}");
    assert!(out.contains("\"not_found\""), "{out}");
}

#[test]
fn bad_framing_gets_400_and_the_fake_keeps_serving() {
    let backend = FakeBackend::start();
    let node = Signer::node(18);
    for bytes in [
        &b"NOT HTTP\r\n\r\n"[..],
        b"GET /api HTTP/9\r\n\r\n",
        b"get /api HTTP/1.1\r\n\r\n",
        b"GET /api HTTP/1.1\r\nno colon\r\n\r\n",
        b"POST /api HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"POST /api HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"GET /api/v1/%zz HTTP/1.1\r\n\r\n\xff\xfe",
    ] {
        let out = raw(&backend, bytes);
        assert!(
            out.starts_with("HTTP/1.1 400 ") || out.starts_with("HTTP/1.1 401 "),
            "{:?}: {out}",
            String::from_utf8_lossy(bytes)
        );
    }
    // A line longer than 16 KiB.
    let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
    assert!(raw(&backend, long.as_bytes()).starts_with("HTTP/1.1 400 "));
    // A peer that hangs up mid-request.
    drop(TcpStream::connect(("127.0.0.1", backend.port())).unwrap());
    let mut s = TcpStream::connect(("127.0.0.1", backend.port())).unwrap();
    s.write_all(b"POST /api HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .unwrap();
    drop(s);

    // Bad percent-escapes in an authenticated path are a 400.
    get(&backend, &node, "/v1/workloads/%zz/versions/1/manifest").error(400, "bad_request");
    get(&backend, &node, "/v1/workloads/%ff/versions/1/manifest").error(400, "bad_request");
    assert_eq!(get(&backend, &node, &workloads_path(&node)).status, 200);
}
