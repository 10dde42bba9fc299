//! The five fleet scenarios of the README's "At fleet scale" section, each
//! with the goal it must hold.

use super::backend::{Endpoint, Script};
use super::*;

/// A scenario's figures and whether its goals held.
pub struct Verdict {
    pub figures: Figures,
    /// Each goal, and whether it held.
    pub goals: Vec<(String, bool)>,
}

impl Verdict {
    pub fn held(&self) -> bool {
        self.goals.iter().all(|(_, ok)| *ok)
    }

    pub fn print(&self) {
        self.figures.print();
        for (goal, ok) in &self.goals {
            println!("  goal {}: {goal}", if *ok { "held" } else { "MISSED" });
        }
    }
}

/// Peak over 10 s windows under twice the mean.
const PEAK_RATIO: f64 = 2.0;

fn ratio_goal(f: &Figures) -> (String, bool) {
    (
        format!("peak 10 s / mean {:.2} < {PEAK_RATIO}", f.peak_ratio()),
        f.peak_ratio() < PEAK_RATIO,
    )
}

fn capacity_goal(f: &Figures, capacity: Option<u32>) -> Option<(String, bool)> {
    let c = capacity?;
    Some((
        format!(
            "more than the capacity of {c} req/s for {} s in all (at most 60 s)",
            f.over_capacity.0
        ),
        f.over_capacity.0 <= 60,
    ))
}

/// The fleet's mean backend load on an ordinary hour: what the others are measured against.
pub fn steady_mean(fleet: &Fleet) -> f64 {
    let outcome = simulate(
        fleet,
        Run {
            script: steady(fleet, None),
            power_cuts: None,
            span: HOUR,
        },
    );
    outcome.load.backend_requests() as f64 / (HOUR / SEC) as f64
}

/// `script` over the scripted event and an hour after it.
fn event_and_an_hour(fleet: &Fleet, script: Script) -> Outcome {
    simulate(
        fleet,
        Run {
            script,
            power_cuts: None,
            span: EVENT_AT + HOUR,
        },
    )
}

/// The reports' line, and the goal that none was lost or delivered twice.
fn reports_goal(outcome: &Outcome, f: &mut Figures) -> (String, bool) {
    let (lost, twice, lines) = report_lines(outcome);
    f.lines.extend(lines);
    f.lines
        .push(format!("simulated in {:.1} s", outcome.took.as_secs_f64()));
    (
        format!("{lost} reports lost, {twice} delivered twice"),
        lost == 0 && twice == 0,
    )
}

/// A capacity of `times` the steady mean.
pub fn capacity(steady_mean: f64, times: f64) -> u32 {
    (steady_mean * times).round().max(1.0) as u32
}

/// Scenario 1: an ordinary day.
pub fn steady_day(fleet: &Fleet, hours: u64) -> Verdict {
    let outcome = simulate(
        fleet,
        Run {
            script: steady(fleet, None),
            power_cuts: None,
            span: hours * HOUR,
        },
    );
    let mut f = Figures::of(
        &format!("1. steady state, {hours} h ({} nodes)", fleet.nodes),
        &outcome,
        0.0,
        None,
    );
    f.steady_mean = f.mean;
    let per_day = DAY as f64 / outcome.span as f64 / fleet.nodes as f64;
    let by: Vec<String> = Endpoint::BACKEND
        .iter()
        .chain([Endpoint::S3].iter())
        .map(|e| {
            format!(
                "{} {:.1}",
                e.name(),
                outcome.load.total(*e) as f64 * per_day
            )
        })
        .collect();
    f.lines.push(format!("per node per day: {}", by.join(", ")));
    f.lines.push(outcome.backend.sizes.describe());
    f.lines.push(format!(
        "S3 reads: {:.0} per node per day, {:.0} per second for the fleet",
        outcome.load.total(Endpoint::S3) as f64 * per_day,
        outcome.load.total(Endpoint::S3) as f64 / (outcome.span / SEC) as f64
    ));
    let reports = reports_goal(&outcome, &mut f);
    let goals = vec![ratio_goal(&f), reports];
    Verdict { figures: f, goals }
}

