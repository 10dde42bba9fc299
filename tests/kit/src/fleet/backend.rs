//! The simulated Node System backend and S3: what a fleet's calls cost them.
//!
//! It answers from a script (outages, a capacity in requests per second,
//! the desired versions over time, the self-update file over time) and
//! counts every request that reaches it, per second and per endpoint. Beyond
//! its capacity in a second it answers `503` with a `Retry-After`, as a
//! loaded backend behind a load shedder does. Reports are checked in a
//! ledger: per node, ids must arrive in order, so a repeat is a duplicate
//! delivery and a hole is a lost report.

use std::collections::BTreeMap;

use super::sizes::Sizes;

/// The backend endpoints (section 4 of the interfaces) and the S3 file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Endpoint {
    /// `GET /v1/nodes/{address}/workloads`
    Workloads,
    /// `GET /v1/workloads/{name}/versions/{version}/manifest`
    Manifest,
    /// `PUT /v1/nodes/{address}/workloads/{name}/version`
    PutVersion,
    /// `POST /v1/nodes/{address}/health`
    Health,
    /// `GET` of the self-update file (S3, not the backend).
    S3,
}

impl Endpoint {
    pub const BACKEND: [Endpoint; 4] = [
        Endpoint::Workloads,
        Endpoint::Manifest,
        Endpoint::PutVersion,
        Endpoint::Health,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Endpoint::Workloads => "GET workloads",
            Endpoint::Manifest => "GET manifest",
            Endpoint::PutVersion => "PUT version",
            Endpoint::Health => "POST health",
            Endpoint::S3 => "S3 GET",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How the backend answered one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// `200`, `202`, `204` or `304`.
    Served { code: u16 },
    /// An error answer, with its `Retry-After` header if any.
    Refused {
        code: u16,
        retry_after: Option<String>,
    },
    /// No answer at all: connection refused or timed out.
    Down,
}

/// What happens to the backend, in virtual milliseconds since the start.
#[derive(Debug, Clone)]
pub struct Script {
    /// The backend does not answer in `[from, until)`.
    pub outages: Vec<(u64, u64)>,
    /// Requests per second it answers; `None`: as many as come.
    pub capacity: Option<u32>,
    /// The `Retry-After` its 503s carry, in seconds.
    pub retry_after: u32,
    /// The fleet's desired versions: each entry holds from its time on.
    pub desired: Vec<(u64, BTreeMap<String, String>)>,
    /// The self-update file's text: each entry holds from its time on.
    pub update_file: Vec<(u64, String)>,
}

/// Requests counted per second, since the start of the measured span.
#[derive(Debug, Default, Clone)]
pub struct Load {
    pub per_second: Vec<u32>,
    /// Requests refused with 503 because the capacity was used up.
    pub shed: u64,
    /// Calls made while the backend was down (never reached it).
    pub unanswered: u64,
    pub requests: [u64; 5],
    pub bytes: [u64; 5],
    /// Requests per second of each endpoint (S3 included).
    pub by_endpoint: [Vec<u32>; 5],
    /// Bytes per second to and from the backend.
    pub bytes_per_second: Vec<u64>,
    /// Reports accepted per second.
    pub reports_per_second: Vec<u32>,
}

impl Load {
    pub fn total(&self, endpoint: Endpoint) -> u64 {
        self.requests[endpoint.index()]
    }

    pub fn bytes_of(&self, endpoint: Endpoint) -> u64 {
        self.bytes[endpoint.index()]
    }

    pub fn series(&self, endpoint: Endpoint) -> &[u32] {
        &self.by_endpoint[endpoint.index()]
    }

    pub fn backend_requests(&self) -> u64 {
        Endpoint::BACKEND.iter().map(|e| self.total(*e)).sum()
    }

