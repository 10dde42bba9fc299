//! The binary's command line, configuration errors and signals.

use std::process::Command;
use std::time::{Duration, Instant};

use wm_testkit::proc::{Manager, TEST_KEY};

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");

fn run(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("runs")
}

#[test]
fn help_and_version() {
    let out = run(&["--help"], &[]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(
        help.contains("NODE_SYSTEM_ENDPOINT") && help.contains("--print-config"),
        "{help}"
    );
    let out = run(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("workload-manager {}", env!("CARGO_PKG_VERSION"))
    );
    let out = run(&["--bogus"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn invalid_configuration_lists_every_problem_and_exits_2() {
    let out = run(
        &[],
        &[
            ("NODE_PRIVATE_KEY", "0x1234"),
            ("WM_SYNC_INTERVAL", "soon"),
            ("WM_LISTEN", "nowhere"),
            ("WM_KUBE_API_URL", "ftp://x"),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for var in [
        "NODE_SYSTEM_ENDPOINT",
        "NODE_PRIVATE_KEY",
        "WM_SYNC_INTERVAL",
        "WM_LISTEN",
        "WM_KUBE_API_URL",
    ] {
        assert!(
            err.contains(&format!("  {var}: ")),
            "{var} missing from:\n{err}"
        );
    }
    assert!(
        !err.contains("0x1234"),
        "the key's value is never printed:\n{err}"
    );
}

#[test]
fn print_config_redacts_secrets() {
    let out = run(
        &["--print-config"],
        &[
            ("NODE_SYSTEM_ENDPOINT", "https://ns.example/api"),
            ("NODE_PRIVATE_KEY", TEST_KEY),
            ("WM_KUBE_API_URL", "http://127.0.0.1:8001"),
            ("WM_UPDATE_S3_BUCKET", "releases"),
            ("AWS_ACCESS_KEY_ID", "AKIATEST"),
            ("AWS_SECRET_ACCESS_KEY", "verysecretvalue"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("NODE_SYSTEM_ENDPOINT=https://ns.example/api\n"));
    assert!(text.contains("WM_SYNC_INTERVAL=10m\n"));
    assert!(text.contains("NODE_PRIVATE_KEY=<redacted>\n"));
    assert!(text.contains("AWS_SECRET_ACCESS_KEY=<redacted>\n"));
    assert!(text.contains("AWS_ACCESS_KEY_ID=<redacted>\n"));
    assert!(
        !text.contains(TEST_KEY) && !text.contains("verysecretvalue") && !text.contains("AKIATEST"),
        "{text}"
    );
}

#[test]
fn sigterm_and_sigint_stop_it_cleanly() {
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut m = Manager::start(BIN, &[]);
        assert_eq!(m.get("/healthz").status, 200);
        let asked = Instant::now();
        m.signal(sig);
        let status = m.wait_exit(Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "signal {sig}");
        assert!(asked.elapsed() < Duration::from_secs(5));
        assert!(m.log().iter().any(|l| l.contains("stopping")));
    }
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = run(
        &[],
        &[
            ("NODE_SYSTEM_ENDPOINT", "http://127.0.0.1:9"),
            ("NODE_PRIVATE_KEY", TEST_KEY),
            ("WM_KUBE_API_URL", "http://127.0.0.1:9"),
            ("WM_LISTEN", &addr),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("cannot listen on {addr}")));
}

#[test]
fn status_and_sync_ask_the_running_manager() {
    let m = Manager::start(BIN, &[]);
    let listen = m.addr.to_string();
    let env = [("WM_LISTEN", listen.as_str())];
    let out = run(&["status"], &env);
    assert!(out.status.success(), "{out:?}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.starts_with("workload-manager "), "{table}");
    assert!(table.contains("WORKLOAD"), "{table}");
    let out = run(&["status", "--json"], &env);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["manager"]["version"], env!("CARGO_PKG_VERSION"));
    let out = run(&["sync"], &env);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "sync scheduled"
    );
    // On all addresses: asked on loopback.
    let port = m.addr.port().to_string();
    let any = format!("0.0.0.0:{port}");
    let out = run(&["status", "--json"], &[("WM_LISTEN", any.as_str())]);
    assert!(out.status.success(), "{out:?}");
    drop(m);
    let out = run(&["status"], &env);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no answer from the manager at"), "{err}");
    let out = run(&["status"], &[("WM_LISTEN", "nowhere")]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
