//! The state one fake S3 shares between its connection threads and the test:
//! configuration (fixed at start), the clock, and the buckets, faults and
//! request log behind one mutex.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use md5::{Digest, Md5};

use super::auth::Credentials;
use super::faults::Fault;
use super::log::LoggedRequest;
use super::sigv4::hex;
use crate::net::log::Log;
use crate::net::time::Clock;

/// Fixed at start.
pub(crate) struct Config {
    pub credentials: Option<Credentials>,
    pub region: String,
}

/// One stored object.
pub(crate) struct Object {
    pub body: Vec<u8>,
    pub content_type: String,
    /// The quoted MD5 hex of the body, as S3 gives single-part uploads.
    pub etag: String,
    /// Unix seconds, on the fake's clock.
    pub last_modified: i64,
}

impl Object {
    pub fn new(body: Vec<u8>, content_type: &str, now: i64) -> Object {
        Object {
            etag: format!("\"{}\"", hex(&Md5::digest(&body))),
            body,
            content_type: content_type.to_string(),
            last_modified: now,
        }
    }
}

/// Everything that changes.
#[derive(Default)]
pub(crate) struct State {
    /// Bucket name → key → object.
    pub buckets: BTreeMap<String, BTreeMap<String, Object>>,
    pub faults: Vec<Fault>,
    pub log: Log<LoggedRequest>,
}

pub(crate) struct Shared {
    pub cfg: Config,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub clock: Clock,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(cfg: Config, tls: Option<Arc<rustls::ServerConfig>>) -> Shared {
        Shared {
            cfg,
            tls,
            clock: Clock::default(),
            state: Mutex::new(State::default()),
        }
    }

    /// Locks the state; a panic elsewhere does not poison the fake for good.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
