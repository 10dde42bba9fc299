//! What the node writes into a Pod's `status`: the kubelet's container
//! statuses, phase and conditions for each [`PodScenario`] (and for images
//! marked broken), and the scheduler's condition for a pod that does not fit.
//!
//! Which real output this follows:
//!
//! - Texts are the kubelet's and the scheduler's (k8s.io/kubernetes v1.36.3):
//!   `back-off 5m0s restarting failed container=web pod=web-…_wm(uid)`
//!   (kuberuntime_manager.go `doBackOff`, back-off 10 s doubling to 5 min),
//!   `Back-off pulling image "x": ErrImagePull: <CRI error>` and the CRI error
//!   itself for ErrImagePull (images/image_manager.go; the error is
//!   containerd's "not found"), `secret "x" not found` for
//!   CreateContainerConfigError (the secret manager's NotFound),
//!   `containers with unready status: [web]` / `containers with incomplete
//!   status: [init]` (status/generate.go), and the scheduler's Unschedulable
//!   message exactly as the v1.36 control plane of `.ci/cluster.sh` wrote it
//!   for a pod requesting more memory than the node has.
//! - The field set is a v1.31 kubelet's (the K3S version the fake's Node
//!   reports): conditions PodReadyToStartContainers, Initialized, Ready,
//!   ContainersReady, PodScheduled in that order, `lastProbeTime: null`;
//!   container statuses with `containerID` (`containerd://…`, only once a
//!   container was created), `image` (containerd's normalized reference once
//!   created, the spec's before), `imageID` (`""` before), `lastState`,
//!   `ready`, `restartCount`, `started`, `state`, `volumeMounts`. A v1.35+
//!   kubelet adds `observedGeneration`, `resources`, `allocatedResources`
//!   and `user`; the fake leaves them out.
//! - The phase follows the kubelet's `getPhase`: Pending while a container
//!   was never created (or init is incomplete), else Running (restartPolicy
//!   Always: restarting containers keep the pod Running).
//!
//! Compared with KWOK on the real control plane (`.ci/cluster.sh`, stages in
//! tests/cluster/kwok/stages.yaml): the same fields, condition shapes and
//! (for the `no-such-image` stage) texts where KWOK writes them. KWOK is no
//! kubelet: its stages leave out PodReadyToStartContainers, `containerID`,
//! `volumeMounts`, `started` on ready containers, the pod IP of a
//! crash-looping pod, image digests, the container list in the condition
//! messages and the pod in the back-off message, all of which a kubelet
//! writes (so the fake does).

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::clock;

/// How the pods of a Deployment's current template behave on the node (see
/// `FakeKube::set_pod_scenario`). Each gives the status a real kubelet (or,
/// for [`PodScenario::Unschedulable`], the scheduler) writes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PodScenario {
    /// Every container runs and is ready (the default).
    #[default]
    Ready,
    /// Containers run but never pass their readiness probe.
    NeverReady,
    /// Each container exited with code 1 (`Error`) after `restarts` restarts
    /// and waits in `CrashLoopBackOff`; with 0 restarts its first run has
    /// just ended (state `terminated`, kubectl shows `Error`).
    CrashLoop { restarts: u32 },
    /// Pulling the image failed (`ErrImagePull`, containerd's "not found").
    ErrImagePull,
    /// The kubelet waits before pulling again (`ImagePullBackOff`).
    ImagePullBackOff,
    /// The containers' environment names a Secret that does not exist:
    /// waiting in `CreateContainerConfigError`, `secret "<secret>" not found`.
    CreateContainerConfigError { secret: String },
    /// Killed once for memory (`OOMKilled`, exit code 137) and running and
    /// ready again: restartCount 1, lastState.terminated.
    OomKilledThenRecovered,
    /// Just killed for memory: state `terminated` `OOMKilled`, not ready.
    OomKilled,
    /// The scheduler finds no room: phase Pending, no node, PodScheduled False.
    Unschedulable,
    /// The first init container crash-loops (3 restarts, exit code 1); the
    /// others wait in `PodInitializing` (kubectl: `Init:CrashLoopBackOff`).
    /// A template without init containers gets one named `init`.
    InitWaiting,
}

