//! Skipped tests, on the record. libtest shows a skipped test as passed and
//! captures what it printed, so every skip (`proc::skip_outside_ci`) also
//! appends a line to `wm-skipped.txt` in the target directory, and
//! `tests/zz_skipped.rs`, the last test target `cargo test --workspace`
//! runs, prints this run's lines where nothing captures them.
//!
//! A run is one `cargo test` invocation: every line carries the identity of
//! the cargo process that started the test binary (its pid and start time,
//! so a reused pid is not mistaken for it). The summary shows only its own
//! run's lines and drops those of runs whose cargo has ended (a run stopped
//! by a failure before its summary), so a stale line is never shown; lines
//! of another run still going in the same target directory are left alone.
//!
//! Never fails a test: a skip that cannot be written down is still a skip
//! (with a warning on stderr).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::provision::target_dir;

/// The file in the target directory that holds the skips.
pub const FILE_NAME: &str = "wm-skipped.txt";

/// One skipped test.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Skip {
    /// The `cargo test` invocation it happened in (see [`run_id`]).
    pub run: String,
    /// The test binary: the target's name, e.g. `s3_moto`.
    pub binary: String,
    /// The test's name (libtest names each test's thread after it), or `-`.
    pub test: String,
    pub reason: String,
}

impl Skip {
    fn line(&self) -> String {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        format!(
            "{}\t{}\t{}\t{}\n",
            clean(&self.run),
            clean(&self.binary),
            clean(&self.test),
            clean(&self.reason)
        )
    }

    fn parse(line: &str) -> Option<Skip> {
        let mut f = line.splitn(4, '\t');
        Some(Skip {
            run: f.next()?.to_string(),
            binary: f.next()?.to_string(),
            test: f.next()?.to_string(),
            reason: f.next()?.to_string(),
        })
    }
}

/// Writes down that the current test is skipped because of `reason`.
pub fn record(reason: &str) {
    let skip = Skip {
        run: run_id(),
        binary: binary_name(),
        test: match std::thread::current().name() {
            Some(name) if name != "main" => name.to_string(),
            _ => "-".to_string(),
        },
        reason: reason.to_string(),
    };
    let path = file();
    let written = Locked::open(&path).and_then(|mut f| f.0.write_all(skip.line().as_bytes()));
    if let Err(e) = written {
        warn(&format!(
            "cannot record the skip in {}: {e}",
            path.display()
        ));
    }
}

/// This run's skips, taken off the record (with those of ended runs), in a
/// stable order: by binary, test and reason.
pub fn take_this_run() -> Vec<Skip> {
    let path = file();
    let taken = Locked::open(&path).and_then(|mut f| {
        let mut text = String::new();
        f.0.seek(SeekFrom::Start(0))?;
        f.0.read_to_string(&mut text)?;
        let this = run_id();
        let (mine, others): (Vec<Skip>, Vec<Skip>) = text
            .lines()
            .filter_map(Skip::parse)
            .partition(|s| s.run == this);
        let kept: String = others
            .iter()
            .filter(|s| run_alive(&s.run))
            .map(Skip::line)
            .collect();
        f.0.set_len(0)?;
        f.0.write_all(kept.as_bytes())?;
        Ok(mine)
    });
    let mut skips = taken.unwrap_or_else(|e| {
        warn(&format!("cannot read the skips in {}: {e}", path.display()));
        Vec::new()
    });
    skips.sort_by(|a, b| (&a.binary, &a.test, &a.reason).cmp(&(&b.binary, &b.test, &b.reason)));
    skips
}

/// What the end of a run says: one line when nothing was skipped; else how
/// many, and for each binary and reason, which tests.
pub fn summary(skips: &[Skip]) -> String {
    if skips.is_empty() {
        return "wm-testkit: no test skipped\n".to_string();
    }
    let n = skips.len();
    let mut out = format!(
        "wm-testkit: {n} test{} skipped on this machine (what each needs: README \"Tests\"):\n",
        if n == 1 { "" } else { "s" }
    );
    let mut groups: Vec<(&str, &str, Vec<&str>)> = Vec::new();
    for s in skips {
        match groups
            .iter_mut()
            .find(|(b, r, _)| *b == s.binary && *r == s.reason)
        {
            Some((_, _, tests)) => tests.push(&s.test),
            None => groups.push((&s.binary, &s.reason, vec![&s.test])),
        }
    }
    groups.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (binary, reason, tests) in groups {
        out += &format!("  {binary} ({}): {reason}\n", tests.len());
        for t in tests {
            out += &format!("      {t}\n");
        }
    }
    out
}

/// Where the skips are written: `wm-skipped.txt` in the target directory.
pub fn file() -> PathBuf {
    target_dir().join(FILE_NAME)
}

