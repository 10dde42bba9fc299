//! The workloads of a soak, heartbeating over HTTP to every running manager
//! instance as pods behind the Service would: some steady, some flapping
//! between healthy and unhealthy, some going silent for longer than the
//! heartbeat timeout. The same thread reads each instance's `/v1/status`
//! every few seconds for the count of reports its outbox dropped.
//!
//! A heartbeat that gets no answer (the instance is being restarted, or its
//! loop is blocked in a slow call) is only counted: it is no invariant.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use workload_manager::scheduler::Rng;

use super::chaos::Dice;
use super::instances::{call, get, lock, Target, Targets};

/// Every name the desired state may list; each sends heartbeats throughout.
pub const NAMES: [&str; 7] = ["web", "api", "cache", "queue", "worker", "metrics", "db"];

const HEARTBEAT_LIMIT: Duration = Duration::from_secs(2);
const STATUS_EVERY: Duration = Duration::from_secs(5);
const TICK: Duration = Duration::from_millis(250);

/// How a workload behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    /// Healthy every 2 s.
    Steady,
    /// Healthy, then unhealthy or degraded, every 5–15 s.
    Flapping,
    /// Healthy, but now and then silent for 35–70 s (the timeout is 30 s).
    Silent,
}

fn behaviour(name: &str) -> Behaviour {
    match name {
        "cache" | "queue" => Behaviour::Flapping,
        "worker" | "metrics" => Behaviour::Silent,
        _ => Behaviour::Steady,
    }
}

struct Workload {
    name: &'static str,
    behaviour: Behaviour,
    status: &'static str,
    next_beat: Instant,
    /// When the status flips (flapping) or the silence starts or ends (silent).
    next_change: Instant,
    silent: bool,
}

impl Workload {
    fn new(name: &'static str, now: Instant, dice: &mut Dice) -> Workload {
        Workload {
            name,
            behaviour: behaviour(name),
            status: "healthy",
            next_beat: now + dice.between(Duration::ZERO, Duration::from_secs(2)),
            next_change: now + dice.between(Duration::from_secs(5), Duration::from_secs(40)),
            silent: false,
        }
    }

    /// Moves the behaviour on; whether a heartbeat is due now.
    fn due(&mut self, now: Instant, dice: &mut Dice) -> bool {
        if now >= self.next_change {
            self.change(now, dice);
        }
        if self.silent || now < self.next_beat {
            return false;
        }
        self.next_beat =
            now + dice.between(Duration::from_millis(1500), Duration::from_millis(2500));
        true
    }

    fn change(&mut self, now: Instant, dice: &mut Dice) {
        let secs = |lo, hi| Duration::from_secs(lo)..Duration::from_secs(hi);
        let next = match self.behaviour {
            Behaviour::Steady => secs(3600, 7200),
            Behaviour::Flapping => {
                self.status = match self.status {
                    "healthy" if dice.chance(30) => "degraded",
                    "healthy" => "unhealthy",
                    _ => "healthy",
                };
                secs(5, 15)
            }
            Behaviour::Silent => {
                self.silent = !self.silent;
                if self.silent {
                    secs(35, 70)
                } else {
                    secs(40, 100)
                }
            }
        };
        self.next_change = now + dice.between(next.start, next.end);
    }
}

/// What the heartbeats got.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub sent: u64,
    /// Answers by HTTP status.
    pub answered: BTreeMap<u16, u64>,
    /// No answer within the limit (or no connection).
    pub unanswered: u64,
    pub status_reads: u64,
}

/// The heartbeat thread.
pub struct Heartbeats {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Tally>,
}

impl Heartbeats {
    pub fn start(seed: u64, targets: Targets) -> Heartbeats {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || beat(seed, &targets, &flag));
        Heartbeats { stop, thread }
    }

    /// Stops the thread and returns what it counted.
    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.thread().unpark();
        self.thread.join().unwrap_or_default()
    }
}

fn beat(seed: u64, targets: &Targets, stop: &AtomicBool) -> Tally {
    let mut dice = Dice::new(Rng::new(seed));
    let now = Instant::now();
    let mut workloads: Vec<Workload> = NAMES
        .iter()
        .map(|n| Workload::new(n, now, &mut dice))
        .collect();
    let mut tally = Tally::default();
    let mut next_status = now;
    while !stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let running: Vec<Target> = lock(targets).clone();
        for w in workloads.iter_mut() {
            if w.due(now, &mut dice) {
                for t in &running {
                    send(t, w, &mut tally);
                }
            }
        }
        if now >= next_status {
            for t in &running {
                read_dropped(t, &mut tally);
            }
            next_status = now + STATUS_EVERY;
        }
        // Pacing: heartbeats are due every couple of seconds; `stop` unparks.
        thread::park_timeout(TICK);
    }
    tally
}

fn send(t: &Target, w: &Workload, tally: &mut Tally) {
    let body = format!(r#"{{"status":"{}","message":"soak"}}"#, w.status);
    let raw = format!(
        "POST /v1/workloads/{}/health HTTP/1.1\r\nHost: soak\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        w.name,
        body.len()
    );
    tally.sent += 1;
    match call(t.addr, &raw, HEARTBEAT_LIMIT) {
        Ok(r) => *tally.answered.entry(r.status).or_default() += 1,
        Err(_) => tally.unanswered += 1,
    }
}

/// Keeps the largest `outbox.dropped` the instance's status shows.
fn read_dropped(t: &Target, tally: &mut Tally) {
    let Ok(reply) = get(t.addr, "/v1/status", HEARTBEAT_LIMIT) else {
        return;
    };
    let dropped = serde_json::from_str::<serde_json::Value>(&reply.body)
        .ok()
        .and_then(|v| v["outbox"]["dropped"].as_u64());
    if let Some(d) = dropped {
        tally.status_reads += 1;
        let mut l = lock(&t.life);
        l.dropped = l.dropped.max(d);
    }
}
