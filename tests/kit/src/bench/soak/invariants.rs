//! The soak's invariants, each judged from what the fakes recorded and the
//! processes' records into one summary [`Line`]: pure functions over the
//! request logs (Kubernetes, with arrival and answer times; the backend,
//! with the fault each request met), the backend's record of accepted
//! report ids, the outboxes left on disk and the [`Life`] of every process.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use workload_manager::update::{ImageRef, Version};

use super::instances::{Life, Sample};
use super::{human, OWN, OWN_REPO, SIDECAR_IMAGE};
use crate::backend;
use crate::kube::LoggedRequest;
use crate::node::TEST_ADDRESS;

/// Deployments of the managed namespace.
pub const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/edge/deployments";
/// Leases of the managed namespace, and the election's.
pub const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/edge/leases";
pub const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/edge/leases/workload-manager";
/// Deployments the soak made by hand, without the managed-by label.
pub const UNMANAGED: [&str; 2] = ["db", "legacy"];
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
const REJECTED: &str = "workload-manager/rejected-version";

/// A probe miss this soon after a hang or slow-answer fault was injected is
/// shown as near one.
const STALL_WINDOW: Duration = Duration::from_secs(30);
/// RSS, fds and threads are judged after this much of a process's life ...
pub const WARM_UP: Duration = Duration::from_secs(300);
/// ... over at least this much more.
pub const JUDGED_FOR: Duration = Duration::from_secs(60);
const RSS_GROWTH_KIB: i64 = 512;

/// How an invariant came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Held,
    Missed,
    /// The run was too short (or had nothing) to judge it.
    NotJudged,
}

/// One invariant's line of the summary.
#[derive(Debug, Clone)]
pub struct Line {
    pub name: &'static str,
    pub verdict: Verdict,
    pub counts: String,
    /// The first few cases that broke it.
    pub examples: Vec<String>,
}

impl Line {
    fn judged(name: &'static str, missed: bool, counts: String, examples: Vec<String>) -> Line {
        Line {
            name,
            verdict: if missed {
                Verdict::Missed
            } else {
                Verdict::Held
            },
            counts,
            examples,
        }
    }

    pub fn render(&self) -> String {
        let verdict = match self.verdict {
            Verdict::Held => "held",
            Verdict::Missed => "MISSED",
            Verdict::NotJudged => "not judged",
        };
        let mut out = format!("{verdict:<10} {}: {}", self.name, self.counts);
        let shown = if self.verdict == Verdict::Missed {
            &self.examples[..]
        } else {
            &[]
        };
        for e in shown {
            out.push_str(&format!("\n{:<10}   e.g. {e}", ""));
        }
        out
    }
}

/// Keeps the first few examples.
fn keep(examples: &mut Vec<String>, e: impl FnOnce() -> String) {
    if examples.len() < 3 {
        examples.push(e());
    }
}

/// What the fakes and the soak recorded, for the log-based invariants.
pub struct Evidence<'a> {
    pub kube: &'a [LoggedRequest],
    pub backend: &'a [backend::LoggedRequest],
    /// The backend's record of accepted reports: their ids, in arrival order.
    pub stored: &'a [String],
    /// Backend log positions right after each kill or stop of an instance.
    pub stops: &'a [usize],
    /// Report ids still in an outbox on disk at the end.
    pub queued: &'a [String],
    /// Reports the outboxes dropped, as the instances' status showed.
    pub dropped: u64,
}

/// `(run, sequence)` of `<address>-<start ms>.<random>-<seq>`.
fn id_parts(id: &str) -> Option<(&str, u64)> {
    let mut parts = id.rsplitn(3, '-');
    let seq = parts.next()?.parse().ok()?;
    let run = parts.next().filter(|r| !r.is_empty())?;
    parts
        .next()
        .filter(|a| a.eq_ignore_ascii_case(TEST_ADDRESS))
        .map(|_| (run, seq))
}

/// A health POST as the backend logged it.
struct Delivery {
    index: usize,
    ids: Vec<String>,
    status: Option<u16>,
    /// It met a hang (its answer may have come after the manager gave up),
    /// or its answer was never written whole (the backend went down).
    unsure: bool,
}

fn deliveries(log: &[backend::LoggedRequest]) -> Vec<Delivery> {
    log.iter()
        .enumerate()
        .filter(|(_, r)| r.method == "POST" && r.path.ends_with("/health"))
        .map(|(index, r)| Delivery {
            index,
            ids: r
                .json()
                .and_then(|v| {
                    v["reports"].as_array().map(|rs| {
                        rs.iter()
                            .filter_map(|r| r["id"].as_str().map(str::to_string))
                            .collect()
                    })
                })
                .unwrap_or_default(),
            status: r.status,
            unsure: r.answer_lost
                || matches!(
                    r.fault,
                    Some(backend::FaultKind::Hang(_) | backend::FaultKind::Drip(_))
                ),
        })
        .collect()
}

