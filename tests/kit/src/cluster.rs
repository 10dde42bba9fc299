//! The real Kubernetes control plane that `.ci/cluster.sh start` runs (etcd,
//! kube-apiserver, kube-controller-manager, kube-scheduler and KWOK built
//! from the Go modules in `tests/cluster/`), as the end-to-end tests see it:
//! its address and files from the environment, `kubectl` (the one built with
//! it, on `PATH`) for everything the tests do themselves, one namespace per
//! test with our own `manifests/` applied in it, bound ServiceAccount tokens,
//! and the API server's audit log to count and attribute the manager's calls.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{json, Value};

use crate::proc::TempDir;

/// The ServiceAccount (and Role, RoleBinding, Deployment) name in `manifests/`.
pub const SERVICE_ACCOUNT: &str = "workload-manager";

/// Where `.ci/cluster.sh env` says the control plane is.
#[derive(Clone, Debug)]
pub struct ControlPlane {
    pub api_url: String,
    pub ca_file: PathBuf,
    pub kubeconfig: PathBuf,
    pub audit_log: PathBuf,
}

impl ControlPlane {
    /// The control plane named by `WM_CLUSTER_API_URL`, `WM_CLUSTER_CA_FILE`,
    /// `KUBECONFIG` and `WM_CLUSTER_AUDIT_LOG`, or why there is none.
    pub fn from_env() -> Result<ControlPlane, String> {
        let var = |name: &str| {
            std::env::var(name).map_err(|_| {
                format!("{name} is not set: no control plane (eval \"$(bash .ci/cluster.sh start)\" first)")
            })
        };
        Ok(ControlPlane {
            api_url: var("WM_CLUSTER_API_URL")?,
            ca_file: var("WM_CLUSTER_CA_FILE")?.into(),
            kubeconfig: var("KUBECONFIG")?.into(),
            audit_log: var("WM_CLUSTER_AUDIT_LOG")?.into(),
        })
    }

    /// Runs kubectl as the cluster admin; returns its output whatever its status.
    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("kubectl starts (is it on PATH?)");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin piped")
                .write_all(input.as_bytes())
                .expect("write kubectl stdin");
        }
        child.wait_with_output().expect("kubectl runs")
    }

    /// Runs kubectl and returns its stdout; panics with its stderr if it fails.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.kubectl_output(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every audit event so far (the policy logs ServiceAccounts outside kube-system).
    pub fn audit(&self) -> Vec<AuditEvent> {
        let text = std::fs::read_to_string(&self.audit_log).unwrap_or_default();
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .map(AuditEvent)
            .collect()
    }
}

/// One line of the API server's audit log.
#[derive(Clone, Debug)]
pub struct AuditEvent(pub Value);

impl AuditEvent {
    pub fn user(&self) -> &str {
        self.0["user"]["username"].as_str().unwrap_or_default()
    }
    pub fn verb(&self) -> &str {
        self.0["verb"].as_str().unwrap_or_default()
    }
    pub fn resource(&self) -> &str {
        self.0["objectRef"]["resource"].as_str().unwrap_or_default()
    }
    pub fn name(&self) -> &str {
        self.0["objectRef"]["name"].as_str().unwrap_or_default()
    }
    pub fn user_agent(&self) -> &str {
        self.0["userAgent"].as_str().unwrap_or_default()
    }
    pub fn code(&self) -> i64 {
        self.0["responseStatus"]["code"]
            .as_i64()
            .unwrap_or_default()
    }
    /// The `jti` of the bound token that authenticated the call, if any.
    pub fn token_id(&self) -> Option<&str> {
        self.0["user"]["extra"]["authentication.kubernetes.io/credential-id"][0]
            .as_str()?
            .strip_prefix("JTI=")
    }
    /// `verb resource/name code`, for assertion messages.
    pub fn line(&self) -> String {
        format!(
            "{} {}/{} {}",
            self.verb(),
            self.resource(),
            self.name(),
            self.code()
        )
    }
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
}

