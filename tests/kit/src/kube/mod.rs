//! A faithful fake Kubernetes API server, in-process, for workload-manager's
//! tests: apps/v1 Deployments and coordination.k8s.io/v1 Leases in one
//! namespace, the Deployments' core/v1 Pods (read-only) and the one Node
//! they run on (cluster-scoped, `get` only), over HTTPS with a per-run CA
//! and a rotatable bearer token, with the real API server's Status errors,
//! defaults, resourceVersion and generation rules, the four patch types
//! (server-side apply included), RBAC as the manager's Role and ClusterRole
//! grant it, simulated Deployment and ReplicaSet controllers with a node
//! that writes pod status per [`PodScenario`], fault injection, a request
//! log, and enough discovery for the real `kubectl`.
//!
//! ```no_run
//! use wm_testkit::kube::FakeKube;
//! let kube = FakeKube::builder().namespace("wm").start();
//! // WM_KUBE_API_URL=kube.url(), WM_KUBE_TOKEN_FILE=kube.token_file(),
//! // WM_KUBE_CA_FILE=kube.ca_file()
//! # drop(kube);
//! ```
//!
//! What it follows is /work/shared/reference/kubernetes-api-subset.md,
//! and where that page says nothing (pods, nodes, RBAC for them) the
//! v1.36.3 control plane that `.ci/cluster.sh` runs, whose `kubectl get pod
//! -o json`, `kubectl get node -o json`, raw lists and Status errors were
//! compared field by field with the fake's (pods.rs, kubelet.rs and nodes.rs
//! say what was compared and what follows K3S v1.31 instead); each module's
//! header says which part it owns.

mod api;
mod clock;
mod controller;
mod deployments;
mod discovery;
mod faults;
mod fields;
mod kubelet;
mod leases;
mod log;
mod nodes;
mod patch;
mod pods;
mod replicaset;
mod resource;
mod schema;
mod selector;
mod server;
mod state;
mod status;
mod store;
mod tls;
mod validation;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::net::log::{wait_until, Mark};
pub use controller::rollout_complete;
pub use faults::{Fault, FaultKind};
pub use kubelet::PodScenario;
pub use log::{LoggedBody, LoggedRequest};

use crate::net::log::Log;
use crate::net::random_u64;
use crate::net::server::Listener;
use controller::Controller;
use deployments::DEPLOYMENTS;
use leases::LEASES;
use nodes::NODES;
use pods::PODS;
use resource::WriteCtx;
use selector::Selector;
use state::{Config, Shared, State};
use store::Store;

/// Options for [`FakeKube`].
#[derive(Debug, Clone)]
pub struct Builder {
    namespace: String,
    controller_delay: Duration,
    progress_deadline: Duration,
    plain_http: bool,
    node_name: String,
    kubelet_version: String,
}

impl Builder {
    /// The namespace the ServiceAccount may use (default `wm`).
    pub fn namespace(mut self, ns: &str) -> Builder {
        self.namespace = ns.to_string();
        self
    }

    /// How long after a spec change the controller reports it (default 50 ms).
    pub fn controller_delay(mut self, d: Duration) -> Builder {
        self.controller_delay = d;
        self
    }

    /// How long a rollout of a broken image progresses before
    /// `ProgressDeadlineExceeded` (default 1 s; replaces `progressDeadlineSeconds`).
    pub fn progress_deadline(mut self, d: Duration) -> Builder {
        self.progress_deadline = d;
        self
    }

    /// Plain HTTP without authentication, like `kubectl proxy` serves.
    pub fn plain_http(mut self) -> Builder {
        self.plain_http = true;
        self
    }

    /// The name of the one Node, where pods run (default `edge-1`).
    pub fn node_name(mut self, name: &str) -> Builder {
        self.node_name = name.to_string();
        self
    }

    /// The Node's `status.nodeInfo.kubeletVersion` (default `v1.31.4+k3s1`).
    pub fn kubelet_version(mut self, version: &str) -> Builder {
        self.kubelet_version = version.to_string();
        self
    }

    /// Generates the PKI and token, writes the pod files, starts serving.
    pub fn start(self) -> FakeKube {
        FakeKube::start_with(self)
    }
}

/// A running fake API server; dropping it stops it and removes its files.
pub struct FakeKube {
    shared: Arc<Shared>,
    listener: Listener,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    controller: Option<JoinHandle<()>>,
}

/// A fresh token shaped like a ServiceAccount JWT.
fn new_token() -> String {
    format!(
        "eyJhbGciOiJSUzI1NiIsImtpZCI6ImZha2Uta3ViZSJ9.{:016x}{:016x}.{:016x}",
        random_u64(),
        random_u64(),
        random_u64()
    )
}

