//! The HTTP API of the real binary: the contract's routes and codes, and
//! bad input of every kind. After each bad request the process is still up
//! and still answers.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use wm_testkit::kube::FakeKube;
use wm_testkit::proc::{read_reply, request, request_bytes, wait_for, Manager, Reply};

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");

fn manager() -> Manager {
    Manager::start(BIN, &[])
}

fn heartbeat(m: &Manager, name: &str, body: &str) -> Reply {
    m.post(
        &format!("/v1/workloads/{name}/health"),
        "application/json",
        body,
    )
}

fn assert_still_serving(m: &mut Manager) {
    assert!(m.alive(), "the manager died");
    assert_eq!(
        m.get("/healthz").status,
        200,
        "the manager stopped answering"
    );
}

#[test]
fn heartbeats_show_in_status_and_metrics() {
    let m = manager();
    assert_eq!(
        heartbeat(
            &m,
            "web",
            r#"{"status":"healthy","message":"all good","extra":[1]}"#
        )
        .status,
        204
    );
    assert_eq!(heartbeat(&m, "db", r#"{"status":"degraded"}"#).status, 204);
    let status = m.get("/v1/status");
    assert_eq!(status.status, 200);
    assert_eq!(status.header("Content-Type"), Some("application/json"));
    let v = status.json();
    assert_eq!(v["manager"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(v["manager"]["namespace"], "edge");
    let names: Vec<&str> = v["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["db", "web"]);
    assert_eq!(v["workloads"][1]["health"], "healthy");
    assert_eq!(v["workloads"][1]["message"], "all good");
    assert_eq!(v["workloads"][0]["health"], "degraded");
    for job in ["lastSync", "lastReport", "lastUpdateCheck"] {
        assert!(v[job]["outcome"].is_string(), "{job} in {v}");
    }

    let text = m.get("/v1/status?format=text");
    assert!(text
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(
        text.body
            .lines()
            .any(|l| l.starts_with("web ") && l.contains("healthy") && l.contains("all good")),
        "{}",
        text.body
    );
    let text = request(
        m.addr,
        "GET /v1/status HTTP/1.1\r\nHost: t\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
    );
    assert!(text.body.contains("WORKLOAD"));

    let metrics = m.get("/metrics");
    assert_eq!(
        metrics.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(
        metrics
            .body
            .contains("wm_workload_healthy{workload=\"web\"} 1\n"),
        "{}",
        metrics.body
    );
    assert!(metrics
        .body
        .contains("wm_http_requests_total{route=\"heartbeat\",code=\"204\"} 2\n"));
}

#[test]
fn sync_on_demand_is_accepted() {
    let m = manager();
    let r = m.post("/v1/sync", "application/json", "");
    assert_eq!(r.status, 202);
    r.json();
}

#[test]
fn without_kubernetes_it_serves_but_is_not_ready() {
    let mut m = manager();
    let r = m.get("/readyz");
    assert_eq!((r.status, r.error().as_str()), (503, "not_ready"));
    assert_eq!(m.get("/healthz").body, "ok");
    // The first Lease call (at start) fails and says why; without the
    // Lease nothing syncs.
    let v = wait_for("a failed Lease call", Duration::from_secs(15), || {
        let v = m.get("/v1/status").json();
        (v["lastLease"]["outcome"] == "error").then_some(v)
    });
    assert!(
        v["lastLease"]["error"]
            .as_str()
            .unwrap()
            .contains("Kubernetes API unreachable"),
        "{v}"
    );
    assert_eq!(v["manager"]["leader"], false);
    assert_eq!(
        v["lastSync"]["outcome"], "never",
        "a follower does not sync"
    );
    assert_still_serving(&mut m);
}

#[test]
fn ready_once_the_kubernetes_api_answers_over_tls_by_ip() {
    let kube = FakeKube::builder().namespace("edge").start();
    let (url, token, ca) = (kube.url(), kube.token_file(), kube.ca_file());
    let m = Manager::start(
        BIN,
        &[
            ("WM_KUBE_API_URL", url.as_str()),
            ("WM_KUBE_TOKEN_FILE", token.to_str().unwrap()),
            ("WM_KUBE_CA_FILE", ca.to_str().unwrap()),
        ],
    );
    wait_for("readiness", Duration::from_secs(15), || {
        (m.get("/readyz").status == 200).then_some(())
    });
    // It leads (the only instance) and lists its Deployments within 5 s.
    wait_for("a LIST of Deployments", Duration::from_secs(15), || {
        kube.log()
            .iter()
            .any(|r| r.method == "GET" && r.path == "/apis/apps/v1/namespaces/edge/deployments")
            .then_some(())
    });
    assert_eq!(m.get("/v1/status").json()["manager"]["leader"], true);
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let kube = FakeKube::builder().namespace("edge").start();
    let other_ca = kube.write_unrelated_ca();
    let (url, token) = (kube.url(), kube.token_file());
    let m = Manager::start(
        BIN,
        &[
            ("WM_KUBE_API_URL", url.as_str()),
            ("WM_KUBE_TOKEN_FILE", token.to_str().unwrap()),
            ("WM_KUBE_CA_FILE", other_ca.to_str().unwrap()),
        ],
    );
    let v = wait_for("a failed Lease call", Duration::from_secs(15), || {
        let v = m.get("/v1/status").json();
        (v["lastLease"]["outcome"] == "error").then_some(v)
    });
    assert!(
        v["lastLease"]["error"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{v}"
    );
    assert_eq!(m.get("/readyz").status, 503);
}

#[test]
fn wrong_routes_and_methods() {
    let mut m = manager();
    let r = m.get("/nope");
    assert_eq!((r.status, r.error().as_str()), (404, "not_found"));
    let r = m.get("/v1/workloads/web/health");
    assert_eq!(
        (r.status, r.error().as_str(), r.header("Allow")),
        (405, "method_not_allowed", Some("POST"))
    );
    let r = m.post("/v1/status", "application/json", "{}");
    assert_eq!((r.status, r.header("Allow")), (405, Some("GET, HEAD")));
    let r = request(
        m.addr,
        "DELETE /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    let r = request(
        m.addr,
        "BREW /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 405);
    assert_still_serving(&mut m);
}

#[test]
fn bad_heartbeats_get_the_contract_codes() {
    let mut m = manager();
    let cases = [
        (
            "web",
            "application/json",
            r#"{"status": "healthy""#,
            400,
            "bad_json",
        ),
        ("web", "application/json", "", 400, "bad_json"),
        ("web", "application/json", r#"["healthy"]"#, 400, "bad_json"),
        (
            "web",
            "text/plain",
            r#"{"status":"healthy"}"#,
            415,
            "unsupported_media_type",
        ),
        (
            "web",
            "application/x-www-form-urlencoded",
            "status=healthy",
            415,
            "unsupported_media_type",
        ),
        (
            "web",
            "application/json",
            r#"{"status":"fine"}"#,
            422,
            "unknown_status",
        ),
        (
            "Web",
            "application/json",
            r#"{"status":"healthy"}"#,
            400,
            "bad_name",
        ),
        (
            "-web",
            "application/json",
            r#"{"status":"healthy"}"#,
            400,
            "bad_name",
        ),
        (
            "a%0d%0aSet-Cookie:%20x",
            "application/json",
            r#"{"status":"healthy"}"#,
            400,
            "bad_name",
        ),
        (
            &"a".repeat(64),
            "application/json",
            r#"{"status":"healthy"}"#,
            400,
            "bad_name",
        ),
    ];
    for (name, ct, body, code, error) in cases {
        let r = m.post(&format!("/v1/workloads/{name}/health"), ct, body);
        assert_eq!(r.status, code, "{name} {ct} {body}: {r:?}");
        assert_eq!(
            (r.status, r.error()),
            (code, error.to_string()),
            "{name} {ct} {body}"
        );
        assert!(r
            .headers
            .iter()
            .all(|(k, _)| !k.eq_ignore_ascii_case("set-cookie")));
    }
    assert_eq!(
        m.get("/v1/status").json()["workloads"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_still_serving(&mut m);
}

#[test]
fn oversized_bodies_are_refused_whatever_the_framing() {
    let mut m = manager();
    let big = format!(
        r#"{{"status":"healthy","message":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    // An honest Content-Length over the cap.
    let r = heartbeat(&m, "web", &big);
    assert_eq!((r.status, r.error().as_str()), (413, "body_too_large"));
    // A huge declared length with almost nothing sent: refused at once, nothing allocated.
    let started = Instant::now();
    let r = request(
        m.addr,
        "POST /v1/workloads/web/health HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 18446744073709551615\r\n\r\n{}",
    );
    assert_eq!((r.status, r.error().as_str()), (413, "body_too_large"));
    assert!(started.elapsed() < Duration::from_secs(2));
    // Chunked, over the cap.
    let mut raw = b"POST /v1/workloads/web/health HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..20 {
        raw.extend_from_slice(format!("1000\r\n{}\r\n", "y".repeat(0x1000)).as_bytes());
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let r = request_bytes(m.addr, &raw);
    assert_eq!((r.status, r.error().as_str()), (413, "body_too_large"));
    // Chunked, under the cap: accepted.
    let body = r#"{"status":"healthy"}"#;
    let raw = format!(
        "POST /v1/workloads/web/health HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
        body.len()
    );
    assert_eq!(request(m.addr, &raw).status, 204);
    // No Content-Length and no chunking: the body is not read, so it is empty.
    let r = request(
        m.addr,
        &format!("POST /v1/workloads/web/health HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{big}"),
    );
    assert_eq!((r.status, r.error().as_str()), (400, "bad_json"));
    // A Content-Length shorter than the body: the declared part is judged.
    let r = request(
        m.addr,
        &format!("POST /v1/workloads/web/health HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{big}"),
    );
    assert_eq!((r.status, r.error().as_str()), (400, "bad_json"));
    assert_still_serving(&mut m);
}

#[test]
fn a_body_that_never_arrives_times_out_without_blocking_others() {
    let mut m = manager();
    let mut stuck = TcpStream::connect(m.addr).unwrap();
    stuck
        .write_all(b"POST /v1/workloads/web/health HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"sta")
        .unwrap();
    let started = Instant::now();
    assert_eq!(heartbeat(&m, "db", r#"{"status":"healthy"}"#).status, 204);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "served while another body is pending"
    );
    // The stalled connection is closed by the server, not kept forever.
    stuck
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut rest = Vec::new();
    let _ = stuck.read_to_end(&mut rest);
    assert_still_serving(&mut m);
}

#[test]
fn huge_headers_are_refused() {
    let mut m = manager();
    let line = format!(
        "GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: {}\r\n\r\n",
        "h".repeat(1024 * 1024)
    );
    let mut s = TcpStream::connect(m.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may close before the whole line is sent; that is fine.
    let _ = s.write_all(line.as_bytes());
    let r = read_reply(&mut s).expect("an answer before the close");
    assert_eq!((r.status, r.error().as_str()), (431, "header_too_large"));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = request(
        m.addr,
        &format!("GET /healthz HTTP/1.1\r\nHost: t\r\n{many}\r\n"),
    );
    assert_eq!(r.status, 431);
    assert_still_serving(&mut m);
}

#[test]
fn garbage_and_disconnects_do_not_hurt() {
    let mut m = manager();
    for raw in [
        &b"\x00\x01\x02 garbage\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"POST /v1/workloads/web/health HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(m.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(raw).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
    }
    // Disconnect in the middle of a head, and in the middle of a body.
    for partial in [&b"POST /v1/workloads/web/hea"[..], b"POST /v1/workloads/web/health HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"st"] {
        let mut s = TcpStream::connect(m.addr).unwrap();
        s.write_all(partial).unwrap();
        drop(s);
    }
    assert_still_serving(&mut m);
}

#[test]
fn control_characters_are_stored_but_never_echoed_raw() {
    let mut m = manager();
    let body = r#"{"status":"unhealthy","message":"line1\r\nline2\u001b[31mred\u0000"}"#;
    assert_eq!(heartbeat(&m, "web", body).status, 204);
    let v = m.get("/v1/status").json();
    assert_eq!(
        v["workloads"][0]["message"],
        "line1\r\nline2\u{1b}[31mred\u{0}"
    );
    let text = m.get("/v1/status?format=text").body;
    assert!(!text.contains('\u{1b}') && !text.contains('\0'), "{text:?}");
    assert!(text.contains(r"line1\r\nline2\u{1b}[31mred\u{0}"), "{text}");
    let event = m.wait_for_log("workload web: unknown -> unhealthy", Duration::from_secs(5));
    assert!(
        event.ends_with(r#""line1\r\nline2\u{1b}[31mred\0""#),
        "{event}"
    );
    assert!(m
        .log()
        .iter()
        .all(|l| !l.contains('\u{1b}') && !l.contains('\r') && !l.contains('\0')));
    assert_still_serving(&mut m);
}

#[test]
fn many_distinct_names_keep_memory_bounded() {
    let mut m = manager();
    let mut stream = TcpStream::connect(m.addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut refused = 0;
    for i in 0..3000 {
        let body = format!(r#"{{"status":"healthy","message":"{}"}}"#, "m".repeat(300));
        let req = format!(
            "POST /v1/workloads/w-{i}/health HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).unwrap();
        let r = read_reply(&mut stream).unwrap();
        match r.status {
            204 => {}
            503 => {
                assert_eq!(r.error(), "too_many_workloads");
                refused += 1;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(refused, 3000 - 1024, "the table holds 1024 workloads");
    let rss_kib = m.proc_status("VmRSS");
    assert!(rss_kib < 16 * 1024, "RSS {rss_kib} KiB after 3000 names");
    assert_still_serving(&mut m);
}

#[test]
fn a_burst_of_keep_alive_clients_is_served_at_once() {
    let mut m = manager();
    let body = r#"{"status":"healthy"}"#;
    let request = format!(
        "POST /v1/workloads/web/health HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    // 32 clients connect together and keep their connections open; each must
    // get its answer well before the 5 s idle timeout frees a thread.
    let mut clients: Vec<TcpStream> = (0..32)
        .map(|_| TcpStream::connect(m.addr).unwrap())
        .collect();
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        c.write_all(request.as_bytes()).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let r = read_reply(c).unwrap_or_else(|e| panic!("client {i} got no answer: {e}"));
        assert_eq!(r.status, 204);
    }
    assert_still_serving(&mut m);
}

#[test]
fn slow_and_idle_clients_do_not_starve_others() {
    let mut m = manager();
    let baseline = m.proc_status("Threads");
    // One client trickling a request head, a byte at a time.
    let addr = m.addr;
    let slow = std::thread::spawn(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        for b in b"GET /v1/status HTTP/1.1\r\nHost: slow\r\n" {
            if s.write_all(&[*b]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    // 300 keep-alive connections that made one request and went quiet.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| {
            let mut s = TcpStream::connect(m.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
                .unwrap();
            assert_eq!(read_reply(&mut s).unwrap().status, 200);
            s
        })
        .collect();
    assert!(
        m.proc_status("Threads") > baseline + 250,
        "each connection holds a thread"
    );
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(heartbeat(&m, "web", r#"{"status":"healthy"}"#).status, 204);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "served in {:?}",
            started.elapsed()
        );
    }
    // Idle connections are closed after the socket timeout; their threads end.
    wait_for("threads back to normal", Duration::from_secs(40), || {
        (m.proc_status("Threads") <= baseline + 2).then_some(())
    });
    drop(idle);
    slow.join().unwrap();
    assert_still_serving(&mut m);
}

#[test]
fn status_on_a_keep_alive_connection_does_not_wait_on_nagle() {
    let m = manager();
    for i in 0..200 {
        let r = heartbeat(&m, &format!("w{i:03}"), r#"{"status":"healthy"}"#);
        assert_eq!(r.status, 204);
    }
    let mut conn = TcpStream::connect(m.addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let raw = "GET /v1/status HTTP/1.1\r\nHost: t\r\n\r\n";
    let mut took = Vec::new();
    for _ in 0..100 {
        let t = Instant::now();
        conn.write_all(raw.as_bytes()).unwrap();
        let reply = read_reply(&mut conn).unwrap();
        took.push(t.elapsed());
        assert_eq!(reply.status, 200);
        let length: usize = reply
            .header("Content-Length")
            .expect("the length is known, so it is sent")
            .parse()
            .unwrap();
        assert_eq!(length, reply.body.len());
        assert_eq!(reply.header("Transfer-Encoding"), None);
        assert_eq!(reply.json()["workloads"].as_array().unwrap().len(), 200);
    }
    took.sort();
    // With Nagle's algorithm on, each answer waited ~40 ms for the delayed
    // ACK; without it one takes well under a millisecond of work.
    let median = took[took.len() / 2];
    assert!(median < Duration::from_millis(5), "median {median:?}");
}
