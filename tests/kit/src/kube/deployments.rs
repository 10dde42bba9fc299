//! apps/v1 Deployments: the API server's defaults (apps/v1 and core/v1
//! `defaults.go`) and the validation rules a client can trip over (names,
//! labels, selector presence, selector/template agreement, immutable
//! selector, containers).

use serde_json::{json, Map, Value};

use super::resource::ResourceType;
use super::selector::Selector;
use super::status::FieldError;
use super::validation;

pub(crate) static DEPLOYMENTS: ResourceType = ResourceType {
    group: "apps",
    version: "v1",
    resource: "deployments",
    kind: "Deployment",
    namespaced: true,
    put_creates: false,
    put_requires_rv: false,
    has_status: true,
    tracks_generation: true,
    defaults,
    validate,
};

/// Sets `key` to `value` if absent.
fn default(obj: &mut Map<String, Value>, key: &str, value: Value) {
    obj.entry(key).or_insert(value);
}

/// `Always` for a `:latest` or missing tag, `IfNotPresent` otherwise (and for digests).
pub(crate) fn default_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn defaults(d: &mut Value) {
    let Some(spec) = d
        .as_object_mut()
        .map(|o| o.entry("spec").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    default(spec, "replicas", 1.into());
    default(spec, "revisionHistoryLimit", 10.into());
    default(spec, "progressDeadlineSeconds", 600.into());
    if let Some(strategy) = spec
        .entry("strategy")
        .or_insert_with(|| json!({}))
        .as_object_mut()
    {
        default(strategy, "type", "RollingUpdate".into());
        if strategy["type"] == "RollingUpdate" {
            if let Some(ru) = strategy
                .entry("rollingUpdate")
                .or_insert_with(|| json!({}))
                .as_object_mut()
            {
                default(ru, "maxUnavailable", "25%".into());
                default(ru, "maxSurge", "25%".into());
            }
        }
    }
    let Some(pod) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    default(pod, "restartPolicy", "Always".into());
    default(pod, "terminationGracePeriodSeconds", 30.into());
    default(pod, "dnsPolicy", "ClusterFirst".into());
    default(pod, "securityContext", json!({}));
    default(pod, "schedulerName", "default-scheduler".into());
    for list in ["initContainers", "containers"] {
        for c in pod
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            default(c, "terminationMessagePath", "/dev/termination-log".into());
            default(c, "terminationMessagePolicy", "File".into());
            default(c, "resources", json!({}));
            let policy = default_pull_policy(c.get("image").and_then(Value::as_str).unwrap_or(""));
            default(c, "imagePullPolicy", policy.into());
            for p in c
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(p) = p.as_object_mut() {
                    default(p, "protocol", "TCP".into());
                }
            }
        }
    }
}

/// A `map[string]string` as the API server (1.34 and later) prints an
/// invalid value: JSON, keys sorted (`{"app":"web"}`).
fn go_map(m: Option<&Value>) -> String {
    m.filter(|v| v.is_object())
        .map_or_else(|| "null".into(), Value::to_string)
}

/// A `v1.LabelSelector` as the API server prints an invalid value: its JSON,
/// fields in struct order, empty ones left out.
fn go_selector(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(l) = sel
        .get("matchLabels")
        .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
    {
        parts.push(format!("\"matchLabels\":{l}"));
    }
    if let Some(e) = sel
        .get("matchExpressions")
        .filter(|e| e.as_array().is_some_and(|a| !a.is_empty()))
    {
        parts.push(format!("\"matchExpressions\":{e}"));
    }
    format!("{{{}}}", parts.join(","))
}

