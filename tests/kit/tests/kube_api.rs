//! The fake API server's REST semantics, checked over real HTTPS: pod files,
//! authentication and RBAC, Deployments (CRUD, defaults, metadata rules,
//! selectors, patches, server-side apply, delete, /status), Leases,
//! discovery, the controller, and every error body against the reference.

mod kube_support;

use std::time::Duration;

use kube_support::{deployment, status, Client, DEPLOYS, LEASES};
use serde_json::{json, Value};
use wm_testkit::kube::{rollout_complete, wait_until, FakeKube};

const APPLY: &str = "application/apply-patch+yaml";
const MERGE: &str = "application/merge-patch+json";
const SMP: &str = "application/strategic-merge-patch+json";

fn create(c: &Client, name: &str) -> Value {
    let r = c.json("POST", DEPLOYS, &deployment(name, "nginx:1.27"));
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

fn rv(v: &Value) -> String {
    v["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn pod_files_have_no_trailing_newline_and_tls_is_verified() {
    let kube = FakeKube::builder().namespace("apps").start();
    assert_eq!(
        std::fs::read_to_string(kube.namespace_file()).unwrap(),
        "apps"
    );
    let token = std::fs::read_to_string(kube.token_file()).unwrap();
    assert_eq!(token, kube.token());
    assert!(!token.ends_with('\n') && token.starts_with("eyJ"));
    assert!(std::fs::read_to_string(kube.ca_file())
        .unwrap()
        .starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(kube.url(), format!("https://127.0.0.1:{}", kube.port()));
    // ureq verifies the chain and the IP SAN 127.0.0.1 against ca.crt only.
    assert_eq!(Client::new(&kube).get("/version").status, 200);

    let unrelated = kube.write_unrelated_ca();
    let pem = std::fs::read(unrelated).unwrap();
    let ca = ureq::tls::Certificate::from_pem(&pem).unwrap();
    let tls = ureq::tls::TlsConfig::builder()
        .root_certs(ureq::tls::RootCerts::new_with_certs(&[ca]))
        .build();
    let agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .proxy(None)
        .build()
        .new_agent();
    assert!(agent.get(format!("{}/version", kube.url())).call().is_err());
}

#[test]
fn wrong_or_rotated_tokens_get_401() {
    let kube = FakeKube::start();
    let mut c = Client::new(&kube);
    assert_eq!(c.get(DEPLOYS).status, 200);
    let unauthorized = status(401, "Unauthorized", "Unauthorized", None);
    let old = c.token.replace("nope".into());
    let r = c.get(DEPLOYS);
    assert_eq!((r.status, r.json()), (401, unauthorized.clone()));
    c.token = None;
    assert_eq!(c.get("/version").status, 401);

    let new = kube.rotate_token();
    assert_eq!(std::fs::read_to_string(kube.token_file()).unwrap(), new);
    c.token = old;
    let r = c.get(DEPLOYS);
    assert_eq!((r.status, r.json()), (401, unauthorized));
    c.token = Some(new);
    assert_eq!(c.get(DEPLOYS).status, 200);
}

#[test]
fn rbac_confines_the_service_account_to_its_namespace() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    let user = "system:serviceaccount:wm:workload-manager";
    let r = c.get("/apis/apps/v1/namespaces/other/deployments");
    let msg = format!(
        "deployments.apps is forbidden: User \"{user}\" cannot list resource \"deployments\" in API group \"apps\" in the namespace \"other\""
    );
    let want = status(
        403,
        "Forbidden",
        &msg,
        Some(json!({"group": "apps", "kind": "deployments"})),
    );
    assert_eq!((r.status, r.json()), (403, want));

    let r = c.get("/apis/apps/v1/deployments");
    let msg = format!(
        "deployments.apps is forbidden: User \"{user}\" cannot list resource \"deployments\" in API group \"apps\" at the cluster scope"
    );
    let want = status(
        403,
        "Forbidden",
        &msg,
        Some(json!({"group": "apps", "kind": "deployments"})),
    );
    assert_eq!((r.status, r.json()), (403, want));

    let r = c.json(
        "PUT",
        "/apis/apps/v1/namespaces/kube-system/deployments/web",
        &json!({}),
    );
    let msg = format!(
        "deployments.apps \"web\" is forbidden: User \"{user}\" cannot update resource \"deployments\" in API group \"apps\" in the namespace \"kube-system\""
    );
    let details = json!({"name": "web", "group": "apps", "kind": "deployments"});
    assert_eq!(r.json(), status(403, "Forbidden", &msg, Some(details)));

    let r = c.get("/api/v1/namespaces/wm/secrets");
    assert_eq!(r.status, 403);
    assert!(r.json()["message"]
        .as_str()
        .unwrap()
        .starts_with("secrets is forbidden: "));
}

#[test]
fn create_sets_metadata_defaults_and_empty_status() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    let before: u64 = kube.resource_version().parse().unwrap();
    let d = create(&c, "web");
    let m = &d["metadata"];
    assert_eq!(m["namespace"], "wm");
    assert_eq!(m["generation"], 1);
    assert_eq!(m["uid"].as_str().unwrap().len(), 36);
    assert_eq!(rv(&d).parse::<u64>().unwrap(), before + 1);
    let ts = m["creationTimestamp"].as_str().unwrap();
    assert!(
        ts.len() == 20 && ts.ends_with('Z') && &ts[10..11] == "T",
        "{ts}"
    );
    let mf = &m["managedFields"][0];
    assert_eq!(
        (mf["manager"].as_str(), mf["operation"].as_str()),
        (Some("kube-test"), Some("Update"))
    );
    assert_eq!(mf["fieldsType"], "FieldsV1");
    assert!(
        mf["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]
            ["."]
            .is_object()
    );
    assert_eq!(d["status"], json!({}));

    let spec = &d["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["restartPolicy"], "Always");
    assert_eq!(pod["dnsPolicy"], "ClusterFirst");
    assert_eq!(pod["schedulerName"], "default-scheduler");
    assert_eq!(pod["securityContext"], json!({}));
    assert_eq!(pod["terminationGracePeriodSeconds"], 30);
    let c0 = &pod["containers"][0];
    assert_eq!(c0["imagePullPolicy"], "IfNotPresent");
    assert_eq!(c0["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(c0["terminationMessagePolicy"], "File");

    let latest = c
        .json("POST", DEPLOYS, &deployment("latest", "nginx"))
        .json();
    assert_eq!(
        latest["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "Always"
    );
}

#[test]
fn create_errors_have_the_real_status_shapes() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    create(&c, "web");
    let details = json!({"name": "web", "group": "apps", "kind": "deployments"});
    let r = c.json("POST", DEPLOYS, &deployment("web", "x:1"));
    let want = status(
        409,
        "AlreadyExists",
        "deployments.apps \"web\" already exists",
        Some(details),
    );
    assert_eq!((r.status, r.json()), (409, want));

    let r = c.json("POST", DEPLOYS, &deployment("Web_1", "x:1"));
    let detail = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    let cause = format!("Invalid value: \"Web_1\": {detail}");
    let want = status(
        422,
        "Invalid",
        &format!("Deployment.apps \"Web_1\" is invalid: metadata.name: {cause}"),
        Some(
            json!({"name": "Web_1", "group": "apps", "kind": "Deployment",
                    "causes": [{"reason": "FieldValueInvalid", "message": cause, "field": "metadata.name"}]}),
        ),
    );
    assert_eq!((r.status, r.json()), (422, want));

    let mut other_ns = deployment("api", "x:1");
    other_ns["metadata"]["namespace"] = "other".into();
    let r = c.json("POST", DEPLOYS, &other_ns);
    let msg =
        "the namespace of the provided object does not match the namespace sent on the request";
    assert_eq!(
        (r.status, r.json()),
        (400, status(400, "BadRequest", msg, None))
    );

    let mut mismatch = deployment("api", "x:1");
    mismatch["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
    let r = c.json("POST", DEPLOYS, &mismatch);
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "Deployment.apps \"api\" is invalid: spec.template.metadata.labels: Invalid value: {\"app\":\"other\"}: `selector` does not match template `labels`"
    );

    let r = c.send(
        "POST",
        DEPLOYS,
        Some(("application/json", "{not json".into())),
    );
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    let r = c.get(&format!("{DEPLOYS}/nope"));
    let want = status(
        404,
        "NotFound",
        "deployments.apps \"nope\" not found",
        Some(json!({"name": "nope", "group": "apps", "kind": "deployments"})),
    );
    assert_eq!((r.status, r.json()), (404, want));
}

#[test]
fn lists_are_ordered_filtered_and_never_null() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    let empty = c.get(DEPLOYS).json();
    assert_eq!(empty["items"], json!([]));
    assert_eq!(empty["kind"], "DeploymentList");
    assert_eq!(empty["apiVersion"], "apps/v1");
    for name in ["web", "api", "db"] {
        let mut d = deployment(name, "x:1");
        d["metadata"]["labels"]["tier"] = if name == "db" { "back" } else { "front" }.into();
        assert_eq!(c.json("POST", DEPLOYS, &d).status, 201);
    }
    let list = c.get(DEPLOYS).json();
    assert_eq!(
        list["metadata"]["resourceVersion"].as_str().unwrap(),
        kube.resource_version()
    );
    let names: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["api", "db", "web"]);
    assert!(list["items"][0].get("kind").is_none() && list["items"][0].get("apiVersion").is_none());

    let names_for = |sel: &str| -> Vec<String> {
        let r = c.get(&format!("{DEPLOYS}?labelSelector={sel}"));
        assert_eq!(r.status, 200, "{sel}: {}", r.text);
        r.json()["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names_for("app.kubernetes.io%2Fmanaged-by%3Dworkload-manager"),
        ["api", "db", "web"]
    );
    assert_eq!(names_for("tier%3D%3Dfront"), ["api", "web"]);
    assert_eq!(names_for("tier!%3Dfront"), ["db"]);
    assert_eq!(names_for("app+in+(web,db)"), ["db", "web"]);
    assert_eq!(names_for("app%20notin%20(web)"), ["api", "db"]);
    assert_eq!(names_for("tier,!missing"), ["api", "db", "web"]);
    assert_eq!(names_for("!tier"), Vec::<String>::new());

    let r = c.get(&format!("{DEPLOYS}?labelSelector=app+in+web"));
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (400, Some("BadRequest"))
    );
}

#[test]
fn put_follows_resource_version_and_generation_rules() {
    let kube = FakeKube::builder()
        .controller_delay(Duration::from_secs(3600))
        .start();
    let c = Client::new(&kube);
    let d = create(&c, "web");
    let path = format!("{DEPLOYS}/web");

    // No-op: nothing changes, not even the resourceVersion.
    let same = c.json("PUT", &path, &d).json();
    assert_eq!(rv(&same), rv(&d));

    let mut labelled = same.clone();
    labelled["metadata"]["labels"]["extra"] = "1".into();
    let labelled = c.json("PUT", &path, &labelled).json();
    assert_eq!(labelled["metadata"]["generation"], 1);
    assert!(rv(&labelled).parse::<u64>().unwrap() > rv(&d).parse::<u64>().unwrap());

    let mut annotated = labelled.clone();
    annotated["metadata"]["annotations"] = json!({"note": "x"});
    let annotated = c.json("PUT", &path, &annotated).json();
    assert_eq!(annotated["metadata"]["generation"], 2);

    let mut scaled = annotated.clone();
    scaled["spec"]["replicas"] = 3.into();
    scaled["status"] = json!({"replicas": 99});
    let scaled = c.json("PUT", &path, &scaled).json();
    assert_eq!(scaled["metadata"]["generation"], 3);
    assert_eq!(
        scaled["status"],
        json!({}),
        "the main endpoint ignores status"
    );

    let r = c.json("PUT", &path, &annotated);
    let why = "Operation cannot be fulfilled on deployments.apps \"web\": the object has been modified; please apply your changes to the latest version and try again";
    let details = json!({"name": "web", "group": "apps", "kind": "deployments"});
    assert_eq!(
        (r.status, r.json()),
        (409, status(409, "Conflict", why, Some(details)))
    );

    let mut unconditional = scaled.clone();
    unconditional["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    unconditional["spec"]["replicas"] = 2.into();
    assert_eq!(c.json("PUT", &path, &unconditional).status, 200);

    let r = c.json(
        "PUT",
        &format!("{DEPLOYS}/absent"),
        &deployment("absent", "x:1"),
    );
    assert_eq!(r.status, 404);
    let r = c.json("PUT", &path, &deployment("other", "x:1"));
    let msg = "the name of the object (other) does not match the name on the URL (web)";
    assert_eq!(
        (r.status, r.json()),
        (400, status(400, "BadRequest", msg, None))
    );

    let mut new_selector = kube.deployment("web").unwrap();
    new_selector["spec"]["selector"]["matchLabels"]["x"] = "y".into();
    new_selector["spec"]["template"]["metadata"]["labels"]["x"] = "y".into();
    let r = c.json("PUT", &path, &new_selector);
    assert_eq!(r.status, 422);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .ends_with("field is immutable"),
        "{}",
        r.text
    );
}

#[test]
fn merge_strategic_and_json_patches() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    let mut d = deployment("web", "x:1");
    d["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "side", "image": "s:1"}));
    assert_eq!(c.json("POST", DEPLOYS, &d).status, 201);
    let path = format!("{DEPLOYS}/web");

    let smp =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x:2"}]}}}});
    let r = c.patch(&path, SMP, &smp).json();
    let cs = r["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!((cs.len(), cs[0]["image"].as_str()), (2, Some("x:2")));
    assert_eq!(r["metadata"]["generation"], 2);

    let r = c.patch(&path, MERGE, &smp).json();
    let cs = r["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    assert_eq!(cs.len(), 1, "merge patch replaces lists whole");
    assert_eq!(
        cs[0]["terminationMessagePath"], "/dev/termination-log",
        "defaults reapplied"
    );

    let jp = json!([{"op": "replace", "path": "/spec/replicas", "value": 4}]);
    let r = c.patch(&path, "application/json-patch+json", &jp);
    assert_eq!(
        (r.status, r.json()["spec"]["replicas"].as_i64()),
        (200, Some(4))
    );
    let failing = json!([{"op": "test", "path": "/spec/replicas", "value": 5}]);
    let r = c.patch(&path, "application/json-patch+json", &failing);
    let want = status(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        Some(json!({})),
    );
    assert_eq!((r.status, r.json()), (422, want));

    let r = c.patch(&path, "application/json", &json!({}));
    let msg = "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml";
    assert_eq!(
        (r.status, r.json()),
        (415, status(415, "UnsupportedMediaType", msg, None))
    );

    let r = c.patch(&format!("{path}?force=true"), MERGE, &json!({}));
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["message"], "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch");
    assert_eq!(
        c.patch(&format!("{DEPLOYS}/absent"), MERGE, &json!({}))
            .status,
        404
    );
}

#[test]
fn server_side_apply_tracks_owners() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    let path = format!("{DEPLOYS}/web");
    let wm = format!("{path}?fieldManager=workload-manager");

    let r = c.patch(&path, APPLY, &deployment("web", "x:1"));
    let want = status(
        422,
        "Invalid",
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
        Some(json!({"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [
            {"reason": "FieldValueRequired", "message": "Required value: is required for apply patch", "field": "fieldManager"}]})),
    );
    assert_eq!((r.status, r.json()), (422, want));

    let mut cfg = deployment("web", "x:1");
    cfg["spec"]["replicas"] = 2.into();
    let created = c.patch(&wm, APPLY, &cfg);
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    let mf = &created["metadata"]["managedFields"][0];
    assert_eq!(
        (mf["manager"].as_str(), mf["operation"].as_str()),
        (Some("workload-manager"), Some("Apply"))
    );
    assert!(
        mf["fieldsV1"]["f:spec"]
            .get("f:revisionHistoryLimit")
            .is_none(),
        "defaults are not owned"
    );

    let again = c.patch(&wm, APPLY, &cfg);
    assert_eq!((again.status, rv(&again.json())), (200, rv(&created)));

    // Someone else edits replicas; applying another value conflicts.
    let edit = c.patch(
        &format!("{path}?fieldManager=kubectl-edit"),
        MERGE,
        &json!({"spec": {"replicas": 5}}),
    );
    assert_eq!(edit.status, 200);
    let edit_time = edit.json()["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "kubectl-edit")
        .unwrap()["time"]
        .as_str()
        .unwrap()
        .to_string();
    let r = c.patch(&wm, APPLY, &cfg);
    let who = format!("\"kubectl-edit\" using apps/v1 at {edit_time}");
    let want = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "reason": "Conflict", "code": 409,
        "message": format!("Apply failed with 1 conflict: conflict with {who}: .spec.replicas"),
        "details": {"causes": [{"reason": "FieldManagerConflict", "message": format!("conflict with {who}"), "field": ".spec.replicas"}]}});
    assert_eq!((r.status, r.json()), (409, want));

    // Sending the other manager's value shares the field: no conflict.
    let mut shared = cfg.clone();
    shared["spec"]["replicas"] = 5.into();
    assert_eq!(c.patch(&wm, APPLY, &shared).status, 200);

    let forced = c.patch(&format!("{wm}&force=true"), APPLY, &cfg).json();
    assert_eq!(forced["spec"]["replicas"], 2);

    // Leaving fields out removes them (replicas falls back to its default).
    let mut two = deployment("web", "x:1");
    two["spec"]["template"]["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "side", "image": "s:1"}));
    let r = c.patch(&format!("{wm}&force=true"), APPLY, &two).json();
    assert_eq!(
        r["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(r["spec"]["replicas"], 1);
    let r = c.patch(&wm, APPLY, &deployment("web", "x:1")).json();
    assert_eq!(
        r["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let mut bad = deployment("web", "x:1");
    bad["metadata"]["managedFields"] = json!([]);
    assert_eq!(c.patch(&wm, APPLY, &bad).status, 400);
}

#[test]
fn delete_answers_by_propagation_policy() {
    let kube = FakeKube::builder()
        .controller_delay(Duration::from_secs(3600))
        .start();
    let c = Client::new(&kube);
    let d = create(&c, "web");
    let r = c.json(
        "DELETE",
        &format!("{DEPLOYS}/web"),
        &json!({"propagationPolicy": "Background"}),
    );
    let want = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {"name": "web", "group": "apps", "kind": "deployments", "uid": d["metadata"]["uid"]}});
    assert_eq!((r.status, r.json()), (200, want));
    let r = c.send("DELETE", &format!("{DEPLOYS}/web"), None);
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (404, Some("NotFound"))
    );

    create(&c, "fg");
    let r = c.send(
        "DELETE",
        &format!("{DEPLOYS}/fg?propagationPolicy=Foreground"),
        None,
    );
    let obj = r.json();
    assert_eq!((r.status, obj["kind"].as_str()), (200, Some("Deployment")));
    assert_eq!(obj["metadata"]["finalizers"], json!(["foregroundDeletion"]));
    assert!(obj["metadata"]["deletionTimestamp"].is_string());
    kube.settle();
    assert!(kube.deployment("fg").is_none());

    create(&c, "pre");
    let r = c.json(
        "DELETE",
        &format!("{DEPLOYS}/pre"),
        &json!({"preconditions": {"uid": "wrong"}}),
    );
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (409, Some("Conflict"))
    );
}

#[test]
fn status_subresource_keeps_spec_and_generation() {
    let kube = FakeKube::builder()
        .controller_delay(Duration::from_secs(3600))
        .start();
    let c = Client::new(&kube);
    let mut d = create(&c, "web");
    d["status"] = json!({"observedGeneration": 1, "replicas": 1});
    d["spec"]["replicas"] = 9.into();
    let r = c.json("PUT", &format!("{DEPLOYS}/web/status"), &d).json();
    assert_eq!(r["status"]["replicas"], 1);
    assert_eq!(r["spec"]["replicas"], 1);
    assert_eq!(r["metadata"]["generation"], 1);
    assert_eq!(
        c.get(&format!("{DEPLOYS}/web/status")).json()["status"]["replicas"],
        1
    );
}

#[test]
fn leases_need_resource_versions_and_keep_micro_time() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                 "acquireTime": "2025-01-01T10:00:00.123456Z", "renewTime": "2025-01-01T10:00:00.123456Z"}});
    let created = c.json("POST", LEASES, &lease);
    assert_eq!(created.status, 201);
    let created = created.json();
    assert_eq!(created["spec"]["renewTime"], "2025-01-01T10:00:00.123456Z");
    assert!(created["metadata"].get("generation").is_none());

    let path = format!("{LEASES}/leader");
    let r = c.json("PUT", &path, &lease);
    let msg = "leases.coordination.k8s.io \"leader\" is invalid: metadata.resourceVersion: Invalid value: 0: must be specified for an update";
    let want = status(
        422,
        "Invalid",
        msg,
        Some(
            json!({"name": "leader", "group": "coordination.k8s.io", "kind": "leases",
        "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: 0: must be specified for an update", "field": "metadata.resourceVersion"}]}),
        ),
    );
    assert_eq!((r.status, r.json()), (422, want));

    let mut renewed = created.clone();
    renewed["spec"]["renewTime"] = "2025-01-01T10:00:05.000001Z".into();
    let r = c.json("PUT", &path, &renewed);
    assert_eq!(
        (r.status, r.json()["spec"]["renewTime"].as_str()),
        (200, Some("2025-01-01T10:00:05.000001Z"))
    );
    let r = c.json("PUT", &path, &renewed);
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (409, Some("Conflict"))
    );

    let mut other = lease.clone();
    other["metadata"]["name"] = "other".into();
    assert_eq!(
        c.json("PUT", &format!("{LEASES}/other"), &other).status,
        201
    );
    assert_eq!(c.get(&path).json()["spec"]["holderIdentity"], "a");
    assert!(kube.lease("other").is_some());
}