impl PodScenario {
    /// Whether such pods become Ready.
    pub(crate) fn ready(&self) -> bool {
        matches!(
            self,
            PodScenario::Ready | PodScenario::OomKilledThenRecovered
        )
    }

    /// Whether the scheduler places such a pod on the node.
    pub(crate) fn schedules(&self) -> bool {
        *self != PodScenario::Unschedulable
    }

    /// Whether the pod needs an init container to show this scenario.
    pub(crate) fn needs_init_container(&self) -> bool {
        *self == PodScenario::InitWaiting
    }
}

/// Where the pod runs and what the node knows besides the scenario.
pub(crate) struct NodeState<'a> {
    pub host_ip: &'a str,
    pub pod_ip: &'a str,
    /// Images whose pull fails.
    pub broken_images: &'a BTreeSet<String>,
    /// A failed pull is past its first attempt: `ImagePullBackOff`, not `ErrImagePull`.
    pub pull_backing_off: bool,
    pub now: &'a str,
}

/// The scheduler's message for a pod that fits no node (v1.36: the DRA
/// plugin's PostFilter adds "no new claims to deallocate"; a request above
/// the node's allocatable makes preemption "not helpful").
const UNSCHEDULABLE: &str = "0/1 nodes are available: 1 Insufficient memory. no new claims to deallocate, preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";

/// How a container's run ended.
#[derive(Debug, Clone, Copy)]
struct Exit {
    code: i32,
    reason: &'static str,
}

const ERROR: Exit = Exit {
    code: 1,
    reason: "Error",
};
const OOM_KILLED: Exit = Exit {
    code: 137,
    reason: "OOMKilled",
};
const COMPLETED: Exit = Exit {
    code: 0,
    reason: "Completed",
};

/// What one container does, from which its status and the pod's conditions follow.
#[derive(Debug, Clone)]
enum Run {
    /// Running after `restarts` earlier runs, the last of which ended with `last`.
    Running {
        ready: bool,
        restarts: u32,
        last: Option<Exit>,
    },
    /// Its latest run ended with `exit` and it is not restarted (yet).
    Exited { exit: Exit },
    /// Ended with `exit` after `restarts` restarts; waits out the back-off.
    BackOff { restarts: u32, exit: Exit },
    /// Never created: waiting for this reason.
    NotCreated {
        reason: &'static str,
        message: Option<String>,
    },
}

impl Run {
    fn ready(&self) -> bool {
        match self {
            Run::Running { ready, .. } => *ready,
            Run::Exited { exit } => exit.code == 0,
            _ => false,
        }
    }

    fn never_created(&self) -> bool {
        matches!(self, Run::NotCreated { .. })
    }
}

