//! The update check: self-update from the version file in S3.

use super::{Context, Done, Job, Step};
use crate::kube::Deployment;
use crate::reconcile::{self, Rollout};
use crate::scheduler::Next;
use crate::state::Outcome;

/// How soon the manager looks at its own rollout again after starting one.
pub const UPDATE_RECHECK: std::time::Duration = std::time::Duration::from_secs(10);
/// Past the Deployment's progress deadline, how long the manager still
/// waits for the controller's verdict before rolling back on its own.
pub const UPDATE_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Update check: reads the version file from S3 and, when it names a newer
/// release, patches the image of the manager's own container; then watches
/// that rollout and rolls back a release that does not become available,
/// recording it as rejected on the Deployment (see `update.rs` for the
/// rules, the README's "Self-update" for the story).
#[derive(Default)]
pub(super) struct UpdateCheck {
    phase: UpdatePhase,
}

#[derive(Default)]
enum UpdatePhase {
    /// Read the file (or, while a rollout of ours is pending, the Deployment).
    #[default]
    Start,
    /// Read the Deployment, knowing the latest version.
    Read(crate::update::Version),
    /// Send this patch; then the run ends with `Done`.
    Patch {
        ops: serde_json::Value,
        done: Done,
        pending: Option<crate::state::PendingUpdate>,
    },
}

impl Job for UpdateCheck {
    fn step(&mut self, cx: &mut Context<'_>) -> Step {
        let s3 = match cx.s3 {
            None => {
                return Step::Done(Done {
                    outcome: Outcome::Skipped,
                    detail: "self-update is off: WM_UPDATE_S3_BUCKET is not set".to_string(),
                    next: Next::Regular,
                })
            }
            Some(Err(e)) => return Done::failed(e.clone(), None),
            Some(Ok(s3)) => s3,
        };
        match std::mem::take(&mut self.phase) {
            UpdatePhase::Start if cx.state.self_update.is_some() => match Self::own(cx) {
                Ok(own) => self.watch(cx, own),
                Err(step) => step,
            },
            UpdatePhase::Start => match s3.fetch() {
                Err(e) => Done::failed(format!("{}: {e}", s3.name()), None),
                Ok(body) => match crate::update::parse_file(&body) {
                    Err(e) => Done::failed(format!("{}: {e}", s3.name()), None),
                    Ok(latest) => {
                        self.phase = UpdatePhase::Read(latest);
                        Step::Continue
                    }
                },
            },
            UpdatePhase::Read(latest) => self.decide(cx, latest),
            UpdatePhase::Patch { ops, done, pending } => {
                let name = &cx.config.self_deployment;
                match cx.kube.json_patch(name, &ops, cx.now) {
                    Ok(_) => {
                        cx.state.self_update = pending;
                        if done.outcome == Outcome::Error {
                            log::warn!("{}", done.detail);
                        } else {
                            log::info!("{}", done.detail);
                        }
                        Step::Done(done)
                    }
                    Err(e) => {
                        Done::failed(format!("patching Deployment {name}: {e}"), e.retry_after())
                    }
                }
            }
        }
    }
}

/// The manager's own Deployment as read, with its container's index and image.
pub(super) struct Own {
    deployment: serde_json::Value,
    index: usize,
    image: String,
    rollout: Rollout,
}

impl UpdateCheck {
    /// Reads the own Deployment, or says why not.
    fn own(cx: &mut Context<'_>) -> Result<Own, Step> {
        let name = &cx.config.self_deployment;
        let d = match cx.kube.get_raw(name, cx.now) {
            Ok(Some(d)) => d,
            Ok(None) => {
                return Err(Done::failed(
                    format!("the manager's own Deployment {name} is not in namespace {} (WM_SELF_DEPLOYMENT)", cx.config.namespace),
                    None,
                ))
            }
            Err(e) => return Err(Done::failed(format!("reading Deployment {name}: {e}"), e.retry_after())),
        };
        match crate::update::own_container(&d, &cx.config.self_container) {
            Ok((index, image)) => Ok(Own {
                rollout: rollout_of(&d),
                deployment: d,
                index,
                image,
            }),
            Err(e) => Err(Done::failed(
                format!("Deployment {name}: {e} (WM_SELF_CONTAINER)"),
                None,
            )),
        }
    }

