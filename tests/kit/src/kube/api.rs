//! Request handling after framing: authentication (bearer token),
//! authorization (the manager's RBAC: a namespaced Role over Deployments,
//! Leases and, read-only, Pods; a ClusterRole with `get` on Nodes), discovery,
//! and dispatch to the resource handlers. Pods and Nodes are only read
//! through HTTP (the fake's controllers write them).
//!
//! Authorization comes before routing, as in the real API server: what the
//! ServiceAccount may not do is 403 Forbidden (e.g. `list nodes`, `watch
//! pods`, `delete pods`, `pods/log`), what it may do but is no route is 404
//! (a Node under `/namespaces/{ns}/`), as the v1.36 control plane answered.

use serde_json::Value;

use super::deployments::DEPLOYMENTS;
use super::discovery;
use super::faults::status_response;
use super::leases::LEASES;
use super::nodes::NODES;
use super::pods::PODS;
use super::resource::{self, ResourceType, WriteCtx};
use super::selector::Selector;
use super::state::Shared;
use super::status::{self, ApiError};
use crate::net::http::{parse_query, percent_decode_utf8, Request, Response};

/// A request for a resource, as the API server's `RequestInfo` sees it.
struct Target<'a> {
    group: &'a str,
    version: &'a str,
    namespace: Option<&'a str>,
    resource: &'a str,
    name: Option<&'a str>,
    subresource: Option<&'a str>,
}

/// Splits a resource path; `None` for non-resource paths.
fn target<'a>(segs: &'a [String]) -> Option<Target<'a>> {
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (group, version, rest) = match s.as_slice() {
        ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        // `/namespaces/{ns}` alone is the namespace object itself.
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(*ns), rest),
        _ => (None, rest),
    };
    let (resource, name, subresource) = match rest {
        [r] => (*r, None, None),
        [r, n] => (*r, Some(*n), None),
        [r, n, sub] => (*r, Some(*n), Some(*sub)),
        _ => return None,
    };
    Some(Target {
        group,
        version,
        namespace,
        resource,
        name,
        subresource,
    })
}

/// The RBAC verb of a request.
fn verb(method: &str, has_name: bool, watch: bool) -> String {
    match (method, has_name) {
        ("GET", _) if watch => "watch",
        ("GET", true) => "get",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        (other, _) => return other.to_ascii_lowercase(),
    }
    .into()
}

/// Whether the ServiceAccount may `verb` the target: the manager's Role in
/// its namespace (Deployments and their status, Leases; `get` and `list` on
/// Pods) and its ClusterRole (`get` on Nodes, which a ClusterRoleBinding
/// grants in every namespace too), unless the nodes grant was removed.
fn authorized(t: &Target, verb: &str, namespace: &str, nodes_denied: bool) -> bool {
    let in_namespace = t.namespace == Some(namespace);
    match (t.group, t.resource, t.subresource) {
        ("apps", "deployments", None | Some("status")) => in_namespace,
        ("coordination.k8s.io", "leases", None) => in_namespace,
        ("", "pods", None) => in_namespace && matches!(verb, "get" | "list"),
        ("", "nodes", None) => !nodes_denied && verb == "get",
        _ => false,
    }
}

/// Who sent `req`: `Some("")` for the ServiceAccount's token, the label of
/// an extra token, `None` for no valid token.
pub(crate) fn client(shared: &Shared, req: &Request) -> Option<String> {
    let sent = req
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))?
        .trim();
    let st = shared.lock();
    if sent == st.token {
        return Some(String::new());
    }
    st.extra_tokens
        .iter()
        .find(|(_, t)| t == sent)
        .map(|(label, _)| label.clone())
}

/// Answers one request (faults already handled).
pub(crate) fn handle(shared: &Shared, req: &Request) -> Response {
    match respond(shared, req) {
        Ok(r) => r,
        Err(e) => status_response(&e),
    }
}