/// The pod's `status` as the node writes it. `previous` (the stored status)
/// keeps the transition times of conditions whose status did not change.
pub(crate) fn status(
    pod: &Value,
    scenario: &PodScenario,
    node: &NodeState,
    previous: &Value,
) -> Value {
    let generation = pod.pointer("/metadata/generation").cloned();
    let mut status = Map::new();
    status.insert("phase".into(), "Pending".into());
    if let Some(q) = previous.get("qosClass") {
        status.insert("qosClass".into(), q.clone());
    }
    if !scenario.schedules() {
        let mut cond = condition(
            "PodScheduled",
            false,
            Some(("Unschedulable", UNSCHEDULABLE)),
            previous,
            node.now,
        );
        // The v1.36 scheduler records the generation it saw.
        if let Some(g) = generation {
            cond["observedGeneration"] = g;
        }
        status.insert("conditions".into(), json!([cond]));
        return Value::Object(status);
    }
    let spec = &pod["spec"];
    let containers = list(spec, "containers");
    let inits = list(spec, "initContainers");
    let (init_runs, app_runs) = runs(scenario, node, &inits, &containers);

    let incomplete: Vec<&str> = inits
        .iter()
        .zip(&init_runs)
        .filter(|(c, r)| !init_done(c, r))
        .map(|(c, _)| name(c))
        .collect();
    let unready: Vec<&str> = inits
        .iter()
        .zip(&init_runs)
        .filter(|(c, _)| sidecar(c))
        .chain(containers.iter().zip(&app_runs))
        .filter(|(_, r)| !r.ready())
        .map(|(c, _)| name(c))
        .collect();
    let ready_reason = (!unready.is_empty()).then(|| {
        let msg = format!("containers with unready status: {}", go_list(&unready));
        ("ContainersNotReady", msg)
    });
    let init_reason = (!incomplete.is_empty()).then(|| {
        let msg = format!(
            "containers with incomplete status: {}",
            go_list(&incomplete)
        );
        ("ContainersNotInitialized", msg)
    });
    let conditions = vec![
        condition("PodReadyToStartContainers", true, None, previous, node.now),
        condition(
            "Initialized",
            init_reason.is_none(),
            why(&init_reason),
            previous,
            node.now,
        ),
        condition(
            "Ready",
            ready_reason.is_none(),
            why(&ready_reason),
            previous,
            node.now,
        ),
        condition(
            "ContainersReady",
            ready_reason.is_none(),
            why(&ready_reason),
            previous,
            node.now,
        ),
        condition("PodScheduled", true, None, previous, node.now),
    ];
    // getPhase: a container never created (init included) keeps the pod Pending.
    let pending = init_runs.iter().chain(&app_runs).any(Run::never_created);
    if !pending {
        status.insert("phase".into(), "Running".into());
    }
    status.insert("conditions".into(), conditions.into());
    status.insert("hostIP".into(), node.host_ip.into());
    status.insert("hostIPs".into(), json!([{"ip": node.host_ip}]));
    status.insert("podIP".into(), node.pod_ip.into());
    status.insert("podIPs".into(), json!([{"ip": node.pod_ip}]));
    let start = previous
        .get("startTime")
        .cloned()
        .unwrap_or_else(|| node.now.into());
    status.insert("startTime".into(), start);

    let pod_desc = pod_desc(pod);
    let statuses = |cs: &[&Value], rs: &[Run]| -> Vec<Value> {
        cs.iter()
            .zip(rs)
            .map(|(c, r)| container_status(c, r, &pod_desc, node.now))
            .collect()
    };
    status.insert(
        "containerStatuses".into(),
        statuses(&containers, &app_runs).into(),
    );
    if !inits.is_empty() {
        status.insert(
            "initContainerStatuses".into(),
            statuses(&inits, &init_runs).into(),
        );
    }
    Value::Object(status)
}

/// A (reason, message) pair borrowed for [`condition`].
fn why<'a>(r: &'a Option<(&'static str, String)>) -> Option<(&'static str, &'a str)> {
    r.as_ref()
        .map(|(reason, message)| (*reason, message.as_str()))
}

/// Whether a pod status says Ready (its `Ready` condition is True).
pub(crate) fn is_ready(status: &Value) -> bool {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The containers of a list field of a pod spec.
fn list<'a>(spec: &'a Value, field: &str) -> Vec<&'a Value> {
    spec[field].as_array().into_iter().flatten().collect()
}

fn name(c: &Value) -> &str {
    c["name"].as_str().unwrap_or_default()
}

fn image(c: &Value) -> &str {
    c["image"].as_str().unwrap_or_default()
}

/// A restartable init container (a sidecar, `restartPolicy: Always`).
fn sidecar(c: &Value) -> bool {
    c["restartPolicy"] == "Always"
}

/// Whether an init container counts as initialized (generate.go
/// `isInitContainerInitialized`): a sidecar once started, others once done.
fn init_done(c: &Value, r: &Run) -> bool {
    if sidecar(c) {
        matches!(r, Run::Running { .. })
    } else {
        r.ready()
    }
}

/// Go's `%s` of a `[]string`: `[a b]`.
fn go_list(names: &[&str]) -> String {
    format!("[{}]", names.join(" "))
}

/// `name_namespace(uid)`, as the kubelet's `format.Pod` names a pod.
fn pod_desc(pod: &Value) -> String {
    let meta = &pod["metadata"];
    let s = |k: &str| meta[k].as_str().unwrap_or_default().to_string();
    format!("{}_{}({})", s("name"), s("namespace"), s("uid"))
}

