//! The fleet simulator: what N managers do to one backend, in virtual time.
//!
//! Every node runs the manager's own scheduling code ([`node`]): the
//! schedule `jobs::schedule` builds, jitter, backoff and `Retry-After` as
//! the `Scheduler` decides them, the real `Outbox` with its batches and
//! bounds, the report-window rule, the reconcile plan, the self-update
//! decision and `jobs::after_sync`. All nodes live in one process and one
//! event queue; nothing sleeps. The backend ([`backend`]) plays a script
//! and counts what reaches it. `bench --fleet N` prints the scenarios.

pub mod backend;
pub mod node;
pub mod sizes;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::time::Instant;

use workload_manager::config::{Config, Source};
use workload_manager::scheduler::Rng;
use workload_manager::update::Version;

use backend::{Backend, Load, Script};
use node::{Clock, Node, Shared};
use sizes::Sizes;

const SEC: u64 = 1000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
const DAY: u64 = 24 * HOUR;

/// Nodes start at random over this long before the measured span, a whole
/// number of every default interval, so each job's phases are uniform.
pub const WARM_UP: u64 = 30 * MIN;
/// Scripted events come this long into the measured span.
pub const EVENT_AT: u64 = 10 * MIN;
/// The manager's image in the simulated clusters.
const IMAGE: &str = "ghcr.io/node-system/workload-manager:v0.1.0";

/// The fleet and the manager configuration it runs.
pub struct Fleet {
    pub nodes: usize,
    pub seed: u64,
    pub config: Config,
    /// The workloads every node runs at the start.
    pub workloads: BTreeMap<String, String>,
    /// A new version's pods are ready this long after the apply (ms, uniform).
    pub rollout_ms: (u64, u64),
    /// The `Retry-After` of a loaded backend's 503s, in seconds.
    pub retry_after: u32,
}

impl Fleet {
    /// `nodes` managers with the default configuration and three workloads.
    pub fn new(nodes: usize, seed: u64) -> Fleet {
        let config = Config::load(&Defaults).expect("the default configuration loads");
        let workloads = [("web", "1.4.0"), ("db", "2.0.1"), ("cache", "7.2.4")]
            .into_iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Fleet {
            nodes,
            seed,
            config,
            workloads,
            rollout_ms: (10 * SEC, 60 * SEC),
            retry_after: 30,
        }
    }
}

/// The configuration of a node with nothing set but what is required.
struct Defaults;

impl Source for Defaults {
    fn var(&self, name: &str) -> Option<String> {
        let value = match name {
            "NODE_SYSTEM_ENDPOINT" => "https://backend.node-system.example",
            "NODE_PRIVATE_KEY" => {
                "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"
            }
            "WM_KUBE_API_URL" => "https://127.0.0.1:6443",
            "WM_UPDATE_S3_BUCKET" => "releases",
            "WM_UPDATE_S3_KEY" => "workload-manager/latest",
            _ => return None,
        };
        Some(value.to_string())
    }

    fn read_file(&self, _: &std::path::Path) -> std::io::Result<String> {
        Err(std::io::ErrorKind::NotFound.into())
    }
}

/// One run: the script, what happens to the nodes, and how long to measure.
pub struct Run {
    pub script: Script,
    /// Power cuts: for each node, when it goes down and when it is back.
    pub power_cuts: Option<(u64, u64, u64)>,
    /// The measured span, from the end of the warm-up.
    pub span: u64,
}

/// What a run produced.
pub struct Outcome {
    pub load: Load,
    pub span: u64,
    pub nodes: Vec<Node>,
    pub backend: Backend,
    /// Wall time the simulation took.
    pub took: std::time::Duration,
}

/// Runs `fleet` through `run`; times are virtual ms since the warm-up began.
pub fn simulate(fleet: &Fleet, run: Run) -> Outcome {
    let began = Instant::now();
    let clock = Clock {
        base: Instant::now(),
    };
    let shared = Shared {
        config: &fleet.config,
        clock,
        rollout_ms: fleet.rollout_ms,
        image: IMAGE,
    };
    let sizes = Sizes::measure(&fleet.workloads);
    let until = WARM_UP + run.span;
    let mut backend = Backend::new(run.script, sizes, fleet.nodes, WARM_UP);
    let mut rng = Rng::new(fleet.seed);
    let version = Version::parse("0.1.0").expect("a version");
    let mut nodes: Vec<Node> = (0..fleet.nodes)
        .map(|i| {
            let start = rng.next_u64() % WARM_UP;
            let mut node = Node::new(i, &fleet.workloads, version.clone(), &shared, start);
            if let Some((at, back_from, back_within)) = run.power_cuts {
                let back = at + back_from + rng.next_u64() % back_within.max(1);
                node.power_cut = Some((at, back));
            }
            node
        })
        .collect();
    let mut queue: BinaryHeap<Reverse<(u64, usize)>> = nodes
        .iter()
        .map(|n| Reverse((n.wake(clock), n.index)))
        .collect();
    while let Some(Reverse((at, i))) = queue.pop() {
        if at >= until {
            break;
        }
        let node = &mut nodes[i];
        node.wake_up(&shared, &mut backend, at);
        let next = node.wake(clock);
        if next != u64::MAX {
            queue.push(Reverse((next.max(at + 1), i)));
        }
    }
    for node in &mut nodes {
        node.settle(until);
    }
    let mut load = std::mem::take(&mut backend.load);
    let seconds = (run.span / SEC) as usize;
    load.per_second.resize(seconds, 0);
    for series in &mut load.by_endpoint {
        series.resize(seconds, 0);
    }
    load.bytes_per_second.resize(seconds, 0);
    load.reports_per_second.resize(seconds, 0);
    Outcome {
        load,
        span: run.span,
        nodes,
        backend,
        took: began.elapsed(),
    }
}

