//! Test kit for workload-manager: process helpers, raw HTTP clients and
//! (later) faithful fakes of the Kubernetes API, the Node System backend and S3.

pub mod backend;
pub mod bench;
pub mod cluster;
pub mod kube;
pub mod net;
pub mod node;
pub mod proc;
pub mod s3;
pub mod sandbox;