/// What each init container and each container does.
fn runs(
    scenario: &PodScenario,
    node: &NodeState,
    inits: &[&Value],
    containers: &[&Value],
) -> (Vec<Run>, Vec<Run>) {
    let pull_failure = |c: &Value| -> Option<Run> {
        let img = image(c);
        node.broken_images
            .contains(img)
            .then(|| pull_run(img, node.pull_backing_off))
    };
    let initializing = || Run::NotCreated {
        reason: "PodInitializing",
        message: None,
    };
    // Init containers run in order; the first that does not complete blocks
    // the rest and every container.
    let mut init_runs = Vec::new();
    let mut blocked = false;
    for (i, c) in inits.iter().enumerate() {
        let run = if blocked {
            initializing()
        } else if let Some(failed) = pull_failure(c) {
            failed
        } else if i == 0 && *scenario == PodScenario::InitWaiting {
            Run::BackOff {
                restarts: 3,
                exit: ERROR,
            }
        } else if sidecar(c) {
            Run::Running {
                ready: true,
                restarts: 0,
                last: None,
            }
        } else {
            Run::Exited { exit: COMPLETED }
        };
        blocked |= !init_done(c, &run);
        init_runs.push(run);
    }
    let app_runs = containers
        .iter()
        .map(|c| {
            if blocked {
                initializing()
            } else {
                pull_failure(c).unwrap_or_else(|| app_run(scenario, c))
            }
        })
        .collect();
    (init_runs, app_runs)
}

/// What a (regular) container does in `scenario`.
fn app_run(scenario: &PodScenario, c: &Value) -> Run {
    let running = |ready, restarts, last| Run::Running {
        ready,
        restarts,
        last,
    };
    match scenario {
        PodScenario::Ready | PodScenario::Unschedulable | PodScenario::InitWaiting => {
            running(true, 0, None)
        }
        PodScenario::NeverReady => running(false, 0, None),
        PodScenario::CrashLoop { restarts: 0 } => Run::Exited { exit: ERROR },
        PodScenario::CrashLoop { restarts } => Run::BackOff {
            restarts: *restarts,
            exit: ERROR,
        },
        PodScenario::ErrImagePull => pull_run(image(c), false),
        PodScenario::ImagePullBackOff => pull_run(image(c), true),
        PodScenario::CreateContainerConfigError { secret } => Run::NotCreated {
            reason: "CreateContainerConfigError",
            message: Some(format!("secret {secret:?} not found")),
        },
        PodScenario::OomKilledThenRecovered => running(true, 1, Some(OOM_KILLED)),
        PodScenario::OomKilled => Run::Exited { exit: OOM_KILLED },
    }
}

/// A failed pull: `ErrImagePull` with containerd's error, or the back-off
/// that follows it, whose message wraps that error.
fn pull_run(image: &str, backing_off: bool) -> Run {
    let reference = normalized(image);
    let cri = format!(
        "rpc error: code = NotFound desc = failed to pull and unpack image \"{reference}\": \
         failed to resolve reference \"{reference}\": {reference}: not found"
    );
    if backing_off {
        Run::NotCreated {
            reason: "ImagePullBackOff",
            message: Some(format!(
                "Back-off pulling image \"{}\": ErrImagePull: {cri}",
                with_tag(image)
            )),
        }
    } else {
        Run::NotCreated {
            reason: "ErrImagePull",
            message: Some(cri),
        }
    }
}

