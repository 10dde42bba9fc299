//! The Kubernetes API client: plain REST over ureq and rustls, no Kubernetes
//! crate.
//!
//! It trusts only the configured CA (the API server is reached by IP, so the
//! certificate's IP SAN is what is checked), never goes through a proxy taken
//! from the environment, bounds every call by the configured timeout, and
//! re-reads the service-account token at least every minute and after a 401,
//! because projected tokens rotate. It must never list, change or delete a
//! Deployment without the managed-by label (see the README).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::KubeConfig;
use crate::lease::Lease;

/// The field manager of our server-side applies.
pub const FIELD_MANAGER: &str = "workload-manager";
/// The label every Deployment we own carries.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by=workload-manager";
/// How long a token read from the file is used before reading it again.
pub const TOKEN_MAX_AGE: Duration = Duration::from_secs(60);
/// Largest response body read from the API server.
pub const MAX_RESPONSE: u64 = 16 * 1024 * 1024;
/// Which calls a call is among: leader-only ones, within `WM_HTTP_TIMEOUT`
/// and behind the fence, or Lease calls, within the Lease call's own
/// timeout and never fenced (they are how leadership is kept or learned).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Leader,
    Lease,
}

/// A 401 is retried only with at least this much of the call's budget left.
const MIN_RETRY_BUDGET: Duration = Duration::from_millis(100);
/// Largest error body read: a Status is small.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// A failed call, with what an operator needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubeError {
    /// Our side: a missing or unreadable CA bundle.
    Setup(String),
    /// No HTTP answer: refused, reset, timed out, TLS failure.
    Unreachable(String),
    /// Not sent: the Lease may have lapsed (see `outbound::Fence`).
    Fenced(crate::outbound::Fenced),
    /// The API server answered with an error Status.
    Api {
        code: u16,
        reason: String,
        message: String,
        retry_after: Option<Duration>,
    },
    /// The answer was not what the API promises.
    Decode(String),
}

impl std::fmt::Display for KubeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KubeError::Setup(m) => write!(f, "Kubernetes client setup: {m}"),
            KubeError::Unreachable(m) => write!(f, "Kubernetes API unreachable: {m}"),
            KubeError::Fenced(e) => write!(f, "{e}"),
            KubeError::Api {
                code,
                reason,
                message,
                ..
            } => {
                write!(f, "Kubernetes API answered {code} {reason}: {message}")
            }
            KubeError::Decode(m) => write!(f, "Kubernetes API answer not understood: {m}"),
        }
    }
}

impl KubeError {
    /// A Retry-After the server asked for (429, 503).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            KubeError::Api { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The client, for one namespace.
pub struct Kube {
    base: String,
    namespace: String,
    token_file: Option<PathBuf>,
    token: Option<(String, Instant)>,
    ca_file: PathBuf,
    agent: Option<ureq::Agent>,
    /// The most one call may take, its 401 retry included.
    timeout: Duration,
    /// The same, for a Lease call.
    lease_timeout: Duration,
    /// Every call but the Lease's is leader-only.
    fence: crate::outbound::Fence,
}

#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// A list of Deployments, as the API server answers a `list`.
#[derive(Deserialize)]
pub struct List {
    pub items: Vec<Deployment>,
}

/// The fields of a Deployment the manager reads; everything else passes
/// through as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Deployment {
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: DeploymentSpec,
    #[serde(default)]
    pub status: DeploymentStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ObjectMeta {
    pub name: String,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default)]
    pub annotations: Annotations,
    #[serde(default)]
    pub generation: i64,
    /// Who owns its fields, and by which kind of write (`metadata.managedFields`).
    #[serde(default, rename = "managedFields")]
    pub managed_fields: Vec<ManagedFieldsEntry>,
}

/// One `metadata.managedFields` entry, without the fields themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ManagedFieldsEntry {
    #[serde(default)]
    pub manager: String,
    /// `Apply` (server-side apply) or `Update` (any other write).
    #[serde(default)]
    pub operation: String,
    #[serde(default)]
    pub subresource: Option<String>,
}