#[test]
fn a_lease_touched_by_another_writer_conflicts_with_its_holder() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    assert!(!kube.touch_lease("leader"), "no Lease yet");
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15,
                 "renewTime": "2025-01-01T10:00:00.000000Z"}});
    let created = c.json("POST", LEASES, &lease).json();
    assert!(kube.touch_lease("leader"));
    let now = kube.lease("leader").unwrap();
    assert_ne!(
        now["metadata"]["resourceVersion"],
        created["metadata"]["resourceVersion"]
    );
    assert_eq!(now["spec"], created["spec"], "only metadata changed");
    let path = format!("{LEASES}/leader");
    let r = c.json("PUT", &path, &created);
    assert_eq!(
        (r.status, r.json()["reason"].as_str()),
        (409, Some("Conflict"))
    );
    // Read again, the holder renews.
    let again = c.get(&path).json();
    assert_eq!(c.json("PUT", &path, &again).status, 200);
}

#[test]
fn discovery_serves_what_kubectl_needs() {
    let kube = FakeKube::start();
    let c = Client::new(&kube);
    assert_eq!(c.get("/version").json()["gitVersion"], "v1.32.0");
    assert_eq!(c.get("/api").json()["versions"], json!(["v1"]));
    let groups = c.get("/apis").json();
    let names: Vec<&str> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["apps", "coordination.k8s.io"]);
    let apps = c.get("/apis/apps/v1").json();
    assert_eq!(apps["resources"][0]["name"], "deployments");
    assert_eq!(apps["resources"][0]["shortNames"], json!(["deploy"]));
    assert_eq!(
        c.get("/apis/coordination.k8s.io/v1").json()["resources"][0]["kind"],
        "Lease"
    );
    assert_eq!(c.get("/openapi/v2").status, 404);
}

