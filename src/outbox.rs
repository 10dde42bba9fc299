//! The outbox: health reports the backend has not accepted yet.
//!
//! Reports are queued oldest first and sent in batches of up to [`BATCH`];
//! only the backend's acceptance removes them, so an outage loses nothing
//! until the bounds are reached: past [`CAPACITY`] reports or [`MAX_BYTES`]
//! the oldest are dropped and counted. With a state directory every queued
//! report is on disk before `push` returns: appended to `outbox.jsonl` and
//! fsynced (a crash can tear only the last line, which is skipped), and the
//! file is rewritten atomically (write, fsync, rename, fsync the directory)
//! when reports leave. Appending keeps an outage from rewriting the whole
//! file every minute on a node's flash storage. A file that does not parse is
//! moved aside with a warning; the manager never refuses to start over it.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};

/// Most reports kept: 25 hours of one report a minute.
pub const CAPACITY: usize = 1500;
/// Most bytes of reports kept.
pub const MAX_BYTES: usize = 16 * 1024 * 1024;
/// Most reports in one delivery.
pub const BATCH: usize = 100;
/// The file name under the state directory.
pub const FILE: &str = "outbox.jsonl";

/// One queued report: its id and its JSON, exactly as it will be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: String,
    pub json: String,
}

#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Queued>,
    bytes: usize,
    dropped: u64,
    file: Option<PathBuf>,
}

impl Outbox {
    /// An outbox that lives in memory only.
    pub fn in_memory() -> Outbox {
        Outbox {
            queue: VecDeque::new(),
            bytes: 0,
            dropped: 0,
            file: None,
        }
    }

    /// Opens the outbox in `dir`, loading what an earlier run left. Problems
    /// with the file are returned as warnings, never as a failure to start.
    pub fn open(dir: &Path) -> (Outbox, Vec<String>) {
        let path = dir.join(FILE);
        let mut outbox = Outbox {
            file: Some(path.clone()),
            ..Outbox::in_memory()
        };
        let mut warnings = Vec::new();
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (outbox, warnings),
            Err(e) => {
                warnings.push(format!(
                    "cannot read {}: {e}; starting with an empty outbox",
                    path.display()
                ));
                return (outbox, warnings);
            }
        };
        // Line by line, so loading a full outbox never holds the file twice.
        let mut reader = io::BufReader::new(file);
        let mut line = Vec::new();
        let (mut bad, mut complete) = (0, true);
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) => {
                    warnings.push(format!("cannot read {}: {e}", path.display()));
                    break;
                }
            }
            let ended = line.last() == Some(&b'\n');
            // A last line without its newline is rewritten, or the next
            // append would run into it.
            complete &= ended;
            let text = line.strip_suffix(b"\n").unwrap_or(&line);
            if text.is_empty() {
                continue;
            }
            match parse_line(text) {
                Some(q) => {
                    outbox.enqueue(q);
                }
                None if !ended => {
                    warnings.push(
                        "the last queued report was cut short by a crash; skipped".to_string(),
                    );
                }
                None => bad += 1,
            }
        }
        if bad > 0 {
            let aside = path.with_extension(format!("jsonl.corrupt-{}", std::process::id()));
            let moved = fs::rename(&path, &aside);
            warnings.push(format!(
                "{bad} line(s) of {} did not parse; the file was moved to {} ({}) and {} report(s) kept",
                path.display(),
                aside.display(),
                moved.map_or_else(|e| e.to_string(), |_| "ok".into()),
                outbox.len()
            ));
        }
        if bad > 0 || !complete {
            if let Err(e) = outbox.rewrite() {
                warnings.push(format!("cannot rewrite {}: {e}", path.display()));
            }
        }
        (outbox, warnings)
    }

    /// Queues a report (its JSON must be one line). On disk before it returns
    /// when there is a state directory; a write error is returned but the
    /// report stays queued in memory.
    pub fn push(&mut self, report: Queued) -> io::Result<()> {
        let evicted = self.enqueue(report);
        match &self.file {
            None => Ok(()),
            Some(_) if evicted => self.rewrite(),
            Some(path) => {
                let last = self.queue.back().expect("just pushed");
                append(path, &last.json)
            }
        }
    }

    /// The oldest reports, at most [`BATCH`].
    pub fn batch(&self) -> impl Iterator<Item = &Queued> {
        self.queue.iter().take(BATCH)
    }

    /// The body of a delivery of [`Outbox::batch`]: `{"reports":[…]}`.
    pub fn batch_body(&self) -> String {
        let mut body = String::from("{\"reports\":[");
        for (i, q) in self.batch().enumerate() {
            if i > 0 {
                body.push(',');
            }
            body.push_str(&q.json);
        }
        body.push_str("]}");
        body
    }

    /// The backend accepted the oldest `n` reports.
    pub fn delivered(&mut self, n: usize) -> io::Result<()> {
        for q in self.queue.drain(..n.min(self.queue.len())) {
            self.bytes -= q.json.len();
        }
        self.rewrite()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Bytes of queued report JSON.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Reports dropped because the outbox was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Adds to the queue, dropping the oldest past the bounds; true if any was dropped.
    fn enqueue(&mut self, report: Queued) -> bool {
        self.bytes += report.json.len();
        self.queue.push_back(report);
        let mut evicted = false;
        while self.queue.len() > CAPACITY || (self.bytes > MAX_BYTES && self.queue.len() > 1) {
            let old = self.queue.pop_front().expect("the queue is not empty");
            self.bytes -= old.json.len();
            self.dropped += 1;
            evicted = true;
        }
        evicted
    }

    /// Writes the whole queue to a new file and renames it over the old one.
    fn rewrite(&self) -> io::Result<()> {
        let Some(path) = &self.file else {
            return Ok(());
        };
        let tmp = path.with_extension("jsonl.tmp");
        {
            let mut f = io::BufWriter::new(File::create(&tmp)?);
            for q in &self.queue {
                f.write_all(q.json.as_bytes())?;
                f.write_all(b"\n")?;
            }
            f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        }
        fs::rename(&tmp, path)?;
        sync_dir(path)
    }
}

