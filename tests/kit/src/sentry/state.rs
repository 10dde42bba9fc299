//! The state one fake Sentry shares between its connection threads and the
//! test: configuration (fixed at start), the clock, and everything that
//! changes (accepted envelopes, rate limits, faults, hanging, the request
//! log) behind one mutex.

use std::sync::{Mutex, MutexGuard};

use serde_json::Value;

use super::events::StoredEnvelope;
use super::faults::Fault;
use super::log::LoggedRequest;
use super::ratelimit::RateLimit;
use crate::net::log::Log;
use crate::net::time::Clock;

/// Fixed at start.
pub(crate) struct Config {
    /// 32 lower-case hex digits.
    pub public_key: String,
    pub project_id: u64,
    /// The DSN's path before the project id: `""` or `/segment…` without a
    /// trailing slash; the envelope endpoint is `{path}/api/{id}/envelope/`.
    pub path: String,
    /// Largest request body read; larger ones get 413.
    pub max_body: usize,
}

/// A limit to announce on the next 200 (`X-Sentry-Rate-Limits` on success).
#[derive(Debug, Clone)]
pub(crate) struct Announcement {
    pub secs: u64,
    pub categories: String,
}

/// Everything that changes.
#[derive(Default)]
pub(crate) struct State {
    pub envelopes: Vec<StoredEnvelope>,
    /// The payloads of accepted `event` items, in arrival order.
    pub events: Vec<Value>,
    /// Limits announced so far (expired ones are pruned as they are met).
    pub limits: Vec<RateLimit>,
    /// Limits to announce on coming 200s, one each, in order.
    pub announcements: Vec<Announcement>,
    pub faults: Vec<Fault>,
    /// While set, every request is held unanswered (until cleared).
    pub hanging: bool,
    pub log: Log<LoggedRequest>,
}

impl State {
    /// The live limits, pruning the rest.
    pub fn live_limits(&mut self, now_ms: i64) -> &[RateLimit] {
        self.limits.retain(|l| l.is_live(now_ms));
        &self.limits
    }
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