/// Every report id built was accepted once, or dropped; none lost.
pub fn reports(e: &Evidence) -> Line {
    let mut examples = Vec::new();
    // Re-sends of accepted reports, and whether an answer may have been lost.
    let mut first: BTreeMap<&str, (usize, bool)> = BTreeMap::new();
    let (mut resent, mut explained) = (0u64, 0u64);
    let all = deliveries(e.backend);
    for d in all.iter().filter(|d| d.status == Some(202)) {
        for id in &d.ids {
            let Some(&(i0, unsure)) = first.get(id.as_str()) else {
                first.insert(id, (d.index, d.unsure));
                continue;
            };
            resent += 1;
            if unsure || e.stops.iter().any(|s| (i0 + 1..=d.index).contains(s)) {
                explained += 1;
            } else {
                keep(&mut examples, || {
                    format!("{id} accepted by request {i0} and sent again in request {} with no kill, stop, hang or lost answer in between", d.index)
                });
            }
        }
    }
    let stored: BTreeSet<&str> = e.stored.iter().map(String::as_str).collect();
    let twice = e.stored.len() - stored.len();
    let mut runs: BTreeMap<&str, BTreeSet<u64>> = BTreeMap::new();
    let mut unparsable = 0u64;
    for id in stored
        .iter()
        .copied()
        .chain(e.queued.iter().map(String::as_str))
    {
        match id_parts(id) {
            Some((run, seq)) => {
                runs.entry(run).or_default().insert(seq);
            }
            None => {
                unparsable += 1;
                keep(&mut examples, || {
                    format!("{id:?} is not <address>-<run>-<seq>")
                });
            }
        }
    }
    let (mut built, mut missing) = (0u64, 0u64);
    for (run, seqs) in &runs {
        let max = seqs.last().copied().unwrap_or(0);
        built += max;
        for seq in (1..=max).filter(|s| !seqs.contains(s)) {
            missing += 1;
            keep(&mut examples, || {
                format!("run {run}: report {seq} of {max} never arrived")
            });
        }
    }
    let lost = missing.saturating_sub(e.dropped);
    if !e.queued.is_empty() {
        keep(&mut examples, || {
            format!(
                "{} report(s) still queued on disk at the end, e.g. {}",
                e.queued.len(),
                e.queued[0]
            )
        });
    }
    let counts = format!(
        "{built} built in {} runs, {} accepted, {} dropped, {} still queued at the end, {lost} lost; \
         {resent} re-sent after acceptance ({explained} after a kill, a stop, or a hung or lost answer){}",
        runs.len(),
        stored.len(),
        e.dropped,
        e.queued.len(),
        if twice > 0 { format!("; {twice} stored twice") } else { String::new() }
    );
    let missed =
        lost > 0 || twice > 0 || resent > explained || !e.queued.is_empty() || unparsable > 0;
    Line::judged(
        "reports: each id accepted once or dropped, none lost",
        missed,
        counts,
        examples,
    )
}

/// What a write was, if it stayed inside what the manager may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Write {
    Lease,
    Create,
    Managed,
    Own,
}

fn is_lease(r: &LoggedRequest) -> bool {
    r.path == LEASE || (r.path == LEASES && r.method == "POST")
}

fn scope(r: &LoggedRequest) -> Result<Write, String> {
    let what = format!("{} {}", r.method, r.path);
    if is_lease(r) {
        return Ok(Write::Lease);
    }
    if r.path == DEPLOYMENTS && r.method == "POST" {
        let body = r.json();
        let label = body.and_then(|b| b["metadata"]["labels"][MANAGED_BY].as_str());
        let namespace = body.and_then(|b| b["metadata"]["namespace"].as_str());
        return match (label, namespace) {
            (Some("workload-manager"), None | Some("edge")) => Ok(Write::Create),
            (Some("workload-manager"), Some(ns)) => {
                Err(format!("{what}: creates in namespace {ns}"))
            }
            _ => Err(format!(
                "{what}: creates a Deployment without the managed-by label"
            )),
        };
    }
    let Some(name) = r
        .path
        .strip_prefix(DEPLOYMENTS)
        .and_then(|p| p.strip_prefix('/'))
        .and_then(|p| p.split('/').next())
    else {
        return Err(format!(
            "{what}: outside the Deployments and the Lease of namespace edge"
        ));
    };
    if name == OWN {
        return match r.method.as_str() {
            "PATCH" => Ok(Write::Own),
            _ => Err(format!(
                "{what}: the manager's own Deployment, not by an image patch"
            )),
        };
    }
    if UNMANAGED.contains(&name) {
        return Err(format!("{what}: a Deployment without the managed-by label"));
    }
    Ok(Write::Managed)
}

/// No write to a Deployment without the managed-by label (but the one image
/// patch of its own), none outside the namespace or to another kind.
pub fn write_scope(kube: &[LoggedRequest], unmanaged_intact: bool) -> Line {
    let mut examples = Vec::new();
    let mut by: BTreeMap<&str, u64> = BTreeMap::new();
    let mut bad = 0u64;
    for r in kube.iter().filter(|r| r.is_write()) {
        match scope(r) {
            Ok(w) => {
                let kind = match w {
                    Write::Lease => "Lease",
                    Write::Create => "creates",
                    Write::Managed => "changes of managed ones",
                    Write::Own => "own Deployment",
                };
                *by.entry(kind).or_default() += 1;
            }
            Err(why) => {
                bad += 1;
                keep(&mut examples, || why);
            }
        }
    }
    if !unmanaged_intact {
        keep(&mut examples, || {
            "db or legacy changed: labels or spec differ from what the soak created".into()
        });
    }
    let kinds: Vec<String> = by.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let counts = format!(
        "{} writes ({}), {bad} outside; db and legacy {}",
        by.values().sum::<u64>() + bad,
        kinds.join(", "),
        if unmanaged_intact {
            "unchanged at the end"
        } else {
            "CHANGED"
        }
    );
    Line::judged(
        "writes only to managed Deployments in edge",
        bad > 0 || !unmanaged_intact,
        counts,
        examples,
    )
}

/// One Lease version as the fake stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    holder: String,
    stored: SystemTime,
    /// Its claim lasts until renewTime + leaseDurationSeconds.
    until: SystemTime,
}

