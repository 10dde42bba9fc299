//! The main loop: one thread that serves the HTTP API until the next job is
//! due, then steps that job one outbound call at a time, serving whatever
//! requests are waiting between two steps.
//!
//! Invariants: all state lives here, on this thread; the loop never blocks
//! longer than one outbound call's timeout (`WM_HTTP_TIMEOUT`) or
//! [`MAX_WAIT`]; a panic while answering one request does not end it.

use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::clock::Clock;
use crate::config::Config;
use crate::identity::NodeIdentity;
use crate::jobs::{self, Context, Job, Step};
use crate::kube::Kube;
use crate::outbox::Outbox;
use crate::scheduler::{JobId, Rng, Scheduler, Timing};
use crate::server::{HttpServer, Incoming, Probe, SelfProbe};
use crate::state::{Identity, State};
use crate::{api, signals};

/// The longest the loop waits for a request before looking at the clock,
/// the job schedule and the stop flag again.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// Requests served between two job steps at most, so a flood cannot stall jobs.
pub const REQUESTS_PER_TURN: usize = 256;
/// How long the last report delivery may take when stopping.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(3);
/// First sync within this long of start (jittered), so a node is ready soon.
pub const FIRST_SYNC_WITHIN: Duration = Duration::from_secs(5);

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// SIGTERM or SIGINT.
    Stopped,
    /// The HTTP server stopped accepting connections and could not be rebuilt.
    Deaf,
}

pub struct Agent<C: Clock> {
    clock: C,
    config: Config,
    state: State,
    scheduler: Scheduler,
    server: HttpServer,
    probe: SelfProbe,
    kube: Kube,
    backend: Backend,
    /// The self-update file's client (or why it could not be set up).
    s3: Option<Result<crate::s3::S3, String>>,
    running: Option<(JobId, Box<dyn Job>, Instant)>,
    /// Whether the leader-only jobs are running.
    leading: bool,
}

impl<C: Clock> Agent<C> {
    pub fn new(
        config: Config,
        clock: C,
        server: HttpServer,
        node: NodeIdentity,
        seed: u64,
    ) -> Agent<C> {
        let now = clock.now();
        let identity = Identity {
            version: env!("CARGO_PKG_VERSION"),
            namespace: config.namespace.clone(),
            pod_name: config.pod_name.clone(),
            node_address: Some(node.address().to_string()),
        };
        let mut scheduler = Scheduler::new(seed);
        let timing = |interval: Duration, first_within: Duration| Timing {
            interval,
            first_within,
            spread: 0.1,
        };
        scheduler.add(
            JobId::Sync,
            timing(config.sync_interval, FIRST_SYNC_WITHIN),
            now,
        );
        // Reports keep their period exactly; only the phase is random.
        let report = Timing {
            spread: 0.0,
            ..timing(config.report_interval, config.report_interval)
        };
        scheduler.add(JobId::Report, report, now);
        scheduler.add(
            JobId::UpdateCheck,
            timing(config.update_interval, config.update_interval),
            now,
        );
        // The Lease comes first; the other jobs wait until this instance leads.
        scheduler.add(
            JobId::Lease,
            Timing {
                interval: crate::lease::PERIOD,
                first_within: Duration::ZERO,
                spread: 0.0,
            },
            now,
        );
        for id in JobId::ALL.into_iter().filter(|id| id.leader_only()) {
            scheduler.pause(id);
        }
        let kube = Kube::new(&config.kube, &config.namespace, config.http_timeout);
        let mut state = State::new(identity, config.heartbeat_timeout, now);
        state.boot_id = crate::clock::unix_millis(clock.wall());
        if let Some(dir) = &config.state_dir {
            let (outbox, warnings) = Outbox::open(dir);
            for w in warnings {
                log::warn!("outbox: {w}");
            }
            if !outbox.is_empty() {
                log::info!(
                    "outbox: {} undelivered report(s) from an earlier run",
                    outbox.len()
                );
            }
            state.outbox = outbox;
        }
        let probe = SelfProbe::new(server.local_addr(), now);
        let backend = Backend::new(&config.backend_url, node, config.http_timeout);
        let s3 = config
            .update
            .as_ref()
            .map(|u| crate::s3::S3::new(u, config.http_timeout).map_err(|e| e.to_string()));
        Agent {
            clock,
            config,
            state,
            scheduler,
            server,
            probe,
            kube,
            backend,
            s3,
            running: None,
            leading: false,
        }
    }

    /// Runs until stopped; returns why.
    pub fn run(&mut self) -> Exit {
        loop {
            if signals::stop_requested() {
                log::info!("stopping");
                if self.leading {
                    self.flush();
                    self.release();
                }
                return Exit::Stopped;
            }
            if let Err(exit) = self.turn() {
                return exit;
            }
        }
    }

