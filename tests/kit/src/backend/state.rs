//! The state one fake backend shares between its connection threads and the
//! test: configuration (fixed at start), the clock, and everything that
//! changes (desired lists, manifests, what nodes sent, faults, the request
//! log) behind one mutex.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use super::faults::Fault;
use super::health::StoredReport;
use super::log::{Delivery, LoggedRequest};
use super::workloads::{AppliedVersion, Desired};
use crate::net::log::Log;
use crate::net::time::Clock;

/// Fixed at start.
pub(crate) struct Config {
    /// `""` or `/segment…` without a trailing slash.
    pub base_path: String,
    /// Largest request body read; larger ones get 413.
    pub max_body: usize,
}

/// Everything that changes.
#[derive(Default)]
pub(crate) struct State {
    /// Lower-case node address → its desired list.
    pub desired: BTreeMap<String, Desired>,
    /// Bumped by every change of a desired list, so each gets a new ETag.
    pub generation: u64,
    /// (workload name, version) → manifest.
    pub manifests: BTreeMap<(String, String), Value>,
    pub applied: Vec<AppliedVersion>,
    pub reports: Vec<StoredReport>,
    /// Ids of the stored reports.
    pub report_ids: BTreeSet<String>,
    pub deliveries: Vec<Delivery>,
    pub faults: Vec<Fault>,
    pub log: Log<LoggedRequest>,
    /// Every request waits this long before it is handled.
    pub latency: std::time::Duration,
}

pub(crate) struct Shared {
    pub cfg: Config,
    pub clock: Clock,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(cfg: Config) -> Shared {
        Shared {
            cfg,
            clock: Clock::default(),
            state: Mutex::new(State::default()),
        }
    }

    /// Locks the state; a panic elsewhere does not poison the fake for good.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
