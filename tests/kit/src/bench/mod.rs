//! The pieces of `cargo run --release -p wm-testkit --bin bench`: measuring
//! the release `workload-manager` binary against its resource targets.
//!
//! A measurement ends as one or more [`report::Row`]s; the binary collects
//! them and prints one markdown table with [`report::table`], followed by the
//! raw numbers behind each row. Adding a figure (sync CPU at N workloads,
//! outbox memory, ...) is: measure, push a `Row`, print its raw numbers.

pub mod cluster;
pub mod load;
pub mod report;
pub mod soak;
pub mod startup;
pub mod stats;
pub mod sys;
pub mod wrk;