/// Label keys and values of `labels` at `field` (e.g. `metadata.labels`).
fn validate_labels(labels: Option<&Value>, field: &str, errs: &mut Vec<FieldError>) {
    for (k, v) in labels.and_then(Value::as_object).into_iter().flatten() {
        for e in validation::qualified_name(k) {
            errs.push(FieldError::invalid_str(field, k, &e));
        }
        match v.as_str() {
            Some(s) => {
                for e in validation::label_value(s) {
                    errs.push(FieldError::invalid_str(&format!("{field}[{k}]"), s, &e));
                }
            }
            None => errs.push(FieldError::invalid(
                &format!("{field}[{k}]"),
                v.to_string(),
                "must be a string",
            )),
        }
    }
}

fn validate(d: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_labels(d.pointer("/metadata/labels"), "metadata.labels", &mut errs);
    for k in d
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .map(|(k, _)| k)
    {
        for e in validation::qualified_name(k) {
            errs.push(FieldError::invalid_str("metadata.annotations", k, &e));
        }
    }
    let spec = &d["spec"];
    match spec.get("replicas") {
        Some(r)
            if r.as_i64()
                .is_some_and(|n| n >= 0 && n <= i64::from(i32::MAX)) => {}
        Some(r) => errs.push(FieldError::invalid(
            "spec.replicas",
            r.to_string(),
            "must be greater than or equal to 0",
        )),
        None => {}
    }
    let template_labels = spec.pointer("/template/metadata/labels");
    validate_labels(template_labels, "spec.template.metadata.labels", &mut errs);
    match spec.get("selector") {
        None | Some(Value::Null) => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => match Selector::from_label_selector(sel) {
            None => errs.push(FieldError::invalid(
                "spec.selector",
                go_selector(sel),
                "invalid label selector",
            )),
            Some(s) if s.is_empty() => errs.push(FieldError::invalid(
                "spec.selector",
                go_selector(sel),
                "empty selector is invalid for deployment",
            )),
            Some(s) if !s.matches(template_labels) => errs.push(FieldError::invalid(
                "spec.template.metadata.labels",
                go_map(template_labels),
                "`selector` does not match template `labels`",
            )),
            Some(_) => {}
        },
    }
    if let Some(old_sel) = old.and_then(|o| o.pointer("/spec/selector")) {
        if let Some(sel) = spec.get("selector").filter(|s| *s != old_sel) {
            errs.push(FieldError::invalid(
                "spec.selector",
                go_selector(sel),
                "field is immutable",
            ));
        }
    }
    if let Some(t) = spec.pointer("/strategy/type").and_then(Value::as_str) {
        if t != "RollingUpdate" && t != "Recreate" {
            errs.push(FieldError::not_supported(
                "spec.strategy.type",
                t,
                &["Recreate", "RollingUpdate"],
            ));
        }
    }
    let containers = spec
        .pointer("/template/spec/containers")
        .and_then(Value::as_array);
    match containers {
        None => errs.push(FieldError::required("spec.template.spec.containers", "")),
        Some(cs) if cs.is_empty() => {
            errs.push(FieldError::required("spec.template.spec.containers", ""))
        }
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                let field = format!("spec.template.spec.containers[{i}]");
                match c.get("name").and_then(Value::as_str) {
                    None | Some("") => {
                        errs.push(FieldError::required(&format!("{field}.name"), ""))
                    }
                    Some(n) => {
                        for e in validation::dns1123_label(n) {
                            errs.push(FieldError::invalid_str(&format!("{field}.name"), n, &e));
                        }
                    }
                }
                if c.get("image")
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    errs.push(FieldError::required(&format!("{field}.image"), ""));
                }
            }
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policy_follows_the_tag() {
        assert_eq!(default_pull_policy("nginx"), "Always");
        assert_eq!(default_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_pull_policy("nginx:1.27"), "IfNotPresent");
        assert_eq!(default_pull_policy("reg:5000/nginx"), "Always");
        assert_eq!(default_pull_policy("reg:5000/nginx:1"), "IfNotPresent");
        assert_eq!(default_pull_policy("nginx@sha256:abc"), "IfNotPresent");
    }
}