    /// On the way out: closes the current report window and tries once,
    /// within [`FLUSH_BUDGET`], to deliver what is queued.
    fn flush(&mut self) {
        let (now, wall) = (self.clock.now(), self.clock.wall());
        let report = crate::report::close_window(&mut self.state, now, wall);
        if let Err(e) = self.state.outbox.push(report) {
            log::warn!("cannot write the outbox to disk: {e}");
        }
        let batch = self.state.outbox.batch().count();
        match self
            .backend
            .post_health(&self.state.outbox.batch_body(), Some(FLUSH_BUDGET), wall)
        {
            Ok(_) => {
                let _ = self.state.outbox.delivered(batch);
                log::info!("delivered {batch} report(s) before stopping");
            }
            Err(e) => log::warn!(
                "{} report(s) stay undelivered ({e}){}",
                self.state.outbox.len(),
                if self.config.state_dir.is_some() {
                    "; they are kept on disk"
                } else {
                    ""
                }
            ),
        }
    }

    /// One turn: serve requests until something is due, then one job step.
    pub fn turn(&mut self) -> Result<(), Exit> {
        let now = self.clock.now();
        self.state.last_turn = now;
        if std::mem::take(&mut self.state.sync_requested) {
            self.scheduler.run_now(JobId::Sync, now);
        }
        self.serve(self.wait(now))?;
        if self.probe.tick(self.clock.now()) == Probe::Deaf {
            log::error!(
                "the HTTP server stopped accepting connections; exiting so it can be restarted"
            );
            return Err(Exit::Deaf);
        }
        self.step_job();
        self.follow_election();
        Ok(())
    }

    /// Starts the leader-only jobs when this instance becomes the leader and
    /// stops them (a run in progress included) when it no longer is.
    fn follow_election(&mut self) {
        let now = self.clock.now();
        let leading = self.state.election.leading(now);
        if leading == self.leading {
            return;
        }
        self.leading = leading;
        let leader_only = JobId::ALL.into_iter().filter(|id| id.leader_only());
        if leading {
            log::info!(
                "leading: this instance ({}) holds Lease {}",
                self.state.election.identity(),
                crate::lease::NAME
            );
            if self.state.election.take_over_flag() {
                // The previous holder reported up to now; start a fresh window.
                self.state.workloads.close_window(now);
            }
            for id in leader_only {
                self.scheduler.resume(id, now);
            }
        } else {
            log::warn!(
                "no longer leading ({}); sync, reports and update checks stop",
                match self.state.election.holder() {
                    Some(h) => format!("{h} holds Lease {}", crate::lease::NAME),
                    None => "the Lease could not be renewed".to_string(),
                }
            );
            for id in leader_only {
                self.scheduler.pause(id);
            }
            if let Some((id, _, started)) = self.running.take_if(|(id, _, _)| id.leader_only()) {
                self.state.job_done(
                    id,
                    crate::state::Outcome::Skipped,
                    "stopped: no longer the leader".to_string(),
                    self.clock.wall(),
                    now.saturating_duration_since(started),
                );
            }
        }
    }

    /// Gives up the Lease on the way out, so a successor takes over at once.
    fn release(&mut self) {
        let Some(lease) = self.state.election.release(self.clock.wall()) else {
            return;
        };
        match self.kube.update_lease(&lease, self.clock.now()) {
            Ok(_) => log::info!("released Lease {}", crate::lease::NAME),
            Err(e) => log::warn!("could not release Lease {}: {e}", crate::lease::NAME),
        }
    }

    /// How long to wait for requests before the next job step is due.
    fn wait(&self, now: Instant) -> Duration {
        if self.running.is_some() {
            return Duration::ZERO;
        }
        let due = self
            .scheduler
            .next_due()
            .unwrap_or(now + MAX_WAIT)
            .min(self.probe.next_due());
        due.saturating_duration_since(now).min(MAX_WAIT)
    }

    /// Serves one request (waiting up to `wait`) and then whatever else is queued.
    fn serve(&mut self, wait: Duration) -> Result<(), Exit> {
        let mut timeout = wait;
        for _ in 0..REQUESTS_PER_TURN {
            match self.server.recv(timeout) {
                Ok(Some(incoming)) => self.answer(incoming),
                Ok(None) => return Ok(()),
                Err(e) => {
                    log::error!("the HTTP server failed ({e}); rebuilding it");
                    if let Err(e) = self.server.rebuild() {
                        log::error!("could not rebuild the HTTP server: {e}");
                        return Err(Exit::Deaf);
                    }
                    self.probe = SelfProbe::new(self.server.local_addr(), self.clock.now());
                    return Ok(());
                }
            }
            timeout = Duration::ZERO;
        }
        Ok(())
    }

