//! The deployment manifests in manifests/, as `kubectl kustomize manifests`
//! renders them: RBAC is exactly what the code calls, and namespaced; the pod
//! meets Pod Security "restricted"; a rollout never leaves the node without a
//! manager; every variable is one the README documents, and the real binary
//! accepts the configuration they give it; probes, Service and NetworkPolicy
//! reach the API port; the manager's own Deployment never carries the
//! ownership label a sync prunes by; the Dockerfile agrees with the pod.
//!
//! Rendering needs the real kubectl: tests that need it are skipped (with a
//! message) where it is absent, except under CI=true, where that is a
//! failure. `KUBECTL` names another kubectl (Debian's 1.20, with kustomize
//! v2, renders the same). `.ci/validate.sh` checks the same files against the
//! Kubernetes API schemas.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::Value;
use wm_testkit::proc::TEST_KEY;

const BIN: &str = env!("CARGO_BIN_EXE_workload-manager");
/// The namespace, and the name of the Deployment, container, ServiceAccount,
/// Role, RoleBinding, Service and NetworkPolicy.
const NAME: &str = "workload-manager";
/// The ClusterRole (get on nodes) and its binding.
const NODE_READER: &str = "workload-manager-node-reader";
const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// WM_HTTP_TIMEOUT's default, in seconds: the longest the main loop (which
/// answers the probes) can be inside one outbound call.
const HTTP_TIMEOUT_S: u64 = 10;
/// How long the manager spends delivering reports after SIGTERM, in seconds.
const FLUSH_BUDGET_S: u64 = 3;
/// A pod name as the downward API would give it.
const POD_NAME: &str = "workload-manager-7d9c6b5f4-x2k8q";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifests() -> PathBuf {
    root().join("manifests")
}