/// An image reference with `:latest` added when it has no tag or digest
/// (the kubelet's `applyDefaultImageTag`).
fn with_tag(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if image.contains('@') || last.contains(':') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

/// containerd's normalized reference: `nginx` is `docker.io/library/nginx:latest`,
/// `me/app:1` is `docker.io/me/app:1`; a first part with `.` or `:` (or
/// `localhost`) is a registry and stays.
pub(crate) fn normalized(image: &str) -> String {
    let image = with_tag(image);
    let first = image.split('/').next().unwrap_or_default();
    let has_registry =
        image.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    match (has_registry, image.contains('/')) {
        (true, _) => image,
        (false, true) => format!("docker.io/{image}"),
        (false, false) => format!("docker.io/library/{image}"),
    }
}

/// `repo@sha256:…` of a pulled image, as containerd reports `imageID`.
fn image_id(image: &str) -> String {
    let reference = normalized(image);
    let repo = match reference.rsplit_once('@') {
        Some((repo, _)) => repo.to_string(),
        None => {
            let slash = reference.rfind('/').map_or(0, |i| i + 1);
            match reference[slash..].rfind(':') {
                Some(colon) => reference[..slash + colon].to_string(),
                None => reference.clone(),
            }
        }
    };
    format!("{repo}@sha256:{}", clock::hex64(&reference))
}

/// The kubelet's crash-loop back-off after `restarts` restarts: 10 s,
/// doubling, at most 5 min; as Go prints a `time.Duration`.
fn back_off(restarts: u32) -> &'static str {
    match restarts {
        0 | 1 => "10s",
        2 => "20s",
        3 => "40s",
        4 => "1m20s",
        5 => "2m40s",
        _ => "5m0s",
    }
}

/// `containerd://…` of the container's `attempt`-th run (0 = the first).
fn container_id(pod_desc: &str, container: &str, attempt: u32) -> String {
    format!(
        "containerd://{}",
        clock::hex64(&(pod_desc, container, attempt))
    )
}

/// One entry of `containerStatuses` / `initContainerStatuses`.
fn container_status(c: &Value, run: &Run, pod_desc: &str, now: &str) -> Value {
    let name = name(c);
    let terminated = |attempt: u32, exit: Exit| {
        json!({"terminated": {
            "containerID": container_id(pod_desc, name, attempt),
            "exitCode": exit.code,
            "reason": exit.reason,
            "startedAt": now,
            "finishedAt": now,
        }})
    };
    let mut s = Map::new();
    s.insert("name".into(), name.into());
    let (attempt, state, last, restarts, started) = match run {
        Run::NotCreated { reason, message } => {
            let mut waiting = json!({ "reason": reason });
            if let Some(m) = message {
                waiting["message"] = m.as_str().into();
            }
            s.insert("image".into(), image(c).into());
            s.insert("imageID".into(), "".into());
            s.insert("lastState".into(), json!({}));
            s.insert("ready".into(), false.into());
            s.insert("restartCount".into(), 0.into());
            s.insert("started".into(), false.into());
            s.insert("state".into(), json!({ "waiting": waiting }));
            insert_mounts(&mut s, c);
            return Value::Object(s);
        }
        Run::Running { restarts, last, .. } => {
            let last = last.map_or(json!({}), |e| terminated(restarts.saturating_sub(1), e));
            let state = json!({"running": {"startedAt": now}});
            (*restarts, state, last, *restarts, true)
        }
        Run::Exited { exit } => (0, terminated(0, *exit), json!({}), 0, false),
        Run::BackOff { restarts, exit } => {
            let message = format!(
                "back-off {} restarting failed container={name} pod={pod_desc}",
                back_off(*restarts)
            );
            let state = json!({"waiting": {"reason": "CrashLoopBackOff", "message": message}});
            (
                *restarts,
                state,
                terminated(*restarts, *exit),
                *restarts,
                false,
            )
        }
    };
    s.insert(
        "containerID".into(),
        container_id(pod_desc, name, attempt).into(),
    );
    s.insert("image".into(), normalized(image(c)).into());
    s.insert("imageID".into(), image_id(image(c)).into());
    s.insert("lastState".into(), last);
    s.insert("ready".into(), run.ready().into());
    s.insert("restartCount".into(), restarts.into());
    s.insert("started".into(), started.into());
    s.insert("state".into(), state);
    insert_mounts(&mut s, c);
    Value::Object(s)
}