/// A Kubernetes MicroTime (`2026-12-01T10:00:00.123456Z`).
fn micro_time(s: &str) -> Option<SystemTime> {
    let secs = crate::net::time::parse_rfc3339(s)?;
    let frac = s
        .split_once('.')
        .map(|(_, f)| f.trim_end_matches('Z'))
        .filter(|f| !f.is_empty() && f.len() <= 9 && f.bytes().all(|b| b.is_ascii_digit()));
    let nanos = frac.map_or(0, |f| {
        f.parse::<u32>().unwrap_or(0) * 10u32.pow(9 - f.len() as u32)
    });
    UNIX_EPOCH.checked_add(Duration::new(u64::try_from(secs).ok()?, nanos))
}

/// The Lease versions the fake stored (successful writes), in store order.
fn terms(kube: &[LoggedRequest]) -> Vec<Term> {
    let mut terms: Vec<Term> = kube
        .iter()
        .filter(|r| is_lease(r) && matches!(r.status, Some(200 | 201)))
        .filter_map(|r| {
            let spec = &r.json()?["spec"];
            let holder = spec["holderIdentity"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let stored = r.answered_at?;
            let renewed = spec["renewTime"].as_str().and_then(micro_time);
            let claim = Duration::from_secs(spec["leaseDurationSeconds"].as_u64().unwrap_or(0));
            let until = match renewed {
                Some(t) if !holder.is_empty() => t + claim,
                _ => UNIX_EPOCH,
            };
            Some(Term {
                holder,
                stored,
                until,
            })
        })
        .collect();
    terms.sort_by_key(|t| t.stored);
    terms
}

/// Who sent a request: `wm-b` has a token of its own.
fn writer(r: &LoggedRequest) -> &str {
    r.client.as_deref().unwrap_or("wm-a")
}

/// Every Deployment write came from the Lease holder, within its claim.
pub fn lease_holder(kube: &[LoggedRequest]) -> Line {
    let terms = terms(kube);
    let mut examples = Vec::new();
    let mut by: BTreeMap<&str, u64> = BTreeMap::new();
    let mut bad = 0u64;
    for r in kube.iter().filter(|r| r.is_write() && !is_lease(r)) {
        let who = writer(r);
        *by.entry(who).or_default() += 1;
        let at = r.received_at;
        let current = terms
            .partition_point(|t| t.stored <= at)
            .checked_sub(1)
            .map(|i| &terms[i]);
        let ok = current.is_some_and(|t| t.holder == who && at <= t.until);
        if !ok {
            bad += 1;
            keep(&mut examples, || match current {
                Some(t) if t.holder != who => format!(
                    "{who}: {} {} while the Lease named {:?}",
                    r.method, r.path, t.holder
                ),
                Some(t) => format!(
                    "{who}: {} {} {} after its claim ended",
                    r.method,
                    r.path,
                    human(at.duration_since(t.until).unwrap_or_default())
                ),
                None => format!("{who}: {} {} before any Lease was stored", r.method, r.path),
            });
        }
    }
    let mut changes = 0u64;
    let mut last: Option<&str> = None;
    for t in terms.iter().filter(|t| !t.holder.is_empty()) {
        if last.is_some_and(|l| l != t.holder) {
            changes += 1;
        }
        last = Some(&t.holder);
    }
    let conflicts = kube
        .iter()
        .filter(|r| is_lease(r) && r.status == Some(409))
        .count();
    let writers: Vec<String> = by.iter().map(|(w, n)| format!("{n} by {w}")).collect();
    let counts =
        format!(
        "{} Deployment writes ({}) against {} stored Lease versions, {changes} changes of holder, \
         {conflicts} Lease conflicts (409); {bad} outside the writer's claim",
        by.values().sum::<u64>(),
        if writers.is_empty() { "none".to_string() } else { writers.join(", ") },
        terms.len()
    );
    Line::judged("only the Lease holder wrote", bad > 0, counts, examples)
}

/// An own-Deployment patch: an update or a rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    Update,
    Rollback,
}

fn release_of(image: &str) -> Option<Version> {
    Version::parse(&ImageRef::parse(image).ok()?.tag?).ok()
}

/// `/spec/template/spec/containers/<i>/<field>` → `(i, field)`.
fn container_field(path: &str) -> Option<(&str, &str)> {
    path.strip_prefix("/spec/template/spec/containers/")?
        .split_once('/')
}

/// Judges one patch of the own Deployment.
fn own_patch(r: &LoggedRequest, running: &Version) -> Result<Change, String> {
    let what = format!("PATCH {} ({:?})", r.path, r.status);
    let ops = r
        .json()
        .and_then(Value::as_array)
        .ok_or_else(|| format!("{what}: not a JSON patch"))?;
    let (mut own_index, mut from, mut to, mut rejected) = (None, None, None, None);
    for op in ops {
        let path = op["path"].as_str().unwrap_or_default();
        match (op["op"].as_str().unwrap_or_default(), container_field(path)) {
            ("test", Some((i, "name"))) if op["value"] == OWN => own_index = Some(i),
            ("test", Some((_, "name"))) => return Err(format!("{what}: tests another container")),
            ("test", Some((_, "image"))) => from = op["value"].as_str(),
            ("replace", Some((i, "image"))) => {
                to = Some((i, op["value"].as_str().unwrap_or_default()))
            }
            ("add", None) if path == "/metadata/annotations/workload-manager~1rejected-version" => {
                rejected = op["value"].as_str();
            }
            ("add", None) if path == "/metadata/annotations" => {
                rejected = op["value"][REJECTED].as_str()
            }
            (op, _) => return Err(format!("{what}: {op} {path} touches more than the image")),
        }
    }
    let Some((index, to)) = to else {
        return Err(format!("{what}: changes no image"));
    };
    if own_index != Some(index) {
        return Err(format!(
            "{what}: changes container {index}, not tested to be {OWN}"
        ));
    }
    match ImageRef::parse(to) {
        Ok(i) if i.repository == OWN_REPO => {}
        _ => return Err(format!("{what}: foreign image {to}")),
    }
    let target = release_of(to).ok_or_else(|| format!("{what}: image {to} names no release"))?;
    if &target < running {
        return Err(format!(
            "{what}: downgrade to {to}, below the running {running}"
        ));
    }
    let Some(before) = from.and_then(release_of) else {
        return Ok(Change::Update);
    };
    if target >= before {
        return Ok(Change::Update);
    }
    match rejected.map(Version::parse) {
        Some(Ok(v)) if v == before => Ok(Change::Rollback),
        _ => Err(format!(
            "{what}: downgrade {before} -> {target} without rejecting {before}"
        )),
    }
}

