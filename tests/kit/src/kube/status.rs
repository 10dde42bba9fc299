//! `Status` error bodies, shaped as apimachinery's `errors.go` builds them,
//! and the field errors (`field.Error`) that 422 Invalid carries.

use serde_json::{json, Map, Value};

use super::resource::ResourceType;

/// An error answer: HTTP code, `Status` body, optional `Retry-After`.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub code: u16,
    pub body: Value,
    pub retry_after: Option<u64>,
}

/// `Status` with `status: Failure`; `details` is left out when `None`.
pub(crate) fn failure(code: u16, reason: &str, message: &str, details: Option<Value>) -> ApiError {
    let mut body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        body["details"] = d;
    }
    let retry_after = body["details"]["retryAfterSeconds"].as_u64();
    ApiError {
        code,
        body,
        retry_after,
    }
}

/// `details` naming one object of a resource (`kind` holds the plural resource).
fn object_details(rt: &ResourceType, name: &str) -> Value {
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), name.into());
    }
    if !rt.group.is_empty() {
        d.insert("group".into(), rt.group.into());
    }
    d.insert("kind".into(), rt.resource.into());
    Value::Object(d)
}

pub(crate) fn not_found(rt: &ResourceType, name: &str) -> ApiError {
    let msg = format!("{} \"{name}\" not found", rt.qualified_resource());
    failure(404, "NotFound", &msg, Some(object_details(rt, name)))
}

pub(crate) fn already_exists(rt: &ResourceType, name: &str) -> ApiError {
    let msg = format!("{} \"{name}\" already exists", rt.qualified_resource());
    failure(409, "AlreadyExists", &msg, Some(object_details(rt, name)))
}

/// 409 Conflict; `why` is e.g. "the object has been modified; ...".
pub(crate) fn conflict(rt: &ResourceType, name: &str, why: &str) -> ApiError {
    let msg = format!(
        "Operation cannot be fulfilled on {} \"{name}\": {why}",
        rt.qualified_resource()
    );
    failure(409, "Conflict", &msg, Some(object_details(rt, name)))
}

/// The optimistic-concurrency conflict of a stale `resourceVersion`.
pub(crate) fn stale(rt: &ResourceType, name: &str) -> ApiError {
    conflict(
        rt,
        name,
        "the object has been modified; please apply your changes to the latest version and try again",
    )
}

pub(crate) fn bad_request(message: &str) -> ApiError {
    failure(400, "BadRequest", message, None)
}

pub(crate) fn unauthorized() -> ApiError {
    failure(401, "Unauthorized", "Unauthorized", None)
}

/// 403 in the form the RBAC authorizer's denial takes.
pub(crate) fn forbidden(group: &str, resource: &str, name: &str, reason: &str) -> ApiError {
    let message = match (resource.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {reason}"),
        (false, true) => format!("{} is forbidden: {reason}", qualified(resource, group)),
        (false, false) => format!(
            "{} \"{name}\" is forbidden: {reason}",
            qualified(resource, group)
        ),
    };
    let mut d = Map::new();
    if !name.is_empty() {
        d.insert("name".into(), name.into());
    }
    if !group.is_empty() {
        d.insert("group".into(), group.into());
    }
    if !resource.is_empty() {
        d.insert("kind".into(), resource.into());
    }
    failure(403, "Forbidden", &message, Some(Value::Object(d)))
}

/// `resource.group`, or just `resource` for the core group (as
/// `GroupResource.String`).
pub(crate) fn qualified(resource: &str, group: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

pub(crate) fn not_found_path() -> ApiError {
    failure(
        404,
        "NotFound",
        "the server could not find the requested resource",
        Some(json!({})),
    )
}

pub(crate) fn method_not_allowed(method: &str) -> ApiError {
    failure(
        405,
        "MethodNotAllowed",
        &format!("the server does not allow this method on the requested resource ({method})"),
        Some(json!({})),
    )
}

pub(crate) fn unsupported_media_type(accepted: &[&str]) -> ApiError {
    let msg = format!(
        "the body of the request was in an unknown format - accepted media types include: {}",
        accepted.join(", ")
    );
    failure(415, "UnsupportedMediaType", &msg, None)
}

/// 422 as `NewGenericServerResponse` builds it (e.g. a failed JSON patch op).
pub(crate) fn generic_invalid() -> ApiError {
    failure(
        422,
        "Invalid",
        "the server rejected our request due to an error in our request",
        Some(json!({})),
    )
}

/// One `field.Error`: the field path, the cause reason and the message body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldError {
    field: String,
    reason: &'static str,
    body: String,
}

impl FieldError {
    /// `Required value[: detail]`.
    pub fn required(field: &str, detail: &str) -> FieldError {
        let body = match detail {
            "" => "Required value".to_string(),
            d => format!("Required value: {d}"),
        };
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired",
            body,
        }
    }

    /// `Invalid value: <value>: detail`; `value` is already formatted the
    /// way the API server prints it (JSON since 1.34: `"x"`, `3`, `0`, `{"app":"web"}`).
    pub fn invalid(field: &str, value: String, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid",
            body: format!("Invalid value: {value}: {detail}"),
        }
    }

    /// An invalid string value, quoted as Go's `%q` does.
    pub fn invalid_str(field: &str, value: &str, detail: &str) -> FieldError {
        FieldError::invalid(field, Value::from(value).to_string(), detail)
    }

    /// `Forbidden: detail`.
    pub fn forbidden(field: &str, detail: &str) -> FieldError {
        FieldError {
            field: field.into(),
            reason: "FieldValueForbidden",
            body: format!("Forbidden: {detail}"),
        }
    }

    /// `Unsupported value: "v": supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: &str, supported: &[&str]) -> FieldError {
        let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError {
            field: field.into(),
            reason: "FieldValueNotSupported",
            body: format!(
                "Unsupported value: {value:?}: supported values: {}",
                quoted.join(", ")
            ),
        }
    }
}

/// 422 Invalid: `{qualified_kind} "{name}" is invalid: ...`, details kind `kind`.
pub(crate) fn invalid(
    qualified_kind: &str,
    group: &str,
    kind: &str,
    name: &str,
    errs: &[FieldError],
) -> ApiError {
    let rendered: Vec<String> = errs
        .iter()
        .map(|e| format!("{}: {}", e.field, e.body))
        .collect();
    let joined = match rendered.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    };
    let message = format!("{qualified_kind} \"{name}\" is invalid: {joined}");
    let causes: Vec<Value> = errs
        .iter()
        .map(|e| json!({"reason": e.reason, "message": e.body, "field": e.field}))
        .collect();
    let mut details = Map::new();
    if !name.is_empty() {
        details.insert("name".into(), name.into());
    }
    if !group.is_empty() {
        details.insert("group".into(), group.into());
    }
    details.insert("kind".into(), kind.into());
    details.insert("causes".into(), causes.into());
    failure(422, "Invalid", &message, Some(Value::Object(details)))
}
