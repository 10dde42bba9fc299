//! The reconcile decision: what to do to make the cluster match the desired
//! state. Pure: it reads plain data and returns actions; the sync job
//! performs them one at a time.
//!
//! It never plans a change to a Deployment without the managed-by label: a
//! desired workload whose name is taken by such a Deployment is a `Conflict`.

use std::collections::BTreeMap;

/// A Deployment in our namespace, as far as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Carries `app.kubernetes.io/managed-by: workload-manager`.
    pub managed: bool,
    /// Its `workload-manager/version` annotation.
    pub version: Option<String>,
    /// `metadata.generation`.
    pub generation: i64,
}

/// What we last applied to a workload, remembered between syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub version: String,
    /// `metadata.generation` the API server answered our apply with.
    pub generation: i64,
}

/// Why an existing Deployment is applied again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The backend wants another version.
    NewVersion,
    /// Its generation moved since our last apply: someone changed it by hand.
    ChangedByHand,
}

/// One step of a reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Not in the cluster: create it from the version's manifest.
    Create { name: String, version: String },
    /// In the cluster and ours, but not as wanted: apply the manifest.
    Apply {
        name: String,
        version: String,
        why: Why,
    },
    /// Ours and no longer desired.
    Delete { name: String },
    /// The name is taken by a Deployment we do not manage: left alone.
    Conflict { name: String },
}

impl Action {
    /// The workload the action is about.
    pub fn name(&self) -> &str {
        match self {
            Action::Create { name, .. }
            | Action::Apply { name, .. }
            | Action::Delete { name }
            | Action::Conflict { name } => name,
        }
    }
}

/// The JSON patch that hands the fields our create (a `POST`, operation
/// `Update`) left owned by us over to our server-side apply: the API server
/// removes a field a newer manifest no longer has only when the applier
/// alone owns it, so without this a field that came with the first version
/// would stay forever. The entry at that index becomes `Apply`, or goes if we
/// already have an `Apply` entry; `test`s make it fail (422) if the list
/// changed since it was read. `None` when there is nothing to hand over.
pub fn ownership_patch(fields: &[crate::kube::ManagedFieldsEntry]) -> Option<serde_json::Value> {
    let ours = |f: &crate::kube::ManagedFieldsEntry, op: &str| {
        f.manager == crate::kube::FIELD_MANAGER && f.operation == op && f.subresource.is_none()
    };
    let i = fields.iter().position(|f| ours(f, "Update"))?;
    let at = format!("/metadata/managedFields/{i}");
    let mut ops = vec![
        serde_json::json!({"op": "test", "path": format!("{at}/manager"), "value": crate::kube::FIELD_MANAGER}),
        serde_json::json!({"op": "test", "path": format!("{at}/operation"), "value": "Update"}),
    ];
    if fields.iter().any(|f| ours(f, "Apply")) {
        ops.push(serde_json::json!({"op": "remove", "path": at}));
    } else {
        ops.push(serde_json::json!({"op": "replace", "path": format!("{at}/operation"), "value": "Apply"}));
    }
    Some(serde_json::Value::Array(ops))
}

/// The actions that make `actual` match `desired`, creations and updates
/// first (in name order), deletions last.
pub fn plan(
    desired: &BTreeMap<String, String>,
    actual: &BTreeMap<String, Observed>,
    applied: &BTreeMap<String, Applied>,
) -> Vec<Action> {
    let mut actions = Vec::new();
    for (name, version) in desired {
        let (name, version) = (name.clone(), version.clone());
        match actual.get(&name) {
            None => actions.push(Action::Create { name, version }),
            Some(o) if !o.managed => actions.push(Action::Conflict { name }),
            Some(o) if o.version.as_ref() != Some(&version) => actions.push(Action::Apply {
                name,
                version,
                why: Why::NewVersion,
            }),
            Some(o) => {
                let moved = applied
                    .get(&name)
                    .is_some_and(|a| a.version == version && a.generation != o.generation);
                if moved {
                    actions.push(Action::Apply {
                        name,
                        version,
                        why: Why::ChangedByHand,
                    });
                }
            }
        }
    }
    for (name, o) in actual {
        if o.managed && !desired.contains_key(name) {
            actions.push(Action::Delete { name: name.clone() });
        }
    }
    actions
}

