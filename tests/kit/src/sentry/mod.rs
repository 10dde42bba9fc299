//! A faithful fake Sentry, in-process, for workload-manager's tests: the
//! envelope endpoint `POST /api/<project_id>/envelope/` over plain HTTP,
//! checked the way Relay (Sentry's ingestion server) checks it, the
//! accepted events kept for the test, Relay's rate-limit answers on the
//! fake's own clock, fault injection, reachability, and a request log of
//! every byte sent.
//!
//! ```no_run
//! use wm_testkit::sentry::FakeSentry;
//! let sentry = FakeSentry::start();
//! // SENTRY_DSN=sentry.dsn() (http://<32 hex>@127.0.0.1:PORT/<project id>)
//! sentry.rate_limit(60, "error");
//! # drop(sentry);
//! ```
//!
//! What it follows, and where each part lives:
//! - The envelope format (`envelope`): develop docs, "Envelopes"
//!   <https://develop.sentry.dev/sdk/foundations/transport/envelopes/>, as
//!   Relay parses it (`relay-server/src/envelope/`,
//!   <https://github.com/getsentry/relay>).
//! - Auth (`auth`) and the DSN (`dsn`): develop docs, "Authentication"
//!   <https://develop.sentry.dev/sdk/foundations/transport/authentication/>,
//!   as Relay reads it (`relay-server/src/extractors/request_meta.rs`).
//! - Status codes and `{"detail", "causes"}` bodies (`errors`): Relay's
//!   `BadEventMeta` and `BadStoreRequest` (`relay-server/src/endpoints/`).
//!   An unknown key and another project's id both get Relay's 403 `event
//!   submission rejected with_reason: ProjectId` (Relay answers so once it
//!   knows the key; it answers no 404 for a project id).
//! - Rate limits (`ratelimit`): develop docs, "Rate Limiting"
//!   <https://develop.sentry.dev/sdk/foundations/transport/rate-limiting/>,
//!   and Relay's `format_rate_limits`.
//! - Event items (`events`): develop docs, "Envelope Items" and "Event
//!   Payloads" <https://develop.sentry.dev/sdk/foundations/transport/event-payloads/>.
//!
//! Stricter than Relay, so the client is held to the documented protocol
//! (each refusal says so): `sentry_version` is required (Relay assumes 7);
//! body types other than the four the envelope docs list get 415 (Relay
//! no longer looks); an `event` item needs the envelope header `event_id`,
//! a JSON-object payload whose `event_id` is 32 lower-case hex digits
//! equal to it, and may occur once, never beside a `transaction` (Relay
//! fills in or overrides ids); with envelope-header auth the path must
//! name the DSN's project too. Deliberately left out: TLS, compressed
//! bodies (400; Relay decodes gzip, deflate, br and zstd), `Basic` auth,
//! every endpoint but the envelope one, per-item size limits (the 1 MiB
//! body cap, Relay's own event-item limit, is the only one), and the first
//! request Relay accepts for a key it has not looked up yet (the fake
//! always knows its key).

mod api;
mod auth;
mod dsn;
mod envelope;
mod errors;
mod events;
mod faults;
mod log;
mod ratelimit;
mod server;
mod state;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

pub use crate::net::log::{wait_until, Mark};
pub use auth::AuthMethod;
pub use events::{StoredEnvelope, StoredItem};
pub use faults::{Fault, FaultKind};
pub use log::LoggedRequest;

use crate::net::random_u64;
use crate::net::server::Listener;
use ratelimit::RateLimit;
use state::{Announcement, Config, Shared};

/// The request body limit by default: larger bodies get 413 (Relay's own
/// limit for an event item).
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

/// Options for [`FakeSentry`].
#[derive(Debug, Clone)]
pub struct Builder {
    public_key: String,
    project_id: u64,
    path: String,
    max_body: usize,
}

impl Builder {
    /// The DSN's public key (default: 32 random hex digits).
    ///
    /// # Panics
    /// If `key` is not 32 ASCII characters, which no DSN has.
    pub fn public_key(mut self, key: &str) -> Builder {
        assert!(
            dsn::project_key(key) == Some(key),
            "a Sentry public key is 32 ASCII characters, not {key:?}"
        );
        self.public_key = key.to_string();
        self
    }

    /// The DSN's project id (default: random).
    pub fn project_id(mut self, id: u64) -> Builder {
        self.project_id = id;
        self
    }

