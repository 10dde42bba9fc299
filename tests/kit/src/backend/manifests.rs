//! Workload manifests: `GET /v1/workloads/{name}/versions/{version}/manifest`
//! answers the apps/v1 Deployment the test registered (404 otherwise), a
//! manifest fault turns it into another kind or namespace, and
//! [`sample_manifest`] builds a small valid Deployment.

use serde_json::{json, Value};

use super::errors::{not_found, ApiError};
use super::faults::Rewrite;
use super::state::State;
use crate::net::http::Response;

/// A minimal valid apps/v1 Deployment named `name` running `image`: one
/// replica, selector and pod labels `app: <name>`, one container named
/// `name`, no namespace (the manager decides it).
pub fn sample_manifest(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]}
            }
        }
    })
}

/// `GET /v1/workloads/{name}/versions/{version}/manifest`.
pub(crate) fn get(
    st: &State,
    name: &str,
    version: &str,
    rewrite: Option<&Rewrite>,
) -> Result<Response, ApiError> {
    let mut manifest = st
        .manifests
        .get(&(name.to_string(), version.to_string()))
        .cloned()
        .ok_or_else(|| not_found(format!("no manifest for workload {name} version {version}")))?;
    if let (Some(rewrite), Some(obj)) = (rewrite, manifest.as_object_mut()) {
        match rewrite {
            Rewrite::Kind(kind) => {
                obj.insert("apiVersion".into(), json!("v1"));
                obj.insert("kind".into(), json!(kind));
            }
            Rewrite::Namespace(ns) => {
                let meta = obj.entry("metadata").or_insert_with(|| json!({}));
                if !meta.is_object() {
                    *meta = json!({});
                }
                meta["namespace"] = json!(ns);
            }
        }
    }
    Ok(Response::json(200, &manifest))
}