/// The image of the own container and the sidecar's, in the own Deployment.
fn own_images(d: &Value) -> (Option<&str>, Option<&str>) {
    let containers = d["spec"]["template"]["spec"]["containers"].as_array();
    let image = |name: &str| {
        containers?
            .iter()
            .find(|c| c["name"] == name)
            .and_then(|c| c["image"].as_str())
    };
    (image(OWN), image("log-shipper"))
}

/// No downgrade and no foreign image in the manager's own Deployment.
pub fn self_update(kube: &[LoggedRequest], running: &Version, own_now: Option<&Value>) -> Line {
    let mut examples = Vec::new();
    let (mut updates, mut rollbacks, mut bad, mut refused) = (0u64, 0u64, 0u64, 0u64);
    let own = format!("{DEPLOYMENTS}/{OWN}");
    for r in kube.iter().filter(|r| r.is_write() && r.path == own) {
        if !matches!(r.status, Some(200)) {
            refused += 1;
        }
        match own_patch(r, running) {
            Ok(Change::Update) => updates += 1,
            Ok(Change::Rollback) => rollbacks += 1,
            Err(why) => {
                bad += 1;
                keep(&mut examples, || why);
            }
        }
    }
    let (image, sidecar) = own_now.map_or((None, None), own_images);
    let image_ok = image.is_some_and(|i| {
        ImageRef::parse(i).is_ok_and(|r| r.repository == OWN_REPO)
            && release_of(i).is_some_and(|v| &v >= running)
    });
    if !image_ok {
        keep(&mut examples, || {
            format!("the own Deployment ends with image {image:?}")
        });
    }
    if sidecar != Some(SIDECAR_IMAGE) {
        keep(&mut examples, || {
            format!("the sidecar ends with image {sidecar:?}")
        });
    }
    let counts = format!(
        "{updates} updates and {rollbacks} rollbacks patched ({refused} of them not applied), {bad} bad; ends on {}",
        image.unwrap_or("no image")
    );
    let missed = bad > 0 || !image_ok || sidecar != Some(SIDECAR_IMAGE);
    Line::judged(
        "no downgrade, no foreign image in the own Deployment",
        missed,
        counts,
        examples,
    )
}

/// `/healthz` of every running instance answered 200 within 1 s, every second.
pub fn healthz(lives: &[Life], stalls: &[(Instant, String)], t0: Instant) -> Line {
    let mut examples = Vec::new();
    let (mut sent, mut missed, mut near) = (0u64, 0u64, 0u64);
    let mut slowest = Duration::ZERO;
    for l in lives {
        sent += l.probes.sent;
        slowest = slowest.max(l.probes.slowest);
        for m in &l.probes.misses {
            missed += 1;
            let stall = stalls
                .iter()
                .rev()
                .find(|(s, _)| *s <= m.at && m.at.duration_since(*s) <= STALL_WINDOW);
            near += u64::from(stall.is_some());
            keep(&mut examples, || {
                let after = stall.map_or(String::new(), |(s, what)| {
                    format!(" ({} after {what})", human(m.at.duration_since(*s)))
                });
                format!(
                    "{} at {}: {}{after}",
                    l.label(),
                    human(m.at.saturating_duration_since(t0)),
                    m.why
                )
            });
        }
    }
    let counts = format!(
        "{sent} probes of {} processes, {} within 1 s, {missed} not ({near} of them within {} after an injected hang or slow answers); slowest {slowest:.2?}",
        lives.len(),
        sent - missed,
        human(STALL_WINDOW)
    );
    Line::judged(
        "/healthz answered within 1 s at every probe",
        missed > 0,
        counts,
        examples,
    )
}

/// No log line of any process mentions a panic.
pub fn panics(lives: &[Life]) -> Line {
    let lines: usize = lives.iter().map(|l| l.log_lines).sum();
    let mut examples = Vec::new();
    let mut found = 0;
    for l in lives {
        for p in &l.panics {
            found += 1;
            keep(&mut examples, || format!("{}: {p}", l.label()));
        }
    }
    let counts = format!(
        "{lines} log lines of {} processes, {found} mention a panic",
        lives.len()
    );
    Line::judged("no panic in any manager log", found > 0, counts, examples)
}

fn floor(samples: &[&Sample]) -> Option<Sample> {
    Some(Sample {
        age: samples.first()?.age,
        rss_kib: floor_of(samples, |s| s.rss_kib),
        fds: floor_of(samples, |s| s.fds),
        inbound: floor_of(samples, |s| s.inbound),
        outbound: floor_of(samples, |s| s.outbound),
        threads: floor_of(samples, |s| s.threads),
    })
}