fn yaml_docs(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{what}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// A file of manifests/ holding one object.
fn file_object(file: &str) -> Value {
    let text = fs::read_to_string(manifests().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
    let mut docs = yaml_docs(&text, file);
    assert_eq!(docs.len(), 1, "{file} should hold exactly one object");
    docs.remove(0)
}

/// What `kubectl kustomize manifests` renders; None where kubectl is absent
/// (outside CI), after saying the calling test is skipped.
fn rendered() -> Option<&'static [Value]> {
    static RENDERED: OnceLock<Option<Vec<Value>>> = OnceLock::new();
    let kubectl = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
    let objects = RENDERED.get_or_init(|| {
        let out = match Command::new(&kubectl)
            .arg("kustomize")
            .arg(manifests())
            .output()
        {
            Ok(out) => out,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
            Err(e) => panic!("cannot run {kubectl}: {e}"),
        };
        assert!(
            out.status.success(),
            "{kubectl} kustomize manifests failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("UTF-8 output");
        Some(yaml_docs(&text, "kubectl kustomize output"))
    });
    if objects.is_none() {
        wm_testkit::proc::skip_outside_ci(&format!(
            "{kubectl} is not installed (set KUBECTL to use another)"
        ));
    }
    objects.as_deref()
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
}

fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    find(objects, kind, name).unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

fn deployment(objects: &[Value]) -> &Value {
    object(objects, "Deployment", NAME)
}

fn pod_spec(objects: &[Value]) -> &Value {
    &deployment(objects)["spec"]["template"]["spec"]
}

/// The manager's container (WM_SELF_CONTAINER's default name).
fn container(objects: &[Value]) -> &Value {
    let pod = pod_spec(objects);
    let containers = pod["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "one container: {containers:?}");
    assert_eq!(containers[0]["name"], NAME);
    &containers[0]
}

fn array(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn strings(v: &Value) -> BTreeSet<String> {
    array(v)
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("a string label").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether every label of `selector` is on `target`.
fn selects(selector: &Value, target: &BTreeMap<String, String>) -> bool {
    let selector = labels(selector);
    !selector.is_empty() && selector.iter().all(|(k, v)| target.get(k) == Some(v))
}

/// The container port a probe or Service names (by name or number).
fn resolve_port(container: &Value, port: &Value) -> u64 {
    let ports = array(&container["ports"]);
    match port {
        Value::String(name) => ports
            .iter()
            .find(|p| p["name"] == name.as_str())
            .and_then(|p| p["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("no container port named {name}")),
        Value::Number(n) => {
            let n = n.as_u64().expect("a port number");
            assert!(
                ports.iter().any(|p| p["containerPort"] == n),
                "{n} is not a container port"
            );
            n
        }
        other => panic!("not a port: {other}"),
    }
}

/// The variables of the README's Configuration table.
fn documented_variables() -> BTreeSet<String> {
    let readme = fs::read_to_string(root().join("README.md")).expect("README.md");
    let section = readme
        .split("\n## Configuration\n")
        .nth(1)
        .expect("README has a Configuration section");
    let section = section.split("\n## ").next().unwrap();
    let mut names = BTreeSet::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = line.split('|').nth(1).unwrap();
        for (i, part) in first_cell.split('`').enumerate() {
            if i % 2 == 1 {
                names.insert(part.to_string());
            }
        }
    }
    for must in [
        "NODE_SYSTEM_ENDPOINT",
        "NODE_PRIVATE_KEY_FILE",
        "POD_NAME",
        "WM_STATE_DIR",
    ] {
        assert!(
            names.contains(must),
            "README table parsed wrongly: {names:?}"
        );
    }
    names
}

/// The manager's environment as the kubelet would set it: the envFrom
/// sources (rendered ConfigMaps and Secrets; an optional one that is not
/// rendered is skipped), then env entries over them; downward-API fields
/// filled in.
fn environment(objects: &[Value]) -> BTreeMap<String, String> {
    let c = container(objects);
    let mut env = BTreeMap::new();
    for source in array(&c["envFrom"]) {
        assert!(source.get("prefix").is_none(), "no prefixes: {source}");
        let (kind, reference) = if source.get("configMapRef").is_some() {
            ("ConfigMap", &source["configMapRef"])
        } else {
            ("Secret", &source["secretRef"])
        };
        let name = reference["name"].as_str().expect("a name");
        match find(objects, kind, name) {
            Some(o) => {
                assert_eq!(kind, "ConfigMap", "a Secret must never be rendered: {name}");
                for (k, v) in o["data"].as_object().into_iter().flatten() {
                    env.insert(k.clone(), v.as_str().expect("a string").to_string());
                }
            }
            None => assert_eq!(
                reference["optional"], true,
                "{kind} {name} is not rendered, so its envFrom must be optional"
            ),
        }
    }
    for e in array(&c["env"]) {
        let name = e["name"].as_str().expect("a name").to_string();
        let value = if let Some(v) = e.get("value") {
            v.as_str().expect("a string value").to_string()
        } else {
            match e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                Some("metadata.name") => POD_NAME.to_string(),
                Some("metadata.namespace") => NAME.to_string(),
                Some("spec.nodeName") => "edge-1".to_string(),
                _ => panic!("unexpected env source: {e}"),
            }
        };
        env.insert(name, value);
    }
    env
}

fn env_entry<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    array(&container(objects)["env"])
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the container's env"))
}

fn volume<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    array(&pod_spec(objects)["volumes"])
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no volume {name}"))
}

/// The container's mount whose path `path` is or lies under.
fn mount_of<'a>(objects: &'a [Value], path: &str) -> &'a Value {
    array(&container(objects)["volumeMounts"])
        .iter()
        .find(|m| {
            let mount = m["mountPath"].as_str().unwrap().trim_end_matches('/');
            path == mount || path.starts_with(&format!("{mount}/"))
        })
        .unwrap_or_else(|| panic!("{path} is on no volume mount"))
}

#[test]
fn renders_exactly_the_expected_objects_all_in_the_managers_namespace() {
    let Some(objects) = rendered() else {
        return;
    };
    let got: BTreeSet<(String, String)> = objects
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_string(),
                o["metadata"]["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let want: BTreeSet<(String, String)> = [
        ("Namespace", NAME),
        ("ServiceAccount", NAME),
        ("Role", NAME),
        ("RoleBinding", NAME),
        ("ConfigMap", "workload-manager-config"),
        ("Deployment", NAME),
        ("Service", NAME),
        ("NetworkPolicy", NAME),
        ("ClusterRole", NODE_READER),
        ("ClusterRoleBinding", NODE_READER),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(got, want);
    assert_eq!(objects.len(), want.len(), "an object is rendered twice");
    for o in objects {
        let kind = o["kind"].as_str().unwrap();
        if kind.starts_with("Cluster") {
            assert_eq!(
                o["metadata"]["name"], NODE_READER,
                "nothing cluster-wide but the Node reader: {kind}"
            );
            assert!(o["metadata"].get("namespace").is_none(), "{kind}");
        } else if kind != "Namespace" {
            assert_eq!(
                o["metadata"]["namespace"], NAME,
                "{kind} in another namespace"
            );
        }
    }
}

#[test]
fn role_grants_exactly_what_the_code_calls_in_its_own_namespace() {
    let Some(objects) = rendered() else {
        return;
    };
    let role = object(objects, "Role", NAME);
    let mut granted = BTreeSet::new();
    for rule in array(&role["rules"]) {
        assert!(rule.get("resourceNames").is_none(), "{rule}");
        assert!(rule.get("nonResourceURLs").is_none(), "{rule}");
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.insert(format!("{resource}.{group}: {verb}"));
                }
            }
        }
    }
    let mut want = BTreeSet::new();
    for verb in ["get", "list", "create", "patch", "delete"] {
        want.insert(format!("deployments.apps: {verb}"));
    }
    for verb in ["get", "create", "update"] {
        want.insert(format!("leases.coordination.k8s.io: {verb}"));
    }
    want.insert("pods.: list".to_string());
    assert_eq!(granted, want);

    // Cluster-wide: get on nodes, nothing else.
    let cluster_role = object(objects, "ClusterRole", NODE_READER);
    assert_eq!(
        cluster_role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}])
    );
    let cluster_binding = object(objects, "ClusterRoleBinding", NODE_READER);
    assert_eq!(
        cluster_binding["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NODE_READER})
    );
    assert_eq!(
        cluster_binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": NAME, "namespace": NAME}])
    );

    let binding = object(objects, "RoleBinding", NAME);
    assert_eq!(
        binding["roleRef"],
        serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": NAME})
    );
    assert_eq!(
        binding["subjects"],
        serde_json::json!([{"kind": "ServiceAccount", "name": NAME, "namespace": NAME}])
    );

    // The pod runs as that ServiceAccount, with its token mounted.
    let pod = pod_spec(objects);
    assert_eq!(pod["serviceAccountName"], NAME);
    assert_ne!(pod["automountServiceAccountToken"], false);
    assert_ne!(
        object(objects, "ServiceAccount", NAME)["automountServiceAccountToken"],
        false
    );
}

