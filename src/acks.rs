//! Version acknowledgements: which applied version of each workload the
//! backend has been told of (`PUT …/workloads/{name}/version`).
//!
//! Every version the manager applies is acknowledged eventually, exactly as
//! applied: an acknowledgement that failed or never happened (a stop, a
//! crash, a backend error) stays owed, and each sync sends what is owed for
//! the managed Deployments it lists until the backend answers 2xx. The PUT
//! is idempotent, so owing too much only costs a request. A workload whose
//! Deployment carries a version this record does not show as acknowledged is
//! owed it; so after a start without a record every managed Deployment's
//! version is sent once.
//!
//! With a state directory the record is kept in `acks.jsonl`: one JSON line
//! per change, appended (not fsynced: what a power cut loses is only sent
//! again), compacted when it has grown to several times the record.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file name under the state directory.
pub const FILE: &str = "acks.jsonl";
/// The journal is compacted once it has this many lines more than twice
/// the record.
const COMPACT_SLACK: usize = 64;

/// An applied version not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owed {
    pub version: String,
    /// When the Kubernetes API accepted it (RFC 3339), as far as known.
    pub applied_at: String,
}

/// One journal line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    name: String,
    /// `None`: forget the workload (its Deployment was deleted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    applied_at: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    acked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    Owed(Owed),
    Acked(String),
}

#[derive(Debug, Default)]
pub struct Acks {
    entries: BTreeMap<String, Entry>,
    file: Option<PathBuf>,
    lines: usize,
}

impl Acks {
    /// A record that lives in memory only.
    pub fn in_memory() -> Acks {
        Acks::default()
    }

