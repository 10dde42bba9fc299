//! How every outbound HTTP call is made (backend, Kubernetes, S3): a status
//! is an answer to read, not an error; no proxy is taken from the
//! environment; `WM_HTTP_TIMEOUT` bounds the whole call and a third of it
//! the connect; requests name the manager and its version.

use std::time::Duration;

/// A ureq configuration with those rules; callers add TLS and redirects.
pub fn config(timeout: Duration) -> ureq::config::ConfigBuilder<ureq::typestate::AgentScope> {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout / 3))
        .user_agent(concat!("workload-manager/", env!("CARGO_PKG_VERSION")))
}
