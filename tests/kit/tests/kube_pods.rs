//! The fake's Pods and Node over real HTTPS: pods per replica with the
//! ReplicaSet ownerReference and `pod-template-hash`, each PodScenario's
//! status as a kubelet writes it, rollouts and deletes, the PodList and its
//! selector, the Node and its conditions, and RBAC (the Role's `get`/`list`
//! on pods, the ClusterRole's `get` on nodes) with the v1.36 control plane's
//! Status bodies.

mod kube_support;

use std::time::Duration;

use kube_support::{deployment, status, Client, DEPLOYS};
use serde_json::{json, Value};
use wm_testkit::kube::{rollout_complete, wait_until, FakeKube, PodScenario};

const PODS: &str = "/api/v1/namespaces/wm/pods";
const SA: &str = "system:serviceaccount:wm:workload-manager";
const SMP: &str = "application/strategic-merge-patch+json";

fn create(c: &Client, d: &Value) {
    let r = c.json("POST", DEPLOYS, d);
    assert_eq!(r.status, 201, "{}", r.text);
}

/// A fake whose controller only moves on `settle()`.
fn fake() -> FakeKube {
    FakeKube::builder()
        .controller_delay(Duration::from_secs(3600))
        .start()
}

fn with_replicas(name: &str, image: &str, replicas: i64) -> Value {
    let mut d = deployment(name, image);
    d["spec"]["replicas"] = replicas.into();
    d
}

fn hash_of(pod: &Value) -> String {
    pod["metadata"]["labels"]["pod-template-hash"]
        .as_str()
        .unwrap()
        .to_string()
}

fn condition<'a>(pod: &'a Value, kind: &str) -> &'a Value {
    pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {pod}"))
}