    pub fn backend_bytes(&self) -> u64 {
        Endpoint::BACKEND.iter().map(|e| self.bytes_of(*e)).sum()
    }
}

/// Per node, the last report id accepted, for duplicate and loss checks.
#[derive(Debug, Default, Clone, Copy)]
struct Last {
    run: u32,
    seq: u32,
}

#[derive(Debug, Default)]
pub struct Ledger {
    last: Vec<Option<Last>>,
    pub accepted: u64,
    pub duplicates: u64,
    /// Reports missing between two accepted ones of a node.
    pub holes: u64,
    /// Reports built before this time (ms, the end of the last outage) are
    /// its backlog…
    pub backlog_before: u64,
    /// …and the last of them was accepted then.
    pub backlog_accepted_at: Option<u64>,
    /// The longest a report waited between its build and its acceptance.
    pub longest_wait: u64,
}

pub struct Backend {
    pub script: Script,
    pub sizes: Sizes,
    /// The measured span starts here; calls before it are not counted.
    pub measure_from: u64,
    pub load: Load,
    pub ledger: Ledger,
    /// The second being counted against the capacity, and its count.
    second: (u64, u32),
}

impl Backend {
    pub fn new(script: Script, sizes: Sizes, nodes: usize, measure_from: u64) -> Backend {
        let backlog_before = script.outages.iter().map(|o| o.1).max().unwrap_or(0);
        Backend {
            script,
            sizes,
            measure_from,
            load: Load::default(),
            ledger: Ledger {
                last: vec![None; nodes],
                backlog_before,
                ..Ledger::default()
            },
            second: (u64::MAX, 0),
        }
    }

    /// The desired versions at `now`, and their generation (the ETag).
    pub fn desired(&self, now: u64) -> (usize, &BTreeMap<String, String>) {
        let i = self
            .script
            .desired
            .iter()
            .rposition(|(at, _)| *at <= now)
            .unwrap_or(0);
        (i, &self.script.desired[i].1)
    }

    /// The self-update file at `now`.
    pub fn update_file(&self, now: u64) -> &str {
        self.script
            .update_file
            .iter()
            .rev()
            .find(|(at, _)| *at <= now)
            .map_or("", |(_, text)| text.as_str())
    }

    /// A call of `endpoint` at `now` that sends `up` bytes and, if served,
    /// receives `down` bytes.
    pub fn call(&mut self, now: u64, endpoint: Endpoint, up: u64, down: u64) -> Answer {
        if endpoint == Endpoint::S3 {
            self.count(now, endpoint, up + down);
            return Answer::Served { code: 200 };
        }
        let down_now = self
            .script
            .outages
            .iter()
            .any(|(from, until)| (*from..*until).contains(&now));
        if down_now {
            if now >= self.measure_from {
                self.load.unanswered += 1;
            }
            return Answer::Down;
        }
        let second = now / 1000;
        if self.second.0 != second {
            self.second = (second, 0);
        }
        self.second.1 += 1;
        if self.script.capacity.is_some_and(|c| self.second.1 > c) {
            self.count(now, endpoint, up + self.sizes.refusal);
            if now >= self.measure_from {
                self.load.shed += 1;
            }
            return Answer::Refused {
                code: 503,
                retry_after: Some(self.script.retry_after.to_string()),
            };
        }
        self.count(now, endpoint, up + down);
        Answer::Served {
            code: match endpoint {
                Endpoint::Health => 202,
                Endpoint::PutVersion => 204,
                _ => 200,
            },
        }
    }

