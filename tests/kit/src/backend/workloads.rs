//! A node's desired workloads and what it reports back about them:
//! `GET /v1/nodes/{address}/workloads` (with an ETag per desired list and
//! `304` for `If-None-Match`) and
//! `PUT /v1/nodes/{address}/workloads/{name}/version`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use serde_json::{json, Value};

use super::errors::{bad_request, ApiError};
use super::state::State;
use crate::net::http::{Request, Response};
use crate::net::time::parse_rfc3339;

/// One node's desired list.
#[derive(Debug, Clone, Default)]
pub(crate) struct Desired {
    /// (name, version) in the order the test set them.
    pub workloads: Vec<(String, String)>,
    /// Quoted, as sent in `ETag`.
    pub etag: String,
}

impl Desired {
    pub fn new(workloads: Vec<(String, String)>, generation: u64) -> Desired {
        let mut h = DefaultHasher::new();
        workloads.hash(&mut h);
        Desired {
            etag: format!("\"{generation}-{:016x}\"", h.finish()),
            workloads,
        }
    }
}

/// One accepted `PUT …/workloads/{name}/version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedVersion {
    /// The `{address}` of the path, lower-cased.
    pub node: String,
    pub workload: String,
    pub version: String,
    /// `appliedAt` as sent.
    pub applied_at: String,
}

/// The node's desired list (empty for a node the test never set).
pub(crate) fn desired(st: &State, node: &str) -> Desired {
    st.desired
        .get(node)
        .cloned()
        .unwrap_or_else(|| Desired::new(Vec::new(), 0))
}

/// Whether `If-None-Match` (a list of ETags, or `*`) names `etag`.
fn none_match_hits(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t == etag)
}

/// `GET /v1/nodes/{node}/workloads`.
pub(crate) fn get(st: &State, node: &str, req: &Request) -> Response {
    let d = desired(st, node);
    if req
        .header("if-none-match")
        .is_some_and(|h| none_match_hits(h, &d.etag))
    {
        return Response::new(304, Vec::new()).with_header("ETag", &d.etag);
    }
    let list: Vec<Value> = d
        .workloads
        .iter()
        .map(|(name, version)| json!({"name": name, "version": version}))
        .collect();
    Response::json(200, &json!({ "workloads": list })).with_header("ETag", &d.etag)
}

/// `PUT /v1/nodes/{node}/workloads/{workload}/version`.
pub(crate) fn put_version(
    st: &mut State,
    node: &str,
    workload: &str,
    req: &Request,
) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| bad_request(format!("the body is not JSON: {e}")))?;
    let obj = body
        .as_object()
        .ok_or_else(|| bad_request("the body must be a JSON object"))?;
    let version = obj
        .get("version")
        .and_then(Value::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| bad_request("version must be a non-empty string"))?;
    let applied_at = obj
        .get("appliedAt")
        .and_then(Value::as_str)
        .filter(|t| parse_rfc3339(t).is_some())
        .ok_or_else(|| bad_request("appliedAt must be an RFC 3339 date-time string"))?;
    st.applied.push(AppliedVersion {
        node: node.to_string(),
        workload: workload.to_string(),
        version: version.to_string(),
        applied_at: applied_at.to_string(),
    });
    Ok(Response::new(204, Vec::new()))
}