/// Writes a file with exactly `content` (no trailing newline).
fn write(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

impl FakeKube {
    /// Starts with the defaults (namespace `wm`, HTTPS).
    pub fn start() -> FakeKube {
        FakeKube::builder().start()
    }

    pub fn builder() -> Builder {
        Builder {
            namespace: "wm".into(),
            controller_delay: Duration::from_millis(50),
            progress_deadline: Duration::from_secs(1),
            plain_http: false,
            node_name: "edge-1".into(),
            kubelet_version: "v1.31.4+k3s1".into(),
        }
    }

    fn start_with(b: Builder) -> FakeKube {
        let dir = std::env::temp_dir().join(format!(
            "wm-fake-kube-{}-{:016x}",
            std::process::id(),
            random_u64()
        ));
        std::fs::create_dir_all(&dir).expect("create the fake's directory");
        let token = new_token();
        let tls = if b.plain_http {
            None
        } else {
            let pki = tls::generate();
            write(&dir.join("ca.crt"), &pki.ca_pem);
            Some(pki.server_config)
        };
        write(&dir.join("token"), &token);
        write(&dir.join("namespace"), &b.namespace);
        let cfg = Config {
            user: format!("system:serviceaccount:{}:workload-manager", b.namespace),
            namespace: b.namespace,
            plain_http: b.plain_http,
            controller_delay: b.controller_delay,
            progress_deadline: b.progress_deadline,
            node_name: b.node_name.clone(),
        };
        let mut store = Store::new();
        let node = nodes::object(&b.node_name, &b.kubelet_version);
        store.put(NODES.resource, &b.node_name, store::Stored::new(node));
        let state = State {
            store,
            token,
            extra_tokens: Vec::new(),
            latency: Duration::ZERO,
            faults: Vec::new(),
            log: Log::default(),
            broken_images: BTreeSet::new(),
            scenarios: BTreeMap::new(),
            nodes_denied: false,
            controller: Controller::default(),
        };
        let shared = Arc::new(Shared::new(cfg, tls, state));
        let shared2 = shared.clone();
        let listener = Listener::start("kube", move |tcp| server::serve(&shared2, tcp));

        let stop = Arc::new(AtomicBool::new(false));
        let (shared2, stop2) = (shared.clone(), stop.clone());
        let controller = thread::Builder::new()
            .name("fake-kube-controller".into())
            .spawn(move || {
                while !stop2.load(Ordering::SeqCst) {
                    thread::park_timeout(controller::TICK);
                    let mut st = shared2.lock();
                    controller::tick(&mut st, &shared2.cfg, Instant::now(), false);
                }
            })
            .expect("spawn the controller");

        let kube = FakeKube {
            shared,
            listener,
            dir,
            stop,
            controller: Some(controller),
        };
        write(&kube.kubeconfig_path(), &kube.kubeconfig());
        kube
    }

    /// `https://127.0.0.1:PORT` (or `http://` in plain mode).
    pub fn url(&self) -> String {
        self.listener.url(!self.shared.cfg.plain_http)
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    pub fn namespace(&self) -> &str {
        &self.shared.cfg.namespace
    }

    /// The directory holding `token`, `ca.crt`, `namespace` and `kubeconfig`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn token_file(&self) -> PathBuf {
        self.dir.join("token")
    }

    /// The CA certificate (absent in plain-HTTP mode).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    pub fn namespace_file(&self) -> PathBuf {
        self.dir.join("namespace")
    }

    /// A kubeconfig for kubectl (server, CA, `tokenFile`, namespace).
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    fn kubeconfig(&self) -> String {
        let (ca, user) = if self.shared.cfg.plain_http {
            (String::new(), "{}".to_string())
        } else {
            (
                format!("\n    certificate-authority: {}", self.ca_file().display()),
                format!("\n    tokenFile: {}", self.token_file().display()),
            )
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {}{ca}\n\
             users:\n- name: workload-manager\n  user: {user}\ncontexts:\n- name: fake\n  context:\n    \
             cluster: fake\n    user: workload-manager\n    namespace: {}\ncurrent-context: fake\n",
            self.url(),
            self.namespace()
        )
    }

    /// The token currently accepted.
    pub fn token(&self) -> String {
        self.shared.lock().token.clone()
    }

    /// Issues a new token, writes it to the token file and rejects the old one.
    pub fn rotate_token(&self) -> String {
        let token = new_token();
        let mut st = self.shared.lock();
        write(&self.token_file(), &token);
        st.token = token.clone();
        token
    }

    /// Issues another token of the same ServiceAccount, accepted alongside
    /// the first (as `kubectl create token` does), writes it to its own file
    /// and returns that file; requests carrying it are logged with
    /// `client: Some(label)`, so a test can tell two managers apart.
    pub fn issue_token(&self, label: &str) -> PathBuf {
        let token = new_token();
        let path = self.dir.join(format!("token-{label}"));
        write(&path, &token);
        self.shared
            .lock()
            .extra_tokens
            .push((label.to_string(), token));
        path
    }

    /// Every request from now on waits `latency` before it is handled, as a
    /// K3S server on SQLite on a small board answers (zero: no wait).
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// Writes a CA certificate that did not sign the server's certificate
    /// (for tests that a client refuses an untrusted server) and returns its path.
    pub fn write_unrelated_ca(&self) -> PathBuf {
        let path = self.dir.join("unrelated-ca.crt");
        write(&path, &tls::unrelated_ca_pem());
        path
    }

    /// `false` closes the listener and cuts open connections (connections
    /// are refused); `true` listens again on the same port.
    pub fn set_reachable(&self, reachable: bool) {
        self.listener.set_reachable(reachable);
    }

    /// Queues a fault; faults are matched in the order injected.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Drops all queued faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// Pulling this exact image reference (e.g. `"repo:tag"`) fails: its
    /// containers wait in `ErrImagePull`, then (after `controller_delay`) in
    /// `ImagePullBackOff`, and their pods never become ready.
    pub fn mark_broken_image(&self, image: &str) {
        let mut st = self.shared.lock();
        st.broken_images.insert(image.to_string());
        st.controller.recheck = true;
    }

    /// How the pods of `deployment`'s current template behave from now on
    /// (also before it exists); [`PodScenario::Ready`] restores the default.
    /// Pods of older templates keep their status. The Deployment's status
    /// follows the pods' readiness.
    pub fn set_pod_scenario(&self, deployment: &str, s: PodScenario) {
        let mut st = self.shared.lock();
        st.scenarios.insert(deployment.to_string(), s);
        st.controller.recheck = true;
    }

    /// All pods, as the list returns them (ordered by name).
    pub fn pods(&self) -> Vec<Value> {
        let st = self.shared.lock();
        st.store
            .list(PODS.resource)
            .map(|s| s.value.clone())
            .collect()
    }

    /// The body a list of the namespace's `pods` or `deployments` answers
    /// (with `label_selector`, `""` for all), byte for byte as served: for
    /// decoding in process what the manager would read. Panics for another
    /// resource or a selector the API would refuse.
    pub fn list_body(&self, resource: &str, label_selector: &str) -> Vec<u8> {
        let rt = match resource {
            "pods" => &PODS,
            "deployments" => &DEPLOYMENTS,
            other => panic!("list_body: no list of {other:?}"),
        };
        let selector = Selector::parse(label_selector)
            .unwrap_or_else(|e| panic!("list_body({label_selector:?}): {e}"));
        let st = self.shared.lock();
        resource::list(&st.store, rt, &selector)
            .to_string()
            .into_bytes()
    }

    /// The pods whose controller (a ReplicaSet `<deployment>-<hash>`) belongs
    /// to `deployment`, ordered by name.
    pub fn pods_of(&self, deployment: &str) -> Vec<Value> {
        self.pods()
            .into_iter()
            .filter(|p| pods::owner(p).is_some_and(|(d, _, _)| d == deployment))
            .collect()
    }

    /// The Node's name (`NODE_NAME` for the manager).
    pub fn node_name(&self) -> &str {
        &self.shared.cfg.node_name
    }

    /// The Node, as `GET /api/v1/nodes/{name}` returns it.
    pub fn node(&self) -> Value {
        let st = self.shared.lock();
        st.store
            .get(NODES.resource, &self.shared.cfg.node_name)
            .map(|s| s.value.clone())
            .expect("the fake's Node is never deleted")
    }

    /// Sets a Node condition (`MemoryPressure`, `DiskPressure`, `PIDPressure`
    /// or `Ready`) to `True`, `False` or `Unknown` with the reason and message
    /// its writer uses. Panics for another condition type.
    pub fn set_node_condition(&self, kind: &str, status: &str) {
        let mut st = self.shared.lock();
        let name = &self.shared.cfg.node_name;
        let Some(stored) = st.store.get(NODES.resource, name).cloned() else {
            panic!("set_node_condition: the Node {name:?} is gone");
        };
        let mut stored = stored;
        if !nodes::set_condition(&mut stored.value, kind, status) {
            panic!("set_node_condition: a Node has no condition {kind:?}");
        }
        st.store.put(NODES.resource, name, stored);
    }

    /// `true` removes the ClusterRoleBinding that lets the ServiceAccount
    /// `get` nodes: such requests answer the real 403 Forbidden Status;
    /// `false` grants it again.
    pub fn deny_nodes(&self, denied: bool) {
        self.shared.lock().nodes_denied = denied;
    }

    /// Runs the controller now, observing pending changes without the delay.
    pub fn settle(&self) {
        let mut st = self.shared.lock();
        controller::tick(&mut st, &self.shared.cfg, Instant::now(), true);
    }

    /// A stored Deployment, as GET returns it.
    pub fn deployment(&self, name: &str) -> Option<Value> {
        let st = self.shared.lock();
        st.store
            .get(DEPLOYMENTS.resource, name)
            .map(|s| s.value.clone())
    }

    /// All Deployments, ordered by name.
    pub fn deployments(&self) -> Vec<Value> {
        let st = self.shared.lock();
        st.store
            .list(DEPLOYMENTS.resource)
            .map(|s| s.value.clone())
            .collect()
    }

    /// A stored Lease, as GET returns it.
    pub fn lease(&self, name: &str) -> Option<Value> {
        let st = self.shared.lock();
        st.store.get(LEASES.resource, name).map(|s| s.value.clone())
    }

    /// Another writer changes Lease `name` (an annotation, as `kubectl
    /// annotate` would), so its holder's next update, with the version it
    /// read, gets a 409 Conflict. Returns whether the Lease exists.
    pub fn touch_lease(&self, name: &str) -> bool {
        let mut st = self.shared.lock();
        let Some(mut lease) = st.store.get(LEASES.resource, name).map(|s| s.value.clone()) else {
            return false;
        };
        let touched = st.store.resource_version();
        lease["metadata"]["annotations"]["example.com/touched"] = Value::String(touched);
        let body = lease.to_string().into_bytes();
        let ctx = WriteCtx {
            namespace: &self.shared.cfg.namespace,
            manager: "kubectl-annotate",
            dry_run: false,
            subresource: None,
        };
        resource::replace(&mut st.store, &LEASES, &ctx, name, None, &body).is_ok()
    }

    /// Creates (or unconditionally replaces) a Deployment as `manager` would
    /// with POST (or PUT) `?fieldManager=<manager>`, through the same code
    /// path as HTTP requests; returns the stored object. Panics with the
    /// Status if the API would reject it.
    pub fn put_deployment_raw(&self, manager: &str, deployment: Value) -> Value {
        let mut deployment = deployment;
        if let Some(m) = deployment
            .get_mut("metadata")
            .and_then(Value::as_object_mut)
        {
            m.remove("resourceVersion");
        }
        let name = deployment["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let body = deployment.to_string().into_bytes();
        let ctx = WriteCtx {
            namespace: &self.shared.cfg.namespace,
            manager,
            dry_run: false,
            subresource: None,
        };
        let mut st = self.shared.lock();
        let store = &mut st.store;
        let reply = if store.get(DEPLOYMENTS.resource, &name).is_some() {
            resource::replace(store, &DEPLOYMENTS, &ctx, &name, None, &body)
        } else {
            resource::create(store, &DEPLOYMENTS, &ctx, None, &body)
        };
        match reply {
            Ok((_, v)) => v,
            Err(e) => panic!("put_deployment_raw({name}) rejected: {}", e.body),
        }
    }

    /// Overwrites a Deployment's status as a controller would (via `/status`,
    /// as `kube-controller-manager`); returns the stored object.
    pub fn set_deployment_status(&self, name: &str, status: Value) -> Value {
        let mut st = self.shared.lock();
        let Some(mut d) = st
            .store
            .get(DEPLOYMENTS.resource, name)
            .map(|s| s.value.clone())
        else {
            panic!("set_deployment_status: no deployment {name:?}");
        };
        d["status"] = status;
        let ns = &self.shared.cfg.namespace;
        resource::write_status(
            &mut st.store,
            &DEPLOYMENTS,
            ns,
            "kube-controller-manager",
            name,
            d,
        )
        .unwrap_or_else(|e| panic!("set_deployment_status({name}) rejected: {}", e.body))
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> String {
        self.shared.lock().store.resource_version()
    }

    /// Every request so far.
    pub fn log(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.all()
    }

    /// The current end of the request log.
    pub fn mark(&self) -> Mark {
        self.shared.lock().log.mark()
    }

    /// Requests received after `mark`.
    pub fn requests_since(&self, mark: Mark) -> Vec<LoggedRequest> {
        self.shared.lock().log.since(mark)
    }

    /// POST/PUT/PATCH/DELETE requests received after `mark`.
    pub fn writes_since(&self, mark: Mark) -> Vec<LoggedRequest> {
        self.requests_since(mark)
            .into_iter()
            .filter(LoggedRequest::is_write)
            .collect()
    }
}

impl Drop for FakeKube {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.controller.take() {
            t.thread().unpark();
            let _ = t.join();
        }
        self.set_reachable(false);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