/// The lowest of `f` over `samples` (0 for none).
fn floor_of(samples: &[&Sample], f: fn(&Sample) -> u64) -> u64 {
    samples.iter().map(|s| f(s)).min().unwrap_or(0)
}

/// The outside systems the soak's managers call (Kubernetes, backend, S3).
/// Calls go one at a time, so each client's pool holds one idle connection
/// at most.
const OUTSIDE_SYSTEMS: u64 = 3;

/// RSS, open fds and threads of the longest-lived process stay flat after
/// its first 5 minutes: the lowest RSS of its last minute is less than
/// 512 KiB above the lowest of the minute before 5 minutes; its threads and
/// the fds it holds of its own accord (all but TCP connections) come back
/// down to their lowest of that minute, and its pooled connections to at
/// most one per outside system. Connections clients opened to it are
/// counted but not judged: each lasts as long as its client keeps it.
pub fn resources(lives: &[Life], now: Instant) -> Line {
    const NAME: &str = "RSS, fds and threads flat (longest-lived process)";
    let Some(l) = lives.iter().max_by_key(|l| l.lifetime(now)) else {
        return Line {
            name: NAME,
            verdict: Verdict::NotJudged,
            counts: "no process ran".into(),
            examples: Vec::new(),
        };
    };
    let lived = l.lifetime(now);
    let last = l.samples.last().map(|s| s.age).unwrap_or_default();
    let base: Vec<&Sample> = l
        .samples
        .iter()
        .filter(|s| s.age + JUDGED_FOR >= WARM_UP && s.age <= WARM_UP)
        .collect();
    let end: Vec<&Sample> = l
        .samples
        .iter()
        .filter(|s| s.age > WARM_UP && s.age + JUDGED_FOR >= last)
        .collect();
    let judged = (lived >= WARM_UP + JUDGED_FOR).then(|| floor(&base).zip(floor(&end)));
    let Some((b, e)) = judged.flatten() else {
        let seen = match (l.samples.first(), l.samples.last()) {
            (Some(f), Some(z)) => format!(
                "; RSS {} → {} KiB, fds {} → {}, threads {} → {} over its life",
                f.rss_kib, z.rss_kib, f.fds, z.fds, f.threads, z.threads
            ),
            _ => String::new(),
        };
        return Line {
            name: NAME,
            verdict: Verdict::NotJudged,
            counts: format!(
                "the longest-lived process, {} (pid {}), ran {}; judging needs more than {} ({} warm-up, then at least {}){seen}",
                l.label(),
                l.pid,
                human(lived),
                human(WARM_UP + JUDGED_FOR),
                human(WARM_UP),
                human(JUDGED_FOR)
            ),
            examples: Vec::new(),
        };
    };
    let growth = e.rss_kib as i64 - b.rss_kib as i64;
    let peak = l.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    let mut examples = Vec::new();
    if growth >= RSS_GROWTH_KIB {
        keep(&mut examples, || {
            format!("RSS grew {growth} KiB after the warm-up")
        });
    }
    let (b_own, e_own) = (
        floor_of(&base, Sample::own_fds),
        floor_of(&end, Sample::own_fds),
    );
    if e_own > b_own {
        keep(&mut examples, || {
            format!("{e_own} fds of its own (not TCP connections) at the end, {b_own} after the warm-up")
        });
    }
    if e.outbound > OUTSIDE_SYSTEMS {
        keep(&mut examples, || {
            format!(
                "{} outbound connections all through its last minute, more than one per outside system",
                e.outbound
            )
        });
    }
    if e.threads > b.threads {
        keep(&mut examples, || {
            format!(
                "threads {} at the end, {} after the warm-up",
                e.threads, b.threads
            )
        });
    }
    let counts = format!(
        "{} (pid {}) ran {}: lowest RSS {} KiB at {} and {} KiB in its last minute ({growth:+} KiB; limit +{RSS_GROWTH_KIB}; peak {peak} KiB), fds {} → {} (its own {b_own} → {e_own}, outbound {} → {}, inbound {} → {}), threads {} → {}",
        l.label(),
        l.pid,
        human(lived),
        b.rss_kib,
        human(WARM_UP),
        e.rss_kib,
        b.fds,
        e.fds,
        b.outbound,
        e.outbound,
        b.inbound,
        e.inbound,
        b.threads,
        e.threads
    );
    Line::judged(NAME, !examples.is_empty(), counts, examples)
}

/// Syncs, reports and Lease renewals seen, against 30 days at the default
/// intervals (10 min, 1 min, 5 s). The Lease's period is not configurable
/// (the election's safety is derived from it), so its renewals are not
/// accelerated: the line says so.
pub fn coverage(e: &Evidence) -> Vec<String> {
    let syncs = e
        .backend
        .iter()
        .filter(|r| {
            r.method == "GET" && r.path.contains("/v1/nodes/") && r.path.ends_with("/workloads")
        })
        .count() as u64;
    let reports = e.stored.iter().collect::<BTreeSet<_>>().len() as u64;
    let renewals = terms(e.kube)
        .iter()
        .filter(|t| !t.holder.is_empty())
        .count() as u64;
    [
        ("syncs (desired-state fetches)", syncs, 4_320u64, "10 min"),
        ("reports accepted", reports, 43_200, "1 min"),
        ("Lease renewals stored", renewals, 518_400, "5 s"),
    ]
    .into_iter()
    .map(|(what, seen, need, every)| {
        format!(
            "{what}: {seen} seen; 30 days at one per {every} need {}: {:.1} % of that, {}",
            thousands(need),
            seen as f64 * 100.0 / need as f64,
            if seen >= need {
                "covered"
            } else if every == "5 s" {
                "not covered: the Lease period is fixed at 5 s, so the soak renews in real time"
            } else {
                "not covered"
            }
        )
    })
    .collect()
}

