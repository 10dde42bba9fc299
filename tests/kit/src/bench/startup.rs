//! Spawn-to-serving and spawn-to-ready times.
//!
//! [`crate::proc::Manager::start`] learns the port from the log and polls
//! every 10 ms, too coarse here: this picks a free loopback port first, then
//! polls with a new connection every ~0.5 ms from the moment of spawning.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::proc::{read_reply, TEST_KEY};

/// Gap between two connection attempts.
pub const POLL_EVERY: Duration = Duration::from_micros(500);

/// The environment [`crate::proc::Manager::start`] gives a manager, minus
/// `WM_LISTEN`; `extra` wins.
pub fn base_env(extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("NODE_SYSTEM_ENDPOINT", "http://127.0.0.1:9"),
        ("NODE_PRIVATE_KEY", TEST_KEY),
        ("WM_NAMESPACE", "edge"),
        ("WM_KUBE_API_URL", "http://127.0.0.1:9"),
        ("WM_LOG", "debug"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// One start of the manager.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// Spawn until the first `200` on `/healthz`.
    pub serving: Duration,
    /// Spawn until the first `200` on `/readyz`, when asked for.
    pub ready: Option<Duration>,
}

/// `GET path` on a new connection; the status, or `None` if anything failed.
pub fn get_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .ok()?;
    read_reply(&mut s).ok().map(|r| r.status)
}

/// Gap between two `/readyz` polls: it waits for a jittered first sync of
/// seconds, and a new connection every 0.5 ms would load the manager meanwhile.
pub const READY_POLL_EVERY: Duration = Duration::from_millis(2);

/// Polls `GET path` every `every` until it answers 200; `Err` after
/// `limit` since `t0` or when `alive` says the process is gone.
fn poll_200(
    addr: SocketAddr,
    path: &str,
    every: Duration,
    t0: Instant,
    limit: Duration,
    mut alive: impl FnMut() -> bool,
) -> Result<Duration, String> {
    loop {
        if get_status(addr, path) == Some(200) {
            return Ok(t0.elapsed());
        }
        if !alive() {
            return Err(format!("the manager exited before {path} answered 200"));
        }
        if t0.elapsed() > limit {
            return Err(format!("{path} did not answer 200 within {limit:?}"));
        }
        std::thread::sleep(every);
    }
}

/// Spawns `bin` with `env` (see [`base_env`]) on a free port, times it to
/// serving (polling every [`POLL_EVERY`]) and to ready if `ready` (every
/// [`READY_POLL_EVERY`]), then kills it. Its log goes to `log`.
pub fn measure(
    bin: &Path,
    env: &[(String, String)],
    ready: bool,
    log: &Path,
) -> Result<Start, String> {
    let port = free_port().map_err(|e| format!("no free port: {e}"))?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let log_file = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("WM_LISTEN", addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_file);
    let t0 = Instant::now();
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("could not start {}: {e}", bin.display()))?;
    let mut alive = || matches!(child.try_wait(), Ok(None));
    let result = poll_200(
        addr,
        "/healthz",
        POLL_EVERY,
        t0,
        Duration::from_secs(5),
        &mut alive,
    )
    .and_then(|serving| {
        let ready = if ready {
            Some(poll_200(
                addr,
                "/readyz",
                READY_POLL_EVERY,
                t0,
                Duration::from_secs(15),
                &mut alive,
            )?)
        } else {
            None
        };
        Ok(Start { serving, ready })
    });
    let _ = child.kill();
    let _ = child.wait();
    result.map_err(|e| {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        format!(
            "{e}; last log lines:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_env_wins() {
        let env = base_env(&[("WM_LOG".into(), "info".into()), ("X".into(), "1".into())]);
        let get = |k: &str| {
            env.iter()
                .filter(|(ek, _)| ek == k)
                .map(|(_, v)| v.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(get("WM_LOG"), ["info"]);
        assert_eq!(get("X"), ["1"]);
        assert_eq!(get("WM_NAMESPACE"), ["edge"]);
    }

    #[test]
    fn a_missing_binary_is_an_error() {
        let dir = crate::proc::TempDir::new("bench-start");
        let e = measure(
            &dir.0.join("nope"),
            &base_env(&[]),
            false,
            &dir.0.join("log"),
        )
        .unwrap_err();
        assert!(e.contains("could not start"), "{e}");
    }
}