/// The labels the manager reads; others are skipped while decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Labels {
    #[serde(rename = "app.kubernetes.io/managed-by")]
    pub managed_by: Option<String>,
}

/// The annotations the manager reads; others are skipped while decoding.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Annotations {
    #[serde(rename = "workload-manager/version")]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DeploymentSpec {
    pub replicas: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStatus {
    #[serde(default)]
    pub observed_generation: i64,
    #[serde(default)]
    pub replicas: i64,
    #[serde(default)]
    pub updated_replicas: i64,
    #[serde(default)]
    pub ready_replicas: i64,
    #[serde(default)]
    pub available_replicas: i64,
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Condition {
    #[serde(rename = "type")]
    pub kind: String,
    pub status: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub message: String,
}

/// The fields of a Node the reports use: its conditions and kubelet version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Node {
    #[serde(default)]
    pub status: NodeStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    #[serde(default)]
    pub conditions: Vec<Condition>,
    #[serde(default)]
    pub node_info: NodeInfo,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    #[serde(default)]
    pub kubelet_version: String,
}

impl Kube {
    /// A client whose calls take at most `timeout`, Lease calls at most `lease_timeout`.
    pub fn new(
        config: &KubeConfig,
        namespace: &str,
        timeout: Duration,
        lease_timeout: Duration,
    ) -> Kube {
        Kube {
            base: config.api_url.clone(),
            namespace: namespace.to_string(),
            token_file: config.token_file.clone(),
            token: None,
            ca_file: config.ca_file.clone(),
            agent: None,
            timeout,
            lease_timeout: lease_timeout.min(timeout),
            fence: crate::outbound::Fence::open(),
        }
    }

    /// Sends nothing but Lease calls once `fence` closes.
    pub fn with_fence(mut self, fence: crate::outbound::Fence) -> Kube {
        self.fence = fence;
        self
    }

    /// The Deployments in our namespace that carry the managed-by label.
    pub fn list_managed(&mut self, now: Instant) -> Result<Vec<Deployment>, KubeError> {
        let path = format!(
            "{}?labelSelector={}",
            self.collection(),
            MANAGED_BY.replace('/', "%2F").replace('=', "%3D")
        );
        let body = self.send("GET", &path, None, now, Lane::Leader)?;
        let list: List = decode(&body)?;
        Ok(list.items)
    }

    /// Every Deployment in our namespace, managed or not (read only, to tell
    /// names that are free from names taken).
    pub fn list_all(&mut self, now: Instant) -> Result<Vec<Deployment>, KubeError> {
        let path = self.collection();
        let body = self.send("GET", &path, None, now, Lane::Leader)?;
        let list: List = decode(&body)?;
        Ok(list.items)
    }

    /// One Deployment by name; `None` when there is none.
    pub fn get(&mut self, name: &str, now: Instant) -> Result<Option<Deployment>, KubeError> {
        let path = format!("{}/{name}", self.collection());
        self.read(&path, now, Lane::Leader)
    }

    /// The Node this manager runs on (cluster-scoped; read only); `None` when
    /// there is no Node of that name.
    pub fn get_node(&mut self, name: &str, now: Instant) -> Result<Option<Node>, KubeError> {
        self.read(&format!("/api/v1/nodes/{name}"), now, Lane::Leader)
    }

    /// Every pod in our namespace (read only, to explain workload health),
    /// served from the API server's cache (`resourceVersion=0`): no read
    /// of the datastore (K3S's SQLite) once a minute for a diagnosis.
    pub fn list_pods(&mut self, now: Instant) -> Result<crate::pods::PodList, KubeError> {
        let path = format!(
            "/api/v1/namespaces/{}/pods?resourceVersion=0",
            self.namespace
        );
        let body = self.send("GET", &path, None, now, Lane::Leader)?;
        decode(&body)
    }

    /// Creates a Deployment; a name already taken is a 409 error, so this
    /// never takes over someone else's Deployment.
    pub fn create(
        &mut self,
        manifest: &serde_json::Value,
        now: Instant,
    ) -> Result<Deployment, KubeError> {
        let path = self.collection();
        self.write(
            "POST",
            &path,
            "application/json",
            manifest,
            now,
            Lane::Leader,
        )
    }