    /// The backend stores the reports of an accepted delivery at `now`:
    /// (run, sequence number, build time) of each.
    pub fn accept(&mut self, node: usize, now: u64, ids: impl Iterator<Item = (u32, u32, u64)>) {
        for (run, seq, built) in ids {
            if now >= self.measure_from {
                let i = ((now - self.measure_from) / 1000) as usize;
                let series = &mut self.load.reports_per_second;
                if series.len() <= i {
                    series.resize(i + 1, 0);
                }
                series[i] += 1;
            }
            let ledger = &mut self.ledger;
            ledger.longest_wait = ledger.longest_wait.max(now.saturating_sub(built));
            if built < ledger.backlog_before && built >= self.measure_from {
                ledger.backlog_accepted_at = ledger.backlog_accepted_at.max(Some(now));
            }
            let last = &mut self.ledger.last[node];
            match *last {
                Some(l) if (run, seq) <= (l.run, l.seq) => self.ledger.duplicates += 1,
                Some(l) if run == l.run => self.ledger.holes += u64::from(seq - l.seq - 1),
                // Every run counts its reports from 1.
                _ => self.ledger.holes += u64::from(seq.saturating_sub(1)),
            }
            if last.is_none_or(|l| (run, seq) > (l.run, l.seq)) {
                *last = Some(Last { run, seq });
                self.ledger.accepted += 1;
            }
        }
    }

    fn count(&mut self, now: u64, endpoint: Endpoint, bytes: u64) {
        if now < self.measure_from {
            return;
        }
        let i = ((now - self.measure_from) / 1000) as usize;
        let mut series = vec![&mut self.load.by_endpoint[endpoint.index()]];
        if endpoint != Endpoint::S3 {
            series.push(&mut self.load.per_second);
        }
        for s in series {
            if s.len() <= i {
                s.resize(i + 1, 0);
            }
            s[i] += 1;
        }
        if endpoint != Endpoint::S3 {
            let series = &mut self.load.bytes_per_second;
            if series.len() <= i {
                series.resize(i + 1, 0);
            }
            series[i] += bytes;
        }
        self.load.requests[endpoint.index()] += 1;
        self.load.bytes[endpoint.index()] += bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(capacity: Option<u32>) -> Backend {
        let script = Script {
            outages: vec![(10_000, 20_000)],
            capacity,
            retry_after: 30,
            desired: vec![(0, BTreeMap::new())],
            update_file: vec![(0, "0.1.0".into()), (5_000, "0.2.0".into())],
        };
        let sizes = Sizes::measure(&BTreeMap::new());
        Backend::new(script, sizes, 2, 0)
    }

    #[test]
    fn repeats_and_holes_are_counted_per_node() {
        let mut b = backend(None);
        b.accept(0, 100, [(1, 1, 0), (1, 2, 0)].into_iter());
        b.accept(0, 200, [(1, 2, 0), (1, 5, 0)].into_iter());
        b.accept(1, 200, [(1, 2, 0)].into_iter());
        // A new run counts from 1 again.
        b.accept(0, 300, [(2, 1, 250)].into_iter());
        assert_eq!(b.ledger.accepted, 5);
        assert_eq!(b.ledger.duplicates, 1);
        assert_eq!(b.ledger.holes, 2 + 1);
        assert_eq!(b.ledger.longest_wait, 200);
    }

    #[test]
    fn it_sheds_past_its_capacity_and_is_silent_while_down() {
        let mut b = backend(Some(2));
        let served = |a: &Answer| matches!(a, Answer::Served { .. });
        assert!(served(&b.call(1_000, Endpoint::Health, 10, 10)));
        assert!(served(&b.call(1_500, Endpoint::Workloads, 10, 10)));
        assert_eq!(
            b.call(1_900, Endpoint::Health, 10, 10),
            Answer::Refused {
                code: 503,
                retry_after: Some("30".into())
            }
        );
        assert!(
            served(&b.call(2_000, Endpoint::Health, 10, 10)),
            "a new second"
        );
        assert_eq!(b.call(10_000, Endpoint::Health, 10, 10), Answer::Down);
        assert_eq!(b.load.per_second[1], 3, "the refused call reached it too");
        assert_eq!((b.load.shed, b.load.unanswered), (1, 1));
        assert_eq!(b.update_file(4_999), "0.1.0");
        assert_eq!(b.update_file(5_000), "0.2.0");
    }
}