    fn answer(&mut self, incoming: Incoming) {
        if let Some(nonce) = incoming.probe_nonce() {
            self.probe.received(nonce);
        }
        let (now, wall) = (self.clock.now(), self.clock.wall());
        let state = &mut self.state;
        crate::server::answer_guarded(incoming, |request| {
            let (route, response) = api::handle(request, state, now, wall);
            state.count_request(route, response.status);
            response
        });
    }

    /// Advances the running job by one step, or starts the next due one.
    fn step_job(&mut self) {
        let now = self.clock.now();
        let (id, mut job, started) = match self.running.take() {
            Some(running) => running,
            None => match self.scheduler.due(now) {
                Some(id) => (id, jobs::start(id), now),
                None => return,
            },
        };
        let mut cx = Context {
            state: &mut self.state,
            kube: &mut self.kube,
            backend: &self.backend,
            config: &self.config,
            s3: self.s3.as_ref(),
            now,
            wall: self.clock.wall(),
        };
        match job.step(&mut cx) {
            Step::Continue => self.running = Some((id, job, started)),
            Step::Done(done) => {
                if id == JobId::Sync {
                    crate::memory::release_free_pages();
                }
                let end = self.clock.now();
                let wait = self.scheduler.finished(id, done.next, end);
                let took = end.saturating_duration_since(started);
                match done.outcome {
                    crate::state::Outcome::Error => {
                        log::warn!(
                            "{} failed: {} (retry in {}s)",
                            id.name(),
                            done.detail,
                            wait.as_secs()
                        )
                    }
                    _ => log::debug!("{}: {}", id.name(), done.detail),
                }
                self.state
                    .job_done(id, done.outcome, done.detail, self.clock.wall(), took);
            }
        }
    }

    /// The address the API listens on.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.server.local_addr()
    }
}