    /// The manager's own Deployment as JSON (self-update reads its image,
    /// annotations and rollout); `None` when there is none.
    pub fn get_raw(
        &mut self,
        name: &str,
        now: Instant,
    ) -> Result<Option<serde_json::Value>, KubeError> {
        let path = format!("{}/{name}", self.collection());
        self.read(&path, now, Lane::Leader)
    }

    /// A JSON patch (RFC 6902) of one Deployment; its `test` operations make
    /// the whole patch fail (422) when the object changed since it was read.
    pub fn json_patch(
        &mut self,
        name: &str,
        ops: &serde_json::Value,
        now: Instant,
    ) -> Result<serde_json::Value, KubeError> {
        let path = format!("{}/{name}?fieldManager={FIELD_MANAGER}", self.collection());
        self.write(
            "PATCH",
            &path,
            "application/json-patch+json",
            ops,
            now,
            Lane::Leader,
        )
    }

    /// The election Lease; `None` when there is none.
    pub fn get_lease(&mut self, now: Instant) -> Result<Option<Lease>, KubeError> {
        let path = format!("{}/{}", self.leases(), crate::lease::NAME);
        self.read(&path, now, Lane::Lease)
    }

    /// Creates the election Lease (409 when another instance was first).
    pub fn create_lease(
        &mut self,
        lease: &serde_json::Value,
        now: Instant,
    ) -> Result<Lease, KubeError> {
        let path = self.leases();
        self.write("POST", &path, "application/json", lease, now, Lane::Lease)
    }

    /// Replaces the election Lease; its resourceVersion makes this fail
    /// with 409 when someone else wrote it since we read it.
    pub fn update_lease(
        &mut self,
        lease: &serde_json::Value,
        now: Instant,
    ) -> Result<Lease, KubeError> {
        let path = format!("{}/{}", self.leases(), crate::lease::NAME);
        self.write("PUT", &path, "application/json", lease, now, Lane::Lease)
    }

    /// Server-side apply as field manager `workload-manager`, forcing
    /// conflicts: our fields win, fields we stopped sending are removed.
    pub fn apply(
        &mut self,
        name: &str,
        manifest: &serde_json::Value,
        now: Instant,
    ) -> Result<Deployment, KubeError> {
        let path = format!(
            "{}/{name}?fieldManager={FIELD_MANAGER}&force=true",
            self.collection()
        );
        self.write(
            "PATCH",
            &path,
            "application/apply-patch+yaml",
            manifest,
            now,
            Lane::Leader,
        )
    }

