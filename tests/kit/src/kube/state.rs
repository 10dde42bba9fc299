//! The state one fake API server shares between its connection threads, its
//! controller thread and the test: configuration (fixed at start) and the
//! mutable cluster state behind one mutex.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::controller::Controller;
use super::faults::Fault;
use super::kubelet::PodScenario;
use super::log::LoggedRequest;
use super::store::Store;
use crate::net::log::Log;

/// Fixed at start.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub namespace: String,
    /// The ServiceAccount user the token authenticates as.
    pub user: String,
    /// Plain HTTP without authentication, like `kubectl proxy`.
    pub plain_http: bool,
    pub controller_delay: Duration,
    pub progress_deadline: Duration,
    /// The one Node's name (`NODE_NAME`).
    pub node_name: String,
}

/// Everything that changes.
pub(crate) struct State {
    pub store: Store,
    /// The ServiceAccount's bearer token, rotated by the test.
    pub token: String,
    /// More tokens of the same ServiceAccount (as `kubectl create token`
    /// issues), each with the label its requests are logged under.
    pub extra_tokens: Vec<(String, String)>,
    /// Every request waits this long before it is handled (a slow API server).
    pub latency: Duration,
    pub faults: Vec<Fault>,
    pub log: Log<LoggedRequest>,
    pub broken_images: BTreeSet<String>,
    /// How the pods of each Deployment's current template behave, by name
    /// (absent: [`PodScenario::Ready`]).
    pub scenarios: BTreeMap<String, PodScenario>,
    /// The ClusterRoleBinding that grants `get` on nodes is gone.
    pub nodes_denied: bool,
    pub controller: Controller,
}

pub(crate) struct Shared {
    pub cfg: Config,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(cfg: Config, tls: Option<Arc<rustls::ServerConfig>>, state: State) -> Shared {
        Shared {
            cfg,
            tls,
            state: Mutex::new(state),
        }
    }

    /// Locks the state; a panic elsewhere does not poison the fake for good.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