    /// Opens the record in `dir`, loading what an earlier run left. Problems
    /// with the file are returned as warnings (then acknowledgements are
    /// sent again), never as a failure to start.
    pub fn open(dir: &Path) -> (Acks, Vec<String>) {
        let path = dir.join(FILE);
        let mut acks = Acks {
            file: Some(path.clone()),
            ..Acks::default()
        };
        let mut warnings = Vec::new();
        // A few lines per workload: small enough to read whole.
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (acks, warnings),
            Err(e) => {
                warnings.push(format!("cannot read {}: {e}", path.display()));
                return (acks, warnings);
            }
        };
        let mut bad = 0;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match serde_json::from_slice::<Line>(line) {
                Ok(l) => acks.digest(l),
                Err(_) => bad += 1,
            }
            acks.lines += 1;
        }
        if bad > 0 {
            warnings.push(format!(
                "{bad} line(s) of {} did not parse and were dropped",
                path.display()
            ));
        }
        // A last line without its newline is rewritten, or the next append
        // would run into it.
        let torn = !text.is_empty() && !text.ends_with(b"\n");
        if bad > 0 || torn || acks.lines > acks.compact_at() {
            if let Err(e) = acks.compact() {
                warnings.push(format!("cannot rewrite {}: {e}", path.display()));
            }
        }
        (acks, warnings)
    }

    /// What is owed for workload `name`, whose managed Deployment carries
    /// `version`: nothing once acknowledged; else the owed record, or
    /// (applied before this record knew of it) `version` at `now`.
    pub fn owed(&self, name: &str, version: &str, now: &str) -> Option<Owed> {
        match self.entries.get(name) {
            Some(Entry::Acked(v)) if v == version => None,
            Some(Entry::Owed(o)) if o.version == version => Some(o.clone()),
            _ => Some(Owed {
                version: version.to_string(),
                applied_at: now.to_string(),
            }),
        }
    }

    /// The Kubernetes API accepted `version` of `name` at `at`: owed now.
    pub fn applied(&mut self, name: &str, version: &str, at: &str) -> io::Result<()> {
        self.record(Line {
            name: name.to_string(),
            version: Some(version.to_string()),
            applied_at: Some(at.to_string()),
            acked: false,
        })
    }

    /// The backend answered 2xx to `version` of `name`.
    pub fn acknowledged(&mut self, name: &str, version: &str) -> io::Result<()> {
        self.record(Line {
            name: name.to_string(),
            version: Some(version.to_string()),
            applied_at: None,
            acked: true,
        })
    }

    /// `name`'s Deployment was deleted: nothing is owed for it.
    pub fn forget(&mut self, name: &str) -> io::Result<()> {
        if !self.entries.contains_key(name) {
            return Ok(());
        }
        self.record(Line {
            name: name.to_string(),
            version: None,
            applied_at: None,
            acked: false,
        })
    }

    /// How many workloads the record knows.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn digest(&mut self, line: Line) {
        match (line.version, line.acked) {
            (None, _) => {
                self.entries.remove(&line.name);
            }
            (Some(v), true) => {
                self.entries.insert(line.name, Entry::Acked(v));
            }
            (Some(version), false) => {
                let applied_at = line.applied_at.unwrap_or_default();
                self.entries.insert(
                    line.name,
                    Entry::Owed(Owed {
                        version,
                        applied_at,
                    }),
                );
            }
        }
    }

    /// Applies a change in memory, then appends it to the journal.
    fn record(&mut self, line: Line) -> io::Result<()> {
        let text = self.file.as_ref().map(|_| serde_json::to_string(&line));
        self.digest(line);
        let (Some(path), Some(text)) = (self.file.clone(), text) else {
            return Ok(());
        };
        let mut text = text.map_err(io::Error::other)?;
        text.push('\n');
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?
            .write_all(text.as_bytes())?;
        self.lines += 1;
        if self.lines > self.compact_at() {
            self.compact()?;
        }
        Ok(())
    }

    fn compact_at(&self) -> usize {
        2 * self.entries.len() + COMPACT_SLACK
    }

    /// Rewrites the journal as one line per workload (write, rename).
    fn compact(&mut self) -> io::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let tmp = path.with_extension("jsonl.tmp");
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        for (name, entry) in &self.entries {
            let line = match entry {
                Entry::Acked(v) => Line {
                    name: name.clone(),
                    version: Some(v.clone()),
                    applied_at: None,
                    acked: true,
                },
                Entry::Owed(o) => Line {
                    name: name.clone(),
                    version: Some(o.version.clone()),
                    applied_at: Some(o.applied_at.clone()),
                    acked: false,
                },
            };
            serde_json::to_writer(&mut out, &line)?;
            out.write_all(b"\n")?;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        fs::rename(&tmp, path)?;
        self.lines = self.entries.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: &str = "2026-12-01T12:00:00Z";
    const THEN: &str = "2026-12-01T11:00:00Z";

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "wm-acks-{}-{:x}",
            std::process::id(),
            crate::scheduler::Rng::seed_from_os()
        ));
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn what_is_owed_follows_applies_and_acknowledgements() {
        let mut a = Acks::in_memory();
        // Unknown to the record: the deployed version, now.
        let owed = a.owed("web", "1.0.0", NOW).unwrap();
        assert_eq!(
            (owed.version.as_str(), owed.applied_at.as_str()),
            ("1.0.0", NOW)
        );
        a.applied("web", "1.1.0", THEN).unwrap();
        assert_eq!(a.owed("web", "1.1.0", NOW).unwrap().applied_at, THEN);
        a.acknowledged("web", "1.1.0").unwrap();
        assert_eq!(a.owed("web", "1.1.0", NOW), None);
        // Someone else's version on the Deployment: owed, as deployed.
        assert_eq!(a.owed("web", "0.9.0", NOW).unwrap().version, "0.9.0");
        // Re-created at the same version: told again.
        a.applied("web", "1.1.0", NOW).unwrap();
        assert!(a.owed("web", "1.1.0", NOW).is_some());
        a.forget("web").unwrap();
        assert!(a.is_empty());
    }

    #[test]
    fn the_record_survives_a_restart_and_is_compacted() {
        let d = dir();
        {
            let (mut a, w) = Acks::open(&d);
            assert!(w.is_empty(), "{w:?}");
            a.applied("web", "1.0.0", THEN).unwrap();
            a.acknowledged("web", "1.0.0").unwrap();
            a.applied("api", "2.0.0", THEN).unwrap();
            a.applied("old", "1.0.0", THEN).unwrap();
            a.forget("old").unwrap();
        }
        let (a, w) = Acks::open(&d);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(a.len(), 2);
        assert_eq!(a.owed("web", "1.0.0", NOW), None);
        assert_eq!(
            a.owed("api", "2.0.0", NOW),
            Some(Owed {
                version: "2.0.0".into(),
                applied_at: THEN.into()
            }),
            "an owed acknowledgement keeps its time across a restart"
        );
        drop(a);
        // Many changes: the journal stays a few lines per workload.
        let (mut a, _) = Acks::open(&d);
        for i in 0..500 {
            let v = format!("1.0.{i}");
            a.applied("web", &v, NOW).unwrap();
            a.acknowledged("web", &v).unwrap();
        }
        let lines = fs::read_to_string(d.join(FILE)).unwrap().lines().count();
        assert!(lines <= 2 * 2 + COMPACT_SLACK + 1, "{lines} lines");
        let (a2, _) = Acks::open(&d);
        assert_eq!(a2.owed("web", "1.0.499", NOW), None);
        let _ = fs::remove_dir_all(&d);
    }

    #[test]
    fn a_damaged_journal_loses_only_its_bad_lines() {
        let d = dir();
        fs::write(
            d.join(FILE),
            "{\"name\":\"web\",\"version\":\"1.0.0\",\"acked\":true}\nnot json\n{\"name\":\"api\",\"vers",
        )
        .unwrap();
        let (a, w) = Acks::open(&d);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("2 line(s)"), "{w:?}");
        assert_eq!(a.owed("web", "1.0.0", NOW), None);
        assert!(a.owed("api", "1.0.0", NOW).is_some());
        let text = fs::read_to_string(d.join(FILE)).unwrap();
        assert_eq!(
            text.lines().count(),
            1,
            "rewritten without the bad lines: {text}"
        );
        let _ = fs::remove_dir_all(&d);
    }
}