/// Builds everything from a validated configuration and runs until stopped.
/// Returns the process exit status.
pub fn main(config: Config, node: NodeIdentity) -> i32 {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Err(e) = signals::install() {
        log::error!("cannot install signal handlers: {e}");
        return 1;
    }
    let server = match HttpServer::bind(config.listen) {
        Ok(s) => s,
        Err(e) => {
            log::error!("cannot listen on {}: {e}", config.listen);
            return 1;
        }
    };
    log::info!(
        "workload-manager {} serving on {} (node {}, namespace {}, Kubernetes API {}, backend {})",
        env!("CARGO_PKG_VERSION"),
        server.local_addr(),
        node.address(),
        config.namespace,
        config.kube.api_url,
        config.backend_url
    );
    let mut agent = Agent::new(
        config,
        crate::clock::SystemClock,
        server,
        node,
        Rng::seed_from_os(),
    );
    match agent.run() {
        Exit::Stopped => 0,
        Exit::Deaf => 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::VirtualClock;
    use crate::config::Source;
    use crate::state::Outcome;
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::path::Path;

    struct Env(Vec<(&'static str, String)>);

    impl Source for Env {
        fn var(&self, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
        fn read_file(&self, _: &Path) -> std::io::Result<String> {
            Err(std::io::ErrorKind::NotFound.into())
        }
    }

    /// An agent on a virtual clock whose Kubernetes API refuses connections.
    fn agent() -> (Agent<VirtualClock>, VirtualClock) {
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let env = Env(vec![
            ("NODE_SYSTEM_ENDPOINT", "http://127.0.0.1:9".into()),
            (
                "NODE_PRIVATE_KEY",
                "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318".into(),
            ),
            ("WM_KUBE_API_URL", format!("http://{refused}")),
            ("WM_LISTEN", "127.0.0.1:0".into()),
            ("WM_HTTP_TIMEOUT", "2s".into()),
        ]);
        let config = Config::load(&env).unwrap();
        let clock = VirtualClock::new(1_795_867_200);
        let server = HttpServer::bind(config.listen).unwrap();
        let node = NodeIdentity::from_hex(config.node_key.expose()).unwrap();
        (Agent::new(config, clock.clone(), server, node, 42), clock)
    }

    fn post_heartbeat(addr: std::net::SocketAddr, name: &str) -> std::thread::JoinHandle<String> {
        let body = r#"{"status":"healthy"}"#;
        let raw = format!(
            "POST /v1/workloads/{name}/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
            s.write_all(raw.as_bytes()).unwrap();
            let mut reply = String::new();
            s.read_to_string(&mut reply).unwrap();
            reply
        })
    }

    /// Makes the agent the leader as if it had just created the Lease (its
    /// Kubernetes API is down, so the Lease job keeps failing; leadership
    /// lasts the renew deadline from here).
    fn lead(agent: &mut Agent<VirtualClock>, clock: &VirtualClock) {
        use crate::lease::{Answer, Call, Lease};
        let now = clock.now();
        let election = &mut agent.state.election;
        election.answered(&Call::Get, Answer::Absent, now);
        let call = election.next_call("default", now, clock.wall());
        let mut lease = Lease::default();
        lease.spec.holder_identity = Some(election.identity().to_string());
        election.answered(&call, Answer::Lease(lease), now);
    }

    /// Turns the loop until `done` or 200 turns.
    fn turn_until(
        agent: &mut Agent<VirtualClock>,
        mut done: impl FnMut(&Agent<VirtualClock>) -> bool,
    ) {
        for _ in 0..200 {
            agent.turn().unwrap();
            if done(agent) {
                return;
            }
        }
        panic!("condition not reached");
    }

    #[test]
    fn jobs_run_on_virtual_time_and_failures_back_off() {
        let (mut agent, clock) = agent();
        agent.turn().unwrap();
        clock.advance(FIRST_SYNC_WITHIN);
        agent.turn().unwrap();
        assert!(
            agent.state.jobs[&JobId::Sync].last.is_none(),
            "only the leader syncs"
        );
        lead(&mut agent, &clock);
        agent.turn().unwrap();
        assert!(
            agent.state.jobs[&JobId::Report].last.is_none(),
            "nothing runs before its time"
        );
        clock.advance(FIRST_SYNC_WITHIN);
        turn_until(&mut agent, |a| a.state.jobs[&JobId::Sync].last.is_some());
        let last = agent.state.jobs[&JobId::Sync].last.clone().unwrap();
        assert_eq!(last.outcome, Outcome::Error);
        assert!(
            last.detail.contains("Kubernetes API unreachable"),
            "{}",
            last.detail
        );
        assert_eq!(agent.scheduler.failures(JobId::Sync), 1);
        assert!(!agent.state.kube_answered);
        // The retry comes after a backoff of 1-2 s, not the 10-minute interval.
        let due = agent.scheduler.next_due().unwrap();
        assert!(
            due <= clock.now() + Duration::from_secs(2),
            "retry is backed off, not postponed"
        );

        // A report window closes once a minute, on the virtual clock.
        clock.advance(Duration::from_secs(60));
        lead(&mut agent, &clock);
        turn_until(&mut agent, |a| a.state.jobs[&JobId::Report].last.is_some());
        let report = agent.state.jobs[&JobId::Report].last.clone().unwrap();
        assert_eq!(report.outcome, Outcome::Error, "the backend is down");
        assert!(
            report.detail.contains("1 report(s) queued"),
            "{}",
            report.detail
        );
        assert_eq!(
            agent.state.outbox.len(),
            1,
            "the report waits in the outbox"
        );
    }

    #[test]
    fn post_sync_runs_a_sync_at_once() {
        let (mut agent, clock) = agent();
        lead(&mut agent, &clock);
        agent.turn().unwrap();
        clock.advance(FIRST_SYNC_WITHIN);
        turn_until(&mut agent, |a| a.state.jobs[&JobId::Sync].last.is_some());
        // Pretend it succeeded long ago: the next regular run is minutes away.
        agent
            .scheduler
            .finished(JobId::Sync, crate::scheduler::Next::Regular, clock.now());
        let runs = |a: &Agent<VirtualClock>| a.state.jobs[&JobId::Sync].runs.values().sum::<u64>();
        let before = runs(&agent);
        agent.state.sync_requested = true;
        turn_until(&mut agent, |a| runs(a) > before);
    }

    #[test]
    fn heartbeats_are_served_and_a_wall_clock_jump_changes_no_uptime() {
        let (mut agent, clock) = agent();
        let addr = agent.local_addr();
        let reply = post_heartbeat(addr, "web");
        turn_until(&mut agent, |a| !a.state.workloads.is_empty());
        assert!(reply.join().unwrap().starts_with("HTTP/1.1 204"));
        clock.advance(Duration::from_secs(20));
        clock.set_wall(0); // the wall clock jumps back 56 years
        let reply = post_heartbeat(addr, "web");
        let heard_now = |a: &Agent<VirtualClock>| {
            let (_, w) = a.state.workloads.iter().next().unwrap();
            w.heartbeat.as_ref().unwrap().at == a.clock.now()
        };
        turn_until(&mut agent, heard_now);
        assert!(reply.join().unwrap().starts_with("HTTP/1.1 204"));
        let healthy =
            |a: &Agent<VirtualClock>| a.state.workloads.healthy_so_far("web", a.clock.now());
        assert_eq!(healthy(&agent), Duration::from_secs(20));
        clock.advance(Duration::from_secs(5));
        assert_eq!(healthy(&agent), Duration::from_secs(25));
    }
}
