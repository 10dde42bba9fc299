//! The end of `cargo test --workspace`: which tests skipped in this run, and
//! why, printed where libtest's capture cannot hide it (no harness: a plain
//! `main` whose stdout is the terminal). It must run after every other test
//! target: cargo runs the workspace's packages in name order (`wm-testkit`,
//! then `workload-manager`), each package's targets as library, binaries,
//! integration tests by name, and the doc-tests of all packages after all
//! of those; `zz_` sorts this one last among the integration tests. See
//! `wm_testkit::skips` for how a run's skips are told from another's.

fn main() {
    // `cargo test -- --list` asks every target for its tests: this has none.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let skips = wm_testkit::skips::take_this_run();
    print!("\n{}", wm_testkit::skips::summary(&skips));
}