fn append(path: &Path, json: &str) -> io::Result<()> {
    let new = !path.exists();
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    let mut line = Vec::with_capacity(json.len() + 1);
    line.extend_from_slice(json.as_bytes());
    line.push(b'\n');
    f.write_all(&line)?;
    f.sync_data()?;
    if new {
        sync_dir(path)?;
    }
    Ok(())
}

fn sync_dir(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// A line is a JSON object with a string `id`.
fn parse_line(line: &[u8]) -> Option<Queued> {
    let text = std::str::from_utf8(line).ok()?;
    let value: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = value.get("id")?.as_str()?.to_string();
    Some(Queued {
        id,
        json: text.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(n: usize) -> Queued {
        let id = format!("0xabc-1-{n:06}");
        Queued {
            json: format!(r#"{{"id":"{id}","windowSeconds":60}}"#),
            id,
        }
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("wm-outbox-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn ids(o: &Outbox) -> Vec<String> {
        o.queue.iter().map(|q| q.id.clone()).collect()
    }

    #[test]
    fn batches_are_the_oldest_hundred() {
        let mut o = Outbox::in_memory();
        for n in 0..250 {
            o.push(report(n)).unwrap();
        }
        let batch: Vec<&str> = o.batch().map(|q| q.id.as_str()).collect();
        assert_eq!(batch.len(), BATCH);
        assert_eq!(batch[0], "0xabc-1-000000");
        let body: serde_json::Value = serde_json::from_str(&o.batch_body()).unwrap();
        assert_eq!(body["reports"].as_array().unwrap().len(), 100);
        assert_eq!(body["reports"][99]["id"], "0xabc-1-000099");
        o.delivered(100).unwrap();
        assert_eq!(o.batch().next().unwrap().id, "0xabc-1-000100");
        o.delivered(1000).unwrap();
        assert!(o.is_empty());
        assert_eq!(o.bytes(), 0);
        assert_eq!(o.batch_body(), r#"{"reports":[]}"#);
    }

    #[test]
    fn past_capacity_the_oldest_are_dropped_and_counted() {
        let mut o = Outbox::in_memory();
        for n in 0..CAPACITY + 7 {
            o.push(report(n)).unwrap();
        }
        assert_eq!(o.len(), CAPACITY);
        assert_eq!(o.dropped(), 7);
        assert_eq!(o.batch().next().unwrap().id, report(7).id);
    }

    #[test]
    fn past_the_byte_bound_the_oldest_are_dropped() {
        let mut o = Outbox::in_memory();
        let big = |n: usize| Queued {
            id: n.to_string(),
            json: format!(r#"{{"id":"{n}","pad":"{}"}}"#, "x".repeat(MAX_BYTES / 4)),
        };
        for n in 0..6 {
            o.push(big(n)).unwrap();
        }
        assert!(o.bytes() <= MAX_BYTES);
        assert_eq!(o.len(), 3);
        assert_eq!(o.dropped(), 3);
    }

    #[test]
    fn what_is_queued_survives_a_restart() {
        let d = dir("restart");
        let (mut o, warnings) = Outbox::open(&d);
        assert!(warnings.is_empty() && o.is_empty());
        for n in 0..5 {
            o.push(report(n)).unwrap();
        }
        o.delivered(2).unwrap();
        o.push(report(5)).unwrap();
        drop(o);
        let (o, warnings) = Outbox::open(&d);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            ids(&o),
            [
                "0xabc-1-000002",
                "0xabc-1-000003",
                "0xabc-1-000004",
                "0xabc-1-000005"
            ]
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_line_torn_by_a_crash_is_skipped() {
        let d = dir("torn");
        let (mut o, _) = Outbox::open(&d);
        o.push(report(0)).unwrap();
        o.push(report(1)).unwrap();
        let mut f = OpenOptions::new().append(true).open(d.join(FILE)).unwrap();
        f.write_all(br#"{"id":"0xabc-1-0000"#).unwrap();
        drop(f);
        let (o, warnings) = Outbox::open(&d);
        assert_eq!(ids(&o), ["0xabc-1-000000", "0xabc-1-000001"]);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let (_, warnings) = Outbox::open(&d);
        assert!(
            warnings.is_empty(),
            "the torn line was cleaned up: {warnings:?}"
        );
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_whole_last_line_without_its_newline_is_kept_and_closed() {
        let d = dir("unterminated");
        fs::write(d.join(FILE), report(0).json).unwrap();
        let (mut o, warnings) = Outbox::open(&d);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(ids(&o), ["0xabc-1-000000"]);
        o.push(report(1)).unwrap();
        let (o, warnings) = Outbox::open(&d);
        assert!(
            warnings.is_empty(),
            "the next append did not run into it: {warnings:?}"
        );
        assert_eq!(ids(&o), ["0xabc-1-000000", "0xabc-1-000001"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_the_good_lines_kept() {
        let d = dir("corrupt");
        let good = report(3).json;
        fs::write(
            d.join(FILE),
            format!("garbage\n{good}\n\u{0}\u{1}\n[1,2]\n"),
        )
        .unwrap();
        let (mut o, warnings) = Outbox::open(&d);
        assert_eq!(ids(&o), ["0xabc-1-000003"]);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("3 line(s)") && warnings[0].contains("moved to"),
            "{warnings:?}"
        );
        let aside: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .collect();
        assert_eq!(aside.len(), 1);
        o.push(report(4)).unwrap();
        let (o, warnings) = Outbox::open(&d);
        assert!(warnings.is_empty());
        assert_eq!(ids(&o), ["0xabc-1-000003", "0xabc-1-000004"]);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn an_unreadable_state_file_is_a_warning() {
        let d = dir("unreadable");
        fs::create_dir_all(d.join(FILE)).unwrap(); // a directory where the file should be
        let (mut o, warnings) = Outbox::open(&d);
        assert_eq!(warnings.len(), 1);
        assert!(o.push(report(0)).is_err(), "the write error is reported");
        assert_eq!(o.len(), 1, "and the report stays queued in memory");
        fs::remove_dir_all(&d).unwrap();
    }
}