/// The `jti` claim of a bound ServiceAccount token (a JWT).
pub fn token_id(token: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let claims: Value = serde_json::from_slice(&base64url(payload)).expect("JWT claims are JSON");
    claims["jti"]
        .as_str()
        .expect("a bound token has a jti")
        .to_string()
}

fn base64url(s: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => continue,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// `manifests/` rendered (`kubectl kustomize`) as a list of objects, with
/// every namespace `workload-manager` replaced by `namespace`.
pub fn rendered_manifests(cp: &ControlPlane, namespace: &str) -> Vec<Value> {
    let dir = manifests_dir();
    let yaml = cp.kubectl(&["kustomize", &dir.display().to_string()], None);
    // One JSON document per object.
    let json = cp.kubectl(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        Some(&yaml),
    );
    serde_json::Deserializer::from_str(&json)
        .into_iter::<Value>()
        .map(|o| o.expect("kubectl prints JSON"))
        .flat_map(|o| match o["kind"].as_str() {
            Some("List") => o["items"].as_array().cloned().unwrap_or_default(),
            _ => vec![o],
        })
        .map(|mut o| {
            let kind = o["kind"].as_str().unwrap_or_default().to_string();
            if kind == "Namespace" {
                o["metadata"]["name"] = json!(namespace);
            } else if kind.starts_with("Cluster") {
                // Cluster-scoped: one of its own per test namespace.
                o["metadata"]["name"] =
                    json!(cluster_scoped_name(&o["metadata"]["name"], namespace));
                if o["roleRef"]["kind"] == "ClusterRole" {
                    o["roleRef"]["name"] =
                        json!(cluster_scoped_name(&o["roleRef"]["name"], namespace));
                }
            } else {
                o["metadata"]["namespace"] = json!(namespace);
            }
            if let Some(subjects) = o["subjects"].as_array_mut() {
                for s in subjects {
                    s["namespace"] = json!(namespace);
                }
            }
            o
        })
        .collect()
}

/// A cluster-scoped object's name for the test namespace `namespace`.
pub fn cluster_scoped_name(name: &Value, namespace: &str) -> String {
    format!("{}-{namespace}", name.as_str().unwrap_or_default())
}

/// The repository's `manifests/` directory.
pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests")
}

/// A namespace of its own for one test, with `manifests/` applied in it
/// (Namespace, ServiceAccount, Role, RoleBinding, ConfigMap, the manager's
/// Deployment, Service, NetworkPolicy); deleted when dropped.
pub struct Namespace {
    pub cp: ControlPlane,
    pub name: String,
    pub dir: TempDir,
}

impl Namespace {
    /// Applies `manifests/` in a new namespace `wm-<tag>-<pid>-<n>`; `edit`
    /// may change the rendered objects first.
    pub fn install(cp: &ControlPlane, tag: &str, edit: impl FnOnce(&mut Vec<Value>)) -> Namespace {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        let name = format!("wm-{tag}-{}-{n}", std::process::id());
        let mut objects = rendered_manifests(cp, &name);
        edit(&mut objects);
        let ns = Namespace {
            cp: cp.clone(),
            name,
            dir: TempDir::new("cluster"),
        };
        let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
        cp.kubectl(&["apply", "-f", "-"], Some(&list.to_string()));
        ns
    }

