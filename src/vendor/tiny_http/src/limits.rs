//! PATCH: the limits this copy of tiny_http enforces (see PATCHES.md).

use std::io::{Error as IoError, ErrorKind, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::client::ClientConnection;

/// Longest request line or header line, in bytes.
pub const MAX_HEADER_LINE: usize = 8 * 1024;
/// Most header lines in one request.
pub const MAX_HEADERS: usize = 64;
/// Largest request body; a larger one is answered 413 without being read.
pub const MAX_BODY: usize = 64 * 1024;
/// How long a request (head and body) may take once its first byte arrived.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Most connections served at once; each holds one thread.
pub const MAX_CONNECTIONS: usize = 512;
/// Stack of a connection thread: it parses one request at a time.
pub const CONNECTION_STACK: usize = 256 * 1024;

const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 62\r\nConnection: close\r\n\r\n{\"error\":\"busy\",\"message\":\"too many connections, retry later\"}";

/// Answers 503 on a connection over the cap and closes it.
pub(crate) fn refuse_connection(client: ClientConnection) {
    client.refuse_raw(BUSY);
}

/// Accept errors after which the listener still works.
pub(crate) fn is_transient_accept_error(e: &IoError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::ConnectionAborted
            | ErrorKind::ConnectionReset
            | ErrorKind::Interrupted
            | ErrorKind::TimedOut
    ) || matches!(e.raw_os_error(), Some(23 | 24 | 12 | 105))
    // ENFILE, EMFILE, ENOMEM, ENOBUFS
}

/// Counts a live connection until dropped.
pub(crate) struct LiveGuard(Arc<AtomicUsize>);

impl LiveGuard {
    pub(crate) fn new(live: Arc<AtomicUsize>) -> LiveGuard {
        live.fetch_add(1, Ordering::Relaxed);
        LiveGuard(live)
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn write_raw<W: Write>(mut w: W, bytes: &[u8]) {
    w.write_all(bytes).ok();
    w.flush().ok();
}
