//! Configuration from the environment: parsed once at start, every problem
//! reported at once, secrets never printed.
//!
//! The variables and their defaults are the contract in the README's
//! "Configuration" table. Parsing reads the environment and files only through
//! the [`Source`] it is given, so it is tested without touching the process.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::names::is_dns_label;

/// Where the in-cluster service-account files live.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A secret value: its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }
    /// The value itself, for the one place that must use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// How the manager reaches the Kubernetes API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    /// `https://host:port` or `http://host:port`, no trailing slash.
    pub api_url: String,
    /// Bearer token file; `None` sends no token (plain http without a token file).
    pub token_file: Option<PathBuf>,
    /// CA bundle for https.
    pub ca_file: PathBuf,
}

/// Where the self-update file lives; absent means self-update is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateConfig {
    pub bucket: String,
    pub key: String,
    pub region: String,
    /// S3-compatible endpoint (path-style); `None` means AWS.
    pub endpoint: Option<String>,
    /// Access key id and secret; `None` means anonymous.
    pub credentials: Option<(String, Secret)>,
}

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub backend_url: String,
    pub node_key: Secret,
    pub listen: SocketAddr,
    pub namespace: String,
    pub kube: KubeConfig,
    pub sync_interval: Duration,
    pub report_interval: Duration,
    pub update_interval: Duration,
    pub heartbeat_timeout: Duration,
    pub update: Option<UpdateConfig>,
    pub self_deployment: String,
    pub self_container: String,
    pub http_timeout: Duration,
    pub pod_name: String,
    /// The Kubernetes node it runs on (`NODE_NAME`), for the Node's conditions.
    pub node_name: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub log_level: log::LevelFilter,
    /// `SENTRY_DSN`: where error events go; `None` = off.
    pub sentry: Option<crate::sentry::Dsn>,
}

/// One invalid variable: its name and what is wrong, never a secret's value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub var: &'static str,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.message)
    }
}

/// What configuration is read from: the environment and files.
pub trait Source {
    fn var(&self, name: &str) -> Option<String>;
    fn read_file(&self, path: &Path) -> std::io::Result<String>;
}

/// The real process environment and file system.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
    fn read_file(&self, path: &Path) -> std::io::Result<String> {
        std::fs::read_to_string(path)
    }
}

impl Config {
    /// Reads and validates everything; on failure, every problem found.
    pub fn load(src: &dyn Source) -> Result<Config, Vec<Problem>> {
        let mut p = Parser {
            src,
            problems: Vec::new(),
        };
        let config = p.config();
        match config {
            Some(c) if p.problems.is_empty() => Ok(c),
            _ => Err(p.problems),
        }
    }