    /// kubectl in this namespace.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        self.cp.kubectl(&all, stdin)
    }

    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        self.cp.kubectl_output(&all, stdin)
    }

    /// An object as JSON (`kind` as kubectl names it, e.g. `deployment`), or `None` if absent.
    pub fn get(&self, kind: &str, name: &str) -> Option<Value> {
        let out = self.kubectl_output(
            &["get", kind, name, "-o", "json", "--show-managed-fields"],
            None,
        );
        if out.status.success() {
            return Some(serde_json::from_slice(&out.stdout).expect("kubectl prints JSON"));
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "kubectl get {kind} {name}: {err}"
        );
        None
    }

    pub fn deployment(&self, name: &str) -> Option<Value> {
        self.get("deployment", name)
    }

    /// A new bound token of the manager's ServiceAccount (`kubectl create token`).
    pub fn token(&self) -> String {
        self.kubectl(&["create", "token", SERVICE_ACCOUNT, "--duration=1h"], None)
            .trim()
            .to_string()
    }

    /// Writes a new token to `file` (replacing it atomically, as the kubelet
    /// does) and returns the token.
    pub fn write_token(&self, file: &Path) -> String {
        let token = self.token();
        let tmp = file.with_extension("new");
        std::fs::write(&tmp, &token).expect("write token");
        std::fs::rename(&tmp, file).expect("replace token");
        token
    }

    /// The environment that points a manager at this namespace of the real
    /// API server with the token in `token_file` (the pod's own view:
    /// ServiceAccount token, cluster CA, namespace).
    pub fn manager_env(&self, token_file: &Path) -> Vec<(String, String)> {
        vec![
            ("WM_KUBE_API_URL".into(), self.cp.api_url.clone()),
            (
                "WM_KUBE_TOKEN_FILE".into(),
                token_file.display().to_string(),
            ),
            (
                "WM_KUBE_CA_FILE".into(),
                self.cp.ca_file.display().to_string(),
            ),
            ("WM_NAMESPACE".into(), self.name.clone()),
        ]
    }

    /// The audit events of calls made with the manager's ServiceAccount, by
    /// anyone (the manager, or kubectl with one of its tokens).
    pub fn service_account_calls(&self) -> Vec<AuditEvent> {
        let user = format!("system:serviceaccount:{}:{SERVICE_ACCOUNT}", self.name);
        self.cp
            .audit()
            .into_iter()
            .filter(|e| e.user() == user)
            .collect()
    }

    /// A call with the manager's ServiceAccount (kubectl, a fresh token)
    /// that the audit log records after everything the manager finished
    /// before it: a GET of a Deployment named `marker` that does not exist.
    /// Returns once the audit log has it.
    pub fn audit_marker(&self, marker: &str) {
        let token = self.token();
        let ca = self.cp.ca_file.display().to_string();
        let out = self.cp.kubectl_output(
            &[
                "--kubeconfig=/dev/null",
                "--server",
                &self.cp.api_url,
                "--certificate-authority",
                &ca,
                "--token",
                &token,
                "-n",
                &self.name,
                "get",
                "deployment",
                marker,
            ],
            None,
        );
        assert!(!out.status.success(), "marker {marker} exists?");
        crate::proc::wait_for(
            "the marker in the audit log",
            Duration::from_secs(10),
            || {
                self.service_account_calls()
                    .iter()
                    .any(|e| e.name() == marker)
                    .then_some(())
            },
        );
    }

    /// The manager's own calls between two [`Namespace::audit_marker`]s.
    pub fn manager_calls_between(&self, from: &str, to: &str) -> Vec<AuditEvent> {
        let all = self.service_account_calls();
        let at = |marker: &str| {
            all.iter()
                .position(|e| e.name() == marker)
                .unwrap_or_else(|| panic!("no marker {marker}"))
        };
        all[at(from) + 1..at(to)]
            .iter()
            .filter(|e| e.user_agent().starts_with("workload-manager/"))
            .cloned()
            .collect()
    }

    /// The audit events of the manager's own calls (its user agent).
    pub fn manager_calls(&self) -> Vec<AuditEvent> {
        self.service_account_calls()
            .into_iter()
            .filter(|e| e.user_agent().starts_with("workload-manager/"))
            .collect()
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = self
            .cp
            .kubectl_output(&["delete", "namespace", &self.name, "--wait=false"], None);
        let own = |kind: &str| {
            let name = cluster_scoped_name(&json!("workload-manager-node-reader"), &self.name);
            let _ = self.cp.kubectl_output(
                &["delete", kind, &name, "--wait=false", "--ignore-not-found"],
                None,
            );
        };
        own("clusterrolebinding");
        own("clusterrole");
    }
}
