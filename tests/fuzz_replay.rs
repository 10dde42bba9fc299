//! Replays every fuzz input kept in the repository (`tests/fuzz/corpus/` and
//! `tests/fuzz/regressions/`) through its target: fast, and no fuzzing. The
//! fuzzing itself is `tests/fuzz/run.sh`.

#[path = "fuzz/targets.rs"]
mod targets;

use std::path::Path;

#[test]
fn every_kept_fuzz_input_replays_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz");
    let mut replayed = 0;
    for (name, target) in targets::ALL {
        let mut inputs = 0;
        for kind in ["corpus", "regressions"] {
            let Ok(dir) = std::fs::read_dir(root.join(kind).join(name)) else {
                continue;
            };
            for entry in dir.flatten() {
                let data = std::fs::read(entry.path()).expect("a readable input");
                let caught = std::panic::catch_unwind(|| target(&data));
                assert!(caught.is_ok(), "{name}: {} fails", entry.path().display());
                inputs += 1;
            }
        }
        assert!(
            inputs > 0,
            "{name}: no input kept in tests/fuzz/corpus/{name}"
        );
        replayed += inputs;
    }
    eprintln!("replayed {replayed} fuzz inputs");
}
