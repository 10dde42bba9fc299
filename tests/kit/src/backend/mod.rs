//! A faithful fake of the Node System backend, in-process, for
//! workload-manager's tests: the four endpoints of the contract
//! (desired workloads with ETags, manifests, applied versions, health
//! reports) under a base path, every request authenticated for real
//! (EIP-191 signatures recovered with k256, timestamps within 300 s of a
//! clock the test can shift), the backend's JSON errors, fault injection,
//! reachability, and request and delivery logs.
//!
//! ```no_run
//! use wm_testkit::backend::{sample_manifest, FakeBackend};
//! let backend = FakeBackend::start();
//! let node = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";
//! backend.set_workloads(node, &[("web", "1.4.0")]);
//! backend.put_manifest("web", "1.4.0", sample_manifest("web", "nginx:1.27"));
//! // NODE_SYSTEM_ENDPOINT=backend.url() (http://127.0.0.1:PORT/api)
//! # drop(backend);
//! ```
//!
//! The contract it follows is section 4 of
//! /work/shared/spec/interfaces.md; each module's header says which part
//! it owns. Deliberately left out: TLS, and any endpoint the manager does
//! not call.

mod api;
mod auth;
mod eip191;
mod errors;
mod faults;
mod health;
mod http;
mod log;
mod manifests;
mod server;
mod state;
mod workloads;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use crate::net::log::{wait_until, Mark};
pub use eip191::{eip55, personal_sign_hash, recover_personal_sign, SignatureError};
pub use faults::{Fault, FaultKind};
pub use health::StoredReport;
pub use log::{Delivery, LoggedRequest};
pub use manifests::sample_manifest;
pub use workloads::AppliedVersion;

use crate::net::server::Listener;
use state::{Config, Shared};
use workloads::Desired;

/// The request body limit by default: larger bodies get 413.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Options for [`FakeBackend`].
#[derive(Debug, Clone)]
pub struct Builder {
    base_path: String,
    max_body: usize,
}

impl Builder {
    /// The path the API is served under (default `/api`; `""` or `/` for
    /// the root). A trailing slash is ignored.
    pub fn base_path(mut self, path: &str) -> Builder {
        let trimmed = path.trim_end_matches('/');
        self.base_path = if trimmed.is_empty() || trimmed.starts_with('/') {
            trimmed.to_string()
        } else {
            format!("/{trimmed}")
        };
        self
    }

    /// Request bodies over this many bytes get 413 (default 1 MiB).
    pub fn max_body(mut self, bytes: usize) -> Builder {
        self.max_body = bytes;
        self
    }

    /// Starts serving.
    pub fn start(self) -> FakeBackend {
        FakeBackend::start_with(self)
    }
}

/// A running fake backend; dropping it stops it.
pub struct FakeBackend {
    shared: Arc<Shared>,
    listener: Listener,
}

impl FakeBackend {
    /// Starts with the defaults: base path `/api`, 1 MiB bodies.
    pub fn start() -> FakeBackend {
        FakeBackend::builder().start()
    }

    pub fn builder() -> Builder {
        Builder {
            base_path: "/api".into(),
            max_body: DEFAULT_MAX_BODY,
        }
    }

    fn start_with(b: Builder) -> FakeBackend {
        let cfg = Config {
            base_path: b.base_path,
            max_body: b.max_body,
        };
        let shared = Arc::new(Shared::new(cfg));
        let shared2 = shared.clone();
        FakeBackend {
            listener: Listener::start("backend", move |tcp| server::serve(&shared2, tcp)),
            shared,
        }
    }

    /// The base URL, `http://127.0.0.1:PORT/api` (with the base path).
    pub fn url(&self) -> String {
        format!("{}{}", self.listener.url(false), self.shared.cfg.base_path)
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    /// The base path, `""` or `/…` without a trailing slash.
    pub fn base_path(&self) -> &str {
        &self.shared.cfg.base_path
    }

    /// Replaces the node's desired list (address in any case) and gives it
    /// a new ETag, even if the list is unchanged.
    pub fn set_workloads(&self, address: &str, workloads: &[(&str, &str)]) {
        let list = workloads
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        let mut st = self.shared.lock();
        st.generation += 1;
        let desired = Desired::new(list, st.generation);
        st.desired.insert(address.to_ascii_lowercase(), desired);
    }

    /// Makes `n` workloads `w0000`, `w0001`, … at version `1` desired for
    /// `address`, each with the sample manifest (image `registry.example/<name>:1`).
    pub fn want_samples(&self, address: &str, n: usize) {
        let names: Vec<String> = (0..n).map(|i| format!("w{i:04}")).collect();
        for name in &names {
            let image = format!("registry.example/{name}:1");
            self.put_manifest(name, "1", sample_manifest(name, &image));
        }
        let wanted: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "1")).collect();
        self.set_workloads(address, &wanted);
    }

    /// The node's current desired list.
    pub fn workloads(&self, address: &str) -> Vec<(String, String)> {
        workloads::desired(&self.shared.lock(), &address.to_ascii_lowercase()).workloads
    }

    /// The node's current ETag, quoted as sent.
    pub fn etag(&self, address: &str) -> String {
        workloads::desired(&self.shared.lock(), &address.to_ascii_lowercase()).etag
    }

    /// Serves `manifest` for this workload version (replacing any before).
    pub fn put_manifest(&self, name: &str, version: &str, manifest: Value) {
        self.shared
            .lock()
            .manifests
            .insert((name.to_string(), version.to_string()), manifest);
    }

    /// Every accepted `PUT …/version`, in arrival order.
    pub fn applied_versions(&self) -> Vec<AppliedVersion> {
        self.shared.lock().applied.clone()
    }

    /// The stored health reports (each id once), in arrival order.
    pub fn reports(&self) -> Vec<StoredReport> {
        self.shared.lock().reports.clone()
    }

    /// Every health POST with the ids it carried and its answer, in order.
    pub fn delivery_log(&self) -> Vec<Delivery> {
        self.shared.lock().deliveries.clone()
    }

    /// Sets the fake's clock to wall time plus `secs` (negative: behind);
    /// timestamps more than 300 s off it are refused.
    pub fn clock_offset(&self, secs: i64) {
        self.shared.clock.set_offset(secs);
    }

    /// The fake's clock, Unix seconds.
    pub fn now(&self) -> i64 {
        self.shared.clock.now()
    }

    /// `false` closes the listener and cuts open connections (connections
    /// are refused); `true` listens again on the same port.
    pub fn set_reachable(&self, reachable: bool) {
        self.listener.set_reachable(reachable);
    }

    /// Every request from now on waits `latency` before it is handled
    /// (zero: no wait).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.shared.lock().latency = latency;
    }

    /// Queues a fault; faults are matched in the order injected.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Drops all queued faults.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
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

    /// Waits until at least `n` reports are stored; whether they were in time.
    pub fn wait_for_reports(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.shared.lock().reports.len() >= n)
    }

    /// Waits until at least `n` versions were applied; whether they were in time.
    pub fn wait_for_applied(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.shared.lock().applied.len() >= n)
    }

    /// Waits until a request after `mark` satisfies `pred`; the first that does.
    pub fn wait_for_request(
        &self,
        mark: Mark,
        timeout: Duration,
        mut pred: impl FnMut(&LoggedRequest) -> bool,
    ) -> Option<LoggedRequest> {
        let mut found = None;
        wait_until(timeout, || {
            found = self.requests_since(mark).into_iter().find(|r| pred(r));
            found.is_some()
        });
        found
    }
}

impl Drop for FakeBackend {
    fn drop(&mut self) {
        self.set_reachable(false);
    }
}