/// Scenario 2: the backend is down for an hour, then back with `capacity` requests
/// per second. The capacity goal is for a backend of twice the steady mean;
/// below that, how long it is exceeded is shown, not judged.
pub fn outage(fleet: &Fleet, steady_mean: f64, capacity: Option<u32>) -> Verdict {
    let down = (WARM_UP + EVENT_AT, WARM_UP + EVENT_AT + HOUR);
    let script = Script {
        outages: vec![down],
        ..steady(fleet, capacity)
    };
    let span = EVENT_AT + HOUR + HOUR;
    let mut outcome = simulate(
        fleet,
        Run {
            script,
            power_cuts: None,
            span,
        },
    );
    let title = format!(
        "2. backend down 1 h, then back {} ({} nodes)",
        capacity.map_or("at full capacity".to_string(), |c| format!(
            "with a capacity of {c} req/s ({:.1}x the steady mean)",
            c as f64 / steady_mean
        )),
        fleet.nodes
    );
    // The hour of outage is no load; the ratio is of the hour after it.
    let after = ((down.1 - WARM_UP) / SEC) as usize;
    // The goal's ratio is over the hour after the outage, against the steady mean.
    let mut f = Figures::from_second(&title, &outcome, after, steady_mean, capacity);
    let recovery = &outcome.load.per_second[after..];
    let drained = outcome
        .backend
        .ledger
        .backlog_accepted_at
        .map(|t| t.saturating_sub(down.1));
    f.lines.push(format!(
        "after recovery: peak 1 s {:.0} req/s, peak 10 s {:.0} req/s ({:.2}x the steady mean); calls while down {}",
        peak(recovery, 1),
        peak(recovery, 10),
        peak(recovery, 10) / steady_mean,
        outcome.load.unanswered
    ));
    let reports = &outcome.load.reports_per_second[after..];
    let bytes = &outcome.load.bytes_per_second[after..];
    let steady_bytes = mean(&outcome.load.bytes_per_second[..(EVENT_AT / SEC) as usize]);
    let steady_reports = mean(&outcome.load.reports_per_second[..(EVENT_AT / SEC) as usize]);
    f.lines.push(format!(
        "after recovery: reports accepted peak 10 s {:.0}/s ({:.0}x the steady {:.0}/s), bytes peak 10 s {:.1} MB/s ({:.0}x the steady {:.2} MB/s)",
        peak(reports, 10),
        peak(reports, 10) / steady_reports.max(1.0),
        steady_reports,
        peak(bytes, 10) / 1e6,
        peak(bytes, 10) / steady_bytes.max(1.0),
        steady_bytes / 1e6
    ));
    f.lines.push(format!(
        "every report built during the outage accepted {} after recovery; the longest a report waited: {}",
        drained.map_or("never".to_string(), span_text),
        span_text(outcome.backend.ledger.longest_wait)
    ));
    let reports = reports_goal(&outcome, &mut f);
    let mut goals = vec![ratio_goal(&f), reports];
    if capacity.is_none() {
        goals.push((
            format!(
                "every outbox emptied within 15 min of recovery ({})",
                drained.map_or("never".to_string(), span_text)
            ),
            drained.is_some_and(|d| d <= 15 * MIN),
        ));
    }
    match capacity_goal(&f, capacity) {
        Some(goal) if f64::from(capacity.unwrap_or(0)) >= 2.0 * steady_mean - 1.0 => {
            goals.push(goal)
        }
        Some((text, _)) => f
            .lines
            .push(format!("not a goal below 2x the steady mean: {text}")),
        None => {}
    }
    outcome.nodes.clear();
    Verdict { figures: f, goals }
}

