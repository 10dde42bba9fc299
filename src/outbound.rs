//! How every outbound HTTP call is made (backend, Kubernetes, S3): a status
//! is an answer to read, not an error; no proxy is taken from the
//! environment; `WM_HTTP_TIMEOUT` bounds the whole call and a third of it
//! the connect; requests name the manager and its version.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

/// Bytes each way that a connection buffers (ureq's default is 128 KiB,
/// zero-filled, so resident for as long as a pooled connection lives: 512 KiB
/// for the Kubernetes and backend connections at idle). One TLS record;
/// response headers must fit in it (all these servers send well under 2 KiB).
pub const CONNECTION_BUFFER: usize = 16 * 1024;

/// A ureq configuration with those rules; callers add TLS and redirects.
pub fn config(timeout: Duration) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .input_buffer_size(CONNECTION_BUFFER)
        .output_buffer_size(CONNECTION_BUFFER)
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout / 3))
        .user_agent(concat!("workload-manager/", env!("CARGO_PKG_VERSION")))
}

/// Whether a leader-only call may still be sent, checked by the clients at
/// the last moment before a request leaves (after it is built and signed),
/// so that a process paused between deciding on a call and making it does
/// not make it once its Lease may have lapsed. The main loop moves the
/// deadline with every renewal; Lease calls themselves are never fenced.
#[derive(Clone)]
pub struct Fence {
    /// Boot time until which calls may go out; `None`: none may.
    until: Rc<Cell<Option<Duration>>>,
    boot: Rc<dyn Fn() -> Duration>,
}

impl Fence {
    /// A fence that never closes, for a client used on its own.
    pub fn open() -> Fence {
        Fence {
            until: Rc::new(Cell::new(Some(Duration::MAX))),
            boot: Rc::new(|| Duration::ZERO),
        }
    }

    /// A closed fence judged on `boot` (boot time: suspended time counts).
    pub fn new(boot: impl Fn() -> Duration + 'static) -> Fence {
        Fence {
            until: Rc::new(Cell::new(None)),
            boot: Rc::new(boot),
        }
    }

    /// Calls may go out until boot time `until` (`None`: not at all).
    pub fn set(&self, until: Option<Duration>) {
        self.until.set(until);
    }

    /// `Ok` if a call may go out now.
    pub fn check(&self) -> Result<(), Fenced> {
        match self.until.get() {
            Some(until) if (self.boot)() < until => Ok(()),
            _ => Err(Fenced),
        }
    }
}

/// A leader-only call not sent because the Lease may have lapsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fenced;

impl std::fmt::Display for Fenced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "not sent: this instance's Lease was not renewed in time, so it may no longer lead",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_lets_calls_out_only_before_its_deadline() {
        let now = Rc::new(Cell::new(Duration::from_secs(100)));
        let clock = now.clone();
        let fence = Fence::new(move || clock.get());
        assert_eq!(fence.check(), Err(Fenced), "closed until set");
        fence.set(Some(Duration::from_secs(110)));
        assert_eq!(fence.check(), Ok(()));
        now.set(Duration::from_secs(110));
        assert_eq!(fence.check(), Err(Fenced));
        fence.clone().set(None);
        now.set(Duration::ZERO);
        assert_eq!(fence.check(), Err(Fenced), "clones share the deadline");
        assert_eq!(Fence::open().check(), Ok(()));
    }
}