/// An empty desired list is acted on only when a fetch at least this long
/// after the first that said so still says so.
pub const PRUNE_CONFIRM_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// A prune to empty waiting for its confirmation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingPrune {
    /// When a fetch first said the desired list is empty.
    pub since: std::time::Instant,
    pub since_wall: std::time::SystemTime,
    /// The managed Deployments it would delete.
    pub names: Vec<String>,
}

/// Whether a plan's deletions may go ahead (`true`), given what this fetch
/// said at `now`: a desired list that is empty while managed Deployments
/// exist is a prune to empty, acted on only when a fetch at least
/// [`PRUNE_CONFIRM_AFTER`] after the first one still says so (a backend bug
/// must not wipe a fleet). Any other plan clears a pending prune and goes
/// ahead at once.
pub fn confirm_prune(
    desired_is_empty: bool,
    deletes: &[String],
    pending: &mut Option<PendingPrune>,
    now: std::time::Instant,
    wall: std::time::SystemTime,
) -> bool {
    if !desired_is_empty || deletes.is_empty() {
        *pending = None;
        return true;
    }
    match pending {
        Some(p) if now.saturating_duration_since(p.since) >= PRUNE_CONFIRM_AFTER => {
            *pending = None;
            true
        }
        Some(p) => {
            p.names = deletes.to_vec();
            false
        }
        None => {
            *pending = Some(PendingPrune {
                since: now,
                since_wall: wall,
                names: deletes.to_vec(),
            });
            false
        }
    }
}

/// How a workload's Deployment stands, as the reports say it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rollout {
    Complete,
    Progressing,
    Failed,
    Missing,
    Conflict,
    Invalid,
}

impl Rollout {
    pub fn as_str(self) -> &'static str {
        match self {
            Rollout::Complete => "complete",
            Rollout::Progressing => "progressing",
            Rollout::Failed => "failed",
            Rollout::Missing => "missing",
            Rollout::Conflict => "conflict",
            Rollout::Invalid => "invalid",
        }
    }
}

/// The rollout state by the rules of `kubectl rollout status`.
pub fn rollout(d: &crate::kube::Deployment) -> Rollout {
    let s = &d.status;
    if d.metadata.generation > s.observed_generation {
        return Rollout::Progressing;
    }
    let deadline = s
        .conditions
        .iter()
        .any(|c| c.kind == "Progressing" && c.reason == "ProgressDeadlineExceeded");
    if deadline {
        return Rollout::Failed;
    }
    let wanted = d.spec.replicas.unwrap_or(1);
    if s.updated_replicas < wanted
        || s.replicas > s.updated_replicas
        || s.available_replicas < s.updated_replicas
    {
        Rollout::Progressing
    } else {
        Rollout::Complete
    }
}

/// The label that marks what we own, and the one that names the workload.
pub const LABEL_MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "workload-manager");
pub const LABEL_WORKLOAD: &str = "workload-manager/workload";
/// The annotation that records the applied version.
pub const ANNOTATION_VERSION: &str = "workload-manager/version";
/// Largest manifest accepted, serialized.
pub const MAX_MANIFEST: usize = 256 * 1024;

