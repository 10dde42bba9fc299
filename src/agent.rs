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
use crate::events::{Event, Level};
use crate::identity::NodeIdentity;
use crate::jobs::{self, Context, Job, Step};
use crate::kube::Kube;
use crate::outbox::Outbox;
use crate::scheduler::{JobId, Rng, Scheduler};
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
/// On the way out, a window shorter than this right after a regular report
/// is not reported.
pub const MIN_LAST_WINDOW: Duration = Duration::from_secs(1);
pub use crate::jobs::FIRST_SYNC_WITHIN;

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
    /// The kernel's view of the node (/proc, statvfs of the root).
    host: crate::node::proc::Host,
    /// Where error events go (`SENTRY_DSN`), what they say about this
    /// instance, and what is taken out of them.
    sentry: Option<(
        crate::sentry::Sentry,
        crate::sentry::Origin,
        crate::sentry::Scrubber,
    )>,
    /// The last step sent an event: the next one goes to a job.
    sent_event: bool,
    /// A run of the Lease job: it goes before any step of another job.
    lease_run: Option<Running>,
    /// A run of a leader-only job. While a Lease call goes first, or while
    /// a renewal is overdue, it waits where it is; it is dropped when the
    /// term it started in ends.
    running: Option<Running>,
    /// The Lease term the leader-only jobs run in; `None` while this
    /// instance does not hold the Lease (they are paused).
    term: Option<u64>,
    /// Closes the clients to leader-only calls once the Lease may have lapsed.
    fence: crate::outbound::Fence,
    /// A sync was asked for through the API: its outcome is logged even
    /// when it changed nothing.
    sync_asked: bool,
}

/// A job run in progress.
struct Running {
    id: JobId,
    job: Box<dyn Job>,
    started: Instant,
}

