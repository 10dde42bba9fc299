//! Running wrk (https://github.com/wg/wrk) with a heartbeat POST script and
//! reading its report.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::load::HEARTBEAT_BODY;

/// How to get wrk when it is missing.
pub const INSTALL_HINT: &str =
    "install wrk for the second opinion: `apt-get install -y wrk` (Debian/Ubuntu), `dnf install wrk`, `brew install wrk`";

/// The Lua script: every request is the heartbeat POST with its content type.
pub fn post_lua() -> String {
    format!(
        "wrk.method = \"POST\"\nwrk.body = '{HEARTBEAT_BODY}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n"
    )
}

/// What wrk reported.
#[derive(Debug, Clone, Default)]
pub struct WrkResult {
    pub rps: f64,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub requests: u64,
    /// `Non-2xx or 3xx responses`.
    pub non_2xx: u64,
    /// The `Socket errors:` line, if any.
    pub socket_errors: Option<String>,
}

/// `wrk -t1 -c<connections> -d<duration> --latency -s <script> <url>`.
pub fn run(
    wrk: &Path,
    script: &Path,
    url: &str,
    connections: usize,
    duration: Duration,
) -> Result<WrkResult, String> {
    let out = Command::new(wrk)
        .arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--timeout")
        .arg("5s")
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
        .output()
        .map_err(|e| format!("could not run {}: {e}", wrk.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "wrk failed ({}): {}{}",
            out.status,
            text,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    parse(&text).ok_or_else(|| format!("could not read wrk's report:\n{text}"))
}

/// Reads wrk's `--latency` report.
pub fn parse(text: &str) -> Option<WrkResult> {
    let mut r = WrkResult::default();
    let mut seen_rps = false;
    for line in text.lines() {
        let l = line.trim();
        let words: Vec<&str> = l.split_whitespace().collect();
        match words.as_slice() {
            ["50%", v] => r.p50 = duration(v)?,
            ["90%", v] => r.p90 = duration(v)?,
            ["99%", v] => r.p99 = duration(v)?,
            ["Latency", _avg, _stdev, max, ..] => r.max = duration(max)?,
            ["Requests/sec:", v] => {
                r.rps = v.parse().ok()?;
                seen_rps = true;
            }
            ["Non-2xx", "or", "3xx", "responses:", n] => r.non_2xx = n.parse().ok()?,
            [n, "requests", "in", ..] => r.requests = n.parse().ok()?,
            ["Socket", "errors:", ..] => r.socket_errors = Some(l.to_string()),
            _ => {}
        }
    }
    seen_rps.then_some(r)
}

/// `143.00us`, `1.23ms`, `2.00s`, `1.00m`.
fn duration(v: &str) -> Option<Duration> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e6)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e9)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e9)
    } else if let Some(n) = v.strip_suffix('h') {
        (n, 3600e9)
    } else {
        return None;
    };
    let ns = (num.parse::<f64>().ok()? * scale).round();
    (ns.is_finite() && ns >= 0.0).then(|| Duration::from_nanos(ns as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "Running 5s test @ http://127.0.0.1:4000/v1/workloads/bench/health
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.17ms  403.28us  12.40ms   88.16%
    Req/Sec    27.77k     1.38k   29.44k    82.00%
  Latency Distribution
     50%    1.09ms
     75%    1.24ms
     90%    1.52ms
     99%    2.61ms
  138251 requests in 5.00s, 10.68MB read
  Socket errors: connect 0, read 0, write 0, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:  27636.73
Transfer/sec:      2.13MB
";

    #[test]
    fn reads_the_report() {
        let r = parse(REPORT).unwrap();
        assert!((r.rps - 27636.73).abs() < 1e-6);
        assert_eq!(r.p50, Duration::from_micros(1090));
        assert_eq!(r.p90, Duration::from_micros(1520));
        assert_eq!(r.p99, Duration::from_micros(2610));
        assert_eq!(r.max, Duration::from_micros(12400));
        assert_eq!((r.requests, r.non_2xx), (138_251, 7));
        assert!(r.socket_errors.unwrap().contains("timeout 2"));
        assert_eq!(duration("143.00us"), Some(Duration::from_micros(143)));
        assert!(parse("nothing").is_none());
    }

    #[test]
    fn the_script_posts_json() {
        let s = post_lua();
        assert!(s.contains("wrk.method = \"POST\""));
        assert!(s.contains(r#"'{"status":"healthy"}'"#));
        assert!(s.contains("application/json"));
    }
}
