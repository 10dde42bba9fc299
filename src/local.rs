//! `workload-manager status` and `workload-manager sync`: the running
//! manager's own API, asked on its listen address (`WM_LISTEN`), so an
//! operator can use it with `kubectl exec` in a scratch image that has no
//! curl.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

/// How long the manager has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest answer read (the status of thousands of workloads fits).
const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Where to reach the manager that listens on `listen`: an unspecified
/// address (`0.0.0.0`, `::`) is reached on loopback.
pub fn target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), listen.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), listen.port())
        }
        _ => listen,
    }
}

/// The manager's answer: status code and body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// Sends `method path` to the manager at `addr` and reads its answer.
pub fn call(addr: SocketAddr, method: &str, path: &str) -> Result<Answer, String> {
    let unreachable = |e: std::io::Error| format!("no answer from the manager at {addr}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(unreachable)?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(unreachable)?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(unreachable)?;
    let mut reader = BufReader::new(stream.take(MAX_BODY));
    let mut line = String::new();
    reader.read_line(&mut line).map_err(unreachable)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("the manager at {addr} did not answer HTTP: {line:?}"))?;
    let mut length = None;
    loop {
        line.clear();
        reader.read_line(&mut line).map_err(unreachable)?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<u64>().ok();
            }
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => reader.take(n).read_to_end(&mut body),
        None => reader.read_to_end(&mut body),
    }
    .map_err(unreachable)?;
    Ok(Answer {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unspecified_listen_address_is_reached_on_loopback() {
        let t = |s: &str| target(s.parse().unwrap()).to_string();
        assert_eq!(t("0.0.0.0:8080"), "127.0.0.1:8080");
        assert_eq!(t("[::]:8080"), "[::1]:8080");
        assert_eq!(t("10.1.2.3:9000"), "10.1.2.3:9000");
    }

    #[test]
    fn nothing_listening_is_a_clear_error() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let e = call(addr, "GET", "/v1/status").unwrap_err();
        assert!(
            e.starts_with(&format!("no answer from the manager at {addr}")),
            "{e}"
        );
    }
}