    fn decide(&mut self, cx: &mut Context<'_>, latest: crate::update::Version) -> Step {
        use crate::update::{decide, image_patch, rejected_on, running, Decision};
        let own = match Self::own(cx) {
            Ok(own) => own,
            Err(step) => return step,
        };
        let running = running();
        // A newer release already in the Deployment whose rollout has not
        // finished: ours from before a restart. Watch it.
        if let Some(target) = release_of(&own.image) {
            if target > running && own.rollout != Rollout::Complete {
                match crate::update::rollback_image(&own.image, &running) {
                    Ok(from) => {
                        cx.state.self_update = Some(crate::state::PendingUpdate {
                            version: target,
                            from_image: from,
                            to_image: own.image.clone(),
                            started: cx.now,
                        });
                        return self.watch(cx, own);
                    }
                    Err(e) => return Done::failed(e, None),
                }
            }
        }
        let rejected = rejected_on(&own.deployment);
        match decide(&running, &latest, rejected.as_ref(), &own.image) {
            Err(e) => Done::failed(format!("Deployment {}: {e}", cx.config.self_deployment), None),
            Ok(Decision::UpToDate { latest }) => Done::ok(format!("up to date: running {running}, latest release {latest}")),
            Ok(Decision::Rejected { version }) => Done::ok(format!(
                "release {version} was rolled back before; waiting for a newer one (running {running})"
            )),
            Ok(Decision::Update { version, .. }) if own.rollout == Rollout::Complete && is_release(&own.image, &version) => Done::ok(format!(
                "Deployment {} runs release {version}; this instance ({running}) is about to be replaced",
                cx.config.self_deployment
            )),
            Ok(Decision::Update { version, image: to }) => {
                let ops = image_patch(&own.deployment, own.index, &cx.config.self_container, &own.image, &to, None);
                self.phase = UpdatePhase::Patch {
                    done: Done {
                        outcome: Outcome::Ok,
                        detail: format!("updating from {running} to {version}: image {} -> {to}", own.image),
                        next: Next::Recheck(UPDATE_RECHECK),
                    },
                    pending: Some(crate::state::PendingUpdate {
                        version,
                        from_image: own.image,
                        to_image: to,
                        started: cx.now,
                    }),
                    ops,
                };
                Step::Continue
            }
        }
    }

    /// Follows the rollout in `cx.state.self_update` (one this manager started).
    fn watch(&mut self, cx: &mut Context<'_>, own: Own) -> Step {
        let Some(pending) = cx.state.self_update.clone() else {
            return Done::ok("no rollout of ours to watch".to_string());
        };
        if own.image != pending.to_image {
            cx.state.self_update = None;
            return Done::ok(format!(
                "the rollout to {} was replaced by image {}; not watching it any more",
                pending.version, own.image
            ));
        }
        let deadline = own
            .deployment
            .pointer("/spec/progressDeadlineSeconds")
            .and_then(serde_json::Value::as_u64)
            .map_or(
                std::time::Duration::from_secs(600),
                std::time::Duration::from_secs,
            )
            + UPDATE_GRACE;
        let overdue = cx.now.saturating_duration_since(pending.started) >= deadline;
        match own.rollout {
            Rollout::Complete => {
                cx.state.self_update = None;
                Done::ok(format!(
                    "release {} is available; this instance hands over and stops",
                    pending.version
                ))
            }
            Rollout::Failed => self.roll_back(
                cx,
                &own,
                pending,
                "its rollout exceeded the progress deadline",
            ),
            _ if overdue => {
                self.roll_back(cx, &own, pending, "it did not become available in time")
            }
            _ => Step::Done(Done {
                outcome: Outcome::Ok,
                detail: format!(
                    "rolling out release {}: waiting for the new pod to become ready",
                    pending.version
                ),
                next: Next::Recheck(UPDATE_RECHECK),
            }),
        }
    }

    fn roll_back(
        &mut self,
        cx: &mut Context<'_>,
        own: &Own,
        pending: crate::state::PendingUpdate,
        why: &str,
    ) -> Step {
        let ops = crate::update::image_patch(
            &own.deployment,
            own.index,
            &cx.config.self_container,
            &pending.to_image,
            &pending.from_image,
            Some(&pending.version),
        );
        self.phase = UpdatePhase::Patch {
            ops,
            done: Done {
                outcome: Outcome::Error,
                detail: format!(
                    "release {} rolled back: {why}; back on image {}, and {} is not tried again",
                    pending.version, pending.from_image, pending.version
                ),
                next: Next::Regular,
            },
            pending: None,
        };
        Step::Continue
    }
}

/// The release an image's tag names, if it names one.
fn release_of(image: &str) -> Option<crate::update::Version> {
    let tag = crate::update::ImageRef::parse(image).ok()?.tag?;
    crate::update::Version::parse(&tag).ok()
}

/// Whether `image` is tagged with `version`.
fn is_release(image: &str, version: &crate::update::Version) -> bool {
    release_of(image).as_ref() == Some(version)
}

/// The rollout state of a Deployment read as JSON.
fn rollout_of(d: &serde_json::Value) -> Rollout {
    serde_json::from_value::<Deployment>(d.clone())
        .map_or(Rollout::Progressing, |d| reconcile::rollout(&d))
}
