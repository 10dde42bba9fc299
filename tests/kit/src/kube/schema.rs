//! What the fake knows of the built-in types' schema: which lists are
//! associative (merged by a key by strategic merge patch and tracked per
//! element by server-side apply), keyed as in `k8s.io/api/core/v1/types.go`.

/// The merge key of a list field, by its field name; `None` for an atomic list.
///
/// Deployments and Leases only contain these lists where the field name alone
/// decides the key. Container ports are keyed by `containerPort` (apply's
/// real key adds `protocol`, which the fake leaves out).
pub(crate) fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => Some("name"),
        "ports" => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        "volumeDevices" => Some("devicePath"),
        "hostAliases" => Some("ip"),
        "conditions" => Some("type"),
        _ => None,
    }
}
