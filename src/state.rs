//! The node state: everything the HTTP API reads or changes, owned by the
//! main loop. No locks: only the main thread ever touches it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::backend::ManifestCache;
use crate::outbox::Outbox;
use crate::scheduler::JobId;
use crate::workloads::Workloads;

/// Facts about this manager that do not change while it runs.
#[derive(Debug, Clone)]
pub struct Identity {
    pub version: &'static str,
    pub namespace: String,
    pub pod_name: String,
    /// The node's Ethereum address (EIP-55).
    pub node_address: Option<String>,
}

/// How the last run of a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Error,
    /// The job has nothing to do yet, and says why.
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Skipped => "skipped",
        }
    }
}

/// The last run of one job.
#[derive(Debug, Clone)]
pub struct LastRun {
    pub at: SystemTime,
    pub outcome: Outcome,
    /// What it did, or the error, for an operator.
    pub detail: String,
    pub took: Duration,
}

/// A workload's Deployment as status and reports show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentView {
    /// Its `workload-manager/version` annotation.
    pub version: Option<String>,
    pub rollout: crate::reconcile::Rollout,
    /// Ready and wanted replicas.
    pub ready: Option<(i64, i64)>,
    /// Why it is not as desired, for an operator.
    pub error: Option<String>,
}

impl DeploymentView {
    pub fn of(d: &crate::kube::Deployment) -> DeploymentView {
        DeploymentView {
            version: d.metadata.annotations.version.clone(),
            rollout: crate::reconcile::rollout(d),
            ready: Some((d.status.ready_replicas, d.spec.replicas.unwrap_or(1))),
            error: None,
        }
    }

    /// `ready/wanted`, e.g. `2/2`.
    pub fn ready_text(&self) -> Option<String> {
        self.ready
            .map(|(ready, wanted)| format!("{ready}/{wanted}"))
    }

    /// A state without a Deployment of ours to show: missing, conflict, invalid, failed.
    pub fn marked(rollout: crate::reconcile::Rollout, error: &str) -> DeploymentView {
        DeploymentView {
            version: None,
            rollout,
            ready: None,
            error: (!error.is_empty()).then(|| error.to_string()),
        }
    }
}

/// Per-job history for status and metrics.
#[derive(Debug, Clone, Default)]
pub struct JobRecord {
    pub last: Option<LastRun>,
    pub last_success: Option<SystemTime>,
    pub runs: BTreeMap<&'static str, u64>,
}

/// Routes of our API, as metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Route {
    Heartbeat,
    Status,
    Healthz,
    Readyz,
    Metrics,
    Sync,
    Other,
}

impl Route {
    pub fn as_str(self) -> &'static str {
        match self {
            Route::Heartbeat => "heartbeat",
            Route::Status => "status",
            Route::Healthz => "healthz",
            Route::Readyz => "readyz",
            Route::Metrics => "metrics",
            Route::Sync => "sync",
            Route::Other => "other",
        }
    }
}

