//! The fleet simulator against the goals of the README's "At fleet scale"
//! section, on a small fleet (the bench runs 10,000 and 100,000 nodes).

use wm_testkit::fleet::backend::{Endpoint, Script};
use wm_testkit::fleet::{self, Fleet, Run};

const HOUR: u64 = 3_600_000;

#[test]
fn a_small_fleet_holds_every_goal_in_every_scenario() {
    let verdicts = fleet::all(1500, 7, 2);
    assert_eq!(verdicts.len(), 7);
    for v in &verdicts {
        v.print();
        assert!(!v.goals.is_empty(), "{}: no goal judged", v.figures.title);
        assert!(v.held(), "{}: {:?}", v.figures.title, v.goals);
    }
}

#[test]
fn a_steady_day_costs_what_the_schedule_says() {
    let fleet = Fleet::new(500, 3);
    let outcome = fleet::simulate(
        &fleet,
        Run {
            script: fleet::steady(&fleet, None),
            power_cuts: None,
            span: 6 * HOUR,
        },
    );
    let per_day = |e: Endpoint| outcome.load.total(e) as f64 * 4.0 / 500.0;
    let near = |got: f64, want: f64, within: f64| (got - want).abs() <= want * within;
    // One report a minute, one sync every 10 min, one update check every 15 min.
    assert!(
        near(per_day(Endpoint::Health), 1440.0, 0.005),
        "{}",
        per_day(Endpoint::Health)
    );
    assert!(
        near(per_day(Endpoint::Workloads), 144.0, 0.03),
        "{}",
        per_day(Endpoint::Workloads)
    );
    assert!(
        near(per_day(Endpoint::S3), 96.0, 0.03),
        "{}",
        per_day(Endpoint::S3)
    );
    assert_eq!(
        outcome.load.total(Endpoint::Manifest),
        0,
        "nothing changed, nothing fetched"
    );
    assert_eq!(outcome.load.total(Endpoint::PutVersion), 0);
    let (lost, twice, _) = fleet::report_lines(&outcome);
    assert_eq!((lost, twice), (0, 0));
    assert_eq!(
        outcome.backend.ledger.accepted,
        outcome.nodes.iter().map(|n| n.produced).sum::<u64>()
    );
}

#[test]
fn the_schedule_comes_from_the_manager_configuration() {
    let mut fleet = Fleet::new(200, 5);
    fleet.config.report_interval = std::time::Duration::from_secs(30);
    let outcome = fleet::simulate(
        &fleet,
        Run {
            script: fleet::steady(&fleet, None),
            power_cuts: None,
            span: 2 * HOUR,
        },
    );
    let per_day = outcome.load.total(Endpoint::Health) as f64 * 12.0 / 200.0;
    assert!((per_day - 2880.0).abs() < 2880.0 * 0.01, "{per_day}");
}

#[test]
fn an_outage_longer_than_the_outbox_holds_drops_the_oldest_and_counts_them() {
    let fleet = Fleet::new(50, 11);
    let from = fleet::WARM_UP + fleet::EVENT_AT;
    let script = Script {
        outages: vec![(from, from + 27 * HOUR)],
        ..fleet::steady(&fleet, None)
    };
    let outcome = fleet::simulate(
        &fleet,
        Run {
            script,
            power_cuts: None,
            span: 28 * HOUR + fleet::EVENT_AT,
        },
    );
    let dropped: u64 = outcome.nodes.iter().map(|n| n.outbox.dropped()).sum();
    assert!(dropped > 0, "27 h of reports do not fit in the outbox");
    let ledger = &outcome.backend.ledger;
    assert_eq!(
        ledger.holes, dropped,
        "the backend misses exactly the reports the outbox dropped"
    );
    let (lost, twice, lines) = fleet::report_lines(&outcome);
    assert_eq!((lost - ledger.holes, twice), (0, 0), "{lines:?}");
    assert!(outcome.nodes.iter().all(|n| n.outbox.len() <= 1));
}

#[test]
fn a_power_cut_restarts_every_node_and_the_outbox_survives_it() {
    let fleet = Fleet::new(300, 13);
    let cut = fleet::WARM_UP + fleet::EVENT_AT;
    let outcome = fleet::simulate(
        &fleet,
        Run {
            script: fleet::steady(&fleet, None),
            power_cuts: Some((cut, 30_000, 60_000)),
            span: fleet::EVENT_AT + HOUR,
        },
    );
    assert!(
        outcome.nodes.iter().all(|n| n.run == 2),
        "every node started twice"
    );
    // Each restart fetches the desired state again without an ETag.
    let syncs = outcome.load.series(Endpoint::Workloads);
    let from = (fleet::EVENT_AT / 1000) as usize;
    let first_two_minutes: u32 = syncs[from..from + 120].iter().sum();
    assert!(first_two_minutes >= 300, "{first_two_minutes}");
    let (lost, twice, lines) = fleet::report_lines(&outcome);
    assert_eq!((lost, twice), (0, 0), "{lines:?}");
}