/// The steady script: the backend always up, the desired state fixed.
pub fn steady(fleet: &Fleet, capacity: Option<u32>) -> Script {
    Script {
        outages: Vec::new(),
        capacity,
        retry_after: fleet.retry_after,
        desired: vec![(0, fleet.workloads.clone())],
        update_file: vec![(0, "0.1.0".to_string())],
    }
}

/// The highest count of any window of `width` seconds, per second.
pub fn peak<T: Copy + Into<u64>>(series: &[T], width: usize) -> f64 {
    if series.len() < width || width == 0 {
        return 0.0;
    }
    let mut sum: u64 = series[..width].iter().map(|c| (*c).into()).sum();
    let mut best = sum;
    for i in width..series.len() {
        sum = sum + series[i].into() - series[i - width].into();
        best = best.max(sum);
    }
    best as f64 / width as f64
}

/// The mean of a per-second series.
pub fn mean<T: Copy + Into<u64>>(series: &[T]) -> f64 {
    let sum: u64 = series.iter().map(|c| (*c).into()).sum();
    sum as f64 / series.len().max(1) as f64
}

/// The figures every scenario prints.
pub struct Figures {
    pub title: String,
    pub mean: f64,
    pub peak_1s: f64,
    pub peak_10s: f64,
    /// The fleet's steady mean, for the ratio a backend provisions by.
    pub steady_mean: f64,
    /// Backend requests over the measured span.
    pub requests: u64,
    pub per_node_day_requests: f64,
    pub per_node_day_bytes: f64,
    /// Seconds with more arrivals than the capacity, in all and in a row.
    pub over_capacity: (u64, u64),
    pub shed: u64,
    /// The scenario's own figures.
    pub lines: Vec<String>,
}

impl Figures {
    pub fn of(title: &str, outcome: &Outcome, steady_mean: f64, capacity: Option<u32>) -> Figures {
        Figures::from_second(title, outcome, 0, steady_mean, capacity)
    }

    /// Like [`Figures::of`], with the mean and peaks of the load from
    /// second `from` of the run on (the totals stay the whole run's).
    pub fn from_second(
        title: &str,
        outcome: &Outcome,
        from: usize,
        steady_mean: f64,
        capacity: Option<u32>,
    ) -> Figures {
        let load = &outcome.load;
        let measured = &load.per_second[from.min(load.per_second.len())..];
        let span_s = outcome.span as f64 / SEC as f64;
        let nodes = outcome.nodes.len().max(1) as f64;
        let per_day = DAY as f64 / outcome.span as f64 / nodes;
        let over_capacity = capacity.map_or((0, 0), |c| {
            let (mut all, mut run, mut longest) = (0, 0, 0);
            for n in &load.per_second {
                if *n > c {
                    all += 1;
                    run += 1;
                    longest = longest.max(run);
                } else {
                    run = 0;
                }
            }
            (all, longest)
        });
        Figures {
            title: title.to_string(),
            mean: if from == 0 {
                load.backend_requests() as f64 / span_s
            } else {
                mean(measured)
            },
            peak_1s: peak(measured, 1),
            peak_10s: peak(measured, 10),
            steady_mean,
            requests: load.backend_requests(),
            per_node_day_requests: load.backend_requests() as f64 * per_day,
            per_node_day_bytes: load.backend_bytes() as f64 * per_day,
            over_capacity,
            shed: load.shed,
            lines: Vec::new(),
        }
    }

    /// Peak over 10 s against the larger of this run's mean and the steady mean.
    pub fn peak_ratio(&self) -> f64 {
        self.peak_10s / self.mean.min(self.steady_mean).max(f64::MIN_POSITIVE)
    }

    pub fn print(&self) {
        println!("{}", self.title);
        println!(
            "  backend req/s: mean {:.0}, peak 1 s {:.0}, peak 10 s {:.0}; peak 10 s / mean {:.2}, / steady mean {:.2}",
            self.mean,
            self.peak_1s,
            self.peak_10s,
            self.peak_10s / self.mean.max(f64::MIN_POSITIVE),
            self.peak_10s / self.steady_mean.max(f64::MIN_POSITIVE)
        );
        println!(
            "  {} requests in all; per node per day: {:.0} requests, {:.2} MB; seconds over capacity {} (longest {} s), 503s {}",
            self.requests,
            self.per_node_day_requests,
            self.per_node_day_bytes / 1e6,
            self.over_capacity.0,
            self.over_capacity.1,
            self.shed
        );
        for line in &self.lines {
            println!("  {line}");
        }
    }
}

/// Reports the backend holds, lost and delivered twice.
pub fn report_lines(outcome: &Outcome) -> (u64, u64, Vec<String>) {
    let produced: u64 = outcome.nodes.iter().map(|n| n.produced).sum();
    let queued: u64 = outcome.nodes.iter().map(|n| n.outbox.len() as u64).sum();
    let dropped: u64 = outcome.nodes.iter().map(|n| n.outbox.dropped()).sum();
    let ledger = &outcome.backend.ledger;
    let lost = produced.saturating_sub(ledger.accepted + queued + dropped);
    let line = format!(
        "reports: {produced} built, {} accepted, {queued} still queued, {dropped} dropped by a full outbox, {lost} lost, {} delivered twice, {} missing between accepted ones",
        ledger.accepted, ledger.duplicates, ledger.holes
    );
    (lost + ledger.holes, ledger.duplicates, vec![line])
}

/// `ms` as `4 min 12 s`.
pub fn span(ms: u64) -> String {
    let s = ms / SEC;
    match s {
        0..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, (s % 3600) / 60),
    }
}

pub mod scenarios;
pub use scenarios::*;