/// Everything the API serves from.
#[derive(Debug)]
pub struct State {
    pub identity: Identity,
    pub started: Instant,
    pub workloads: Workloads,
    pub jobs: BTreeMap<JobId, JobRecord>,
    /// The Kubernetes API has answered at least once (readiness).
    pub kube_answered: bool,
    /// The last turn of the main loop (liveness).
    pub last_turn: Instant,
    /// A sync was asked for through the API and not yet scheduled.
    pub sync_requested: bool,
    /// Requests answered, by route and status code.
    pub http: BTreeMap<(Route, u16), u64>,
    /// The desired workloads and versions, once fetched.
    pub desired: Option<BTreeMap<String, String>>,
    /// The ETag of that desired state.
    pub desired_etag: Option<String>,
    /// What the last syncs saw of each workload's Deployment.
    pub deployments: BTreeMap<String, DeploymentView>,
    /// A prune to empty waiting for its confirmation.
    pub pending_prune: Option<crate::reconcile::PendingPrune>,
    /// Desired versions whose manifest was refused, by workload: version and
    /// why. Not fetched or tried again until the desired version changes.
    pub invalid: BTreeMap<String, (String, String)>,
    /// What we last applied to each workload (to notice changes by hand).
    pub applied: BTreeMap<String, crate::reconcile::Applied>,
    /// Manifests of desired versions, fetched once each.
    pub manifests: ManifestCache,
    /// Health reports not yet accepted by the backend.
    pub outbox: Outbox,
    /// Makes report ids unique across restarts and instances: the start
    /// time in Unix milliseconds and a random part, `1795867200000.3f9a0c21`.
    pub run_id: String,
    /// Reports built so far in this run.
    pub reports_built: u64,
    /// Leader election: only the Lease holder syncs, reports and updates.
    pub election: crate::lease::Election,
    /// Where this instance stood in the election at the latest turn (what
    /// status and metrics show).
    pub role: crate::lease::Role,
    /// Which applied versions the backend has acknowledged.
    pub acks: crate::acks::Acks,
    /// A self-update this instance started and is watching.
    pub self_update: Option<PendingUpdate>,
    /// The node as the latest report window saw it.
    pub node: crate::node::view::NodeView,
    /// Per desired workload, what its pods said at the latest report window.
    pub diagnoses: BTreeMap<String, crate::pods::Diagnosis>,
    /// The last termination seen of each workload's containers, kept across windows.
    pub terminations: crate::pods::Terminations,
    /// Why the latest window has no pod diagnoses, if it has none.
    pub pods_error: Option<String>,
    /// Error events waiting for Sentry (with `SENTRY_DSN`).
    pub events: crate::events::Events,
    /// Moves with every change of what `/v1/status` shows, except the
    /// passing of time (see `status::json_cached`).
    pub generation: u64,
    /// The last status document written, while it is still true.
    pub status_cache: Option<StatusCache>,
}

/// A written status document, the generation it shows and until when.
#[derive(Debug, Clone)]
pub struct StatusCache {
    pub generation: u64,
    pub until: Instant,
    pub body: String,
}

/// A rollout of a newer manager release, watched until it is available or
/// rolled back.
#[derive(Debug, Clone)]
pub struct PendingUpdate {
    pub version: crate::update::Version,
    /// The image to go back to.
    pub from_image: String,
    pub to_image: String,
    pub started: Instant,
}

impl State {
    pub fn new(identity: Identity, heartbeat_timeout: Duration, now: Instant) -> State {
        let identity_pod = identity.pod_name.clone();
        State {
            identity,
            started: now,
            workloads: Workloads::new(heartbeat_timeout, now),
            jobs: JobId::ALL
                .iter()
                .map(|id| (*id, JobRecord::default()))
                .collect(),
            kube_answered: false,
            last_turn: now,
            sync_requested: false,
            http: BTreeMap::new(),
            desired: None,
            desired_etag: None,
            deployments: BTreeMap::new(),
            pending_prune: None,
            invalid: BTreeMap::new(),
            applied: BTreeMap::new(),
            manifests: ManifestCache::default(),
            outbox: Outbox::in_memory(),
            run_id: String::new(),
            reports_built: 0,
            election: crate::lease::Election::new(&identity_pod, Default::default()),
            role: crate::lease::Role::NoLeader,
            acks: crate::acks::Acks::in_memory(),
            self_update: None,
            node: crate::node::view::NodeView::new(None, now),
            diagnoses: BTreeMap::new(),
            terminations: crate::pods::Terminations::default(),
            pods_error: None,
            events: crate::events::Events::default(),
            generation: 0,
            status_cache: None,
        }
    }

    /// Records a finished job run.
    pub fn job_done(
        &mut self,
        id: JobId,
        outcome: Outcome,
        detail: String,
        at: SystemTime,
        took: Duration,
    ) {
        let record = self.jobs.entry(id).or_default();
        if outcome == Outcome::Ok {
            record.last_success = Some(at);
        }
        *record.runs.entry(outcome.as_str()).or_default() += 1;
        record.last = Some(LastRun {
            at,
            outcome,
            detail,
            took,
        });
    }

    /// Something `/v1/status` shows may have changed.
    pub fn changed(&mut self) {
        self.generation = self.generation.wrapping_add(1);
    }

    pub fn count_request(&mut self, route: Route, code: u16) {
        self.count_requests(route, code, 1);
    }

    pub fn count_requests(&mut self, route: Route, code: u16, n: u64) {
        if n > 0 {
            *self.http.entry((route, code)).or_default() += n;
        }
    }
}