#[test]
fn controller_completes_healthy_rollouts_and_fails_broken_ones() {
    let kube = FakeKube::builder()
        .controller_delay(Duration::from_millis(20))
        .progress_deadline(Duration::from_millis(300))
        .start();
    let c = Client::new(&kube);
    create(&c, "web");
    let done = || rollout_complete(&kube.deployment("web").unwrap()) == Ok(true);
    assert!(wait_until(Duration::from_secs(10), done));
    let d = kube.deployment("web").unwrap();
    assert_eq!(d["status"]["availableReplicas"], 1);
    assert_eq!(d["status"]["observedGeneration"], 1);
    let conds = d["status"]["conditions"].as_array().unwrap();
    assert_eq!(conds[0]["type"], "Available");
    assert_eq!(conds[0]["reason"], "MinimumReplicasAvailable");
    assert_eq!(conds[1]["reason"], "NewReplicaSetAvailable");
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "1"
    );

    kube.mark_broken_image("x:broken");
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "image": "x:broken"}]}}}});
    assert_eq!(c.patch(&format!("{DEPLOYS}/web"), SMP, &patch).status, 200);
    let failed = || rollout_complete(&kube.deployment("web").unwrap()).is_err();
    assert!(wait_until(Duration::from_secs(10), failed));
    let d = kube.deployment("web").unwrap();
    let progressing = &d["status"]["conditions"][1];
    assert_eq!(
        (
            progressing["status"].as_str(),
            progressing["reason"].as_str()
        ),
        (Some("False"), Some("ProgressDeadlineExceeded"))
    );
    assert_eq!(d["status"]["updatedReplicas"], 1);
    assert_eq!(d["status"]["availableReplicas"], 1, "the old pod stays");
    assert_eq!(
        d["metadata"]["generation"], 2,
        "controller writes do not bump generation"
    );
}

#[test]
fn settle_observes_changes_without_waiting() {
    let kube = FakeKube::builder()
        .controller_delay(Duration::from_secs(3600))
        .start();
    let c = Client::new(&kube);
    create(&c, "web");
    assert_eq!(
        rollout_complete(&kube.deployment("web").unwrap()),
        Ok(false)
    );
    kube.settle();
    assert_eq!(rollout_complete(&kube.deployment("web").unwrap()), Ok(true));
    let seeded = kube.put_deployment_raw("helm", deployment("seeded", "y:1"));
    assert_eq!(seeded["metadata"]["managedFields"][0]["manager"], "helm");
    let status = kube.set_deployment_status("seeded", json!({"observedGeneration": 1}));
    assert_eq!(status["status"], json!({"observedGeneration": 1}));
}
