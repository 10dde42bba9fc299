//! Routing: the base path, authentication (401 before anything else), the
//! four endpoints of the contract with their methods (405 otherwise), the
//! node in the path checked against the signer (403), JSON bodies (415),
//! and every failure as the backend's JSON error.

use super::errors::{self, ApiError};
use super::faults::Rewrite;
use super::health;
use super::manifests;
use super::state::Shared;
use super::workloads;
use crate::net::http::{percent_decode_utf8, Request, Response};

/// The answer to an authenticated-or-not request (`auth` from
/// [`super::auth::authenticate`]); `rewrite` is a pending manifest fault.
pub(crate) fn handle(
    shared: &Shared,
    req: &Request,
    auth: &Result<String, String>,
    rewrite: Option<&Rewrite>,
) -> Response {
    dispatch(shared, req, auth, rewrite).unwrap_or_else(|e| e.response())
}

/// Only `method` is allowed on this route.
fn allow(req: &Request, method: &str) -> Result<(), ApiError> {
    if req.method == method {
        Ok(())
    } else {
        Err(errors::method_not_allowed(&req.method, method))
    }
}

/// The path's `{address}` must be the signer's (case-insensitively).
fn same_node(path_address: &str, signer: &str) -> Result<String, ApiError> {
    let node = path_address.to_ascii_lowercase();
    if node == signer {
        Ok(node)
    } else {
        Err(errors::forbidden(format!(
            "the request is signed by {signer}, not by node {path_address}"
        )))
    }
}

fn json_body(req: &Request) -> Result<(), ApiError> {
    match req.media_type().as_deref() {
        Some("application/json") => Ok(()),
        _ => Err(errors::unsupported_media_type(req.header("content-type"))),
    }
}

fn dispatch(
    shared: &Shared,
    req: &Request,
    auth: &Result<String, String>,
    rewrite: Option<&Rewrite>,
) -> Result<Response, ApiError> {
    let signer = auth.as_ref().map_err(errors::unauthorized)?;
    let not_found = || errors::not_found(format!("no such resource: {}", req.path));
    let rest = req
        .path
        .strip_prefix(shared.cfg.base_path.as_str())
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(not_found)?;
    let segs: Vec<String> = rest
        .split('/')
        .map(|s| percent_decode_utf8(s, false))
        .collect::<Option<_>>()
        .ok_or_else(|| errors::bad_request("the path has an invalid percent-escape"))?;
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match segs.as_slice() {
        ["v1", "nodes", address, "workloads"] => {
            allow(req, "GET")?;
            let node = same_node(address, signer)?;
            Ok(workloads::get(&shared.lock(), &node, req))
        }
        ["v1", "nodes", address, "workloads", name, "version"] => {
            allow(req, "PUT")?;
            let node = same_node(address, signer)?;
            json_body(req)?;
            workloads::put_version(&mut shared.lock(), &node, name, req)
        }
        ["v1", "nodes", address, "health"] => {
            allow(req, "POST")?;
            let node = same_node(address, signer)?;
            json_body(req)?;
            health::post(&mut shared.lock(), &node, req)
        }
        ["v1", "workloads", name, "versions", version, "manifest"] => {
            allow(req, "GET")?;
            manifests::get(&shared.lock(), name, version, rewrite)
        }
        _ => Err(not_found()),
    }
}