/// The `cargo test` invocation this process belongs to: the nearest
/// ancestor process named `cargo` (past a `target.runner` wrapper, not
/// past it to a rustup proxy, which is also named `cargo` but further up),
/// as `pid:start-time`; the parent process when no ancestor is cargo.
pub fn run_id() -> String {
    // SAFETY: getppid(2) has no preconditions.
    let parent = unsafe { libc::getppid() } as u32;
    let mut pid = parent;
    for _ in 0..32 {
        let Some(stat) = Stat::of(pid) else { break };
        if stat.comm == "cargo" {
            return format!("{pid}:{}", stat.start);
        }
        if stat.ppid <= 1 {
            break;
        }
        pid = stat.ppid;
    }
    let start = Stat::of(parent).map_or(0, |s| s.start);
    format!("{parent}:{start}")
}

/// Whether the process a [`run_id`] names is still running.
fn run_alive(run: &str) -> bool {
    let Some((pid, start)) = run.split_once(':') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    Stat::of(pid).is_some_and(|s| s.start == start)
}

/// What `/proc/PID/stat` says of a process.
struct Stat {
    comm: String,
    ppid: u32,
    /// Clock ticks after boot at which it started.
    start: u64,
}

impl Stat {
    fn of(pid: u32) -> Option<Stat> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Stat::parse(&text)
    }

    /// `pid (comm) state ppid … starttime …`; comm may hold spaces and
    /// parentheses, so it ends at the last `)`.
    fn parse(text: &str) -> Option<Stat> {
        let open = text.find('(')?;
        let close = text.rfind(')')?;
        let comm = text.get(open + 1..close)?.to_string();
        // Fields from the 3rd (state) on; ppid is the 4th, starttime the 22nd.
        let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
        Some(Stat {
            comm,
            ppid: rest.get(1)?.parse().ok()?,
            start: rest.get(19)?.parse().ok()?,
        })
    }
}

/// The test target's name: the executable's, less cargo's `-<hash>`.
fn binary_name() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "?".to_string());
    strip_hash(&stem).to_string()
}

fn strip_hash(stem: &str) -> &str {
    match stem.rsplit_once('-') {
        Some((name, hash)) if hash.len() == 16 && hash.chars().all(|c| c.is_ascii_hexdigit()) => {
            name
        }
        _ => stem,
    }
}

/// The skips file, opened for appending and locked (flock) against the
/// other test processes until dropped.
struct Locked(File);

impl Locked {
    fn open(path: &Path) -> std::io::Result<Locked> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)?;
        crate::provision::flock(&f)?;
        Ok(Locked(f))
    }
}

/// Straight to stderr: libtest captures `eprintln!`, not this.
fn warn(msg: &str) {
    let _ = writeln!(std::io::stderr(), "wm-testkit: {msg}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skip(binary: &str, test: &str, reason: &str) -> Skip {
        Skip {
            run: "1:2".into(),
            binary: binary.into(),
            test: test.into(),
            reason: reason.into(),
        }
    }

    #[test]
    fn a_line_round_trips_with_its_tabs_and_newlines_flattened() {
        let s = skip("s3_moto", "t", "no\tmoto\nhere");
        let parsed = Skip::parse(s.line().trim_end_matches('\n')).expect("parses");
        assert_eq!(parsed, skip("s3_moto", "t", "no moto here"));
        assert_eq!(Skip::parse("only\ttwo"), None);
    }

    #[test]
    fn the_summary_says_nothing_skipped_or_groups_by_binary_and_reason() {
        assert_eq!(summary(&[]), "wm-testkit: no test skipped\n");
        let text = summary(&[
            skip("cluster", "a", "no control plane"),
            skip("cluster", "b", "no control plane"),
            skip("s3_moto", "m", "no moto"),
        ]);
        assert_eq!(
            text,
            "wm-testkit: 3 tests skipped on this machine (what each needs: README \"Tests\"):\n\
             \x20 cluster (2): no control plane\n\
             \x20     a\n\
             \x20     b\n\
             \x20 s3_moto (1): no moto\n\
             \x20     m\n"
        );
        assert!(summary(&[skip("x", "y", "z")]).starts_with("wm-testkit: 1 test skipped"));
    }

    #[test]
    fn proc_stat_is_read_past_a_comm_with_spaces_and_parentheses() {
        let line = "4242 (my (odd) cargo) S 17 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 \
                    20 0 1 0 987654 1000 10 18446744073709551615";
        let s = Stat::parse(line).expect("parses");
        assert_eq!(
            (s.comm.as_str(), s.ppid, s.start),
            ("my (odd) cargo", 17, 987654)
        );
        let me = Stat::of(std::process::id()).expect("our own stat");
        assert!(me.start > 0);
        assert!(run_alive(&format!("{}:{}", std::process::id(), me.start)));
        assert!(!run_alive(&format!(
            "{}:{}",
            std::process::id(),
            me.start + 1
        )));
        assert!(!run_alive("garbage"));
    }

    #[test]
    fn cargo_hashes_come_off_binary_names() {
        assert_eq!(strip_hash("s3_moto-20f60bb3a2367f34"), "s3_moto");
        assert_eq!(strip_hash("kube-api"), "kube-api");
        assert_eq!(strip_hash("plain"), "plain");
    }
}