    /// The effective configuration as `NAME=value` lines, secrets redacted.
    pub fn printable(&self) -> String {
        let d = |d: Duration| format_duration(d);
        let opt = |v: Option<&str>| v.unwrap_or("(unset)").to_string();
        let path = |p: Option<&PathBuf>| p.map_or("(unset)".into(), |p| p.display().to_string());
        let update = self.update.as_ref();
        let rows: Vec<(&str, String)> = vec![
            ("NODE_SYSTEM_ENDPOINT", self.backend_url.clone()),
            ("NODE_PRIVATE_KEY", "<redacted>".into()),
            ("WM_LISTEN", self.listen.to_string()),
            ("WM_NAMESPACE", self.namespace.clone()),
            ("WM_KUBE_API_URL", self.kube.api_url.clone()),
            ("WM_KUBE_TOKEN_FILE", path(self.kube.token_file.as_ref())),
            ("WM_KUBE_CA_FILE", self.kube.ca_file.display().to_string()),
            ("WM_SYNC_INTERVAL", d(self.sync_interval)),
            ("WM_REPORT_INTERVAL", d(self.report_interval)),
            ("WM_UPDATE_INTERVAL", d(self.update_interval)),
            ("WM_HEARTBEAT_TIMEOUT", d(self.heartbeat_timeout)),
            (
                "WM_UPDATE_S3_BUCKET",
                opt(update.map(|u| u.bucket.as_str())),
            ),
            ("WM_UPDATE_S3_KEY", opt(update.map(|u| u.key.as_str()))),
            (
                "WM_UPDATE_S3_REGION",
                opt(update.map(|u| u.region.as_str())),
            ),
            (
                "WM_UPDATE_S3_ENDPOINT",
                opt(update.and_then(|u| u.endpoint.as_deref())),
            ),
            (
                // An identifier, not a secret, but half of a credential: only
                // whether it is set is shown, as for the secret.
                "AWS_ACCESS_KEY_ID",
                match update.and_then(|u| u.credentials.as_ref()) {
                    Some(_) => "<redacted>".into(),
                    None => "(unset)".into(),
                },
            ),
            (
                "AWS_SECRET_ACCESS_KEY",
                match update.and_then(|u| u.credentials.as_ref()) {
                    Some(_) => "<redacted>".into(),
                    None => "(unset)".into(),
                },
            ),
            ("WM_SELF_DEPLOYMENT", self.self_deployment.clone()),
            ("WM_SELF_CONTAINER", self.self_container.clone()),
            ("WM_HTTP_TIMEOUT", d(self.http_timeout)),
            ("POD_NAME", self.pod_name.clone()),
            (
                "NODE_NAME",
                self.node_name.clone().unwrap_or_else(|| "(unset)".into()),
            ),
            ("WM_STATE_DIR", path(self.state_dir.as_ref())),
            ("WM_LOG", self.log_level.to_string().to_lowercase()),
            (
                "SENTRY_DSN",
                match self.sentry {
                    Some(_) => "<redacted>".into(),
                    None => "(unset)".into(),
                },
            ),
        ];
        rows.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
    }
}

struct Parser<'a> {
    src: &'a dyn Source,
    problems: Vec<Problem>,
}

