//! Health reports: `POST /v1/nodes/{address}/health` with 1–100 reports,
//! each checked against the contract's REPORT shape (the whole batch is
//! refused with a 400 naming the first bad field), stored once per `id`
//! (re-sent reports are not counted again), answered `202 {"accepted": N}`.

use serde_json::{json, Map, Value};

use super::errors::{bad_request, ApiError};
use super::state::State;
use crate::net::http::{Request, Response};
use crate::net::time::parse_rfc3339;

/// Most reports in one POST.
pub(crate) const MAX_REPORTS: usize = 100;

const HEALTH: [&str; 5] = [
    "healthy",
    "degraded",
    "unhealthy",
    "unresponsive",
    "unknown",
];
const ROLLOUT: [&str; 6] = [
    "complete",
    "progressing",
    "failed",
    "missing",
    "conflict",
    "invalid",
];

/// One stored report, in arrival order.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredReport {
    /// The `{address}` of the path, lower-cased.
    pub node: String,
    pub id: String,
    /// The report as sent.
    pub report: Value,
}

/// `at.field` of an object, or a message naming it as missing.
fn field<'a>(obj: &'a Map<String, Value>, at: &str, name: &str) -> Result<&'a Value, String> {
    obj.get(name)
        .ok_or_else(|| format!("{at}.{name} is missing"))
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, String> {
    v.as_object()
        .ok_or_else(|| format!("{at} must be an object"))
}

fn string<'a>(obj: &'a Map<String, Value>, at: &str, name: &str) -> Result<&'a str, String> {
    field(obj, at, name)?
        .as_str()
        .ok_or_else(|| format!("{at}.{name} must be a string"))
}

fn nullable_string(obj: &Map<String, Value>, at: &str, name: &str) -> Result<(), String> {
    match field(obj, at, name)? {
        Value::Null | Value::String(_) => Ok(()),
        _ => Err(format!("{at}.{name} must be a string or null")),
    }
}

fn seconds(obj: &Map<String, Value>, at: &str, name: &str) -> Result<(), String> {
    match field(obj, at, name)?.as_f64() {
        Some(n) if n >= 0.0 => Ok(()),
        _ => Err(format!("{at}.{name} must be a non-negative number")),
    }
}

fn timestamp(obj: &Map<String, Value>, at: &str, name: &str, nullable: bool) -> Result<(), String> {
    match field(obj, at, name)? {
        Value::Null if nullable => Ok(()),
        Value::String(s) if parse_rfc3339(s).is_some() => Ok(()),
        _ => Err(format!(
            "{at}.{name} must be an RFC 3339 date-time{}",
            if nullable { " or null" } else { "" }
        )),
    }
}

fn one_of(v: &Value, at: &str, name: &str, allowed: &[&str], nullable: bool) -> Result<(), String> {
    match v {
        Value::Null if nullable => Ok(()),
        Value::String(s) if allowed.contains(&s.as_str()) => Ok(()),
        _ => Err(format!(
            "{at}.{name} must be one of {}{}",
            allowed.join(", "),
            if nullable { " or null" } else { "" }
        )),
    }
}

/// Checks one workload entry of a report.
fn check_workload(w: &Value, at: &str) -> Result<(), String> {
    let obj = object(w, at)?;
    if string(obj, at, "name")?.is_empty() {
        return Err(format!("{at}.name must not be empty"));
    }
    nullable_string(obj, at, "desiredVersion")?;
    nullable_string(obj, at, "deployedVersion")?;
    one_of(field(obj, at, "health")?, at, "health", &HEALTH, false)?;
    nullable_string(obj, at, "message")?;
    timestamp(obj, at, "lastHeartbeatAt", true)?;
    seconds(obj, at, "healthySeconds")?;
    one_of(field(obj, at, "rollout")?, at, "rollout", &ROLLOUT, true)
}

/// Checks one REPORT; its `id` if it has the contract's shape.
fn check_report(r: &Value, at: &str) -> Result<String, String> {
    let obj = object(r, at)?;
    let id = string(obj, at, "id")?;
    if id.is_empty() {
        return Err(format!("{at}.id must not be empty"));
    }
    timestamp(obj, at, "at", false)?;
    seconds(obj, at, "windowSeconds")?;
    let manager_at = format!("{at}.manager");
    let manager = object(field(obj, at, "manager")?, &manager_at)?;
    string(manager, &manager_at, "version")?;
    seconds(manager, &manager_at, "uptimeSeconds")?;
    let workloads = field(obj, at, "workloads")?
        .as_array()
        .ok_or_else(|| format!("{at}.workloads must be an array"))?;
    for (i, w) in workloads.iter().enumerate() {
        check_workload(w, &format!("{at}.workloads[{i}]"))?;
    }
    Ok(id.to_string())
}

/// `POST /v1/nodes/{node}/health`.
pub(crate) fn post(st: &mut State, node: &str, req: &Request) -> Result<Response, ApiError> {
    let body: Value = serde_json::from_slice(&req.body)
        .map_err(|e| bad_request(format!("the body is not JSON: {e}")))?;
    let reports = body
        .as_object()
        .and_then(|o| o.get("reports"))
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("the body must be an object with a reports array"))?;
    if reports.is_empty() || reports.len() > MAX_REPORTS {
        return Err(bad_request(format!(
            "reports must hold 1 to {MAX_REPORTS} reports, not {}",
            reports.len()
        )));
    }
    let ids = reports
        .iter()
        .enumerate()
        .map(|(i, r)| check_report(r, &format!("reports[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map_err(bad_request)?;
    let mut accepted = 0;
    for (id, report) in ids.into_iter().zip(reports) {
        if st.report_ids.insert(id.clone()) {
            accepted += 1;
            st.reports.push(StoredReport {
                node: node.to_string(),
                id,
                report: report.clone(),
            });
        }
    }
    Ok(Response::json(202, &json!({ "accepted": accepted })))
}