fn respond(shared: &Shared, req: &Request) -> Result<Response, ApiError> {
    let cfg = &shared.cfg;
    if !cfg.plain_http && client(shared, req).is_none() {
        return Err(status::unauthorized());
    }
    let query = parse_query(&req.query).map_err(|e| status::bad_request(&e))?;
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let segs: Vec<String> = req
        .path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_decode_utf8(s, false))
        .collect::<Option<_>>()
        .ok_or_else(|| status::bad_request("invalid path encoding"))?;
    let seg_refs: Vec<&str> = segs.iter().map(String::as_str).collect();

    let Some(t) = target(&segs) else {
        if req.method != "GET" {
            return Err(status::method_not_allowed(&req.method));
        }
        if let Some(doc) = discovery::document(&seg_refs) {
            return Ok(Response::json(200, &doc));
        }
        return match seg_refs.as_slice() {
            ["healthz" | "livez" | "readyz"] => Ok(Response {
                status: 200,
                headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
                body: b"ok".to_vec(),
            }),
            // Discovery and OpenAPI paths are open to every authenticated user.
            ["api" | "apis" | "openapi", ..] => Err(status::not_found_path()),
            _ => Err(status::forbidden(
                "",
                "",
                "",
                &format!("User {:?} cannot get path {:?}", cfg.user, req.path),
            )),
        };
    };

    let watch = matches!(param("watch"), Some("true" | "1"));
    let verb = verb(&req.method, t.name.is_some(), watch);
    let nodes_denied = shared.lock().nodes_denied;
    if !authorized(&t, &verb, &cfg.namespace, nodes_denied) {
        let resource = match t.subresource {
            Some(sub) => format!("{}/{sub}", t.resource),
            None => t.resource.to_string(),
        };
        let scope = match t.namespace {
            Some(ns) => format!("in the namespace {ns:?}"),
            None => "at the cluster scope".to_string(),
        };
        let reason = format!(
            "User {:?} cannot {verb} resource {resource:?} in API group {:?} {scope}",
            cfg.user, t.group
        );
        return Err(status::forbidden(
            t.group,
            t.resource,
            t.name.unwrap_or(""),
            &reason,
        ));
    }
    let rt: &ResourceType = match (t.group, t.resource) {
        ("apps", "deployments") => &DEPLOYMENTS,
        ("coordination.k8s.io", "leases") => &LEASES,
        ("", "pods") => &PODS,
        ("", "nodes") => &NODES,
        _ => return Err(status::not_found_path()),
    };
    // A cluster-scoped resource under a namespace (authorized: the
    // ClusterRoleBinding holds in every namespace) is no route.
    if t.version != rt.version || rt.namespaced != t.namespace.is_some() {
        return Err(status::not_found_path());
    }
    if watch {
        return Err(status::method_not_allowed(
            "watch (not supported by this fake)",
        ));
    }

    let manager_param = param("fieldManager");
    let user_agent = req.header("user-agent").unwrap_or("");
    let ua_manager = user_agent.split('/').next().unwrap_or_default();
    let ctx = WriteCtx {
        namespace: &cfg.namespace,
        manager: manager_param.unwrap_or(if ua_manager.is_empty() {
            "unknown"
        } else {
            ua_manager
        }),
        dry_run: param("dryRun") == Some("All"),
        subresource: t.subresource,
    };
    let force = match param("force") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(status::bad_request(&format!(
                "invalid value for force: {other:?} (must be true or false)"
            )))
        }
    };
    let media_type = req.media_type();
    let mt = media_type.as_deref();
    let mut state = shared.lock();
    let store = &mut state.store;
    let reply = match (req.method.as_str(), t.name) {
        ("GET", None) => {
            let selector = Selector::parse(param("labelSelector").unwrap_or(""))
                .map_err(|e| status::bad_request(&e))?;
            Ok((200, resource::list(store, rt, &selector)))
        }
        ("GET", Some(name)) => resource::get(store, rt, name),
        ("POST", None) => resource::create(store, rt, &ctx, mt, &req.body),
        ("PUT", Some(name)) => resource::replace(store, rt, &ctx, name, mt, &req.body),
        ("PATCH", Some(name)) => resource::patch(
            store,
            rt,
            &ctx,
            name,
            mt,
            &req.body,
            manager_param.is_some(),
            force,
        ),
        ("DELETE", Some(name)) if t.subresource.is_none() => {
            resource::delete(store, rt, &ctx, name, &req.body, param("propagationPolicy"))
        }
        (method, _) => Err(status::method_not_allowed(method)),
    };
    let (code, body): (u16, Value) = reply?;
    Ok(Response::json(code, &body))
}