#[test]
fn pod_meets_pod_security_restricted() {
    let Some(objects) = rendered() else {
        return;
    };
    let pod = pod_spec(objects);
    for host in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_ne!(pod[host], true, "{host}");
    }
    let sc = &pod["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532, "a numeric, non-root user");
    assert_eq!(sc["runAsGroup"], 65532);
    assert_eq!(sc["fsGroup"], 65532);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert!(sc.get("sysctls").is_none());

    // Only the volume types "restricted" allows.
    let allowed = [
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    ];
    for v in array(&pod["volumes"]) {
        let types: Vec<&String> = v
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "name")
            .collect();
        assert!(
            types.len() == 1 && allowed.contains(&types[0].as_str()),
            "volume type not allowed by restricted: {v}"
        );
    }

    let mut containers = Vec::new();
    for field in ["initContainers", "containers", "ephemeralContainers"] {
        containers.extend(array(&pod[field]));
    }
    assert_eq!(containers.len(), 1);
    for c in containers {
        let sc = &c["securityContext"];
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{}", c["name"]);
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{}", c["name"]);
        assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
        assert!(
            sc["capabilities"].get("add").is_none(),
            "no capability added"
        );
        assert_ne!(sc["privileged"], true);
        assert_eq!(sc["runAsNonRoot"], true);
        assert_eq!(sc["runAsUser"], 65532);
        assert_eq!(sc["runAsGroup"], 65532);
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
        for p in array(&c["ports"]) {
            assert!(p.get("hostPort").is_none(), "no host port: {p}");
        }
    }
}

