//! Fault injection, reachability, HTTP framing and the request log of the
//! fake API server.

mod kube_support;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use kube_support::{deployment, status, Client, DEPLOYS};
use serde_json::json;
use wm_testkit::kube::{FakeKube, Fault, FaultKind, LoggedBody};

/// Sends raw bytes to a plain-HTTP fake and reads until it closes.
fn raw(kube: &FakeKube, bytes: &[u8]) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", kube.port()))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(bytes)?;
    let mut out = Vec::new();
    s.read_to_end(&mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[test]
fn overload_and_server_errors_have_the_real_shapes() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    kube.inject(Fault::new(FaultKind::TooManyRequestsText {
        retry_after: Some(1),
    }));
    let r = c.get(DEPLOYS);
    assert_eq!((r.status, r.retry_after.as_deref()), (429, Some("1")));
    assert_eq!(r.text, "Too many requests, please try again later.\n");
    assert_eq!(r.content_type, "text/plain; charset=utf-8");

    kube.inject(Fault::new(FaultKind::TooManyRequestsStatus {
        retry_after: Some(2),
    }));
    let r = c.get(DEPLOYS);
    let want = status(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
        Some(json!({"retryAfterSeconds": 2})),
    );
    assert_eq!(
        (r.status, r.retry_after.as_deref(), r.json()),
        (429, Some("2"), want)
    );

    kube.inject(Fault::new(FaultKind::InternalError));
    let r = c.get(DEPLOYS);
    let want = status(
        500,
        "InternalError",
        "Internal error occurred: injected fault",
        Some(json!({"causes": [{"message": "injected fault"}]})),
    );
    assert_eq!((r.status, r.json()), (500, want));

    kube.inject(Fault::new(FaultKind::ServerTimeout { retry_after: 1 }));
    let r = c.get(DEPLOYS);
    let want = status(500, "ServerTimeout",
        "The get operation against deployments.apps could not be completed at this time, please try again.",
        Some(json!({"group": "apps", "kind": "deployments", "retryAfterSeconds": 1})));
    assert_eq!(
        (r.status, r.retry_after.as_deref(), r.json()),
        (500, Some("1"), want)
    );

    kube.inject(Fault::new(FaultKind::ServiceUnavailable));
    let r = c.get(DEPLOYS);
    let want = status(
        503,
        "ServiceUnavailable",
        "apiserver is shutting down",
        None,
    );
    assert_eq!(
        (r.status, r.retry_after.as_deref(), r.json()),
        (503, None, want)
    );

    kube.inject(Fault::new(FaultKind::GatewayTimeout));
    let r = c.get(DEPLOYS);
    let want = status(
        504,
        "Timeout",
        "Timeout: request did not complete within requested timeout - context deadline exceeded",
        Some(json!({})),
    );
    assert_eq!((r.status, r.json()), (504, want));
    assert_eq!(c.get(DEPLOYS).status, 200, "faults are used up");
}

#[test]
fn faults_match_method_and_path_and_count_down() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    kube.inject(
        Fault::new(FaultKind::ServiceUnavailable)
            .method("post")
            .path_prefix(DEPLOYS)
            .times(2),
    );
    assert_eq!(c.get(DEPLOYS).status, 200);
    assert_eq!(c.get("/version").status, 200);
    let d = deployment("web", "x:1");
    assert_eq!(c.json("POST", DEPLOYS, &d).status, 503);
    assert_eq!(c.json("POST", DEPLOYS, &d).status, 503);
    assert_eq!(c.json("POST", DEPLOYS, &d).status, 201);
    kube.inject(Fault::new(FaultKind::InternalError).times(5));
    kube.clear_faults();
    assert_eq!(c.get(DEPLOYS).status, 200);
}

