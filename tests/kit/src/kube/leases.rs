//! coordination.k8s.io/v1 Leases: no defaults, no status, no generation;
//! PUT needs a resourceVersion and creates an absent Lease; MicroTime
//! fields are stored exactly as sent.

use serde_json::Value;

use super::resource::ResourceType;
use super::status::FieldError;

pub(crate) static LEASES: ResourceType = ResourceType {
    group: "coordination.k8s.io",
    version: "v1",
    resource: "leases",
    kind: "Lease",
    namespaced: true,
    put_creates: true,
    put_requires_rv: true,
    has_status: false,
    tracks_generation: false,
    defaults: |_| {},
    validate,
};

fn validate(lease: &Value, _old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(d) = lease.pointer("/spec/leaseDurationSeconds") {
        if d.as_i64().is_none_or(|d| d <= 0) {
            errs.push(FieldError::invalid(
                "spec.leaseDurationSeconds",
                d.to_string(),
                "must be greater than 0",
            ));
        }
    }
    if let Some(t) = lease.pointer("/spec/leaseTransitions") {
        if t.as_i64().is_none_or(|t| t < 0) {
            errs.push(FieldError::invalid(
                "spec.leaseTransitions",
                t.to_string(),
                "must be greater than or equal to 0",
            ));
        }
    }
    errs
}
