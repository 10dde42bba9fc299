//! workload-manager keeps a K3S edge node running the workloads its Node
//! System backend wants. See the README's Architecture section for the map.

pub mod acks;
pub mod agent;
pub mod api;
pub mod backend;
pub mod clock;
pub mod config;
pub mod events;
pub mod identity;
pub mod jobs;
pub mod json;
pub mod kube;
pub mod lease;
pub mod local;
pub mod memory;
pub mod metrics;
pub mod names;
pub mod node;
pub mod outbound;
pub mod outbox;
pub mod pods;
pub mod reconcile;
pub mod report;
pub mod s3;
pub mod scheduler;
pub mod sentry;
pub mod server;
pub mod signals;
pub mod state;
pub mod status;
pub mod text;
pub mod update;
pub mod workloads;