#[test]
fn pods_are_created_per_replica_with_the_replica_sets_owner_reference() {
    let kube = fake();
    let c = Client::new(&kube);
    create(&c, &with_replicas("web", "nginx:1.27", 3));
    assert!(kube.pods().is_empty(), "no pods before the controller runs");
    kube.settle();

    let d = kube.deployment("web").unwrap();
    let pods = kube.pods_of("web");
    assert_eq!(pods.len(), 3);
    let hash = hash_of(&pods[0]);
    assert_eq!(hash.len(), 10);
    assert!(hash
        .chars()
        .all(|ch| "bcdfghjklmnpqrstvwxz2456789".contains(ch)));
    let rs = format!("web-{hash}");
    for p in &pods {
        let meta = &p["metadata"];
        let name = meta["name"].as_str().unwrap();
        let suffix = name.strip_prefix(&format!("{rs}-")).expect(name);
        assert_eq!(suffix.len(), 5, "{name}");
        assert_eq!(meta["generateName"], format!("{rs}-").as_str());
        assert_eq!(meta["namespace"], "wm");
        assert_eq!(meta["generation"], 1);
        assert_eq!(
            meta["labels"],
            json!({"app": "web", "pod-template-hash": hash})
        );
        let owners = meta["ownerReferences"].as_array().unwrap();
        assert_eq!(owners.len(), 1);
        let o = &owners[0];
        assert_eq!(
            (
                o["apiVersion"].as_str(),
                o["kind"].as_str(),
                o["name"].as_str()
            ),
            (Some("apps/v1"), Some("ReplicaSet"), Some(rs.as_str()))
        );
        assert_eq!(
            (o["controller"].as_bool(), o["blockOwnerDeletion"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(o["uid"], pods[0]["metadata"]["ownerReferences"][0]["uid"]);
        assert_ne!(
            o["uid"], d["metadata"]["uid"],
            "the ReplicaSet's uid, not the Deployment's"
        );
        assert_eq!(meta["uid"].as_str().unwrap().len(), 36);
        assert!(meta["creationTimestamp"].as_str().unwrap().ends_with('Z'));
        assert!(meta["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok());
        assert_eq!(p["spec"]["nodeName"], "edge-1");
        assert_eq!(p["spec"]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["status"]["phase"], "Running");
        assert_eq!(p["status"]["qosClass"], "BestEffort");
        assert_eq!(condition(p, "Ready")["status"], "True");
        // Each pod is also served on its own.
        let one = c.get(&format!("{PODS}/{name}"));
        assert_eq!((one.status, &one.json()), (200, p));
    }
    assert_eq!(d["status"]["readyReplicas"], 3);
    assert_eq!(d["status"]["availableReplicas"], 3);
    assert_eq!(rollout_complete(&d), Ok(true));

    // Scaling down removes pods, scaling up adds them.
    let scale = json!({"spec": {"replicas": 1}});
    assert_eq!(c.patch(&format!("{DEPLOYS}/web"), SMP, &scale).status, 200);
    kube.settle();
    assert_eq!(kube.pods_of("web").len(), 1);
    assert_eq!(
        kube.deployment("web").unwrap()["status"]["readyReplicas"],
        1
    );
}

#[test]
fn the_pod_list_is_a_pod_list_with_label_selectors() {
    let kube = fake();
    let c = Client::new(&kube);
    create(&c, &with_replicas("web", "nginx:1.27", 2));
    create(&c, &deployment("api", "nginx:1.27"));
    kube.settle();

    let all = c.get(PODS).json();
    assert_eq!(
        (all["kind"].as_str(), all["apiVersion"].as_str()),
        (Some("PodList"), Some("v1"))
    );
    assert_eq!(
        all["metadata"],
        json!({"resourceVersion": kube.resource_version()})
    );
    let items = all["items"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert!(items
        .iter()
        .all(|i| i.get("kind").is_none() && i.get("apiVersion").is_none()));
    let names: Vec<&str> = items
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "ordered by name");

    let rv0 = c.get(&format!("{PODS}?resourceVersion=0"));
    assert_eq!(rv0.status, 200);
    assert_eq!(rv0.json()["items"].as_array().unwrap().len(), 3);
    let web = c.get(&format!("{PODS}?labelSelector=app%3Dweb"));
    assert_eq!(web.json()["items"].as_array().unwrap().len(), 2);
    let none = c.get(&format!("{PODS}?labelSelector=app%3Dnone")).json();
    assert_eq!(none["items"], json!([]));
    let bad = c.get(&format!("{PODS}?labelSelector=a%20in"));
    assert_eq!(
        (bad.status, bad.json()),
        (
            400,
            status(
                400,
                "BadRequest",
                "unable to parse requirement: found '' expected: '('",
                None
            )
        )
    );
    let missing = c.get(&format!("{PODS}/nope"));
    assert_eq!(
        (missing.status, missing.json()),
        (
            404,
            status(
                404,
                "NotFound",
                "pods \"nope\" not found",
                Some(json!({"name": "nope", "kind": "pods"}))
            )
        )
    );

    let logged: Vec<String> = kube
        .log()
        .into_iter()
        .filter(|r| r.path == PODS)
        .map(|r| format!("{} {}?{} {:?}", r.method, r.path, r.query, r.status))
        .collect();
    assert_eq!(logged.len(), 5, "{logged:?}");
    assert_eq!(logged[1], format!("GET {PODS}?resourceVersion=0 Some(200)"));
}

#[test]
fn list_body_is_the_served_list_byte_for_byte() {
    let kube = fake();
    let c = Client::new(&kube);
    create(&c, &with_replicas("web", "nginx:1.27", 2));
    create(&c, &deployment("api", "nginx:1.27"));
    kube.settle();
    assert_eq!(
        c.get(PODS).text.as_bytes(),
        kube.list_body("pods", "").as_slice()
    );
    let web = kube.list_body("deployments", "app=web");
    assert_eq!(
        c.get(&format!("{DEPLOYS}?labelSelector=app%3Dweb"))
            .text
            .as_bytes(),
        web.as_slice()
    );
    let items = serde_json::from_slice::<Value>(&web).unwrap()["items"].clone();
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
}

/// One scenario's pod, after the controller ran, and its Deployment.
fn scenario(s: PodScenario, image: &str) -> (Value, Value) {
    let kube = fake();
    kube.set_pod_scenario("web", s);
    create(&Client::new(&kube), &deployment("web", image));
    kube.settle();
    let pods = kube.pods_of("web");
    assert_eq!(pods.len(), 1);
    (pods[0].clone(), kube.deployment("web").unwrap())
}

/// What the manager reads of a container status: state and its reason and
/// message, restarts, ready, and the last termination's reason and code.
fn container(c: &Value) -> Value {
    let (state, detail) = c["state"].as_object().unwrap().iter().next().unwrap();
    json!({
        "state": state, "reason": detail["reason"], "message": detail["message"],
        "exitCode": detail["exitCode"], "restartCount": c["restartCount"], "ready": c["ready"],
        "started": c["started"],
        "last": c["lastState"]["terminated"]["reason"], "lastExit": c["lastState"]["terminated"]["exitCode"],
    })
}

fn not_ready_deployment(d: &Value) {
    assert!(
        d["status"].get("readyReplicas").is_none(),
        "zero is omitted: {}",
        d["status"]
    );
    assert!(d["status"].get("availableReplicas").is_none());
    assert_eq!(d["status"]["updatedReplicas"], 1);
    assert_eq!(d["status"]["unavailableReplicas"], 1);
    let available = &d["status"]["conditions"][0];
    assert_eq!(
        (available["type"].as_str(), available["status"].as_str()),
        (Some("Available"), Some("False"))
    );
    assert_eq!(available["reason"], "MinimumReplicasUnavailable");
}

/// `Ready` and `ContainersReady` False for `names` (as the kubelet words it).
fn unready(pod: &Value, names: &str) {
    for kind in ["Ready", "ContainersReady"] {
        let c = condition(pod, kind);
        assert_eq!(
            (
                c["status"].as_str(),
                c["reason"].as_str(),
                c["message"].as_str()
            ),
            (
                Some("False"),
                Some("ContainersNotReady"),
                Some(format!("containers with unready status: [{names}]").as_str())
            ),
            "{kind}"
        );
    }
}

fn kubelet_conditions(pod: &Value) -> Vec<(String, String)> {
    pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(
                c["lastProbeTime"].is_null() && c["lastTransitionTime"].is_string(),
                "{c}"
            );
            (
                c["type"].as_str().unwrap().into(),
                c["status"].as_str().unwrap().into(),
            )
        })
        .collect()
}

fn desc(pod: &Value) -> String {
    let m = &pod["metadata"];
    format!(
        "{}_wm({})",
        m["name"].as_str().unwrap(),
        m["uid"].as_str().unwrap()
    )
}

#[test]
fn ready_is_the_default_scenario() {
    let (pod, d) = scenario(PodScenario::Ready, "nginx:1.27");
    let order = [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ];
    let want: Vec<(String, String)> = order
        .iter()
        .map(|t| (t.to_string(), "True".to_string()))
        .collect();
    assert_eq!(kubelet_conditions(&pod), want);
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(
        container(cs),
        json!({"state": "running", "reason": null, "message": null, "exitCode": null, "restartCount": 0,
               "ready": true, "started": true, "last": null, "lastExit": null})
    );
    assert_eq!(
        cs["image"], "docker.io/library/nginx:1.27",
        "containerd's normalized name"
    );
    assert!(cs["imageID"]
        .as_str()
        .unwrap()
        .starts_with("docker.io/library/nginx@sha256:"));
    assert!(cs["containerID"]
        .as_str()
        .unwrap()
        .starts_with("containerd://"));
    assert_eq!(cs["lastState"], json!({}));
    assert_eq!(pod["status"]["hostIP"], "192.168.50.10");
    assert!(pod["status"]["podIP"]
        .as_str()
        .unwrap()
        .starts_with("10.42.0."));
    assert_eq!(d["status"]["readyReplicas"], 1);
}

#[test]
fn crash_loop_waits_in_back_off_after_exit_code_1() {
    let (pod, d) = scenario(PodScenario::CrashLoop { restarts: 7 }, "nginx:1.27");
    assert_eq!(pod["status"]["phase"], "Running");
    unready(&pod, "web");
    let cs = &pod["status"]["containerStatuses"][0];
    let msg = format!(
        "back-off 5m0s restarting failed container=web pod={}",
        desc(&pod)
    );
    assert_eq!(
        container(cs),
        json!({"state": "waiting", "reason": "CrashLoopBackOff", "message": msg, "exitCode": null,
               "restartCount": 7, "ready": false, "started": false, "last": "Error", "lastExit": 1})
    );
    assert!(cs["lastState"]["terminated"]["finishedAt"].is_string());
    assert_eq!(
        cs["containerID"],
        cs["lastState"]["terminated"]["containerID"]
    );
    not_ready_deployment(&d);

    let (pod, _) = scenario(PodScenario::CrashLoop { restarts: 2 }, "nginx:1.27");
    let waiting = &pod["status"]["containerStatuses"][0]["state"]["waiting"];
    assert!(waiting["message"]
        .as_str()
        .unwrap()
        .starts_with("back-off 20s "));
    let (pod, _) = scenario(PodScenario::CrashLoop { restarts: 0 }, "nginx:1.27");
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(
        (
            container(cs)["state"].as_str(),
            container(cs)["reason"].as_str()
        ),
        (Some("terminated"), Some("Error"))
    );
}

#[test]
fn image_pulls_fail_with_the_kubelets_messages() {
    let cri = "rpc error: code = NotFound desc = failed to pull and unpack image \
               \"registry.example/web:9\": failed to resolve reference \"registry.example/web:9\": \
               registry.example/web:9: not found";
    for (s, reason, message) in [
        (PodScenario::ErrImagePull, "ErrImagePull", cri.to_string()),
        (
            PodScenario::ImagePullBackOff,
            "ImagePullBackOff",
            format!("Back-off pulling image \"registry.example/web:9\": ErrImagePull: {cri}"),
        ),
    ] {
        let (pod, d) = scenario(s, "registry.example/web:9");
        assert_eq!(pod["status"]["phase"], "Pending");
        unready(&pod, "web");
        let cs = &pod["status"]["containerStatuses"][0];
        assert_eq!(
            container(cs),
            json!({"state": "waiting", "reason": reason, "message": message, "exitCode": null,
                   "restartCount": 0, "ready": false, "started": false, "last": null, "lastExit": null})
        );
        assert_eq!(
            (cs["image"].as_str(), cs["imageID"].as_str()),
            (Some("registry.example/web:9"), Some(""))
        );
        assert!(cs.get("containerID").is_none(), "never created");
        not_ready_deployment(&d);
    }
}

#[test]
fn a_missing_secret_is_a_create_container_config_error() {
    let s = PodScenario::CreateContainerConfigError {
        secret: "web-env".into(),
    };
    let (pod, d) = scenario(s, "nginx:1.27");
    assert_eq!(pod["status"]["phase"], "Pending");
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(container(cs)["reason"], "CreateContainerConfigError");
    assert_eq!(container(cs)["message"], "secret \"web-env\" not found");
    not_ready_deployment(&d);
}

#[test]
fn oom_kills_show_in_the_state_or_the_last_state() {
    let (pod, d) = scenario(PodScenario::OomKilledThenRecovered, "nginx:1.27");
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(
        container(cs),
        json!({"state": "running", "reason": null, "message": null, "exitCode": null, "restartCount": 1,
               "ready": true, "started": true, "last": "OOMKilled", "lastExit": 137})
    );
    assert!(cs["lastState"]["terminated"]["finishedAt"].is_string());
    assert_ne!(
        cs["containerID"], cs["lastState"]["terminated"]["containerID"],
        "a new container runs"
    );
    assert_eq!(condition(&pod, "Ready")["status"], "True");
    assert_eq!(d["status"]["readyReplicas"], 1);

    let (pod, d) = scenario(PodScenario::OomKilled, "nginx:1.27");
    assert_eq!(pod["status"]["phase"], "Running");
    unready(&pod, "web");
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(
        container(cs),
        json!({"state": "terminated", "reason": "OOMKilled", "message": null, "exitCode": 137,
               "restartCount": 0, "ready": false, "started": false, "last": null, "lastExit": null})
    );
    not_ready_deployment(&d);
}

#[test]
fn an_unschedulable_pod_has_only_the_schedulers_condition() {
    let (pod, d) = scenario(PodScenario::Unschedulable, "nginx:1.27");
    assert!(pod["spec"].get("nodeName").is_none());
    let msg = "0/1 nodes are available: 1 Insufficient memory. no new claims to deallocate, \
               preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
    let c = &pod["status"]["conditions"];
    assert_eq!(c.as_array().unwrap().len(), 1);
    assert_eq!(
        (
            c[0]["type"].as_str(),
            c[0]["status"].as_str(),
            c[0]["reason"].as_str(),
            c[0]["message"].as_str()
        ),
        (
            Some("PodScheduled"),
            Some("False"),
            Some("Unschedulable"),
            Some(msg)
        )
    );
    assert_eq!(c[0]["observedGeneration"], 1);
    assert_eq!(pod["status"]["phase"], "Pending");
    for absent in ["containerStatuses", "hostIP", "podIP", "startTime"] {
        assert!(pod["status"].get(absent).is_none(), "{absent}");
    }
    not_ready_deployment(&d);
}

#[test]
fn an_init_container_in_crash_loop_keeps_the_pod_initializing() {
    let mut d = deployment("web", "nginx:1.27");
    d["spec"]["template"]["spec"]["initContainers"] =
        json!([{"name": "migrate", "image": "me/migrate:1"}]);
    let kube = fake();
    kube.set_pod_scenario("web", PodScenario::InitWaiting);
    create(&Client::new(&kube), &d);
    kube.settle();
    let pod = &kube.pods_of("web")[0];
    assert_eq!(pod["status"]["phase"], "Pending");
    let init = condition(pod, "Initialized");
    assert_eq!(
        (
            init["status"].as_str(),
            init["reason"].as_str(),
            init["message"].as_str()
        ),
        (
            Some("False"),
            Some("ContainersNotInitialized"),
            Some("containers with incomplete status: [migrate]")
        )
    );
    unready(pod, "web");
    let ics = &pod["status"]["initContainerStatuses"][0];
    assert_eq!(ics["image"], "docker.io/me/migrate:1");
    assert_eq!(
        container(ics),
        json!({"state": "waiting", "reason": "CrashLoopBackOff",
               "message": format!("back-off 40s restarting failed container=migrate pod={}", desc(pod)),
               "exitCode": null, "restartCount": 3, "ready": false, "started": false,
               "last": "Error", "lastExit": 1})
    );
    let cs = &pod["status"]["containerStatuses"][0];
    assert_eq!(container(cs)["reason"], "PodInitializing");
    not_ready_deployment(&kube.deployment("web").unwrap());

    // A template without init containers gets one, so the status has one.
    let (pod, _) = scenario(PodScenario::InitWaiting, "nginx:1.27");
    assert_eq!(pod["spec"]["initContainers"][0]["name"], "init");
    assert_eq!(pod["status"]["initContainerStatuses"][0]["name"], "init");
}

#[test]
fn completed_init_containers_and_never_ready_containers() {
    let mut d = deployment("web", "nginx:1.27");
    d["spec"]["template"]["spec"]["initContainers"] =
        json!([{"name": "migrate", "image": "me/migrate:1"}]);
    let kube = fake();
    let c = Client::new(&kube);
    create(&c, &d);
    kube.settle();
    let pod = &kube.pods_of("web")[0];
    let ics = &pod["status"]["initContainerStatuses"][0];
    assert_eq!(container(ics)["state"], "terminated");
    assert_eq!(
        (container(ics)["reason"].as_str(), ics["ready"].as_bool()),
        (Some("Completed"), Some(true))
    );
    assert_eq!(condition(pod, "Initialized")["status"], "True");

    let (pod, d) = scenario(PodScenario::NeverReady, "nginx:1.27");
    assert_eq!(pod["status"]["phase"], "Running");
    unready(&pod, "web");
    assert_eq!(
        container(&pod["status"]["containerStatuses"][0])["state"],
        "running"
    );
    not_ready_deployment(&d);
}

#[test]
fn a_scenario_set_later_changes_the_running_pods() {
    let kube = fake();
    let c = Client::new(&kube);
    create(&c, &with_replicas("web", "nginx:1.27", 2));
    kube.settle();
    let before = kube.pods_of("web");
    let ready_since = condition(&before[0], "PodScheduled")["lastTransitionTime"].clone();
    kube.set_pod_scenario("web", PodScenario::CrashLoop { restarts: 6 });
    kube.settle();
    let after = kube.pods_of("web");
    let names = |ps: &[Value]| {
        ps.iter()
            .map(|p| p["metadata"]["name"].clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&after),
        names(&before),
        "the same pods, not a rollout"
    );
    assert!(after
        .iter()
        .all(|p| condition(p, "Ready")["status"] == "False"));
    assert_eq!(
        condition(&after[0], "PodScheduled")["lastTransitionTime"],
        ready_since
    );
    let d = kube.deployment("web").unwrap();
    assert!(d["status"].get("readyReplicas").is_none());
    assert_eq!(d["status"]["conditions"][0]["status"], "False");
    assert_eq!(
        d["status"]["conditions"][1]["reason"], "NewReplicaSetAvailable",
        "a completed rollout stays so, as for real"
    );

    kube.set_pod_scenario("web", PodScenario::Ready);
    kube.settle();
    assert_eq!(
        kube.deployment("web").unwrap()["status"]["readyReplicas"],
        2
    );
}

#[test]
fn a_rollout_replaces_the_pods_and_a_stuck_one_keeps_the_old_ready_ones() {
    let kube = fake();
    let c = Client::new(&kube);
    create(&c, &with_replicas("web", "nginx:1.27", 4));
    kube.settle();
    let old_hash = hash_of(&kube.pods_of("web")[0]);

    let image = |i: &str| json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": i}]}}}});
    assert_eq!(
        c.patch(&format!("{DEPLOYS}/web"), SMP, &image("nginx:1.28"))
            .status,
        200
    );
    kube.settle();
    let pods = kube.pods_of("web");
    assert_eq!(pods.len(), 4);
    let new_hash = hash_of(&pods[0]);
    assert_ne!(new_hash, old_hash);
    assert!(pods
        .iter()
        .all(|p| hash_of(p) == new_hash && p["spec"]["containers"][0]["image"] == "nginx:1.28"));
    let d = kube.deployment("web").unwrap();
    assert_eq!(
        (
            d["status"]["replicas"].as_i64(),
            d["status"]["readyReplicas"].as_i64()
        ),
        (Some(4), Some(4))
    );
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );

    // A template whose pods crash: as the v1.36 controller did with 4
    // replicas and 25 % surge/unavailable, 3 old ready pods stay next to 2 new.
    kube.set_pod_scenario("web", PodScenario::CrashLoop { restarts: 3 });
    assert_eq!(
        c.patch(&format!("{DEPLOYS}/web"), SMP, &image("nginx:1.29"))
            .status,
        200
    );
    kube.settle();
    let pods = kube.pods_of("web");
    let (new, old): (Vec<&Value>, Vec<&Value>) = pods
        .iter()
        .partition(|p| p["spec"]["containers"][0]["image"] == "nginx:1.29");
    assert_eq!((old.len(), new.len()), (3, 2));
    assert!(old
        .iter()
        .all(|p| hash_of(p) == new_hash && condition(p, "Ready")["status"] == "True"));
    let s = &kube.deployment("web").unwrap()["status"];
    assert_eq!(
        [
            &s["replicas"],
            &s["updatedReplicas"],
            &s["readyReplicas"],
            &s["availableReplicas"],
            &s["unavailableReplicas"]
        ],
        [5, 2, 3, 3, 2]
    );

    // Rolling back to the 1.28 template gets its hash back.
    kube.set_pod_scenario("web", PodScenario::Ready);
    assert_eq!(
        c.patch(&format!("{DEPLOYS}/web"), SMP, &image("nginx:1.28"))
            .status,
        200
    );
    kube.settle();
    let pods = kube.pods_of("web");
    assert_eq!(pods.len(), 4);
    assert!(pods.iter().all(|p| hash_of(p) == new_hash));
}

#[test]
fn deleting_a_deployment_deletes_its_pods_unless_orphaned() {
    let kube = FakeKube::builder()
        .controller_delay(Duration::from_millis(20))
        .start();
    let c = Client::new(&kube);
    create(&c, &with_replicas("web", "nginx:1.27", 2));
    create(&c, &deployment("api", "nginx:1.27"));
    assert!(wait_until(Duration::from_secs(10), || kube.pods().len() == 3));
    assert_eq!(
        c.send("DELETE", &format!("{DEPLOYS}/web"), None).status,
        200
    );
    assert!(wait_until(Duration::from_secs(10), || kube
        .pods_of("web")
        .is_empty()));
    assert_eq!(kube.pods_of("api").len(), 1, "other pods stay");

    let orphan = (
        "application/json",
        json!({"propagationPolicy": "Orphan"}).to_string(),
    );
    assert_eq!(
        c.send("DELETE", &format!("{DEPLOYS}/api"), Some(orphan))
            .status,
        200
    );
    assert!(wait_until(Duration::from_secs(10), || kube
        .deployment("api")
        .is_none()));
    kube.settle();
    assert_eq!(kube.pods_of("api").len(), 1, "orphaned pods stay");

    // A new Deployment of the same name does not adopt them (another uid).
    create(&c, &deployment("api", "nginx:1.27"));
    kube.settle();
    assert_eq!(kube.pods_of("api").len(), 2);
}

#[test]
fn broken_images_wait_in_err_image_pull_then_back_off() {
    let kube = FakeKube::builder()
        .controller_delay(Duration::from_millis(300))
        .progress_deadline(Duration::from_secs(60))
        .start();
    kube.mark_broken_image("registry.example/web:9");
    create(
        &Client::new(&kube),
        &deployment("web", "registry.example/web:9"),
    );
    let reason = || {
        kube.pods_of("web").first().map(|p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
    };
    assert!(wait_until(Duration::from_secs(10), || reason().as_deref()
        == Some("ErrImagePull")));
    assert!(wait_until(Duration::from_secs(10), || reason().as_deref()
        == Some("ImagePullBackOff")));
    not_ready_deployment(&kube.deployment("web").unwrap());
}

#[test]
fn the_node_is_served_with_the_kubelets_conditions() {
    let kube = FakeKube::builder()
        .node_name("pi-7")
        .kubelet_version("v1.32.1+k3s2")
        .start();
    let c = Client::new(&kube);
    assert_eq!(kube.node_name(), "pi-7");
    let r = c.get("/api/v1/nodes/pi-7");
    assert_eq!(r.status, 200, "{}", r.text);
    let n = r.json();
    assert_eq!(n, kube.node());
    assert_eq!(
        (n["kind"].as_str(), n["apiVersion"].as_str()),
        (Some("Node"), Some("v1"))
    );
    assert!(n["metadata"].get("namespace").is_none(), "cluster-scoped");
    assert!(n["metadata"]["resourceVersion"].is_string());
    assert_eq!(n["metadata"]["labels"]["kubernetes.io/hostname"], "pi-7");
    assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "v1.32.1+k3s2");
    for field in [
        "architecture",
        "bootID",
        "containerRuntimeVersion",
        "kernelVersion",
        "machineID",
        "operatingSystem",
        "osImage",
        "systemUUID",
    ] {
        assert!(n["status"]["nodeInfo"][field].is_string(), "{field}");
    }
    let conditions: Vec<(&str, &str, &str, &str)> = n["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert!(c["lastHeartbeatTime"].is_string() && c["lastTransitionTime"].is_string());
            let s = |k: &str| c[k].as_str().unwrap();
            (s("type"), s("status"), s("reason"), s("message"))
        })
        .collect();
    assert_eq!(
        conditions,
        [
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available"
            ),
            (
                "DiskPressure",
                "False",
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure"
            ),
            (
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available"
            ),
            (
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status"
            ),
        ]
    );

    let before = n["metadata"]["resourceVersion"].clone();
    kube.set_node_condition("DiskPressure", "True");
    kube.set_node_condition("Ready", "False");
    let n = c.get("/api/v1/nodes/pi-7").json();
    assert_ne!(n["metadata"]["resourceVersion"], before, "a write");
    let disk = &n["status"]["conditions"][1];
    assert_eq!(
        (disk["status"].as_str(), disk["reason"].as_str()),
        (Some("True"), Some("KubeletHasDiskPressure"))
    );
    assert_eq!(n["status"]["conditions"][3]["reason"], "KubeletNotReady");

    let missing = c.get("/api/v1/nodes/edge-1");
    assert_eq!(
        (missing.status, missing.json()),
        (
            404,
            status(
                404,
                "NotFound",
                "nodes \"edge-1\" not found",
                Some(json!({"name": "edge-1", "kind": "nodes"}))
            )
        )
    );
}