impl<C: Clock + Clone + 'static> Agent<C> {
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
        let scheduler = jobs::schedule(&config, seed, now);
        let lease_timing = crate::lease::Timing::for_call_timeout(config.http_timeout);
        let boot_clock = clock.clone();
        let fence = crate::outbound::Fence::new(move || boot_clock.boot());
        let kube = Kube::new(
            &config.kube,
            &config.namespace,
            config.http_timeout,
            lease_timing.lease_call,
        )
        .with_fence(fence.clone());
        let mut state = State::new(identity, config.heartbeat_timeout, now);
        state.election = crate::lease::Election::new(&config.pod_name, lease_timing);
        state.node = crate::node::view::NodeView::new(config.node_name.clone(), now);
        // The random part keeps two instances started in the same
        // millisecond with the same key apart.
        state.run_id = format!(
            "{}.{:08x}",
            crate::clock::unix_millis(clock.wall()),
            crate::scheduler::Rng::seed_from_os() as u32
        );
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
            let (acks, warnings) = crate::acks::Acks::open(dir);
            for w in warnings {
                log::warn!("acknowledgements: {w}");
            }
            state.acks = acks;
        }
        let probe = SelfProbe::new(server.local_addr(), now);
        let backend =
            Backend::new(&config.backend_url, node, config.http_timeout).with_fence(fence.clone());
        let s3 = config
            .update
            .as_ref()
            .map(|u| crate::s3::S3::new(u, config.http_timeout).map_err(|e| e.to_string()));
        let sentry = config.sentry.clone().map(|dsn| {
            let origin = crate::sentry::Origin {
                node_address: backend.address().to_string(),
                namespace: config.namespace.clone(),
                pod: config.pod_name.clone(),
            };
            let mut secrets = vec![
                config.node_key.expose().to_string(),
                dsn.public_key().to_string(),
            ];
            if let Some((id, secret)) = config.update.as_ref().and_then(|u| u.credentials.as_ref())
            {
                secrets.push(id.clone());
                secrets.push(secret.expose().to_string());
            }
            let scrubber = crate::sentry::Scrubber::new(secrets);
            (
                crate::sentry::Sentry::new(dsn, config.http_timeout),
                origin,
                scrubber,
            )
        });
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
            host: crate::node::proc::Host::new("/"),
            sentry,
            sent_event: false,
            lease_run: None,
            running: None,
            term: None,
            fence,
            sync_asked: false,
        }
    }

    /// Runs until stopped; returns why.
    pub fn run(&mut self) -> Exit {
        loop {
            if signals::stop_requested() {
                log::info!("stopping");
                self.follow_election();
                if self.may_lead() {
                    self.flush();
                }
                if self.state.election.holds() {
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
        // Right after a regular report the window is empty: no report of it.
        // Before the first report the window is the whole run: always sent.
        let just_reported =
            self.state.reports_built > 0 && self.state.workloads.window_age(now) < MIN_LAST_WINDOW;
        if !just_reported {
            let report = crate::report::close_window(&mut self.state, now, wall);
            if let Err(e) = self.state.outbox.push(report) {
                log::warn!("cannot write the outbox to disk: {e}");
            }
        }
        if self.state.outbox.is_empty() {
            return;
        }
        let batch = self.state.outbox.batch().count();
        let budget = FLUSH_BUDGET.min(self.config.http_timeout);
        match self
            .backend
            .post_health(&self.state.outbox.batch_body(), Some(budget), wall)
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
        self.server.turned(now);
        self.follow_election();
        if std::mem::take(&mut self.state.sync_requested) {
            self.scheduler.run_now(JobId::Sync, now);
            self.sync_asked = true;
        }
        self.serve(self.wait(now))?;
        if self.probe.tick(self.clock.now()) == Probe::Deaf {
            log::error!(
                "the HTTP server stopped accepting connections; exiting so it can be restarted"
            );
            return Err(Exit::Deaf);
        }
        self.step_job();
        Ok(())
    }

    /// Follows the election at this moment: records the role for status and
    /// metrics; starts the leader-only jobs when a term begins, and stops
    /// them (dropping a run in progress) when it ends. A renewal that is
    /// only overdue ends no term: the jobs wait (see [`Agent::step_job`]).
    fn follow_election(&mut self) {
        let (now, boot) = (self.clock.now(), self.clock.boot());
        let election = &mut self.state.election;
        let role = election.role(boot);
        if (role == crate::lease::Role::Leading) != (self.state.role == crate::lease::Role::Leading)
        {
            self.state.changed();
        }
        self.state.role = role;
        let election = &mut self.state.election;
        self.fence.set(election.act_until());
        let term = election.holds().then(|| election.term());
        if term == self.term {
            return;
        }
        self.state.changed();
        let leader_only = || JobId::ALL.into_iter().filter(|id| id.leader_only());
        if let Some(run) = self.running.take() {
            self.state.job_done(
                run.id,
                crate::state::Outcome::Skipped,
                "stopped: this instance's Lease term ended".to_string(),
                self.clock.wall(),
                now.saturating_duration_since(run.started),
            );
        }
        if self.term.is_some() {
            log::warn!(
                "no longer leading: {}; sync, reports and update checks stop",
                match self.state.election.holder() {
                    Some(h) if h != self.state.election.identity() =>
                        format!("{h} holds Lease {}", crate::lease::NAME),
                    _ => format!("Lease {} is no longer this instance's", crate::lease::NAME),
                }
            );
            for id in leader_only() {
                self.scheduler.pause(id);
            }
        }
        if term.is_some() {
            log::info!(
                "leading: this instance ({}) holds Lease {}",
                self.state.election.identity(),
                crate::lease::NAME
            );
            if self.state.election.take_over_flag() {
                // The previous holder reported up to now; start a fresh window.
                self.state.workloads.close_window(now);
            }
            for id in leader_only() {
                self.scheduler.resume(id, now);
            }
        }
        self.term = term;
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

    /// Whether leader-only calls may be made at this moment (boot time).
    fn may_lead(&self) -> bool {
        self.state.election.leading(self.clock.boot())
    }

    /// How long to wait for requests before the next job step is due.
    fn wait(&self, now: Instant) -> Duration {
        let may_lead = self.may_lead();
        let renew_now = self.state.election.renew_now(self.clock.boot());
        if self.lease_run.is_some() || renew_now || (self.running.is_some() && may_lead) {
            return Duration::ZERO;
        }
        // Leader-only work that may not run yet waits for the Lease.
        let due = self
            .scheduler
            .next_due(|id| may_lead || !id.leader_only())
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

    /// Counts the `/healthz` answers the server gave without the loop,
    /// before a request that may show the counts.
    fn count_off_loop(&mut self) {
        for (code, n) in self.server.answered_off_loop() {
            self.state
                .count_requests(crate::state::Route::Healthz, code, n);
        }
    }

    fn answer(&mut self, incoming: Incoming) {
        self.count_off_loop();
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

    /// One step of a job. The Lease goes first: a run of it in progress, or
    /// one due, is stepped before anything else. Then, only while this
    /// instance leads by the clock that counts suspended time, the running
    /// leader-only job or the next due one.
    fn step_job(&mut self) {
        let now = self.clock.now();
        if self.state.election.renew_now(self.clock.boot()) {
            self.scheduler.run_now(JobId::Lease, now);
        }
        if self.lease_run.is_none() && self.scheduler.due(now, |id| id == JobId::Lease).is_some() {
            self.lease_run = Some(Running {
                id: JobId::Lease,
                job: jobs::start(JobId::Lease),
                started: now,
            });
        }
        if let Some(run) = self.lease_run.take() {
            self.lease_run = self.step(run);
            self.follow_election();
            return;
        }
        self.follow_election();
        if self.send_event() {
            return;
        }
        // Checked right before the call: a process that was stopped or a
        // machine that slept past its Lease renews first (the Lease job is
        // due by then) or learns it lost.
        if !self.may_lead() {
            return;
        }
        let run = match self.running.take() {
            Some(run) => run,
            None => match self.scheduler.due(now, JobId::leader_only) {
                Some(id) => Running {
                    id,
                    job: jobs::start(id),
                    started: now,
                },
                None => return,
            },
        };
        self.running = self.step(run);
    }

    /// Steps `run` once; returns it if it goes on.
    fn step(&mut self, mut run: Running) -> Option<Running> {
        self.state.changed();
        let mut cx = Context {
            state: &mut self.state,
            kube: &mut self.kube,
            backend: &self.backend,
            config: &self.config,
            s3: self.s3.as_ref(),
            host: &mut self.host,
            now: self.clock.now(),
            boot: self.clock.boot(),
            wall: self.clock.wall(),
        };
        let done = match run.job.step(&mut cx) {
            Step::Continue => return Some(run),
            Step::Done(done) => done,
        };
        let id = run.id;
        if id == JobId::Sync {
            crate::memory::release_free_pages();
        }
        let end = self.clock.now();
        let wait = self.scheduler.finished(id, done.next, end);
        let took = end.saturating_duration_since(run.started);
        match done.outcome {
            crate::state::Outcome::Error => {
                log::warn!(
                    "{} failed: {} (retry in {})",
                    id.name(),
                    done.detail,
                    crate::clock::human(wait)
                )
            }
            _ if id == JobId::Sync && std::mem::take(&mut self.sync_asked) => {
                log::info!("sync (asked for): {}", done.detail)
            }
            _ => log::debug!("{}: {}", id.name(), done.detail),
        }
        if id == JobId::Sync {
            self.sync_asked = false;
        }
        match done.outcome {
            crate::state::Outcome::Error => {
                self.state
                    .events
                    .job_failed(id.name(), &done.detail, end, self.clock.wall())
            }
            crate::state::Outcome::Ok => self.state.events.job_recovered(id.name()),
            crate::state::Outcome::Skipped => {}
        }
        self.state
            .job_done(id, done.outcome, done.detail, self.clock.wall(), took);
        None
    }

    /// Sends one queued error event to Sentry, unless the last step did
    /// (so events never starve the jobs) or Sentry asked for a pause.
    /// Any instance sends its own events, leader or not. Returns whether a
    /// call was made.
    fn send_event(&mut self) -> bool {
        let now = self.clock.now();
        for (message, location) in crate::events::take_panics() {
            let wall = self.clock.wall();
            let mut event = Event::new(Level::Error, "panic", &format!("panic: {message}"), wall);
            event.location = Some(location);
            self.state.events.raise(event, now);
        }
        let Some((sentry, origin, scrubber)) = &self.sentry else {
            return false;
        };
        if std::mem::take(&mut self.sent_event) {
            return false;
        }
        let Some(event) = self.state.events.next(now) else {
            return false;
        };
        let mut event = event.clone();
        event.message = scrubber.scrub(&event.message);
        event.key = scrubber.scrub(&event.key);
        let id = format!(
            "{:016x}{:016x}",
            crate::scheduler::Rng::seed_from_os(),
            crate::scheduler::Rng::seed_from_os()
        );
        let envelope = crate::sentry::envelope(&event, origin, &id, self.clock.wall());
        let sent = sentry.send(&envelope);
        let now = self.clock.now();
        let events = &mut self.state.events;
        match sent {
            crate::sentry::Sent::Accepted { pause } => events.accepted(pause, now),
            crate::sentry::Sent::Limited(pause) => {
                log::debug!("Sentry asks for a pause of {}s", pause.as_secs());
                events.limited(pause, now)
            }
            crate::sentry::Sent::Refused(why) => {
                log::warn!("an error event is dropped: {why}");
                events.refused()
            }
            crate::sentry::Sent::Failed(why) => {
                log::debug!("an error event is kept for later: {why}");
                events.failed(now)
            }
        }
        self.sent_event = true;
        true
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
    if config.sentry.is_some() {
        crate::events::catch_panics();
    }
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
        agent_with(&format!("http://{refused}"), "http://127.0.0.1:9")
    }

    /// An agent on a virtual clock with these Kubernetes API and backend URLs.
    fn agent_with(kube: &str, backend: &str) -> (Agent<VirtualClock>, VirtualClock) {
        agent_timing_out(kube, backend, "2s")
    }

    /// Likewise, with `WM_HTTP_TIMEOUT` set to `timeout`.
    fn agent_timing_out(
        kube: &str,
        backend: &str,
        timeout: &str,
    ) -> (Agent<VirtualClock>, VirtualClock) {
        let env = Env(vec![
            ("NODE_SYSTEM_ENDPOINT", backend.into()),
            (
                "NODE_PRIVATE_KEY",
                "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318".into(),
            ),
            ("WM_KUBE_API_URL", kube.into()),
            ("WM_LISTEN", "127.0.0.1:0".into()),
            ("WM_HTTP_TIMEOUT", timeout.into()),
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

    /// Makes the agent the leader as if it had just created the Lease, or
    /// renewed it if it holds it already (its Kubernetes API is down, so the
    /// Lease job keeps failing; leadership lasts the renew deadline from here).
    fn lead(agent: &mut Agent<VirtualClock>, clock: &VirtualClock) {
        use crate::lease::{Answer, Call, Lease};
        let now = clock.boot();
        let election = &mut agent.state.election;
        if !election.holds() {
            election.answered(&Call::Get, Answer::Absent, now);
        }
        let call = election.next_call("default", now, clock.wall());
        let mut lease = Lease::default();
        lease.spec.holder_identity = Some(election.identity().to_string());
        election.answered(&call, Answer::Lease(lease), now);
    }

    /// A server on 127.0.0.1 that answers every request 503 and records
    /// `METHOD PATH` of each, in order of arrival.
    fn recorder() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use std::io::BufRead;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
                let mut head = String::new();
                let mut line = String::new();
                let _ = reader.read_line(&mut head);
                let mut length = 0;
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                    line.clear();
                }
                let _ = reader.read_exact(&mut vec![0; length]);
                let mut words = head.split_whitespace();
                let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
                log.lock().unwrap().push(format!("{method} {path}"));
                let _ = conn.write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        (url, seen)
    }

    #[test]
    fn after_a_suspend_past_the_lease_nothing_leader_only_happens_before_a_lease_call() {
        let (url, seen) = recorder();
        let (mut agent, clock) = agent_with(&url, &url);
        let calls = |from: usize| seen.lock().unwrap()[from..].to_vec();
        let is_lease = |c: &String| c.contains("/leases");
        lead(&mut agent, &clock);
        agent.turn().unwrap();
        clock.advance(FIRST_SYNC_WITHIN);
        turn_until(&mut agent, |a| a.state.jobs[&JobId::Sync].last.is_some());
        assert!(
            calls(0).iter().any(|c| c.contains("/deployments")),
            "a leader syncs: {:?}",
            calls(0)
        );
        // The sync failed and is retried within 2 s of monotonic time. The
        // machine sleeps for a minute, past the renew deadline (10 s) and the
        // Lease (13 s), then that monotonic time passes.
        let mark = seen.lock().unwrap().len();
        clock.suspend(Duration::from_secs(60));
        clock.advance(Duration::from_secs(3));
        turn_until(&mut agent, |_| !calls(mark).is_empty());
        let after = calls(mark);
        assert!(
            is_lease(&after[0]),
            "the first call after waking: {after:?}"
        );
        assert!(matches!(agent.state.role, crate::lease::Role::Lapsed(_)));
        assert_eq!(agent.state.jobs[&JobId::Sync].runs.values().sum::<u64>(), 1);
        // The Lease API answers 503: still not renewed, so nothing leader-only.
        for _ in 0..10 {
            clock.advance(Duration::from_secs(3));
            agent.turn().unwrap();
        }
        let after = calls(mark);
        assert!(after.iter().all(is_lease), "{after:?}");
        assert!(
            after.len() >= 3,
            "the Lease is retried every period: {after:?}"
        );
        let v = crate::status::json(&agent.state, clock.now(), clock.wall());
        assert_eq!(v["manager"]["leader"], false, "{v}");
        let detail = v["lastLease"]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("not leading: Lease workload-manager names this instance"),
            "the lapse is named as such, not as following itself: {detail}"
        );
        let text = crate::status::text(&agent.state, clock.now(), clock.wall());
        assert!(
            text.contains("not leading (Lease not renewed for"),
            "{text}"
        );
        // The clients refuse leader-only calls too, however they are reached.
        let sent = agent.backend.put_version("web", "1.0.0", "t", clock.wall());
        assert!(
            matches!(sent, Err(crate::backend::BackendError::Fenced(_))),
            "{sent:?}"
        );
        let listed = agent.kube.list_managed(clock.now());
        assert!(
            matches!(listed, Err(crate::kube::KubeError::Fenced(_))),
            "{listed:?}"
        );
        assert!(calls(mark).iter().all(is_lease), "{:?}", calls(mark));
        // Renewed in the same term: the sync goes on.
        lead(&mut agent, &clock);
        let mark = seen.lock().unwrap().len();
        turn_until(&mut agent, |_| {
            calls(mark).iter().any(|c| c.contains("/deployments"))
        });
        assert_eq!(agent.state.role, crate::lease::Role::Leading);
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
        panic!(
            "condition not reached: role {:?}, jobs {:?}",
            agent.state.role, agent.state.jobs
        );
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
        let due = agent.scheduler.next_due(|_| true).unwrap();
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
    fn a_full_outbox_and_failed_runs_raise_error_events() {
        let (mut agent, clock) = agent();
        for i in 0..crate::outbox::CAPACITY {
            let queued = crate::outbox::Queued {
                id: format!("r{i}"),
                json: "{}".into(),
            };
            agent.state.outbox.push(queued).unwrap();
        }
        agent.turn().unwrap();
        lead(&mut agent, &clock);
        agent.turn().unwrap();
        clock.advance(FIRST_SYNC_WITHIN);
        turn_until(&mut agent, |a| a.state.jobs[&JobId::Sync].last.is_some());
        clock.advance(Duration::from_secs(60));
        lead(&mut agent, &clock);
        turn_until(&mut agent, |a| a.state.jobs[&JobId::Report].last.is_some());
        assert_eq!(agent.state.outbox.dropped(), 1);
        let events: Vec<_> = agent.state.events.waiting().collect();
        let dropped = events
            .iter()
            .find(|e| e.source == "outbox")
            .expect("an outbox event");
        assert_eq!(dropped.level, crate::events::Level::Warning);
        assert!(
            dropped.message.starts_with("the outbox is full"),
            "{}",
            dropped.message
        );
        let failed = events
            .iter()
            .find(|e| e.source == "report")
            .expect("the failed report run");
        assert_eq!(failed.level, crate::events::Level::Error);
        assert!(
            failed.message.starts_with("report failed: "),
            "{}",
            failed.message
        );
        // Without SENTRY_DSN they are kept (bounded), never sent.
        assert!(agent.sentry.is_none());
    }

    #[test]
    fn two_instances_started_in_the_same_millisecond_have_distinct_report_ids() {
        let (mut a, clock) = agent();
        let (mut b, _) = agent();
        assert_eq!(a.clock.wall(), b.clock.wall(), "the same start time");
        assert_ne!(a.state.run_id, b.state.run_id);
        let (ms, random) = a.state.run_id.split_once('.').unwrap();
        assert_eq!(ms, "1795867200000");
        assert_eq!(random.len(), 8);
        let id = |agent: &mut Agent<VirtualClock>| {
            crate::report::close_window(&mut agent.state, clock.now(), clock.wall()).id
        };
        assert_ne!(id(&mut a), id(&mut b));
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

    #[test]
    fn healthz_is_answered_while_the_loop_waits_on_a_call() {
        use std::sync::mpsc;
        // A Kubernetes API that accepts the first connection and answers
        // nothing until the test lets go; later connections are closed.
        let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", hang.local_addr().unwrap());
        let (hung, on_hung) = mpsc::channel();
        let (release, on_release) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let Ok((first, _)) = hang.accept() else {
                return;
            };
            let _ = hung.send(());
            let _ = on_release.recv();
            drop(first);
            for conn in hang.incoming() {
                drop(conn);
            }
        });
        let (mut agent, _clock) = agent_timing_out(&url, "http://127.0.0.1:9", "60s");
        let addr = agent.local_addr();
        let client = std::thread::spawn(move || {
            on_hung.recv().unwrap();
            let mut heartbeat = TcpStream::connect(addr).unwrap();
            let body = r#"{"status":"healthy"}"#;
            write!(
                heartbeat,
                "POST /v1/workloads/web/health HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut probe = TcpStream::connect(addr).unwrap();
            probe
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            probe
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                .unwrap();
            let mut healthz = String::new();
            probe.read_to_string(&mut healthz).unwrap();
            // The loop is still in the call: the heartbeat has no answer yet.
            heartbeat.set_nonblocking(true).unwrap();
            let waiting = heartbeat.read(&mut [0u8; 1]).map_err(|e| e.kind());
            release.send(()).unwrap();
            heartbeat.set_nonblocking(false).unwrap();
            heartbeat
                .set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let mut answer = String::new();
            heartbeat.read_to_string(&mut answer).unwrap();
            (healthz, waiting, answer)
        });
        // The first turn's Lease call waits on the hung API until released.
        turn_until(&mut agent, |a| !a.state.workloads.is_empty());
        let (healthz, waiting, answer) = client.join().unwrap();
        assert!(healthz.starts_with("HTTP/1.1 200"), "{healthz}");
        assert!(healthz.ends_with("ok"), "{healthz}");
        assert_eq!(waiting, Err(std::io::ErrorKind::WouldBlock));
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer}");
        agent.turn().unwrap();
        let counted = agent.state.http.get(&(crate::state::Route::Healthz, 200));
        assert_eq!(counted, Some(&1), "{:?}", agent.state.http);
    }
}
