//! Test kit for workload-manager: process helpers, raw HTTP clients and
//! (later) faithful fakes of the Kubernetes API, the Node System backend, S3
//! and Sentry.

pub mod backend;
pub mod bench;
pub mod cluster;
pub mod kube;
pub mod net;
pub mod node;
pub mod proc;
pub mod s3;
pub mod sandbox;
pub mod sentry;