/// `volumeMounts` as the kubelet reports them (RecursiveReadOnlyMounts):
/// name, mountPath, and for read-only mounts `readOnly` and `recursiveReadOnly`.
fn insert_mounts(s: &mut Map<String, Value>, c: &Value) {
    let mounts: Vec<Value> = c["volumeMounts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            let mut v = json!({"name": m["name"], "mountPath": m["mountPath"]});
            if m["readOnly"] == true {
                v["readOnly"] = true.into();
                let rro = m["recursiveReadOnly"].as_str().unwrap_or("Disabled");
                v["recursiveReadOnly"] = rro.into();
            }
            v
        })
        .collect();
    if !mounts.is_empty() {
        s.insert("volumeMounts".into(), mounts.into());
    }
}

/// A pod condition; `why` is (reason, message) for one that is not True.
fn condition(
    kind: &str,
    ok: bool,
    why: Option<(&str, &str)>,
    previous: &Value,
    now: &str,
) -> Value {
    let status = if ok { "True" } else { "False" };
    let prev = previous["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == kind && c["status"] == status);
    let since = prev.map_or_else(|| now.into(), |p| p["lastTransitionTime"].clone());
    let mut c = json!({
        "type": kind,
        "status": status,
        "lastProbeTime": null,
        "lastTransitionTime": since,
    });
    if let Some((reason, message)) = why {
        c["reason"] = reason.into();
        c["message"] = message.into();
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_are_normalized_as_containerd_does() {
        assert_eq!(normalized("nginx"), "docker.io/library/nginx:latest");
        assert_eq!(normalized("nginx:1.27"), "docker.io/library/nginx:1.27");
        assert_eq!(normalized("me/app:1"), "docker.io/me/app:1");
        assert_eq!(normalized("registry.example/x:1"), "registry.example/x:1");
        assert_eq!(normalized("localhost/x"), "localhost/x:latest");
        assert_eq!(normalized("reg:5000/x"), "reg:5000/x:latest");
        assert!(image_id("nginx:1.27").starts_with("docker.io/library/nginx@sha256:"));
        assert!(image_id("reg:5000/x:2").starts_with("reg:5000/x@sha256:"));
    }

    fn pod(init: Value) -> Value {
        json!({
            "metadata": {"name": "web-x-y", "namespace": "wm", "uid": "u", "generation": 1},
            "spec": {"initContainers": init,
                     "containers": [{"name": "web", "image": "web:1"}]},
        })
    }

    fn node(broken: &BTreeSet<String>) -> NodeState<'_> {
        NodeState {
            host_ip: "192.168.50.10",
            pod_ip: "10.42.0.9",
            broken_images: broken,
            pull_backing_off: false,
            now: "2026-01-01T00:00:00Z",
        }
    }

    #[test]
    fn a_broken_init_image_blocks_initialization() {
        let broken = BTreeSet::from(["init:1".to_string()]);
        let p = pod(json!([{"name": "setup", "image": "init:1"}]));
        let s = status(&p, &PodScenario::Ready, &node(&broken), &json!({}));
        assert_eq!(s["phase"], "Pending");
        let init = &s["initContainerStatuses"][0]["state"]["waiting"];
        assert_eq!(init["reason"], "ErrImagePull");
        let app = &s["containerStatuses"][0]["state"]["waiting"];
        assert_eq!(app["reason"], "PodInitializing");
        assert_eq!(
            s["conditions"][1]["message"],
            "containers with incomplete status: [setup]"
        );
    }

    #[test]
    fn a_sidecar_runs_and_counts_for_readiness() {
        let none = BTreeSet::new();
        let p = pod(json!([{"name": "proxy", "image": "p:1", "restartPolicy": "Always"}]));
        let s = status(&p, &PodScenario::NeverReady, &node(&none), &json!({}));
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["initContainerStatuses"][0]["started"], true);
        assert_eq!(s["conditions"][1]["status"], "True", "Initialized");
        assert_eq!(
            s["conditions"][2]["message"],
            "containers with unready status: [web]"
        );
        assert!(is_ready(&status(
            &p,
            &PodScenario::Ready,
            &node(&none),
            &json!({})
        )));
    }

    #[test]
    fn back_off_doubles_to_five_minutes() {
        assert_eq!(
            (1..=7).map(back_off).collect::<Vec<_>>(),
            ["10s", "20s", "40s", "1m20s", "2m40s", "5m0s", "5m0s"]
        );
    }
}