    /// GET of one object; 404 is `None`.
    fn read<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        now: Instant,
        lane: Lane,
    ) -> Result<Option<T>, KubeError> {
        match self.send("GET", path, None, now, lane) {
            Ok(body) => decode(&body).map(Some),
            Err(KubeError::Api { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A call that sends `body` and answers with the object written.
    fn write<T: serde::de::DeserializeOwned>(
        &mut self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &serde_json::Value,
        now: Instant,
        lane: Lane,
    ) -> Result<T, KubeError> {
        let body = body.to_string();
        let answer = self.send(
            method,
            path,
            Some((content_type, body.as_bytes())),
            now,
            lane,
        )?;
        decode(&answer)
    }

    /// Deletes a Deployment and, in the background, its pods; already gone is done.
    pub fn delete(&mut self, name: &str, now: Instant) -> Result<(), KubeError> {
        let path = format!("{}/{name}?propagationPolicy=Background", self.collection());
        match self.send("DELETE", &path, None, now, Lane::Leader) {
            Ok(_) | Err(KubeError::Api { code: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn collection(&self) -> String {
        format!("/apis/apps/v1/namespaces/{}/deployments", self.namespace)
    }

    fn leases(&self) -> String {
        format!(
            "/apis/coordination.k8s.io/v1/namespaces/{}/leases",
            self.namespace
        )
    }

    /// One call, over within its lane's timeout; a 401 re-reads the token
    /// and tries once more in what is left of it (safe for writes:
    /// authentication fails before anything is stored).
    fn send(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
        now: Instant,
        lane: Lane,
    ) -> Result<Vec<u8>, KubeError> {
        let budget = match lane {
            Lane::Leader => self.timeout,
            Lane::Lease => self.lease_timeout,
        };
        // ureq times the call on the real clock, so the budget is kept on it too.
        let started = Instant::now();
        let token = self.token(now, false);
        let first = self.send_once(method, path, body, token, budget, lane);
        let left = budget.saturating_sub(started.elapsed());
        match first {
            Err(KubeError::Api { code: 401, .. })
                if self.token_file.is_some() && left >= MIN_RETRY_BUDGET =>
            {
                let token = self.token(now, true);
                self.send_once(method, path, body, token, left, lane)
            }
            other => other,
        }
    }

    /// `Err` when a leader-only call may not go out now (Lease calls always may).
    fn fenced(&self, lane: Lane) -> Result<(), KubeError> {
        match lane {
            Lane::Leader => self.fence.check().map_err(KubeError::Fenced),
            Lane::Lease => Ok(()),
        }
    }

    fn send_once(
        &mut self,
        method: &str,
        path: &str,
        body: Option<(&str, &[u8])>,
        token: Option<String>,
        timeout: Duration,
        lane: Lane,
    ) -> Result<Vec<u8>, KubeError> {
        let url = format!("{}{}", self.base, path);
        let agent = self.agent()?.clone();
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(&url)
            .header("Accept", "application/json");
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let result = match body {
            Some((content_type, bytes)) => request
                .header("Content-Type", content_type)
                .body(bytes.to_vec())
                .map_err(|e| KubeError::Setup(e.to_string()))
                .and_then(|r| self.run(&agent, r, timeout, lane)),
            None => request
                .body(())
                .map_err(|e| KubeError::Setup(e.to_string()))
                .and_then(|r| self.run(&agent, r, timeout, lane)),
        };
        let mut response = result?;
        let code = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
            .map(Duration::from_secs);
        let limit = if (200..300).contains(&code) {
            MAX_RESPONSE
        } else {
            MAX_ERROR_BODY
        };
        let body = response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| KubeError::Unreachable(format!("reading the answer: {e}")))?;
        if (200..300).contains(&code) {
            return Ok(body);
        }
        Err(error_answer(code, &body, retry_after))
    }

    /// The bearer token: cached for [`TOKEN_MAX_AGE`]; a failed read keeps the old one.
    fn token(&mut self, now: Instant, force: bool) -> Option<String> {
        let file = self.token_file.as_ref()?;
        let fresh = self
            .token
            .as_ref()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) < TOKEN_MAX_AGE);
        if force || !fresh {
            match std::fs::read_to_string(file) {
                Ok(t) if !t.trim().is_empty() => self.token = Some((t.trim().to_string(), now)),
                Ok(_) => log::warn!("token file {} is empty", file.display()),
                Err(e) => log::warn!("cannot read token file {}: {e}", file.display()),
            }
        }
        self.token.as_ref().map(|(t, _)| t.clone())
    }

    /// The HTTP agent, built on first use (the CA file may appear after start).
    fn agent(&mut self) -> Result<&ureq::Agent, KubeError> {
        if self.agent.is_none() {
            self.agent = Some(build_agent(&self.base, &self.ca_file, self.timeout)?);
        }
        Ok(self.agent.as_ref().expect("set just above"))
    }

    /// Sends `request` within `timeout` (a third of it to connect), if the
    /// fence lets `lane` through. The fence is checked last, once the
    /// request is built: from here on, ureq's deadline (the call's budget)
    /// stops a call whose process was paused from going out late.
    fn run<S: ureq::AsSendBody>(
        &self,
        agent: &ureq::Agent,
        request: ureq::http::Request<S>,
        timeout: Duration,
        lane: Lane,
    ) -> Result<ureq::http::Response<ureq::Body>, KubeError> {
        self.fenced(lane)?;
        let request = agent
            .configure_request(request)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout / 3))
            .build();
        agent
            .run(request)
            .map_err(|e| KubeError::Unreachable(e.to_string()))
    }
}

/// The error an answer that is not `2xx` is: its Status's reason and
/// message (bounded, control characters removed), or the start of a body
/// that is not one.
pub fn error_answer(code: u16, body: &[u8], retry_after: Option<Duration>) -> KubeError {
    let status: Option<Status> = serde_json::from_slice(body).ok();
    let (reason, message) = match status {
        Some(s) => (
            crate::text::clean(&s.reason, 128),
            crate::text::clean(&s.message, 1024),
        ),
        None => (
            String::new(),
            crate::text::printable(String::from_utf8_lossy(&body[..body.len().min(200)]).trim()),
        ),
    };
    KubeError::Api {
        code,
        reason,
        message,
        retry_after,
    }
}

/// A `2xx` body decoded into what the manager reads of it.
pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, KubeError> {
    serde_json::from_slice(body).map_err(|e| KubeError::Decode(e.to_string()))
}

fn build_agent(
    base: &str,
    ca_file: &std::path::Path,
    timeout: Duration,
) -> Result<ureq::Agent, KubeError> {
    use ureq::tls::{parse_pem, PemItem, RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if base.starts_with("https://") {
        let pem = std::fs::read(ca_file).map_err(|e| {
            KubeError::Setup(format!("cannot read CA bundle {}: {e}", ca_file.display()))
        })?;
        let certs: Vec<_> = parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(c)) => Some(c),
                _ => None,
            })
            .collect();
        if certs.is_empty() {
            return Err(KubeError::Setup(format!(
                "no certificate in CA bundle {}",
                ca_file.display()
            )));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    let config = crate::outbound::config(timeout)
        .max_redirects(0)
        .tls_config(tls.build())
        .build();
    Ok(ureq::Agent::new_with_config(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_sentences() {
        let e = KubeError::Api {
            code: 403,
            reason: "Forbidden".into(),
            message: "deployments.apps is forbidden".into(),
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "Kubernetes API answered 403 Forbidden: deployments.apps is forbidden"
        );
        let e = KubeError::Api {
            code: 429,
            reason: "TooManyRequests".into(),
            message: String::new(),
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
    }

    #[test]
    fn decoding_keeps_the_ownership_label_and_version_and_skips_the_rest() {
        use crate::reconcile::{ANNOTATION_VERSION, LABEL_MANAGED_BY};
        let json = serde_json::json!({
            "metadata": {
                "name": "web",
                "generation": 3,
                "labels": {LABEL_MANAGED_BY.0: LABEL_MANAGED_BY.1, "app": "web"},
                "annotations": {ANNOTATION_VERSION: "1.2.0", "other": "x"},
                "managedFields": [{"manager": "kubectl"}]
            },
            "spec": {"replicas": 2, "template": {}},
            "status": {"observedGeneration": 3, "availableReplicas": 2}
        });
        let d: Deployment = serde_json::from_value(json).unwrap();
        assert_eq!(
            d.metadata.labels.managed_by.as_deref(),
            Some(LABEL_MANAGED_BY.1)
        );
        assert_eq!(d.metadata.annotations.version.as_deref(), Some("1.2.0"));
        assert_eq!((d.metadata.generation, d.spec.replicas), (3, Some(2)));
        assert_eq!(d.status.available_replicas, 2);
        let bare: Deployment =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "x"}})).unwrap();
        assert_eq!(bare.metadata.labels.managed_by, None);
        assert_eq!(bare.metadata.annotations.version, None);
    }

    #[test]
    fn a_missing_ca_bundle_is_a_setup_error() {
        let config = KubeConfig {
            api_url: "https://127.0.0.1:1".into(),
            token_file: None,
            ca_file: "/nonexistent/ca.crt".into(),
        };
        let mut kube = Kube::new(
            &config,
            "edge",
            Duration::from_secs(1),
            Duration::from_secs(1),
        );
        let err = kube.list_managed(Instant::now()).unwrap_err();
        assert!(
            matches!(err, KubeError::Setup(ref m) if m.contains("/nonexistent/ca.crt")),
            "{err}"
        );
    }
}
