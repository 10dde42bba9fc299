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

#[cfg(test)]
mod tests {
    use super::*;

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