/// Scenario 3: every node restarts within the same 60 s (a power cut).
pub fn restart(fleet: &Fleet, steady_mean: f64, capacity: Option<u32>) -> Verdict {
    let cut = WARM_UP + EVENT_AT;
    let outcome = simulate(
        fleet,
        Run {
            script: steady(fleet, capacity),
            power_cuts: Some((cut, 30 * SEC, 60 * SEC)),
            span: EVENT_AT + HOUR,
        },
    );
    let mut f = Figures::of(
        &format!(
            "3. every node restarts within the same 60 s, after a power cut ({} nodes)",
            fleet.nodes
        ),
        &outcome,
        steady_mean,
        capacity,
    );
    let from = ((cut - WARM_UP) / SEC) as usize;
    let window = &outcome.load.series(Endpoint::Workloads)[from..from + 600];
    let reports = &outcome.load.series(Endpoint::Health)[from..from + 600];
    f.lines.push(format!(
        "first syncs: GET workloads peak 1 s {:.0}/s, peak 10 s {:.0}/s (steady {:.0}/s); first reports: POST health peak 10 s {:.0}/s",
        peak(window, 1),
        peak(window, 10),
        fleet.nodes as f64 / fleet.config.sync_interval.as_secs_f64(),
        peak(reports, 10)
    ));
    let later = &outcome.load.series(Endpoint::Workloads)[from + 300..];
    f.lines.push(format!(
        "syncs after the first: GET workloads peak 10 s {:.0}/s from 5 min after the cut to the end",
        peak(later, 10)
    ));
    let reports = reports_goal(&outcome, &mut f);
    let mut goals = vec![ratio_goal(&f), reports];
    goals.extend(capacity_goal(&f, capacity));
    Verdict { figures: f, goals }
}

/// Scenario 4: a new version of one workload is published for the whole fleet.
pub fn publish(fleet: &Fleet, steady_mean: f64, capacity: Option<u32>) -> Verdict {
    let at = WARM_UP + EVENT_AT;
    let mut newer = fleet.workloads.clone();
    newer.insert("web".into(), "1.5.0".into());
    let script = Script {
        desired: vec![(0, fleet.workloads.clone()), (at, newer)],
        ..steady(fleet, capacity)
    };
    let outcome = event_and_an_hour(fleet, script);
    let mut f = Figures::of(
        &format!(
            "4. a new version of one workload published for the whole fleet ({} nodes)",
            fleet.nodes
        ),
        &outcome,
        steady_mean,
        capacity,
    );
    let times = |pick: fn(&Node) -> Option<u64>| -> Vec<u64> {
        outcome
            .nodes
            .iter()
            .filter_map(pick)
            .map(|t| t - at)
            .collect()
    };
    let mut applied = times(|n| n.web_applied.get("1.5.0").copied());
    let mut running = times(|n| n.web_running.get("1.5.0").copied());
    let show = |t: Option<u64>| t.map_or("not reached".to_string(), span_text);
    let nodes = fleet.nodes;
    let [a50, a99, a100] = [0.5, 0.99, 1.0].map(|s| of_fleet(&mut applied, nodes, s));
    let [r50, r99, r100] = [0.5, 0.99, 1.0].map(|s| of_fleet(&mut running, nodes, s));
    f.lines.push(format!(
        "nodes whose manager applied it: 50 % after {}, 99 % after {}, 100 % after {}",
        show(a50),
        show(a99),
        show(a100)
    ));
    f.lines.push(format!(
        "nodes running it (pods ready {}-{} s after the apply): 50 % after {}, 99 % after {}, 100 % after {}",
        fleet.rollout_ms.0 / SEC,
        fleet.rollout_ms.1 / SEC,
        show(r50),
        show(r99),
        show(r100)
    ));
    let manifests = outcome.load.series(Endpoint::Manifest);
    f.lines.push(format!(
        "GET manifest: {} in all, peak 1 s {:.0}/s, peak 10 s {:.0}/s; PUT version: {} in all; GET workloads: {:.1} per node (steady: {:.1})",
        outcome.load.total(Endpoint::Manifest),
        peak(manifests, 1),
        peak(manifests, 10),
        outcome.load.total(Endpoint::PutVersion),
        outcome.load.total(Endpoint::Workloads) as f64 / fleet.nodes as f64,
        (outcome.span / 1000) as f64 / fleet.config.sync_interval.as_secs_f64()
    ));
    f.lines
        .push(format!("simulated in {:.1} s", outcome.took.as_secs_f64()));
    let limit = fleet.config.sync_interval.mul_f64(1.1).as_millis() as u64;
    let mut goals = vec![
        ratio_goal(&f),
        (
            format!(
                "99 % of nodes applied it within one sync interval plus 10 % ({}): {}",
                span_text(limit),
                show(a99)
            ),
            a99.is_some_and(|t| t <= limit),
        ),
    ];
    goals.extend(capacity_goal(&f, capacity));
    Verdict { figures: f, goals }
}

