//! Test kit for workload-manager: process helpers, raw HTTP clients,
//! faithful fakes of the Kubernetes API, the Node System backend, S3 and Sentry,
//! what some tests provision for themselves (moto, the static binary), and
//! the record of skipped tests that the end of a run prints.

pub mod backend;
pub mod bench;
pub mod cluster;
pub mod fleet;
pub mod kube;
pub mod net;
pub mod node;
pub mod proc;
pub mod provision;
pub mod s3;
pub mod sandbox;
pub mod sentry;
pub mod skips;