#[test]
fn hang_delays_and_reset_cuts_the_connection() {
    let kube = FakeKube::builder().plain_http().start();
    let c = Client::new(&kube);
    kube.inject(Fault::new(FaultKind::Hang(Duration::from_millis(300))));
    let t = Instant::now();
    assert_eq!(c.get(DEPLOYS).status, 200);
    assert!(t.elapsed() >= Duration::from_millis(300));

    kube.inject(Fault::new(FaultKind::Reset));
    let err = raw(&kube, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    assert_eq!(kube.log().last().unwrap().status, None);
}

#[test]
fn unreachable_refuses_connections_then_comes_back_on_the_same_port() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    assert_eq!(c.get("/version").status, 200);
    kube.set_reachable(false);
    let err = TcpStream::connect(("127.0.0.1", kube.port())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    kube.set_reachable(true);
    assert_eq!(Client::new(&kube).get("/version").status, 200);
}

#[test]
fn http_framing_keep_alive_chunked_and_malformed() {
    let kube = FakeKube::builder().plain_http().start();
    assert!(kube.url().starts_with("http://"));
    let two = raw(&kube, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\nGET /api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    assert_eq!(two.matches("HTTP/1.1 200 OK").count(), 2, "{two}");
    assert!(two.contains("Connection: close"));

    let body = deployment("web", "x:1").to_string();
    let (a, b) = body.split_at(body.len() / 2);
    let chunked = format!(
        "POST {DEPLOYS} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
        a.len(),
        b.len()
    );
    let out = raw(&kube, chunked.as_bytes()).unwrap();
    assert!(out.starts_with("HTTP/1.1 201 Created"), "{out}");

    for bad in [
        &b"NONSENSE\r\n\r\n"[..],
        b"GET / HTTP/9\r\n\r\n",
        b"GET /x HTTP/1.1\r\nno colon\r\n\r\n",
        b"POST /x HTTP/1.1\r\nContent-Length: zz\r\n\r\n",
        b"\xff\xfe\r\n\r\n",
    ] {
        let out = raw(&kube, bad).unwrap();
        assert!(
            out.starts_with("HTTP/1.1 400 Bad Request"),
            "{bad:?} -> {out}"
        );
    }
    assert_eq!(kube.deployment("web").unwrap()["metadata"]["name"], "web");
}

#[test]
fn the_request_log_records_what_was_sent() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    c.get(DEPLOYS);
    let mark = kube.mark();
    c.json("POST", DEPLOYS, &deployment("web", "x:1"));
    c.get(&format!("{DEPLOYS}?labelSelector=app%3Dweb"));
    c.send(
        "PATCH",
        &format!("{DEPLOYS}/web?fieldManager=wm"),
        Some(("application/merge-patch+json", "not json".into())),
    );
    let since = kube.requests_since(mark);
    assert_eq!(since.len(), 3);
    assert_eq!(
        since[1].query_param("labelSelector").as_deref(),
        Some("app=web")
    );
    let writes = kube.writes_since(mark);
    assert_eq!(writes.len(), 2);
    assert_eq!(writes[0].method, "POST");
    assert_eq!(writes[0].status, Some(201));
    assert_eq!(writes[0].content_type.as_deref(), Some("application/json"));
    assert_eq!(writes[0].json().unwrap()["metadata"]["name"], "web");
    assert_eq!(writes[1].body, LoggedBody::Raw("not json".into()));
    assert_eq!(writes[1].status, Some(400));
    assert_eq!(writes[1].user_agent.as_deref(), Some("kube-test/1.0"));
    assert_eq!(kube.log().len(), 4);
}

#[test]
fn the_request_log_records_when_each_request_came_and_was_answered() {
    let kube = FakeKube::builder().plain_http().start();
    let c = Client::new(&kube);
    let before = std::time::SystemTime::now();
    c.get(DEPLOYS);
    kube.inject(Fault::new(FaultKind::Hang(Duration::from_millis(300))));
    c.json("POST", DEPLOYS, &deployment("web", "x:1"));
    kube.inject(Fault::new(FaultKind::Reset));
    let _ = raw(&kube, b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n");
    let after = std::time::SystemTime::now();
    let log = kube.log();
    assert_eq!(log.len(), 3);
    for r in &log[..2] {
        let answered = r.answered_at.expect("answered");
        assert!(before <= r.received_at && r.received_at <= answered && answered <= after);
    }
    let held = log[1]
        .answered_at
        .unwrap()
        .duration_since(log[1].received_at)
        .unwrap();
    assert!(held >= Duration::from_millis(300), "{held:?}");
    assert!(log[1].received_at >= log[0].answered_at.unwrap());
    // A reset request was never answered.
    assert_eq!((log[2].status, log[2].answered_at), (None, None));
    assert!(log[2].received_at >= log[1].received_at);
}