/// Checks a backend manifest for workload `name` and adds what makes it ours:
/// the namespace, the ownership labels and the version annotation. A manifest
/// for another namespace is refused, never moved into ours.
pub fn prepare(
    name: &str,
    version: &str,
    namespace: &str,
    manifest: &serde_json::Value,
) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    let size = manifest.to_string().len();
    if size > MAX_MANIFEST {
        return Err(format!(
            "manifest is {size} bytes, over the {MAX_MANIFEST}-byte limit"
        ));
    }
    let mut m = manifest.clone();
    let Some(obj) = m.as_object_mut() else {
        return Err("manifest is not a JSON object".into());
    };
    let field = |o: &serde_json::Map<String, Value>, k: &str| {
        o.get(k).and_then(Value::as_str).map(str::to_string)
    };
    if field(obj, "apiVersion").as_deref() != Some("apps/v1")
        || field(obj, "kind").as_deref() != Some("Deployment")
    {
        return Err(format!(
            "manifest is {} {}, not an apps/v1 Deployment",
            field(obj, "apiVersion").unwrap_or_else(|| "(no apiVersion)".into()),
            field(obj, "kind").unwrap_or_else(|| "(no kind)".into())
        ));
    }
    let meta = obj
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    let Some(meta) = meta.as_object_mut() else {
        return Err("metadata is not an object".into());
    };
    match field(meta, "name") {
        Some(n) if n == name => {}
        other => {
            return Err(format!(
                "metadata.name is {other:?}, not the workload name {name:?}"
            ))
        }
    }
    match meta.get("namespace") {
        None | Some(Value::Null) => {}
        Some(Value::String(ns)) if ns == namespace => {}
        Some(other) => {
            return Err(format!(
                "manifest is for namespace {other}, not {namespace:?}"
            ))
        }
    }
    meta.insert("namespace".into(), Value::String(namespace.into()));
    for (key, add) in [
        (
            "labels",
            vec![
                (LABEL_MANAGED_BY.0, LABEL_MANAGED_BY.1),
                (LABEL_WORKLOAD, name),
            ],
        ),
        ("annotations", vec![(ANNOTATION_VERSION, version)]),
    ] {
        let entry = meta
            .entry(key)
            .or_insert_with(|| Value::Object(Default::default()));
        let Some(map) = entry.as_object_mut() else {
            return Err(format!("metadata.{key} is not an object"));
        };
        for (k, v) in add {
            map.insert(k.into(), Value::String(v.into()));
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::{Condition, Deployment, DeploymentSpec, DeploymentStatus, ObjectMeta};
    use serde_json::json;

    #[test]
    fn a_prune_to_empty_waits_for_a_second_fetch_a_minute_later() {
        use std::time::{Duration, Instant, UNIX_EPOCH};
        let t0 = Instant::now();
        let wall = UNIX_EPOCH;
        let names = vec!["api".to_string(), "web".to_string()];
        let mut pending = None;
        assert!(!confirm_prune(true, &names, &mut pending, t0, wall));
        let first = pending.clone().expect("pending");
        assert_eq!((first.since, first.names.clone()), (t0, names.clone()));
        let soon = t0 + PRUNE_CONFIRM_AFTER - Duration::from_millis(1);
        assert!(!confirm_prune(true, &names, &mut pending, soon, wall));
        assert_eq!(
            pending.as_ref().map(|p| p.since),
            Some(t0),
            "the first sighting counts"
        );
        assert!(confirm_prune(
            true,
            &names,
            &mut pending,
            t0 + PRUNE_CONFIRM_AFTER,
            wall
        ));
        assert_eq!(pending, None);
        // A non-empty list in between starts over.
        assert!(!confirm_prune(true, &names, &mut pending, t0, wall));
        assert!(confirm_prune(false, &names[..1], &mut pending, t0, wall));
        assert_eq!(pending, None, "a non-empty list applies at once");
        assert!(!confirm_prune(
            true,
            &names,
            &mut pending,
            t0 + PRUNE_CONFIRM_AFTER,
            wall
        ));
        // Nothing to delete: nothing to confirm.
        assert!(confirm_prune(true, &[], &mut pending, t0, wall));
        assert_eq!(pending, None);
    }

    #[test]
    fn the_create_update_entry_is_handed_to_apply() {
        use crate::kube::ManagedFieldsEntry;
        let e = |manager: &str, operation: &str, sub: Option<&str>| ManagedFieldsEntry {
            manager: manager.into(),
            operation: operation.into(),
            subresource: sub.map(String::from),
        };
        let status = e("kube-controller-manager", "Update", Some("status"));
        let created = e("workload-manager", "Update", None);
        let applied = e("workload-manager", "Apply", None);
        assert_eq!(ownership_patch(&[status.clone(), applied.clone()]), None);
        assert_eq!(ownership_patch(&[e("kubectl", "Update", None)]), None);
        assert_eq!(
            ownership_patch(&[status.clone(), created.clone()]),
            Some(json!([
                {"op": "test", "path": "/metadata/managedFields/1/manager", "value": "workload-manager"},
                {"op": "test", "path": "/metadata/managedFields/1/operation", "value": "Update"},
                {"op": "replace", "path": "/metadata/managedFields/1/operation", "value": "Apply"}
            ]))
        );
        let both = ownership_patch(&[applied, status, created]).unwrap();
        assert_eq!(
            both[2],
            json!({"op": "remove", "path": "/metadata/managedFields/2"})
        );
    }

    fn deployment(generation: i64, replicas: i64, status: DeploymentStatus) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: "web".into(),
                generation,
                ..ObjectMeta::default()
            },
            spec: DeploymentSpec {
                replicas: Some(replicas),
            },
            status,
        }
    }

    fn status(observed: i64, replicas: i64, updated: i64, available: i64) -> DeploymentStatus {
        DeploymentStatus {
            observed_generation: observed,
            replicas,
            updated_replicas: updated,
            ready_replicas: available,
            available_replicas: available,
            conditions: vec![],
        }
    }

    #[test]
    fn rollout_follows_kubectl() {
        assert_eq!(
            rollout(&deployment(2, 2, status(1, 2, 2, 2))),
            Rollout::Progressing,
            "not observed yet"
        );
        assert_eq!(
            rollout(&deployment(2, 2, status(2, 2, 1, 1))),
            Rollout::Progressing,
            "updating"
        );
        assert_eq!(
            rollout(&deployment(2, 2, status(2, 3, 2, 2))),
            Rollout::Progressing,
            "old pods terminating"
        );
        assert_eq!(
            rollout(&deployment(2, 2, status(2, 2, 2, 1))),
            Rollout::Progressing,
            "not yet available"
        );
        assert_eq!(
            rollout(&deployment(2, 2, status(2, 2, 2, 2))),
            Rollout::Complete
        );
        let mut failed = status(2, 2, 1, 1);
        failed.conditions.push(Condition {
            kind: "Progressing".into(),
            status: "False".into(),
            reason: "ProgressDeadlineExceeded".into(),
            message: String::new(),
        });
        assert_eq!(rollout(&deployment(2, 2, failed)), Rollout::Failed);
    }

    #[test]
    fn prepare_makes_a_manifest_ours() {
        let m = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}}, "spec": {"x": 1}});
        let p = prepare("web", "1.4.0", "edge", &m).unwrap();
        assert_eq!(p["metadata"]["namespace"], "edge");
        assert_eq!(
            p["metadata"]["labels"]["app"], "web",
            "the backend's labels stay"
        );
        assert_eq!(
            p["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "workload-manager"
        );
        assert_eq!(p["metadata"]["labels"]["workload-manager/workload"], "web");
        assert_eq!(
            p["metadata"]["annotations"]["workload-manager/version"],
            "1.4.0"
        );
        assert_eq!(p["spec"], json!({"x": 1}), "everything else passes through");
        let same_ns = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "edge"}});
        assert!(prepare("web", "1", "edge", &same_ns).is_ok());
    }

    #[test]
    fn prepare_refuses_what_is_not_a_deployment_of_that_name_here() {
        let cases = [
            json!([]),
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}),
            json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "web"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "db"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "namespace": "kube-system"}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web", "labels": []}}),
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "pad": "x".repeat(MAX_MANIFEST)}),
        ];
        for m in cases {
            let err = prepare("web", "1", "edge", &m).unwrap_err();
            assert!(!err.is_empty());
        }
    }

    fn map<V: Clone>(entries: &[(&str, V)]) -> BTreeMap<String, V> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    fn ours(version: &str, generation: i64) -> Observed {
        Observed {
            managed: true,
            version: Some(version.into()),
            generation,
        }
    }

    fn theirs() -> Observed {
        Observed {
            managed: false,
            version: None,
            generation: 3,
        }
    }

    fn applied(version: &str, generation: i64) -> Applied {
        Applied {
            version: version.into(),
            generation,
        }
    }

    /// What, desired, actual, applied, and the expected plan.
    type Case = (
        &'static str,
        BTreeMap<String, String>,
        BTreeMap<String, Observed>,
        BTreeMap<String, Applied>,
        Vec<Action>,
    );

    #[test]
    fn the_cases() {
        let s = |v: &str| v.to_string();
        let cases: Vec<Case> = vec![
            ("nothing anywhere", map(&[]), map(&[]), map(&[]), vec![]),
            (
                "missing: create",
                map(&[("web", s("1.4.0"))]),
                map(&[]),
                map(&[]),
                vec![Action::Create {
                    name: s("web"),
                    version: s("1.4.0"),
                }],
            ),
            (
                "deleted by hand after we applied it: create again",
                map(&[("web", s("1.4.0"))]),
                map(&[]),
                map(&[("web", applied("1.4.0", 2))]),
                vec![Action::Create {
                    name: s("web"),
                    version: s("1.4.0"),
                }],
            ),
            (
                "version differs: apply",
                map(&[("web", s("1.5.0"))]),
                map(&[("web", ours("1.4.0", 2))]),
                map(&[("web", applied("1.4.0", 2))]),
                vec![Action::Apply {
                    name: s("web"),
                    version: s("1.5.0"),
                    why: Why::NewVersion,
                }],
            ),
            (
                "up to date: nothing",
                map(&[("web", s("1.4.0"))]),
                map(&[("web", ours("1.4.0", 2))]),
                map(&[("web", applied("1.4.0", 2))]),
                vec![],
            ),
            (
                "up to date, applied by an earlier run: nothing",
                map(&[("web", s("1.4.0"))]),
                map(&[("web", ours("1.4.0", 7))]),
                map(&[]),
                vec![],
            ),
            (
                "changed by hand since our apply: apply again",
                map(&[("web", s("1.4.0"))]),
                map(&[("web", ours("1.4.0", 3))]),
                map(&[("web", applied("1.4.0", 2))]),
                vec![Action::Apply {
                    name: s("web"),
                    version: s("1.4.0"),
                    why: Why::ChangedByHand,
                }],
            ),
            (
                "no longer desired: delete",
                map(&[]),
                map(&[("old", ours("1.0.0", 1))]),
                map(&[]),
                vec![Action::Delete { name: s("old") }],
            ),
            (
                "same name, not ours: conflict, untouched",
                map(&[("web", s("1.4.0"))]),
                map(&[("web", theirs())]),
                map(&[]),
                vec![Action::Conflict { name: s("web") }],
            ),
            (
                "not ours and not desired: never deleted",
                map(&[]),
                map(&[("db", theirs())]),
                map(&[]),
                vec![],
            ),
            (
                "an empty desired state removes all of ours and nothing else",
                map(&[]),
                map(&[("a", ours("1", 1)), ("b", theirs()), ("c", ours("2", 4))]),
                map(&[]),
                vec![
                    Action::Delete { name: s("a") },
                    Action::Delete { name: s("c") },
                ],
            ),
            (
                "changes first, deletions last, in name order",
                map(&[("b", s("2")), ("a", s("1"))]),
                map(&[("z", ours("1", 1)), ("b", ours("1", 1))]),
                map(&[]),
                vec![
                    Action::Create {
                        name: s("a"),
                        version: s("1"),
                    },
                    Action::Apply {
                        name: s("b"),
                        version: s("2"),
                        why: Why::NewVersion,
                    },
                    Action::Delete { name: s("z") },
                ],
            ),
        ];
        for (what, desired, actual, applied, want) in cases {
            assert_eq!(plan(&desired, &actual, &applied), want, "{what}");
        }
    }
}
