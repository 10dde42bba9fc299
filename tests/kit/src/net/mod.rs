//! What the fakes (`kube`, `s3`, `backend`, `sentry`) share beneath their own
//! routing and error shapes: HTTP/1.1 framing ([`http`]), the listener
//! that can go unreachable and come back on the same port, with the
//! lingering close after a 413 ([`server`]),
//! the "next N matching requests" fault queue ([`faults`]), the request
//! log with its marks and polling ([`log`]), and time ([`time`]); plus
//! [`random_u64`] for the random identifiers each fake spells its own way.

pub mod faults;
pub(crate) mod http;
pub mod log;
pub(crate) mod server;
pub(crate) mod time;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};

/// 64 random bits (std's per-process random SipHash keys; enough for tests).
pub(crate) fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}