#[test]
fn rbac_grants_get_and_list_on_pods_and_get_on_nodes_only() {
    let kube = fake();
    let c = Client::new(&kube);
    // As the v1.36 control plane words a denial.
    let forbidden = |verb: &str, resource: &str, name: Option<&str>, scope: &str| {
        let kind = resource.split('/').next().unwrap();
        let subject = name.map_or(kind.to_string(), |n| format!("{kind} \"{n}\""));
        let msg = format!(
            "{subject} is forbidden: User \"{SA}\" cannot {verb} resource \"{resource}\" in API group \"\" {scope}"
        );
        let mut details = json!({"kind": kind});
        if let Some(n) = name {
            details["name"] = n.into();
        }
        status(403, "Forbidden", &msg, Some(details))
    };
    let ns = "in the namespace \"wm\"";
    let cluster = "at the cluster scope";
    for (method, path, want) in [
        (
            "GET",
            "/api/v1/nodes".to_string(),
            forbidden("list", "nodes", None, cluster),
        ),
        (
            "GET",
            "/api/v1/nodes/edge-1/status".into(),
            forbidden("get", "nodes/status", Some("edge-1"), cluster),
        ),
        (
            "DELETE",
            "/api/v1/nodes/edge-1".into(),
            forbidden("delete", "nodes", Some("edge-1"), cluster),
        ),
        (
            "DELETE",
            format!("{PODS}/p"),
            forbidden("delete", "pods", Some("p"), ns),
        ),
        ("POST", PODS.into(), forbidden("create", "pods", None, ns)),
        (
            "GET",
            format!("{PODS}?watch=true"),
            forbidden("watch", "pods", None, ns),
        ),
        (
            "GET",
            format!("{PODS}/p/log"),
            forbidden("get", "pods/log", Some("p"), ns),
        ),
        (
            "GET",
            "/api/v1/namespaces/default/pods".into(),
            forbidden("list", "pods", None, "in the namespace \"default\""),
        ),
        (
            "GET",
            "/api/v1/pods".into(),
            forbidden("list", "pods", None, cluster),
        ),
    ] {
        let r = c.send(method, &path, None);
        assert_eq!((r.status, r.json()), (403, want), "{method} {path}");
    }
    // Granted by the ClusterRoleBinding in any namespace, but no route there.
    let r = c.get("/api/v1/namespaces/wm/nodes/edge-1");
    assert_eq!(
        (r.status, r.json()),
        (
            404,
            status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                Some(json!({}))
            )
        )
    );

    assert_eq!(c.get("/api/v1/nodes/edge-1").status, 200);
    kube.deny_nodes(true);
    let r = c.get("/api/v1/nodes/edge-1");
    assert_eq!(
        (r.status, r.json()),
        (403, forbidden("get", "nodes", Some("edge-1"), cluster))
    );
    let r = c.get("/api/v1/namespaces/wm/nodes/edge-1");
    assert_eq!(
        (r.status, r.json()),
        (403, forbidden("get", "nodes", Some("edge-1"), ns))
    );
    kube.deny_nodes(false);
    assert_eq!(c.get("/api/v1/nodes/edge-1").status, 200);
}

#[test]
fn discovery_lists_pods_and_nodes_in_core_v1() {
    let kube = FakeKube::start();
    let v1 = Client::new(&kube).get("/api/v1").json();
    let find = |name: &str| {
        v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {v1}"))
    };
    let pods = find("pods");
    assert_eq!(
        (pods["namespaced"].as_bool(), pods["kind"].as_str()),
        (Some(true), Some("Pod"))
    );
    assert_eq!(pods["shortNames"], json!(["po"]));
    let nodes = find("nodes");
    assert_eq!(
        (nodes["namespaced"].as_bool(), nodes["kind"].as_str()),
        (Some(false), Some("Node"))
    );
    assert_eq!(nodes["shortNames"], json!(["no"]));
}
