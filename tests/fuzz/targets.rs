//! The fuzz targets' bodies: one function per parser of outside input. The
//! fuzz binaries (`fuzz_targets/`) call them under libFuzzer; the replay
//! test (`tests/fuzz_replay.rs`) calls them on every input kept in
//! `corpus/` and `regressions/`. Besides "no panic", each checks what the
//! manager promises of what it accepts.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use workload_manager::{api, backend, config, kube, lease, outbox, pods, reconcile, update};

/// A target: takes any bytes, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target, by the name of its directories.
pub const ALL: [(&str, Target); 9] = [
    ("http", http),
    ("api", api_request),
    ("desired", desired),
    ("manifest", manifest),
    ("kube", kube_bodies),
    ("lease", lease_answer),
    ("update", update_file),
    ("outbox", outbox_file),
    ("config", config_values),
];

/// Raw bytes on a connection to the manager's own HTTP server (the patched
/// tiny_http and `server.rs`), answered by the API: whatever comes, an
/// answer or a closed connection, within the server's limits.
pub fn http(data: &[u8]) {
    let addr = *SERVER.get_or_init(start_server);
    let Ok(mut conn) = std::net::TcpStream::connect(addr) else {
        panic!("the server stopped accepting connections");
    };
    let _ = conn.set_nodelay(true);
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
    let _ = conn.write_all(data);
    let _ = conn.shutdown(std::net::Shutdown::Write);
    let mut answer = Vec::new();
    let _ = (&mut conn).take(1 << 20).read_to_end(&mut answer);
    if !answer.is_empty() {
        // The status line repeats the request's version (`HTTP/2.0 400`).
        assert!(
            answer.starts_with(b"HTTP/"),
            "not an HTTP answer: {:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(64)])
        );
    }
}

static SERVER: OnceLock<std::net::SocketAddr> = OnceLock::new();

fn start_server() -> std::net::SocketAddr {
    let server =
        workload_manager::server::HttpServer::bind("127.0.0.1:0".parse().expect("an address"))
            .expect("a loopback listener");
    let addr = server.local_addr();
    std::thread::spawn(move || {
        let mut state = new_state();
        loop {
            if let Ok(Some(incoming)) = server.recv(Duration::from_millis(100)) {
                let now = Instant::now();
                incoming.answer(|req| api::handle(req, &mut state, now, SystemTime::now()).1);
            }
        }
    });
    addr
}

fn new_state() -> workload_manager::state::State {
    let identity = workload_manager::state::Identity {
        version: "0.1.0",
        namespace: "workload-manager".into(),
        pod_name: "workload-manager-0".into(),
        node_address: Some("0x0000000000000000000000000000000000000001".into()),
    };
    let mut state =
        workload_manager::state::State::new(identity, Duration::from_secs(30), Instant::now());
    let names = ["web", "db"].iter().map(|s| s.to_string()).collect();
    state.workloads.set_desired(names, Instant::now());
    state
}

/// One request to the API as a pure function: the first line is
/// `METHOD URL`, the second the content type, the rest the body.
pub fn api_request(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(3, '\n');
    let head = lines.next().unwrap_or("");
    let (method, url) = head.split_once(' ').unwrap_or(("POST", head));
    let content_type = lines.next();
    let body = lines.next().unwrap_or("").as_bytes();
    let mut state = new_state();
    let req = api::Request {
        method,
        url,
        content_type,
        accept: None,
        body,
    };
    let (_, response) = api::handle(&req, &mut state, Instant::now(), SystemTime::now());
    assert!((200..600).contains(&response.status));
    assert!(
        state.workloads.len() <= 2,
        "a heartbeat never adds a workload the backend did not ask for"
    );
}

/// The desired-state document: accepted only whole and valid.
pub fn desired(data: &[u8]) {
    if let Ok(list) = backend::parse_desired(data) {
        let mut seen = std::collections::BTreeSet::new();
        for w in &list {
            assert!(
                workload_manager::names::is_dns_label(&w.name),
                "{:?}",
                w.name
            );
            assert!(
                !w.version.is_empty() && w.version.len() <= 128,
                "{:?}",
                w.version
            );
            assert!(seen.insert(w.name.clone()), "{} listed twice", w.name);
        }
    }
}

/// A manifest through the checks before apply: what passes carries our
/// name, namespace and ownership labels.
pub fn manifest(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(prepared) = reconcile::prepare("web", "1.4.0", "edge", &value) {
        let meta = &prepared["metadata"];
        assert_eq!(meta["name"], "web");
        assert_eq!(meta["namespace"], "edge");
        assert_eq!(
            meta["labels"]["app.kubernetes.io/managed-by"],
            "workload-manager"
        );
        assert_eq!(meta["annotations"]["workload-manager/version"], "1.4.0");
    }
}

