//! A faithful fake S3, in-process, for workload-manager's tests: path-style
//! `GET`/`HEAD /{bucket}/{key}` over plain HTTP (or HTTPS with a per-run CA),
//! objects the test puts, SigV4 verified for real (`Authorization` header or
//! presigned query) when credentials are configured, S3's XML errors and
//! headers, fault injection, reachability, and a request log.
//!
//! ```no_run
//! use wm_testkit::s3::FakeS3;
//! let s3 = FakeS3::builder().credentials("AKIDTEST", "secret").start();
//! s3.put_object("releases", "wm/latest", "0.4.0");
//! // endpoint: s3.url(), region: s3.region(), path-style
//! # drop(s3);
//! ```
//!
//! Deliberately left out: listing (501), writes over HTTP (405), ranges,
//! conditional requests, virtual-hosted-style addressing, SigV2. A signed
//! request to an anonymous fake answers `InvalidAccessKeyId`, as S3 does for
//! a key it does not know; an unsigned one to a fake with credentials
//! answers `AccessDenied`, as for a private bucket. Each module's header says
//! which part it owns.

mod api;
mod auth;
mod clock;
mod errors;
mod faults;
mod log;
mod server;
mod sigv4;
mod state;
mod tls;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use crate::net::log::Mark;
pub use faults::{Fault, FaultKind};
pub use log::{Auth, LoggedRequest};

use crate::net::random_u64;
use crate::net::server::Listener;
use auth::Credentials;
use state::{Config, Object, Shared};

/// The `Content-Type` S3 stores when an upload names none.
pub const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// Options for [`FakeS3`].
#[derive(Debug, Clone)]
pub struct Builder {
    credentials: Option<Credentials>,
    region: String,
    https: bool,
}

impl Builder {
    /// Every request must be SigV4-signed with this access key and secret
    /// (default: none, an anonymous bucket that allows unsigned requests).
    pub fn credentials(mut self, access_key: &str, secret: &str) -> Builder {
        self.credentials = Some(Credentials {
            access_key: access_key.to_string(),
            secret: secret.to_string(),
        });
        self
    }

    /// The region signatures must be scoped to (default `us-east-1`).
    pub fn region(mut self, region: &str) -> Builder {
        self.region = region.to_string();
        self
    }

    /// HTTPS with a per-run CA (written to [`FakeS3::ca_file`]) instead of plain HTTP.
    pub fn https(mut self) -> Builder {
        self.https = true;
        self
    }

    /// Generates the PKI (HTTPS only) and starts serving.
    pub fn start(self) -> FakeS3 {
        FakeS3::start_with(self)
    }
}

/// A running fake S3; dropping it stops it and removes its files.
pub struct FakeS3 {
    shared: Arc<Shared>,
    listener: Listener,
    /// Holds `ca.crt` in HTTPS mode.
    dir: Option<PathBuf>,
}

impl FakeS3 {
    /// Starts with the defaults: plain HTTP, anonymous, `us-east-1`.
    pub fn start() -> FakeS3 {
        FakeS3::builder().start()
    }

    pub fn builder() -> Builder {
        Builder {
            credentials: None,
            region: "us-east-1".into(),
            https: false,
        }
    }

    fn start_with(b: Builder) -> FakeS3 {
        let (tls, dir) = if b.https {
            let dir = std::env::temp_dir().join(format!(
                "wm-fake-s3-{}-{:016x}",
                std::process::id(),
                random_u64()
            ));
            std::fs::create_dir_all(&dir).expect("create the fake's directory");
            let (ca_pem, config) = tls::generate();
            std::fs::write(dir.join("ca.crt"), ca_pem).expect("write ca.crt");
            (Some(config), Some(dir))
        } else {
            (None, None)
        };
        let cfg = Config {
            credentials: b.credentials,
            region: b.region,
        };
        let shared = Arc::new(Shared::new(cfg, tls));
        let shared2 = shared.clone();
        FakeS3 {
            listener: Listener::start("s3", move |tcp| server::serve(&shared2, tcp)),
            shared,
            dir,
        }
    }

    /// The endpoint, `http://127.0.0.1:PORT` (`https://` in HTTPS mode).
    pub fn url(&self) -> String {
        self.listener.url(self.shared.tls.is_some())
    }

    pub fn port(&self) -> u16 {
        self.listener.port()
    }

    pub fn region(&self) -> &str {
        &self.shared.cfg.region
    }

    /// The CA certificate (PEM) that signed the serving certificate; `None`
    /// in plain-HTTP mode.
    pub fn ca_file(&self) -> Option<PathBuf> {
        self.dir.as_deref().map(|d| d.join("ca.crt"))
    }

    /// Creates an empty bucket (no-op if it exists).
    pub fn create_bucket(&self, bucket: &str) {
        self.shared
            .lock()
            .buckets
            .entry(bucket.to_string())
            .or_default();
    }

    /// Stores an object as `binary/octet-stream`, creating the bucket if needed.
    pub fn put_object(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        self.put_object_with_type(bucket, key, body, DEFAULT_CONTENT_TYPE);
    }

    /// Stores an object with this `Content-Type`, creating the bucket if
    /// needed; `Last-Modified` is now on the fake's clock.
    pub fn put_object_with_type(
        &self,
        bucket: &str,
        key: &str,
        body: impl Into<Vec<u8>>,
        content_type: &str,
    ) {
        let obj = Object::new(body.into(), content_type, self.shared.clock.now());
        self.shared
            .lock()
            .buckets
            .entry(bucket.to_string())
            .or_default()
            .insert(key.to_string(), obj);
    }

    /// Removes an object; whether it existed.
    pub fn delete_object(&self, bucket: &str, key: &str) -> bool {
        self.shared
            .lock()
            .buckets
            .get_mut(bucket)
            .and_then(|objects| objects.remove(key))
            .is_some()
    }

    /// Moves the fake's clock forward (presigned URLs expire, signatures
    /// become too skewed); wall time itself is untouched.
    pub fn advance_clock(&self, by: Duration) {
        self.shared.clock.advance(by.as_secs() as i64);
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
}

impl Drop for FakeS3 {
    fn drop(&mut self) {
        self.set_reachable(false);
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The moto S3 emulator's endpoint: `WM_TEST_S3_ENDPOINT` (CI starts it:
/// `eval "$(bash .ci/moto.sh start)"`), else one this test process starts
/// (`provision::moto_endpoint`). Where neither can be had: `None`, so the
/// caller skips, except that under `CI=true` this panics, so the test fails
/// rather than skips.
pub fn moto_endpoint() -> Option<String> {
    match crate::provision::moto_endpoint() {
        Ok(e) => Some(e),
        Err(why) => {
            crate::proc::skip_outside_ci(&format!(
                "no moto S3 emulator: WM_TEST_S3_ENDPOINT is not set and {why}"
            ));
            None
        }
    }
}