/// What the Kubernetes API answered, by class (to show which faults the
/// manager met, injected or not).
pub fn kube_answers(kube: &[LoggedRequest]) -> String {
    let mut by: BTreeMap<String, u64> = BTreeMap::new();
    for r in kube {
        let class = match r.status {
            None => "no answer (reset or cut)".to_string(),
            Some(s) if s < 400 => "2xx/3xx".to_string(),
            Some(s) => s.to_string(),
        };
        *by.entry(class).or_default() += 1;
    }
    by.iter()
        .map(|(k, n)| format!("{k}: {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `4320` → `4,320`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::LoggedBody;
    use serde_json::json;

    const T: u64 = 1_800_000_000;

    fn at(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(T as f64 + secs)
    }

    fn micro(secs: f64) -> String {
        workload_manager::lease::micro_time(at(secs))
    }

    fn kube_req(
        method: &str,
        path: &str,
        client: Option<&str>,
        body: Value,
        status: u16,
        secs: f64,
    ) -> LoggedRequest {
        LoggedRequest {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            content_type: None,
            user_agent: None,
            client: client.map(str::to_string),
            body: if body.is_null() {
                LoggedBody::Empty
            } else {
                LoggedBody::Json(body)
            },
            status: Some(status),
            received_at: at(secs),
            answered_at: Some(at(secs + 0.01)),
        }
    }

    fn lease_write(holder: &str, client: Option<&str>, secs: f64) -> LoggedRequest {
        let spec =
            json!({"holderIdentity": holder, "renewTime": micro(secs), "leaseDurationSeconds": 32});
        kube_req("PUT", LEASE, client, json!({"spec": spec}), 200, secs)
    }

    fn apply(name: &str, client: Option<&str>, secs: f64) -> LoggedRequest {
        kube_req(
            "PATCH",
            &format!("{DEPLOYMENTS}/{name}"),
            client,
            json!({}),
            200,
            secs,
        )
    }

    #[test]
    fn micro_times_keep_their_fraction() {
        let t = micro_time("2026-12-01T10:00:00.250000Z").expect("parses");
        let whole = micro_time("2026-12-01T10:00:00Z").expect("parses");
        assert_eq!(
            t.duration_since(whole).ok(),
            Some(Duration::from_millis(250))
        );
        assert_eq!(micro_time(&micro(1.5)), Some(at(1.5)));
    }

    #[test]
    fn writes_count_only_within_the_writers_claim() {
        let log = vec![
            lease_write("wm-a", None, 0.0),
            apply("web", None, 1.0),
            apply("web", Some("wm-b"), 2.0),
            lease_write("wm-b", Some("wm-b"), 40.0),
            apply("web", Some("wm-b"), 41.0),
            apply("web", None, 42.0),
            apply("api", Some("wm-b"), 80.0),
        ];
        let line = lease_holder(&log);
        assert_eq!(line.verdict, Verdict::Missed, "{}", line.render());
        assert!(
            line.counts.contains("5 Deployment writes"),
            "{}",
            line.counts
        );
        assert!(
            line.counts.contains("1 changes of holder"),
            "{}",
            line.counts
        );
        assert!(line.counts.contains("3 outside"), "{}", line.counts);
        assert!(
            line.examples[0].contains("while the Lease named \"wm-a\""),
            "{:?}",
            line.examples
        );
        assert!(
            line.examples[2].contains("after its claim ended"),
            "{:?}",
            line.examples
        );
        let ok = vec![
            lease_write("wm-a", None, 0.0),
            apply("web", None, 31.0),
            lease_write("wm-a", None, 5.0),
        ];
        assert_eq!(
            lease_holder(&ok).verdict,
            Verdict::Held,
            "{}",
            lease_holder(&ok).render()
        );
    }

    #[test]
    fn a_hung_lease_write_counts_from_when_it_was_stored() {
        let mut late = lease_write("wm-b", Some("wm-b"), 0.0);
        late.answered_at = Some(at(10.0));
        let log = vec![late, apply("web", Some("wm-b"), 5.0)];
        assert_eq!(lease_holder(&log).verdict, Verdict::Missed);
    }

    #[test]
    fn writes_outside_the_managed_deployments_are_caught() {
        let managed =
            json!({"metadata": {"name": "web", "labels": {MANAGED_BY: "workload-manager"}}});
        let log = vec![
            kube_req("POST", DEPLOYMENTS, None, managed.clone(), 201, 0.0),
            apply("web", None, 1.0),
            lease_write("wm-a", None, 2.0),
            kube_req(
                "GET",
                &format!("{DEPLOYMENTS}/db"),
                None,
                Value::Null,
                200,
                3.0,
            ),
            kube_req(
                "PATCH",
                &format!("{DEPLOYMENTS}/{OWN}"),
                None,
                json!([]),
                200,
                4.0,
            ),
        ];
        let line = write_scope(&log, true);
        assert_eq!(line.verdict, Verdict::Held, "{}", line.render());
        assert!(line.counts.starts_with("4 writes"), "{}", line.counts);
        for bad in [
            apply("db", None, 5.0),
            kube_req(
                "DELETE",
                &format!("{DEPLOYMENTS}/legacy"),
                None,
                Value::Null,
                200,
                5.0,
            ),
            kube_req(
                "POST",
                DEPLOYMENTS,
                None,
                json!({"metadata": {"name": "x"}}),
                201,
                5.0,
            ),
            kube_req(
                "POST",
                "/apis/apps/v1/namespaces/kube-system/deployments",
                None,
                managed.clone(),
                403,
                5.0,
            ),
            kube_req(
                "PUT",
                &format!("{DEPLOYMENTS}/{OWN}"),
                None,
                json!({}),
                200,
                5.0,
            ),
        ] {
            let line = write_scope(std::slice::from_ref(&bad), true);
            assert_eq!(line.verdict, Verdict::Missed, "{bad:?}");
        }
        assert_eq!(write_scope(&[], false).verdict, Verdict::Missed);
    }

    fn own_patch_req(from: &str, to: &str, reject: Option<&str>) -> LoggedRequest {
        let c = "/spec/template/spec/containers/1";
        let mut ops = vec![
            json!({"op": "test", "path": format!("{c}/name"), "value": OWN}),
            json!({"op": "test", "path": format!("{c}/image"), "value": from}),
            json!({"op": "replace", "path": format!("{c}/image"), "value": to}),
        ];
        if let Some(v) = reject {
            ops.push(json!({"op": "add", "path": "/metadata/annotations/workload-manager~1rejected-version", "value": v}));
        }
        kube_req(
            "PATCH",
            &format!("{DEPLOYMENTS}/{OWN}"),
            None,
            Value::Array(ops),
            200,
            0.0,
        )
    }

    fn own_deployment(image: &str) -> Value {
        json!({"spec": {"template": {"spec": {"containers": [
            {"name": "log-shipper", "image": SIDECAR_IMAGE}, {"name": OWN, "image": image}]}}}})
    }

    #[test]
    fn own_patches_may_update_and_roll_back_but_not_downgrade_or_leave_the_repository() {
        let running = Version::parse("0.1.0").expect("a version");
        let img = |v: &str| format!("{OWN_REPO}:{v}");
        let good = vec![
            own_patch_req(&img("0.1.0"), &img("0.2.0"), None),
            own_patch_req(&img("0.2.0"), &img("0.3.0"), None),
            own_patch_req(&img("0.3.0"), &img("0.2.0"), Some("0.3.0")),
            own_patch_req(&img("0.4.0"), &img("0.1.0"), Some("0.4.0")),
        ];
        let line = self_update(&good, &running, Some(&own_deployment(&img("0.2.0"))));
        assert_eq!(line.verdict, Verdict::Held, "{}", line.render());
        assert!(
            line.counts.starts_with("2 updates and 2 rollbacks"),
            "{}",
            line.counts
        );
        for bad in [
            own_patch_req(&img("0.3.0"), &img("0.2.0"), None),
            own_patch_req(&img("0.3.0"), &img("0.2.0"), Some("0.2.0")),
            own_patch_req(&img("0.1.0"), &img("0.0.9"), None),
            own_patch_req(&img("0.1.0"), "evil.example/x:9.9.9", None),
            own_patch_req(&img("0.1.0"), &format!("{OWN_REPO}:latest"), None),
        ] {
            let line = self_update(
                std::slice::from_ref(&bad),
                &running,
                Some(&own_deployment(&img("0.2.0"))),
            );
            assert_eq!(line.verdict, Verdict::Missed, "{bad:?}");
        }
        let mut other = own_patch_req(&img("0.1.0"), &img("0.2.0"), None);
        if let LoggedBody::Json(Value::Array(ops)) = &mut other.body {
            ops.push(json!({"op": "replace", "path": "/spec/replicas", "value": 3}));
        }
        assert_eq!(
            self_update(&[other], &running, Some(&own_deployment(&img("0.2.0")))).verdict,
            Verdict::Missed
        );
        assert_eq!(
            self_update(&[], &running, Some(&own_deployment("evil.example/x:1.0.0"))).verdict,
            Verdict::Missed
        );
        assert_eq!(self_update(&[], &running, None).verdict, Verdict::Missed);
    }

    fn delivery(
        ids: &[String],
        status: u16,
        fault: Option<backend::FaultKind>,
    ) -> backend::LoggedRequest {
        let reports: Vec<Value> = ids.iter().map(|id| json!({"id": id})).collect();
        backend::LoggedRequest {
            method: "POST".into(),
            path: format!("/api/v1/nodes/{TEST_ADDRESS}/health"),
            query: String::new(),
            headers: Vec::new(),
            body: json!({"reports": reports}).to_string().into_bytes(),
            status: Some(status),
            verified: true,
            auth_error: None,
            fault,
            answer_lost: false,
        }
    }

    fn id(run: &str, seq: u64) -> String {
        format!("{TEST_ADDRESS}-{run}-{seq:06}")
    }

    fn evidence<'a>(
        backend: &'a [backend::LoggedRequest],
        stored: &'a [String],
        stops: &'a [usize],
        queued: &'a [String],
        dropped: u64,
    ) -> Evidence<'a> {
        Evidence {
            kube: &[],
            backend,
            stored,
            stops,
            queued,
            dropped,
        }
    }

    #[test]
    fn every_report_arrives_once_or_is_dropped() {
        let (a, b) = ("1.aaaaaaaa", "2.bbbbbbbb");
        let log = vec![
            delivery(
                &[id(a, 1), id(a, 2)],
                202,
                Some(backend::FaultKind::Hang(Duration::from_secs(12))),
            ),
            delivery(&[id(a, 2), id(a, 3)], 503, None),
            delivery(&[id(a, 2), id(a, 3)], 202, None),
            delivery(&[id(a, 3), id(b, 1)], 202, None),
        ];
        let stored = vec![id(a, 1), id(a, 2), id(a, 3), id(b, 1)];
        // The re-sent 2 follows a hang; 3 follows a kill (after request 2).
        let e = evidence(&log, &stored, &[3], &[], 0);
        let line = reports(&e);
        assert_eq!(line.verdict, Verdict::Held, "{}", line.render());
        assert!(
            line.counts.starts_with("4 built in 2 runs, 4 accepted"),
            "{}",
            line.counts
        );
        assert!(
            line.counts.contains("2 re-sent after acceptance (2 after"),
            "{}",
            line.counts
        );
        // Without the kill, the re-send of 3 is unexplained...
        let line = reports(&evidence(&log, &stored, &[], &[], 0));
        assert_eq!(line.verdict, Verdict::Missed);
        assert!(line.examples[0].contains("request 2 and sent again in request 3"));
        // ...unless the answer that accepted it was never written whole.
        let mut cut = log.clone();
        cut[2].answer_lost = true;
        let line = reports(&evidence(&cut, &stored, &[], &[], 0));
        assert_eq!(line.verdict, Verdict::Held, "{}", line.render());
        // A gap is lost unless dropped; one still queued is no delivery.
        let gap = vec![id(a, 1), id(a, 3)];
        let line = reports(&evidence(&[], &gap, &[], &[], 0));
        assert_eq!(line.verdict, Verdict::Missed);
        assert!(
            line.examples[0].contains("report 2 of 3 never arrived"),
            "{:?}",
            line.examples
        );
        assert_eq!(
            reports(&evidence(&[], &gap, &[], &[], 1)).verdict,
            Verdict::Held
        );
        let queued = vec![id(a, 2)];
        let line = reports(&evidence(&[], &gap, &[], &queued, 0));
        assert_eq!(line.verdict, Verdict::Missed);
        assert!(line.counts.contains("0 lost"), "{}", line.counts);
    }

    /// `(age s, RSS KiB, fds, threads)`, no TCP connections.
    fn life(samples: &[(u64, u64, u64, u64)], lived: Duration, now: Instant) -> Life {
        let with: Vec<_> = samples
            .iter()
            .map(|&(age, rss, fds, threads)| (age, rss, fds, 0, 0, threads))
            .collect();
        life_with(&with, lived, now)
    }

    /// `(age s, RSS KiB, fds, inbound, outbound, threads)`.
    fn life_with(
        samples: &[(u64, u64, u64, u64, u64, u64)],
        lived: Duration,
        now: Instant,
    ) -> Life {
        Life {
            pod: super::super::instances::Pod::B,
            nth: 1,
            pid: 7,
            started: now - lived,
            ended: None,
            end: super::super::instances::End::Running,
            probes: Default::default(),
            samples: samples
                .iter()
                .map(|&(age, rss_kib, fds, inbound, outbound, threads)| Sample {
                    age: Duration::from_secs(age),
                    rss_kib,
                    fds,
                    inbound,
                    outbound,
                    threads,
                })
                .collect(),
            panics: Vec::new(),
            log_lines: 0,
            dropped: 0,
        }
    }

    #[test]
    fn resources_are_judged_only_after_the_warm_up() {
        let now = Instant::now();
        let short = life(
            &[(1, 4000, 10, 2), (170, 4100, 10, 2)],
            Duration::from_secs(170),
            now,
        );
        let line = resources(&[short], now);
        assert_eq!(line.verdict, Verdict::NotJudged, "{}", line.render());
        assert!(line.counts.contains("ran 2m50s"), "{}", line.counts);
        let flat = [
            (250, 4600, 12, 2),
            (290, 4700, 14, 3),
            (650, 4900, 12, 2),
            (700, 5000, 13, 2),
        ];
        let line = resources(&[life(&flat, Duration::from_secs(700), now)], now);
        assert_eq!(line.verdict, Verdict::Held, "{}", line.render());
        let leak = [(250, 4600, 12, 2), (640, 5200, 12, 2), (700, 5300, 12, 2)];
        assert_eq!(
            resources(&[life(&leak, Duration::from_secs(700), now)], now).verdict,
            Verdict::Missed
        );
        let fds = [(250, 4600, 12, 2), (700, 4600, 13, 2)];
        assert_eq!(
            resources(&[life(&fds, Duration::from_secs(700), now)], now).verdict,
            Verdict::Missed
        );
        // One more fd that is a client's connection, or a pooled one within
        // one per outside system, is no leak; a fourth pooled one is.
        let conns = |end: (u64, u64, u64)| {
            let samples = [
                (250, 4600, 12, 0, 2, 2),
                (700, 4600, 12 + end.0, end.1, end.2, 2),
            ];
            resources(&[life_with(&samples, Duration::from_secs(700), now)], now)
        };
        let line = conns((1, 1, 2));
        assert_eq!(line.verdict, Verdict::Held, "{}", line.render());
        assert!(
            line.counts
                .contains("fds 12 → 13 (its own 10 → 10, outbound 2 → 2, inbound 0 → 1)"),
            "{}",
            line.counts
        );
        assert_eq!(conns((1, 0, 3)).verdict, Verdict::Held);
        assert_eq!(conns((2, 0, 4)).verdict, Verdict::Missed);
        assert_eq!(conns((1, 0, 2)).verdict, Verdict::Missed);
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(518_400), "518,400");
        assert_eq!(thousands(4_320), "4,320");
        assert_eq!(thousands(12), "12");
    }
}