/// Kubernetes answers: lists, objects and error Statuses, and what the
/// manager derives from them.
pub fn kube_bodies(data: &[u8]) {
    if let Ok(list) = kube::decode::<kube::List>(data) {
        for d in &list.items {
            let _ = reconcile::rollout(d);
            let _ = reconcile::ownership_patch(&d.metadata.managed_fields);
        }
    }
    if let Ok(d) = kube::decode::<kube::Deployment>(data) {
        let _ = reconcile::rollout(&d);
    }
    if let Ok(list) = kube::decode::<pods::PodList>(data) {
        let grouped = pods::by_deployment(&list.items);
        let mut seen = pods::Terminations::default();
        for (name, group) in &grouped {
            let d = pods::diagnose(name, false, group, &mut seen);
            if let Some(m) = &d.message {
                assert!(m.len() <= 256, "a reason message over 256 bytes");
            }
        }
        for p in &list.items {
            let _ = pods::status_of(p);
        }
    }
    let _ = kube::decode::<kube::Node>(data);
    let error = kube::error_answer(503, data, None).to_string();
    assert!(
        error.len() < 4096,
        "an error message of {} bytes",
        error.len()
    );
    assert!(
        !error.chars().any(|c| c.is_control() && c != '\n'),
        "{error:?}"
    );
}

/// A Lease as read back: the election's rules take any of them.
pub fn lease_answer(data: &[u8]) {
    let Ok(read) = kube::decode::<lease::Lease>(data) else {
        return;
    };
    let timing = lease::Timing::for_call_timeout(Duration::from_secs(10));
    let mut election = lease::Election::new("workload-manager-0", timing);
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_867_200);
    let mut now = Duration::from_secs(100);
    for _ in 0..3 {
        let call = election.next_call("edge", now, wall);
        election.answered(&call, lease::Answer::Lease(read.clone()), now);
        now += Duration::from_secs(5);
    }
    let _ = election.role(now);
}

/// The self-update file and the image references it is applied to: never
/// another repository, never a downgrade.
pub fn update_file(data: &[u8]) {
    let running = update::Version::parse("0.3.1").expect("a version");
    if let Ok(latest) = update::parse_file(data) {
        let current = "ghcr.io/node-system/workload-manager:v0.3.1";
        if let Ok(update::Decision::Update { image, version }) =
            update::decide(&running, &latest, None, current)
        {
            assert!(version > running);
            assert!(
                image.starts_with("ghcr.io/node-system/workload-manager:v"),
                "{image}"
            );
        }
    }
    let text = String::from_utf8_lossy(data);
    if let Ok(image) = update::image_for(&text, &running) {
        let from = update::ImageRef::parse(&text).expect("image_for parsed it");
        let to = update::ImageRef::parse(&image).expect("image_for writes a reference");
        assert_eq!(from.repository, to.repository, "{text:?} -> {image:?}");
        assert_eq!(to.digest, None, "a digest is replaced by the tag");
        assert!(
            to.tag.is_some_and(|t| t.trim_start_matches('v') == "0.3.1"),
            "{image:?}"
        );
    }
}

/// The outbox and acknowledgement files at start: whatever is on disk, the
/// manager starts, and a second start finds a clean file.
pub fn outbox_file(data: &[u8]) {
    let dir = scratch_dir();
    let _ = std::fs::write(dir.join(outbox::FILE), data);
    let _ = std::fs::write(dir.join(workload_manager::acks::FILE), data);
    let (first, _) = outbox::Outbox::open(&dir);
    let (second, warnings) = outbox::Outbox::open(&dir);
    assert_eq!(first.len(), second.len());
    assert!(
        warnings.is_empty(),
        "the first start cleaned up: {warnings:?}"
    );
    assert!(first.len() <= outbox::CAPACITY);
    let _ = workload_manager::acks::Acks::open(&dir);
    let _ = workload_manager::acks::Acks::open(&dir);
}

fn scratch_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("wm-fuzz-outbox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Configuration values, one `NAME=value` a line: loaded or refused with
/// problems, and the node key never in what is printed.
pub fn config_values(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut vars: BTreeMap<String, String> = BTreeMap::new();
    vars.insert(
        "NODE_SYSTEM_ENDPOINT".into(),
        "https://backend.example".into(),
    );
    vars.insert("NODE_PRIVATE_KEY".into(), KEY.into());
    vars.insert("WM_KUBE_API_URL".into(), "https://127.0.0.1:6443".into());
    for line in text.lines() {
        if let Some((k, v)) = line.split_once('=') {
            vars.insert(k.to_string(), v.to_string());
        }
    }
    let key = vars.get("NODE_PRIVATE_KEY").cloned().unwrap_or_default();
    // The key may show only where it was also given as a value that is not
    // secret (the fuzzer writes it into the endpoint, say).
    let elsewhere = vars
        .iter()
        .any(|(name, value)| name != "NODE_PRIVATE_KEY" && value.contains(&key));
    match config::Config::load(&Vars(vars)) {
        Ok(c) => {
            let shown = c.printable();
            if key.len() >= 16 && !elsewhere {
                assert!(!shown.contains(&key), "the node key in --print-config");
            }
        }
        Err(problems) => assert!(!problems.is_empty()),
    }
}

const KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

struct Vars(BTreeMap<String, String>);

impl config::Source for Vars {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        // Files named in the configuration read as the value given for
        // `FILE:<path>`, if any.
        self.0
            .get(&format!("FILE:{}", path.display()))
            .cloned()
            .ok_or_else(|| std::io::ErrorKind::NotFound.into())
    }
}