#[test]
fn rollout_never_leaves_the_node_without_a_manager() {
    let Some(objects) = rendered() else {
        return;
    };
    let spec = &deployment(objects)["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(spec["strategy"]["type"], "RollingUpdate");
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxSurge"], 1);
    // The manager rolls a self-update back past this deadline.
    assert_eq!(spec["progressDeadlineSeconds"], 300);
    assert_eq!(spec["revisionHistoryLimit"], 3);
    let grace = spec["template"]["spec"]["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        grace > FLUSH_BUDGET_S,
        "the last report delivery after SIGTERM needs {FLUSH_BUDGET_S} s"
    );
    assert!(
        selects(
            &spec["selector"]["matchLabels"],
            &labels(&spec["template"]["metadata"]["labels"])
        ),
        "the selector matches the pod template"
    );
}

#[test]
fn every_variable_is_documented_and_the_key_comes_from_the_secret() {
    let Some(objects) = rendered() else {
        return;
    };
    let documented = documented_variables();
    let env = environment(objects);
    for name in env.keys() {
        assert!(
            documented.contains(name),
            "{name} is not in the README's Configuration table"
        );
    }
    // Every name in any manifest file, comments included (WM_UPDATE_S3_* is a prefix).
    for entry in fs::read_dir(manifests()).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        for token in
            text.split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        {
            if !["WM_", "NODE_", "AWS_", "POD_"]
                .iter()
                .any(|p| token.starts_with(p))
            {
                continue;
            }
            let known = if token.ends_with('_') {
                documented.iter().any(|d| d.starts_with(token))
            } else {
                documented.contains(token)
            };
            assert!(
                known,
                "{}: {token} is not in the README's table",
                path.display()
            );
        }
    }

    // POD_NAME from the downward API (its Lease holder identity).
    assert_eq!(
        env_entry(objects, "POD_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "metadata.name"
    );

    // NODE_NAME from the downward API (its Node's conditions in reports).
    assert_eq!(
        env_entry(objects, "NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );

    // The key: only as a file, from the Secret, mounted read-only.
    assert!(
        !env.contains_key("NODE_PRIVATE_KEY"),
        "the key never goes into the environment"
    );
    let key_file = env["NODE_PRIVATE_KEY_FILE"].as_str();
    let mount = mount_of(objects, key_file);
    assert_eq!(mount["readOnly"], true);
    let secret = &volume(objects, mount["name"].as_str().unwrap())["secret"];
    assert_eq!(secret["secretName"], "workload-manager-node-key");
    assert_ne!(
        secret["optional"], true,
        "the pod must not start without its key"
    );
    let inside = key_file
        .strip_prefix(mount["mountPath"].as_str().unwrap().trim_end_matches('/'))
        .unwrap()
        .trim_start_matches('/');
    assert!(
        array(&secret["items"])
            .iter()
            .any(|i| i["key"] == "key" && i["path"] == inside),
        "{key_file} is the Secret's key `key`"
    );
    // 0440: root owns it, group 65532 (fsGroup) reads it, nobody else.
    assert_eq!(secret["defaultMode"], 0o440);

    // The state directory: a writable emptyDir of bounded size.
    let state = env["WM_STATE_DIR"].as_str();
    let mount = mount_of(objects, state);
    assert_eq!(mount["mountPath"], state);
    assert_ne!(mount["readOnly"], true);
    let empty_dir = &volume(objects, mount["name"].as_str().unwrap())["emptyDir"];
    assert!(
        empty_dir["sizeLimit"].is_string(),
        "emptyDir with a sizeLimit"
    );
    assert!(empty_dir.get("medium").is_none(), "on disk, not in memory");

    // Listens on all addresses (the Service reaches it) on the API port.
    assert_eq!(env["WM_LISTEN"], "0.0.0.0:8080");
    assert_eq!(resolve_port(container(objects), &Value::from("http")), 8080);
    // Names of its own Deployment and container: the defaults, which match.
    assert!(!env.contains_key("WM_SELF_DEPLOYMENT") && !env.contains_key("WM_SELF_CONTAINER"));
    assert!(env["NODE_SYSTEM_ENDPOINT"].starts_with("https://"));
}

#[test]
fn the_binary_accepts_the_configuration_the_manifests_give_it() {
    let Some(objects) = rendered() else {
        return;
    };
    // Every volume mount becomes a directory here; the key file holds the test key.
    let dir = std::env::temp_dir().join(format!("wm-manifests-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    let mut mounts = Vec::new();
    for m in array(&container(objects)["volumeMounts"]) {
        let local = dir.join(m["name"].as_str().unwrap());
        fs::create_dir_all(&local).unwrap();
        mounts.push((m["mountPath"].as_str().unwrap().to_string(), local));
    }
    let remap = |value: &str| -> String {
        for (mount, local) in &mounts {
            if let Some(rest) = value.strip_prefix(mount.as_str()) {
                if rest.is_empty() || rest.starts_with('/') {
                    return format!("{}{rest}", local.display());
                }
            }
        }
        value.to_string()
    };
    let mut env: BTreeMap<String, String> = environment(objects)
        .into_iter()
        .map(|(k, v)| (k, remap(&v)))
        .collect();
    let key_file = PathBuf::from(&env["NODE_PRIVATE_KEY_FILE"]);
    assert!(key_file.starts_with(&dir), "the key file is on a mount");
    fs::write(&key_file, format!("{TEST_KEY}\n")).unwrap();

    let print_config = |env: &BTreeMap<String, String>| {
        Command::new(BIN)
            .arg("--print-config")
            .env_clear()
            .envs(env)
            .env("KUBERNETES_SERVICE_HOST", "10.43.0.1")
            .env("KUBERNETES_SERVICE_PORT", "443")
            .output()
            .expect("runs the manager")
    };
    let out = print_config(&env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stdout}{stderr}");
    for line in [
        format!("POD_NAME={POD_NAME}"),
        "WM_LISTEN=0.0.0.0:8080".to_string(),
        format!("WM_STATE_DIR={}", dir.join("state").display()),
        "NODE_ADDRESS=0x".to_string(),
    ] {
        assert!(
            stdout.lines().any(|l| l.starts_with(&line)),
            "{line} in\n{stdout}"
        );
    }

    // The settings commented out in configmap.yaml, uncommented, and the S3
    // example Secret's keys: still a valid configuration.
    let text = fs::read_to_string(manifests().join("configmap.yaml")).unwrap();
    let mut examples = 0;
    for line in text.lines() {
        let Some(rest) = line.trim_start().strip_prefix('#') else {
            continue;
        };
        let rest = rest.trim_start();
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        if name.is_empty() || !rest[name.len()..].starts_with(':') {
            continue;
        }
        let pair: BTreeMap<String, String> = serde_norway::from_str(rest).unwrap();
        env.extend(pair);
        examples += 1;
    }
    assert!(
        examples >= 10 && env.contains_key("WM_UPDATE_S3_BUCKET"),
        "{examples} commented settings found in configmap.yaml"
    );
    let s3 = file_object("s3-credentials.example.yaml");
    for (k, v) in s3["stringData"].as_object().unwrap() {
        env.insert(k.clone(), v.as_str().unwrap().to_string());
    }
    let out = print_config(&env);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("WM_UPDATE_S3_BUCKET=releases"), "{stdout}");

    // The example Secret's placeholder, applied unchanged, stops the manager
    // at start, naming the variable.
    let example = file_object("node-key.example.yaml");
    fs::write(&key_file, example["stringData"]["key"].as_str().unwrap()).unwrap();
    let out = print_config(&env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("NODE_PRIVATE_KEY_FILE"), "{stderr}");

    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn probes_service_and_network_policy_reach_the_api_port() {
    let Some(objects) = rendered() else {
        return;
    };
    let c = container(objects);
    let pod_labels = labels(&deployment(objects)["spec"]["template"]["metadata"]["labels"]);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(resolve_port(c, &get["port"]), 8080, "{probe}");
        assert!(
            get["scheme"].is_null() || get["scheme"] == "HTTP",
            "{probe}"
        );
        // The main loop answers probes, possibly after one outbound call.
        let timeout = c[probe]["timeoutSeconds"].as_u64().unwrap_or(1);
        assert!(
            timeout > HTTP_TIMEOUT_S,
            "{probe}: timeoutSeconds {timeout} must exceed WM_HTTP_TIMEOUT ({HTTP_TIMEOUT_S} s)"
        );
    }
    assert_eq!(c["livenessProbe"]["periodSeconds"], 10);
    assert_eq!(c["livenessProbe"]["failureThreshold"], 3);
    assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
    if let Some(startup) = c.get("startupProbe") {
        assert_eq!(startup["httpGet"]["path"], "/healthz");
    }

    let service = object(objects, "Service", NAME);
    assert!(service["spec"]["type"].is_null() || service["spec"]["type"] == "ClusterIP");
    assert!(selects(&service["spec"]["selector"], &pod_labels));
    let ports = array(&service["spec"]["ports"]);
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], "http");
    assert_eq!(ports[0]["port"], 8080);
    assert_eq!(resolve_port(c, &ports[0]["targetPort"]), 8080);

    let policy = &object(objects, "NetworkPolicy", NAME)["spec"];
    assert!(selects(&policy["podSelector"]["matchLabels"], &pod_labels));
    // Ingress only: outbound (backend, S3, API server) stays open.
    assert_eq!(policy["policyTypes"], serde_json::json!(["Ingress"]));
    assert_eq!(
        policy["ingress"],
        serde_json::json!([{
            "from": [{"namespaceSelector": {}}],
            "ports": [{"protocol": "TCP", "port": 8080}]
        }])
    );
}

#[test]
fn nothing_carries_the_ownership_label_so_no_sync_can_prune_the_manager() {
    let Some(objects) = rendered() else {
        return;
    };
    for o in objects {
        assert!(
            !labels(&o["metadata"]["labels"]).contains_key(MANAGED_BY),
            "{} {} carries {MANAGED_BY}",
            o["kind"],
            o["metadata"]["name"]
        );
    }
    let d = deployment(objects);
    for place in [
        &d["spec"]["template"]["metadata"]["labels"],
        &d["spec"]["selector"]["matchLabels"],
    ] {
        assert!(!labels(place).contains_key(MANAGED_BY));
    }
    assert!(!labels(&d["metadata"]["labels"]).contains_key("workload-manager/workload"));
    // WM_SELF_DEPLOYMENT / WM_SELF_CONTAINER defaults, for self-update.
    assert_eq!(d["metadata"]["name"], NAME);
    assert_eq!(container(objects)["name"], NAME);
}

#[test]
fn image_is_this_versions_release_tag() {
    let version = env!("CARGO_PKG_VERSION");
    let kustomization = file_object("kustomization.yaml");
    let images = array(&kustomization["images"]);
    assert_eq!(images.len(), 1);
    assert_eq!(images[0]["name"], "registry.example/workload-manager");
    assert_eq!(
        images[0]["newTag"], version,
        "tagged like releases: the bare version"
    );
    let Some(objects) = rendered() else {
        return;
    };
    assert_eq!(
        container(objects)["image"],
        format!("registry.example/workload-manager:{version}")
    );
    let resources = &container(objects)["resources"];
    assert_eq!(resources["requests"]["cpu"], "5m");
    assert_eq!(resources["requests"]["memory"], "16Mi");
    assert!(
        resources["limits"]["memory"].is_string(),
        "memory is limited"
    );
}

#[test]
fn example_secrets_are_not_applied_and_hold_no_key() {
    let kustomization = file_object("kustomization.yaml");
    for resource in strings(&kustomization["resources"]) {
        assert!(
            !resource.contains("example"),
            "{resource} is applied by default"
        );
    }
    assert!(kustomization.get("secretGenerator").is_none());
    let key = file_object("node-key.example.yaml");
    assert_eq!(key["kind"], "Secret");
    assert_eq!(key["metadata"]["name"], "workload-manager-node-key");
    let placeholder = key["stringData"]["key"].as_str().unwrap();
    let hex = placeholder.trim().trim_start_matches("0x");
    assert!(
        !(hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit())),
        "the example must not hold a usable key"
    );
    let s3 = file_object("s3-credentials.example.yaml");
    assert_eq!(s3["metadata"]["name"], "workload-manager-s3");
    let keys: BTreeSet<&str> = s3["stringData"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"])
    );
    // No file in manifests/ holds something shaped like a private key.
    for entry in fs::read_dir(manifests()).unwrap() {
        let path = entry.unwrap().path();
        let text = fs::read_to_string(&path).unwrap();
        for token in text.split(|c: char| !c.is_ascii_hexdigit()) {
            assert!(token.len() < 64, "{}: a 64-hex-digit value", path.display());
        }
    }
}

#[test]
fn dockerfile_agrees_with_the_pod() {
    let text = fs::read_to_string(root().join("Dockerfile")).expect("Dockerfile");
    let instructions: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let last_from = instructions
        .iter()
        .rev()
        .find(|l| l.starts_with("FROM "))
        .unwrap();
    assert_eq!(*last_from, "FROM scratch");
    let deploy = file_object("deployment.yaml");
    let sc = &deploy["spec"]["template"]["spec"]["securityContext"];
    let user = format!("USER {}:{}", sc["runAsUser"], sc["runAsGroup"]);
    assert!(instructions.contains(&user.as_str()), "{user}");
    let port = &deploy["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"];
    assert!(instructions.contains(&format!("EXPOSE {port}").as_str()));
    assert!(instructions.contains(&r#"ENTRYPOINT ["/workload-manager"]"#));
    assert!(text.contains("cargo build --release --locked"));

    // The pinned toolchain is at least the package's rust-version.
    let pinned = instructions
        .iter()
        .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
        .expect("ARG RUST_VERSION=");
    let manifest = fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let msrv = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"');
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap()).collect() };
    assert!(
        parse(pinned) >= parse(msrv),
        "Rust {pinned} < rust-version {msrv}"
    );

    let ignore = fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    for needed in ["src", "Cargo.toml", "Cargo.lock", "tests/kit", "tests"] {
        assert!(
            !ignore.lines().any(|l| l.trim() == needed),
            "{needed} is needed by the build"
        );
    }
    assert!(Path::new(&root().join("src/vendor/tiny_http/Cargo.toml")).exists());
}