impl Parser<'_> {
    fn problem(&mut self, var: &'static str, message: impl Into<String>) {
        self.problems.push(Problem {
            var,
            message: message.into(),
        });
    }

    /// A variable's value; empty counts as unset.
    fn get(&self, var: &str) -> Option<String> {
        self.src.var(var).filter(|v| !v.trim().is_empty())
    }

    fn config(&mut self) -> Option<Config> {
        let backend_url = self.backend_url();
        let node_key = self.node_key();
        let listen = self.listen();
        let namespace = self.namespace();
        let kube = self.kube();
        let sync_interval = self.duration("WM_SYNC_INTERVAL", Duration::from_secs(600));
        let report_interval = self.duration("WM_REPORT_INTERVAL", Duration::from_secs(60));
        let update_interval = self.duration("WM_UPDATE_INTERVAL", Duration::from_secs(900));
        let heartbeat_timeout = self.duration("WM_HEARTBEAT_TIMEOUT", Duration::from_secs(30));
        let http_timeout = self.http_timeout();
        let update = self.update();
        let self_deployment = self.name("WM_SELF_DEPLOYMENT", "workload-manager");
        let self_container = self.name("WM_SELF_CONTAINER", "workload-manager");
        let pod_name = self.pod_name();
        let node_name = self.node_name();
        let state_dir = self.get("WM_STATE_DIR").map(PathBuf::from);
        let log_level = self.log_level();
        let sentry = self.sentry();
        Some(Config {
            backend_url: backend_url?,
            node_key: node_key?,
            listen: listen?,
            namespace: namespace?,
            kube: kube?,
            sync_interval: sync_interval?,
            report_interval: report_interval?,
            update_interval: update_interval?,
            heartbeat_timeout: heartbeat_timeout?,
            update: update?,
            self_deployment: self_deployment?,
            self_container: self_container?,
            http_timeout: http_timeout?,
            pod_name,
            node_name: node_name?,
            state_dir,
            log_level: log_level?,
            sentry: sentry?,
        })
    }

    fn backend_url(&mut self) -> Option<String> {
        const VAR: &str = "NODE_SYSTEM_ENDPOINT";
        let Some(v) = self.get(VAR) else {
            self.problem(VAR, "required: the Node System backend's base URL");
            return None;
        };
        self.url(VAR, &v)
    }

    /// An `http://` or `https://` URL with a host, without its trailing slash.
    fn url(&mut self, var: &'static str, v: &str) -> Option<String> {
        let v = v.trim();
        let rest = v
            .strip_prefix("https://")
            .or_else(|| v.strip_prefix("http://"));
        match rest {
            Some(rest)
                if !rest.is_empty()
                    && !rest.starts_with('/')
                    && !v.contains(char::is_whitespace) =>
            {
                Some(v.trim_end_matches('/').to_string())
            }
            _ => {
                self.problem(
                    var,
                    format!("{v:?} is not an http:// or https:// URL with a host"),
                );
                None
            }
        }
    }

    fn node_key(&mut self) -> Option<Secret> {
        const VAR: &str = "NODE_PRIVATE_KEY";
        const FILE_VAR: &str = "NODE_PRIVATE_KEY_FILE";
        let raw = match (self.get(VAR), self.get(FILE_VAR)) {
            (Some(_), Some(_)) => {
                self.problem(
                    VAR,
                    "set either NODE_PRIVATE_KEY or NODE_PRIVATE_KEY_FILE, not both",
                );
                return None;
            }
            (None, None) => {
                self.problem(
                    VAR,
                    "required: the node's private key (or NODE_PRIVATE_KEY_FILE)",
                );
                return None;
            }
            (Some(v), None) => (VAR, v),
            (None, Some(path)) => match self.src.read_file(Path::new(&path)) {
                Ok(v) => (FILE_VAR, v),
                Err(e) => {
                    self.problem(FILE_VAR, format!("cannot read {path:?}: {e}"));
                    return None;
                }
            },
        };
        let (var, value) = raw;
        let hex = value.trim();
        let hex = hex
            .strip_prefix("0x")
            .or_else(|| hex.strip_prefix("0X"))
            .unwrap_or(hex);
        let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
        if !valid {
            self.problem(
                var,
                "not a private key: expected 64 hex digits, 0x optional (value not shown)",
            );
            return None;
        }
        if hex.bytes().all(|b| b == b'0') {
            self.problem(var, "not a private key: it is zero (value not shown)");
            return None;
        }
        Some(Secret::new(hex.to_ascii_lowercase()))
    }

    fn listen(&mut self) -> Option<SocketAddr> {
        const VAR: &str = "WM_LISTEN";
        let v = self.get(VAR).unwrap_or_else(|| "0.0.0.0:8080".into());
        match v.trim().parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.problem(VAR, format!("{v:?} is not an address like 0.0.0.0:8080"));
                None
            }
        }
    }

    fn namespace(&mut self) -> Option<String> {
        const VAR: &str = "WM_NAMESPACE";
        let v = match self.get(VAR) {
            Some(v) => v.trim().to_string(),
            None => {
                let file = Path::new(SERVICE_ACCOUNT_DIR).join("namespace");
                match self.src.read_file(&file) {
                    Ok(v) if !v.trim().is_empty() => v.trim().to_string(),
                    _ => "default".into(),
                }
            }
        };
        if is_dns_label(&v) {
            Some(v)
        } else {
            self.problem(VAR, format!("{v:?} is not a Kubernetes namespace name"));
            None
        }
    }

    fn kube(&mut self) -> Option<KubeConfig> {
        const VAR: &str = "WM_KUBE_API_URL";
        let api_url = match self.get(VAR) {
            Some(v) => self.url(VAR, &v),
            None => match (
                self.get("KUBERNETES_SERVICE_HOST"),
                self.get("KUBERNETES_SERVICE_PORT"),
            ) {
                (Some(host), Some(port)) => {
                    let host = host.trim();
                    let host = if host.contains(':') {
                        format!("[{host}]")
                    } else {
                        host.to_string()
                    };
                    self.url(VAR, &format!("https://{host}:{}", port.trim()))
                }
                _ => {
                    self.problem(
                        VAR,
                        "not set, and KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set either (not in a pod?)",
                    );
                    None
                }
            },
        };
        let default_dir = Path::new(SERVICE_ACCOUNT_DIR);
        let token_var = self.get("WM_KUBE_TOKEN_FILE").map(PathBuf::from);
        let ca_file = self
            .get("WM_KUBE_CA_FILE")
            .map(PathBuf::from)
            .unwrap_or_else(|| default_dir.join("ca.crt"));
        let api_url = api_url?;
        let token_file = match token_var {
            Some(path) => Some(path),
            None if api_url.starts_with("https://") => Some(default_dir.join("token")),
            None => None,
        };
        Some(KubeConfig {
            api_url,
            token_file,
            ca_file,
        })
    }

    fn duration(&mut self, var: &'static str, default: Duration) -> Option<Duration> {
        let Some(v) = self.get(var) else {
            return Some(default);
        };
        match parse_duration(&v) {
            Some(d) if !d.is_zero() => Some(d),
            Some(_) => {
                self.problem(var, "must be more than zero");
                None
            }
            None => {
                self.problem(
                    var,
                    format!("{v:?} is not a duration (use 500ms, 30s, 10m, 1h or bare seconds)"),
                );
                None
            }
        }
    }

    /// `WM_HTTP_TIMEOUT`: the Lease timing is derived from it (see
    /// `lease::Timing`), which bounds it.
    fn http_timeout(&mut self) -> Option<Duration> {
        let t = self.duration("WM_HTTP_TIMEOUT", Duration::from_secs(10))?;
        if t > crate::lease::MAX_CALL {
            self.problem(
                "WM_HTTP_TIMEOUT",
                format!(
                    "at most {}: the leader-election Lease is sized so that no call can outlast it, and a longer timeout would make it last over two minutes",
                    format_duration(crate::lease::MAX_CALL),
                ),
            );
            return None;
        }
        Some(t)
    }

    fn name(&mut self, var: &'static str, default: &str) -> Option<String> {
        let v = self.get(var).unwrap_or_else(|| default.into());
        if is_dns_label(v.trim()) {
            Some(v.trim().to_string())
        } else {
            self.problem(
                var,
                format!("{v:?} is not a Kubernetes name (lowercase letters, digits, '-')"),
            );
            None
        }
    }

    fn update(&mut self) -> Option<Option<UpdateConfig>> {
        let key_id = self.get("AWS_ACCESS_KEY_ID");
        let secret = self.get("AWS_SECRET_ACCESS_KEY");
        let credentials = match (key_id, secret) {
            (Some(id), Some(secret)) => Some((
                id.trim().to_string(),
                Secret::new(secret.trim().to_string()),
            )),
            (None, None) => None,
            (Some(_), None) => {
                self.problem(
                    "AWS_SECRET_ACCESS_KEY",
                    "required when AWS_ACCESS_KEY_ID is set",
                );
                return None;
            }
            (None, Some(_)) => {
                self.problem(
                    "AWS_ACCESS_KEY_ID",
                    "required when AWS_SECRET_ACCESS_KEY is set",
                );
                return None;
            }
        };
        let endpoint = match self.get("WM_UPDATE_S3_ENDPOINT") {
            Some(v) => Some(self.url("WM_UPDATE_S3_ENDPOINT", &v)?),
            None => None,
        };
        let Some(bucket) = self.get("WM_UPDATE_S3_BUCKET") else {
            return Some(None);
        };
        Some(Some(UpdateConfig {
            bucket: bucket.trim().to_string(),
            key: self
                .get("WM_UPDATE_S3_KEY")
                .unwrap_or_else(|| "workload-manager/latest".into()),
            region: self
                .get("WM_UPDATE_S3_REGION")
                .unwrap_or_else(|| "us-east-1".into()),
            endpoint,
            credentials,
        }))
    }

    /// `NODE_NAME`: a node's name is a DNS-1123 subdomain.
    fn node_name(&mut self) -> Option<Option<String>> {
        let Some(v) = self.get("NODE_NAME") else {
            return Some(None);
        };
        let v = v.trim().to_string();
        if crate::names::is_dns_subdomain(&v) {
            Some(Some(v))
        } else {
            self.problem(
                "NODE_NAME",
                "not a Kubernetes node name (lowercase letters, digits, '-' and '.', at most 253)",
            );
            None
        }
    }

    fn pod_name(&self) -> String {
        self.get("POD_NAME")
            .or_else(|| self.get("HOSTNAME"))
            .or_else(|| {
                self.src
                    .read_file(Path::new("/proc/sys/kernel/hostname"))
                    .ok()
            })
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| "workload-manager".into())
    }

    /// `SENTRY_DSN`: unset is off; one that does not parse is an error.
    fn sentry(&mut self) -> Option<Option<crate::sentry::Dsn>> {
        let Some(v) = self.get("SENTRY_DSN") else {
            return Some(None);
        };
        match crate::sentry::Dsn::parse(&v) {
            Ok(dsn) => Some(Some(dsn)),
            Err(why) => {
                self.problem("SENTRY_DSN", format!("not a Sentry DSN: {why}"));
                None
            }
        }
    }

    fn log_level(&mut self) -> Option<log::LevelFilter> {
        const VAR: &str = "WM_LOG";
        let v = self.get(VAR).unwrap_or_else(|| "info".into());
        match v.trim().to_ascii_lowercase().as_str() {
            "error" => Some(log::LevelFilter::Error),
            "warn" => Some(log::LevelFilter::Warn),
            "info" => Some(log::LevelFilter::Info),
            "debug" => Some(log::LevelFilter::Debug),
            "trace" => Some(log::LevelFilter::Trace),
            _ => {
                self.problem(
                    VAR,
                    format!("{v:?} is not one of error, warn, info, debug, trace"),
                );
                None
            }
        }
    }
}