    /// A path in the DSN before the project id (default none), e.g.
    /// `/sentry` for `http://key@127.0.0.1:PORT/sentry/42`, whose endpoint
    /// is `/sentry/api/42/envelope/`. A trailing slash is ignored.
    pub fn path(mut self, path: &str) -> Builder {
        let trimmed = path.trim_end_matches('/');
        self.path = if trimmed.is_empty() || trimmed.starts_with('/') {
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
    pub fn start(self) -> FakeSentry {
        FakeSentry::start_with(self)
    }
}

/// A running fake Sentry; dropping it stops it.
pub struct FakeSentry {
    shared: Arc<Shared>,
    listener: Listener,
}

impl FakeSentry {
    /// Starts with the defaults: a random key and project id, no DSN path,
    /// 1 MiB bodies.
    pub fn start() -> FakeSentry {
        FakeSentry::builder().start()
    }

    pub fn builder() -> Builder {
        Builder {
            public_key: format!("{:016x}{:016x}", random_u64(), random_u64()),
            project_id: 1 + random_u64() % 999_999,
            path: String::new(),
            max_body: DEFAULT_MAX_BODY,
        }
    }

    fn start_with(b: Builder) -> FakeSentry {
        let cfg = Config {
            public_key: b.public_key,
            project_id: b.project_id,
            path: b.path,
            max_body: b.max_body,
        };
        let shared = Arc::new(Shared::new(cfg));
        let shared2 = shared.clone();
        FakeSentry {
            listener: Listener::start("sentry", move |tcp| server::serve(&shared2, tcp)),
            shared,
        }
    }

    /// The DSN, `http://<public key>@127.0.0.1:PORT[/path]/<project id>`.
    pub fn dsn(&self) -> String {
        let cfg = &self.shared.cfg;
        format!(
            "http://{}@127.0.0.1:{}{}/{}",
            cfg.public_key,
            self.port(),
            cfg.path,
            cfg.project_id
        )
    }

    pub fn public_key(&self) -> &str {
        &self.shared.cfg.public_key
    }

    pub fn project_id(&self) -> u64 {
        self.shared.cfg.project_id
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.listener.url(false)
    }

    /// The envelope endpoint, `http://127.0.0.1:PORT[/path]/api/<project id>/envelope/`.
    pub fn envelope_url(&self) -> String {
        let cfg = &self.shared.cfg;
        format!(
            "{}{}/api/{}/envelope/",
            self.url(),
            cfg.path,
            cfg.project_id
        )
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    /// The payloads of the accepted `event` items, in arrival order.
    pub fn events(&self) -> Vec<Value> {
        self.shared.lock().events.clone()
    }

    /// The accepted envelopes (those with at least one item kept), in
    /// arrival order.
    pub fn envelopes(&self) -> Vec<StoredEnvelope> {
        self.shared.lock().envelopes.clone()
    }

    /// Waits until at least `n` events are stored; whether they were in time.
    pub fn wait_for_events(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.shared.lock().events.len() >= n)
    }

    /// From now on, for `retry_after_secs` on the fake's clock, envelopes
    /// with an item in `categories` (`;`-separated data categories such as
    /// `"error"` or `"error;transaction"`; `""` for all) answer 429 with
    /// `Retry-After: <seconds left>` and `X-Sentry-Rate-Limits: <seconds
    /// left>:<categories>:key`, and are logged with
    /// [`LoggedRequest::in_rate_limit`].
    pub fn rate_limit(&self, retry_after_secs: u64, categories: &str) {
        let now = self.shared.clock.now_ms();
        let limit = RateLimit::new(retry_after_secs, categories, now);
        self.shared.lock().limits.push(limit);
    }

    /// The next 200 carries `X-Sentry-Rate-Limits: <retry_after_secs>:<categories>:key`
    /// (as Relay announces limits on success), and from that answer on the
    /// limit holds as with [`FakeSentry::rate_limit`].
    pub fn rate_limit_header_on_success(&self, retry_after_secs: u64, categories: &str) {
        self.shared.lock().announcements.push(Announcement {
            secs: retry_after_secs,
            categories: categories.to_string(),
        });
    }

    /// Ends every rate limit now and drops limits not yet announced.
    pub fn clear_rate_limits(&self) {
        let mut st = self.shared.lock();
        st.limits.clear();
        st.announcements.clear();
    }

    /// Moves the fake's clock forward (rate limits run out); wall time
    /// itself is untouched. Whole seconds.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by.as_secs() as i64);
    }

    /// The fake's clock, milliseconds since the Unix epoch (the time of
    /// [`LoggedRequest::received_at_ms`]).
    pub fn now_ms(&self) -> i64 {
        self.shared.clock.now_ms()
    }

    /// `false` closes the listener and cuts open connections (connections
    /// are refused); `true` listens again on the same port.
    pub fn set_reachable(&self, reachable: bool) {
        self.listener.set_reachable(reachable);
    }

    /// `true`: every request from now on is read and logged but not
    /// answered until `hang(false)` (or two minutes pass); then it is
    /// answered normally.
    pub fn hang(&self, hanging: bool) {
        self.shared.lock().hanging = hanging;
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

impl Drop for FakeSentry {
    fn drop(&mut self) {
        self.hang(false);
        self.set_reachable(false);
    }
}