/// Scenario 5: a new manager release is published in the self-update file.
pub fn self_update(fleet: &Fleet, steady_mean: f64, capacity: Option<u32>) -> Verdict {
    let at = WARM_UP + EVENT_AT;
    let script = Script {
        update_file: vec![(0, "0.1.0".into()), (at, "0.2.0\n".into())],
        ..steady(fleet, capacity)
    };
    let outcome = event_and_an_hour(fleet, script);
    let mut f = Figures::of(
        &format!(
            "5. a manager release published for self-update ({} nodes)",
            fleet.nodes
        ),
        &outcome,
        steady_mean,
        capacity,
    );
    let mut patched: Vec<u64> = outcome
        .nodes
        .iter()
        .filter_map(|n| n.self_patched)
        .collect();
    let mut replaced: Vec<u64> = outcome
        .nodes
        .iter()
        .filter_map(|n| n.self_replaced.map(|t| t - at))
        .collect();
    let per_minute = |times: &[u64]| -> u64 {
        let mut minutes = BTreeMap::new();
        for t in times {
            *minutes.entry(t / MIN).or_insert(0u64) += 1;
        }
        minutes.values().copied().max().unwrap_or(0)
    };
    let busiest = per_minute(&patched);
    let first = patched.iter().min().map(|t| t - at);
    let last = patched.iter().max().map(|t| t - at);
    let show = |t: Option<u64>| t.map_or("never".to_string(), span_text);
    f.lines.push(format!(
        "own Deployment patched on {} nodes, from {} to {} after publication; busiest minute {} patches ({:.1} % of the fleet)",
        patched.len(),
        show(first),
        show(last),
        busiest,
        busiest as f64 * 100.0 / fleet.nodes as f64
    ));
    let s3 = outcome.load.series(Endpoint::S3);
    f.lines.push(format!(
        "new pods running: 50 % after {}, 99 % after {}, 100 % after {}; S3 reads: {} in all, peak 10 s {:.0}/s",
        show(of_fleet(&mut replaced, fleet.nodes, 0.5)),
        show(of_fleet(&mut replaced, fleet.nodes, 0.99)),
        show(of_fleet(&mut replaced, fleet.nodes, 1.0)),
        outcome.load.total(Endpoint::S3),
        peak(s3, 10)
    ));
    patched.clear();
    let reports = reports_goal(&outcome, &mut f);
    let interval = fleet.config.update_interval.mul_f64(1.1).as_millis() as u64;
    let mut goals = vec![
        ratio_goal(&f),
        reports,
        (
            format!(
                "every node patched within the update interval plus 10 % ({}), the busiest minute under 10 % of the fleet",
                span_text(interval)
            ),
            replaced.len() == fleet.nodes
                && last.is_some_and(|t| t <= interval)
                && (busiest as f64) < fleet.nodes as f64 * 0.1,
        ),
    ];
    goals.extend(capacity_goal(&f, capacity));
    Verdict { figures: f, goals }
}

/// Every scenario at `nodes`: steady first, for the mean the others use.
pub fn all(nodes: usize, seed: u64, hours: u64) -> Vec<Verdict> {
    let fleet = Fleet::new(nodes, seed);
    let mean = steady_mean(&fleet);
    let limited = Some(capacity(mean, 2.0));
    vec![
        steady_day(&fleet, hours),
        outage(&fleet, mean, None),
        outage(&fleet, mean, limited),
        outage(&fleet, mean, Some(capacity(mean, 1.2))),
        restart(&fleet, mean, limited),
        publish(&fleet, mean, limited),
        self_update(&fleet, mean, limited),
    ]
}

/// The time by which `share` of all `nodes` had done it; `None` if fewer did.
fn of_fleet(times: &mut [u64], nodes: usize, share: f64) -> Option<u64> {
    let need = ((nodes as f64 * share).ceil() as usize).max(1);
    if times.len() < need {
        return None;
    }
    times.sort_unstable();
    Some(times[need - 1])
}

fn span_text(ms: u64) -> String {
    super::span(ms)
}