/// `500ms`, `30s`, `10m`, `1h` or bare seconds.
pub fn parse_duration(v: &str) -> Option<Duration> {
    let v = v.trim();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (digits, unit) = v.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let ms = match unit {
        "ms" => n,
        "" | "s" => n.checked_mul(1000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// The shortest of `500ms`, `30s`, `10m`, `1h` that is exact.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms % 1000 != 0 {
        format!("{ms}ms")
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}s", ms / 1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";

    struct Fake {
        vars: HashMap<&'static str, String>,
        files: HashMap<PathBuf, String>,
    }

    impl Source for Fake {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned()
        }
        fn read_file(&self, path: &Path) -> std::io::Result<String> {
            self.files
                .get(path)
                .cloned()
                .ok_or_else(|| std::io::ErrorKind::NotFound.into())
        }
    }

    fn minimal() -> Fake {
        let vars = HashMap::from([
            (
                "NODE_SYSTEM_ENDPOINT",
                "https://nodesystem.example/api/".to_string(),
            ),
            ("NODE_PRIVATE_KEY", format!("0x{KEY}")),
            ("KUBERNETES_SERVICE_HOST", "10.43.0.1".to_string()),
            ("KUBERNETES_SERVICE_PORT", "443".to_string()),
        ]);
        let files = HashMap::from([(
            Path::new(SERVICE_ACCOUNT_DIR).join("namespace"),
            "edge\n".to_string(),
        )]);
        Fake { vars, files }
    }

    fn problems(src: &Fake) -> Vec<String> {
        Config::load(src)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = Config::load(&minimal()).unwrap();
        assert_eq!(c.backend_url, "https://nodesystem.example/api");
        assert_eq!(c.node_key.expose(), KEY);
        assert_eq!(c.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(
            c.namespace, "edge",
            "namespace comes from the service-account file"
        );
        assert_eq!(c.kube.api_url, "https://10.43.0.1:443");
        assert_eq!(
            c.kube.token_file.as_deref(),
            Some(Path::new(
                "/var/run/secrets/kubernetes.io/serviceaccount/token"
            ))
        );
        assert_eq!(
            c.kube.ca_file,
            Path::new("/var/run/secrets/kubernetes.io/serviceaccount/ca.crt")
        );
        assert_eq!(c.sync_interval, Duration::from_secs(600));
        assert_eq!(c.report_interval, Duration::from_secs(60));
        assert_eq!(c.update_interval, Duration::from_secs(900));
        assert_eq!(c.heartbeat_timeout, Duration::from_secs(30));
        assert_eq!(c.http_timeout, Duration::from_secs(10));
        assert_eq!(c.update, None);
        assert_eq!(
            (c.self_deployment.as_str(), c.self_container.as_str()),
            ("workload-manager", "workload-manager")
        );
        assert_eq!(c.state_dir, None);
        assert_eq!(c.log_level, log::LevelFilter::Info);
    }

    #[test]
    fn namespace_defaults_to_default_outside_a_pod() {
        let mut src = minimal();
        src.files.clear();
        assert_eq!(Config::load(&src).unwrap().namespace, "default");
    }

    #[test]
    fn ipv6_service_host_is_bracketed() {
        let mut src = minimal();
        src.vars.insert("KUBERNETES_SERVICE_HOST", "fd00::1".into());
        assert_eq!(
            Config::load(&src).unwrap().kube.api_url,
            "https://[fd00::1]:443"
        );
    }

    #[test]
    fn plain_http_kube_sends_no_token_unless_a_file_is_set() {
        let mut src = minimal();
        src.vars
            .insert("WM_KUBE_API_URL", "http://127.0.0.1:8001".into());
        assert_eq!(Config::load(&src).unwrap().kube.token_file, None);
        src.vars.insert("WM_KUBE_TOKEN_FILE", "/tmp/token".into());
        assert_eq!(
            Config::load(&src).unwrap().kube.token_file.as_deref(),
            Some(Path::new("/tmp/token"))
        );
    }

    #[test]
    fn key_from_file_is_trimmed() {
        let mut src = minimal();
        src.vars.remove("NODE_PRIVATE_KEY");
        src.vars
            .insert("NODE_PRIVATE_KEY_FILE", "/secrets/key".into());
        src.files.insert(
            PathBuf::from("/secrets/key"),
            format!("{}\n", KEY.to_uppercase()),
        );
        assert_eq!(Config::load(&src).unwrap().node_key.expose(), KEY);
    }

    #[test]
    fn every_problem_is_reported_at_once_without_secrets() {
        let mut src = minimal();
        src.vars.remove("NODE_SYSTEM_ENDPOINT");
        src.vars.insert("NODE_PRIVATE_KEY", "0xdeadbeefq9z".into());
        src.vars.insert("WM_SYNC_INTERVAL", "ten minutes".into());
        src.vars.insert("WM_REPORT_INTERVAL", "0".into());
        src.vars.insert("WM_LISTEN", "8080".into());
        src.vars.insert("WM_LOG", "loud".into());
        src.vars.insert("AWS_ACCESS_KEY_ID", "AKIA".into());
        let found = problems(&src);
        let vars: Vec<&str> = found.iter().map(|p| p.split(':').next().unwrap()).collect();
        assert_eq!(
            vars,
            [
                "NODE_SYSTEM_ENDPOINT",
                "NODE_PRIVATE_KEY",
                "WM_LISTEN",
                "WM_SYNC_INTERVAL",
                "WM_REPORT_INTERVAL",
                "AWS_SECRET_ACCESS_KEY",
                "WM_LOG"
            ]
        );
        assert!(
            found
                .iter()
                .all(|p| !p.contains("q9z") && !p.contains("deadbeef")),
            "{found:?}"
        );
    }

    #[test]
    fn an_http_timeout_the_lease_cannot_cover_is_refused() {
        let mut src = minimal();
        src.vars.insert("WM_HTTP_TIMEOUT", "60s".into());
        assert_eq!(
            Config::load(&src).unwrap().http_timeout,
            Duration::from_secs(60)
        );
        src.vars.insert("WM_HTTP_TIMEOUT", "61s".into());
        let found = problems(&src);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].starts_with("WM_HTTP_TIMEOUT: at most 1m: the leader-election Lease"),
            "{found:?}"
        );
    }

    #[test]
    fn both_key_forms_or_neither_is_an_error() {
        let mut src = minimal();
        src.vars.insert("NODE_PRIVATE_KEY_FILE", "/k".into());
        assert!(problems(&src)[0].contains("not both"));
        src.vars.remove("NODE_PRIVATE_KEY_FILE");
        src.vars.remove("NODE_PRIVATE_KEY");
        assert!(problems(&src)[0].starts_with("NODE_PRIVATE_KEY: required"));
    }

    #[test]
    fn kube_url_is_required_outside_a_pod() {
        let mut src = minimal();
        src.vars.remove("KUBERNETES_SERVICE_HOST");
        assert!(problems(&src)[0].starts_with("WM_KUBE_API_URL: not set"));
    }

    #[test]
    fn update_settings_and_credentials() {
        let mut src = minimal();
        src.vars.insert("WM_UPDATE_S3_BUCKET", "releases".into());
        src.vars
            .insert("WM_UPDATE_S3_ENDPOINT", "http://127.0.0.1:9000/".into());
        src.vars.insert("AWS_ACCESS_KEY_ID", "AKIA".into());
        src.vars.insert("AWS_SECRET_ACCESS_KEY", "s3cr3t".into());
        let c = Config::load(&src).unwrap();
        let u = c.update.clone().unwrap();
        assert_eq!(u.key, "workload-manager/latest");
        assert_eq!(u.region, "us-east-1");
        assert_eq!(u.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(u.credentials.as_ref().map(|c| c.1.expose()), Some("s3cr3t"));
        let printed = c.printable();
        assert!(printed.contains("AWS_SECRET_ACCESS_KEY=<redacted>"));
        assert!(printed.contains("NODE_PRIVATE_KEY=<redacted>"));
        assert!(!printed.contains("s3cr3t") && !printed.contains(KEY));
        assert!(!format!("{c:?}").contains("s3cr3t") && !format!("{c:?}").contains(KEY));
    }

    #[test]
    fn a_sentry_dsn_is_parsed_redacted_and_a_bad_one_refused() {
        let mut src = minimal();
        let dsn = "https://0123456789abcdef0123456789abcdef@o1.ingest.sentry.io/42";
        src.vars.insert("SENTRY_DSN", dsn.into());
        let c = Config::load(&src).unwrap();
        assert!(c.sentry.is_some());
        let printed = c.printable();
        assert!(printed.contains("SENTRY_DSN=<redacted>\n"), "{printed}");
        assert!(
            !printed.contains("0123456789abcdef") && !format!("{c:?}").contains("0123456789abcdef")
        );
        src.vars
            .insert("SENTRY_DSN", "https://o1.ingest.sentry.io/42".into());
        let p = problems(&src);
        assert!(
            p[0].starts_with("SENTRY_DSN: not a Sentry DSN: no public key"),
            "{p:?}"
        );
        src.vars.remove("SENTRY_DSN");
        assert!(Config::load(&src).unwrap().sentry.is_none());
        assert!(Config::load(&src)
            .unwrap()
            .printable()
            .contains("SENTRY_DSN=(unset)"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration(" 45 "), Some(Duration::from_secs(45)));
        for bad in [
            "",
            "s",
            "1.5s",
            "-1s",
            "10 m",
            "1d",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
        for d in ["500ms", "30s", "10m", "1h", "90s"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }
}
