//! Generic REST semantics for one namespaced resource, as the API server's
//! generic registry implements them: list, get, create, update (PUT), the
//! four patch types, delete, and the `/status` subresource; server-owned
//! metadata, defaulting, validation, generation, managed fields, no-op
//! detection and optimistic concurrency. Kind-specific rules come from a
//! [`ResourceType`].

use serde_json::{json, Map, Value};

use super::clock;
use super::fields::ManagedFields;
use super::patch::{self, JsonPatchError};
use super::selector::Selector;
use super::status::{self, ApiError, FieldError};
use super::store::{stamp, Store, Stored};
use super::validation;
use crate::net::random_u64;

/// A resource the fake serves, and the hooks for its kind.
#[derive(Debug)]
pub(crate) struct ResourceType {
    pub group: &'static str,
    pub version: &'static str,
    /// The plural resource name, as in URLs and `Status.details.kind`.
    pub resource: &'static str,
    pub kind: &'static str,
    /// Lives in a namespace (false: cluster-scoped, like Nodes).
    pub namespaced: bool,
    /// PUT on an absent object creates it (201) instead of 404.
    pub put_creates: bool,
    /// PUT without `metadata.resourceVersion` is 422 instead of unconditional.
    pub put_requires_rv: bool,
    /// Has a `status` that only the `/status` subresource writes.
    pub has_status: bool,
    /// `metadata.generation` starts at 1 and follows spec/annotation changes.
    pub tracks_generation: bool,
    /// Applies the API server's defaults.
    pub defaults: fn(&mut Value),
    /// Validates the new object against the old one (if any).
    pub validate: fn(&Value, Option<&Value>) -> Vec<FieldError>,
}

impl ResourceType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, or just `pods` in the core group.
    pub fn qualified_resource(&self) -> String {
        status::qualified(self.resource, self.group)
    }

    fn invalid(&self, name: &str, errs: &[FieldError]) -> ApiError {
        let qualified_kind = status::qualified(self.kind, self.group);
        status::invalid(&qualified_kind, self.group, self.kind, name, errs)
    }
}

/// Who writes, where, and how.
#[derive(Debug, Clone)]
pub(crate) struct WriteCtx<'a> {
    pub namespace: &'a str,
    /// `fieldManager`, else the User-Agent up to its first `/`.
    pub manager: &'a str,
    /// `dryRun=All`: validate and answer, but store nothing.
    pub dry_run: bool,
    /// `Some("status")` for the status subresource.
    pub subresource: Option<&'a str>,
}

/// A successful answer: HTTP code and body.
pub(crate) type Reply = Result<(u16, Value), ApiError>;

/// The media types POST and PUT accept.
const BODY_TYPES: [&str; 3] = [
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];

/// The media types PATCH accepts.
pub(crate) const PATCH_TYPES: [&str; 4] = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// `kind: <Kind>List` with items stripped of apiVersion/kind, ordered by name.
pub(crate) fn list(store: &Store, rt: &ResourceType, selector: &Selector) -> Value {
    let items: Vec<Value> = store
        .list(rt.resource)
        .filter(|s| selector.matches(s.value.pointer("/metadata/labels")))
        .map(|s| {
            let mut v = s.value.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("apiVersion");
                o.remove("kind");
            }
            v
        })
        .collect();
    json!({
        "kind": format!("{}List", rt.kind),
        "apiVersion": rt.api_version(),
        "metadata": {"resourceVersion": store.resource_version()},
        "items": items,
    })
}

pub(crate) fn get(store: &Store, rt: &ResourceType, name: &str) -> Reply {
    match store.get(rt.resource, name) {
        Some(s) => Ok((200, s.value.clone())),
        None => Err(status::not_found(rt, name)),
    }
}

/// Decodes a POST/PUT body of an accepted media type into an object.
fn decode_body(
    rt: &ResourceType,
    media_type: Option<&str>,
    body: &[u8],
) -> Result<Value, ApiError> {
    let mt = media_type.unwrap_or("application/json");
    if !BODY_TYPES.contains(&mt) || mt == "application/vnd.kubernetes.protobuf" {
        return Err(status::unsupported_media_type(&BODY_TYPES));
    }
    decode_object(rt, body)
}

/// Parses a JSON object (JSON being valid YAML) and checks apiVersion/kind.
fn decode_object(rt: &ResourceType, body: &[u8]) -> Result<Value, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        status::bad_request(&format!("couldn't get version/kind; json parse error: {e}"))
    })?;
    if !v.is_object() {
        return Err(status::bad_request(
            "couldn't get version/kind; json parse error: the body is not a JSON object",
        ));
    }
    if let Some(av) = v.get("apiVersion").and_then(Value::as_str) {
        if av != rt.api_version() {
            return Err(status::bad_request(&format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                rt.api_version()
            )));
        }
    }
    if let Some(kind) = v.get("kind").and_then(Value::as_str) {
        if kind != rt.kind {
            return Err(status::bad_request(&format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                rt.kind
            )));
        }
    }
    Ok(v)
}

fn meta_str<'a>(v: &'a Value, field: &str) -> Option<&'a str> {
    v.get("metadata")?.get(field)?.as_str()
}

/// 400 when the body names another namespace than the URL.
fn check_namespace(v: &Value, ns: &str) -> Result<(), ApiError> {
    match meta_str(v, "namespace") {
        Some(n) if !n.is_empty() && n != ns => Err(status::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => Ok(()),
    }
}

/// 400 when the body names another object than the URL.
fn check_name(v: &Value, name: &str) -> Result<(), ApiError> {
    match meta_str(v, "name") {
        Some(n) if n != name => Err(status::bad_request(&format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        ))),
        _ => Ok(()),
    }
}

/// 409 when the body carries a resourceVersion other than the stored one.
fn check_rv(rt: &ResourceType, v: &Value, old: &Stored, name: &str) -> Result<(), ApiError> {
    match meta_str(v, "resourceVersion") {
        Some(rv) if !rv.is_empty() && Some(rv) != meta_str(&old.value, "resourceVersion") => {
            Err(status::stale(rt, name))
        }
        _ => Ok(()),
    }
}

/// How a write changes field ownership.
enum Ownership {
    /// A non-apply write: the manager takes what it changed.
    Update,
    /// Server-side apply already computed the new ownership.
    Applied(ManagedFields),
}

/// The object without what the server stamps on every write.
fn comparable(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    v
}

/// The common write path: server-owned metadata, subresource rules,
/// defaults, validation, generation, ownership, no-op detection, storage.
/// Returns the object as stored and whether it was created.
fn commit(
    store: &mut Store,
    rt: &ResourceType,
    ctx: &WriteCtx,
    name: &str,
    mut new: Value,
    ownership: Ownership,
) -> Result<Value, ApiError> {
    let old = store.get(rt.resource, name).cloned();
    let now = clock::now();
    let obj = match new.as_object_mut() {
        Some(o) => o,
        None => return Err(status::bad_request("the body is not a JSON object")),
    };
    obj.insert("apiVersion".into(), rt.api_version().into());
    obj.insert("kind".into(), rt.kind.into());
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj.insert("metadata".into(), json!({}));
    }
    if !rt.has_status {
        obj.remove("status");
    }
    let mut meta = obj
        .remove("metadata")
        .and_then(|m| m.as_object().cloned())
        .unwrap_or_default();
    meta.insert("name".into(), name.into());
    meta.insert("namespace".into(), ctx.namespace.into());
    // A managedFields list that differs from the stored one is taken as the
    // new ownership (before this write's own changes are recorded).
    let requested = meta
        .get("managedFields")
        .filter(|m| {
            old.as_ref()
                .and_then(|o| o.value.pointer("/metadata/managedFields"))
                != Some(*m)
        })
        .and_then(ManagedFields::parse);
    for k in ["resourceVersion", "managedFields", "selfLink"] {
        meta.remove(k);
    }
    let old_meta = old.as_ref().and_then(|o| o.value["metadata"].as_object());
    match old_meta {
        Some(om) => {
            for k in [
                "uid",
                "creationTimestamp",
                "generation",
                "deletionTimestamp",
            ] {
                match om.get(k) {
                    Some(v) => meta.insert(k.into(), v.clone()),
                    None => meta.remove(k),
                };
            }
        }
        None => {
            meta.insert("uid".into(), clock::uid().into());
            meta.insert("creationTimestamp".into(), now.clone().into());
            for k in ["generation", "deletionTimestamp"] {
                meta.remove(k);
            }
            if rt.tracks_generation {
                meta.insert("generation".into(), 1.into());
            }
        }
    }
    obj.insert("metadata".into(), Value::Object(meta));

    let old_value = old.as_ref().map(|o| &o.value);
    if rt.has_status {
        match (ctx.subresource, old_value) {
            (Some("status"), Some(ov)) => {
                // The status endpoint keeps spec and labels.
                obj.insert("spec".into(), ov["spec"].clone());
                let labels = ov.pointer("/metadata/labels").cloned();
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    match labels {
                        Some(l) => m.insert("labels".into(), l),
                        None => m.remove("labels"),
                    };
                }
            }
            (_, ov) => {
                // The main endpoint ignores status; create empties it.
                let status = ov.map_or(json!({}), |o| o["status"].clone());
                obj.insert("status".into(), status);
            }
        }
    }

    (rt.defaults)(&mut new);
    let errs = (rt.validate)(&new, old_value);
    if !errs.is_empty() {
        return Err(rt.invalid(name, &errs));
    }

    if let (true, None, Some(ov)) = (rt.tracks_generation, ctx.subresource, old_value) {
        let changed = |p: &str| new.pointer(p) != ov.pointer(p);
        if changed("/spec") || changed("/metadata/annotations") {
            let generation = ov.pointer("/metadata/generation").and_then(Value::as_i64);
            new["metadata"]["generation"] = (generation.unwrap_or(0) + 1).into();
        }
    }

    let mut managed = match ownership {
        Ownership::Applied(m) => m,
        Ownership::Update => {
            let mut m = requested
                .or_else(|| old.as_ref().map(|o| o.managed.clone()))
                .unwrap_or_default();
            let api_version = rt.api_version();
            m.record_update(
                ctx.manager,
                &api_version,
                ctx.subresource,
                old_value,
                &new,
                &now,
            );
            m
        }
    };
    managed.prune(&new);

    if let Some(o) = &old {
        if comparable(&o.value) == comparable(&new) && o.managed.same_owners(&managed) {
            return Ok(o.value.clone());
        }
    }
    let stored = Stored {
        value: new,
        managed,
    };
    if ctx.dry_run {
        let mut preview = stored;
        let rv = old_value
            .and_then(|o| meta_str(o, "resourceVersion"))
            .map(String::from);
        stamp(&mut preview, rv);
        return Ok(preview.value);
    }
    Ok(store.put(rt.resource, name, stored))
}

/// The name a create uses: `metadata.name`, or `generateName` plus 5 characters.
fn create_name(rt: &ResourceType, v: &mut Value) -> Result<String, ApiError> {
    if let Some(n) = meta_str(v, "name").filter(|n| !n.is_empty()) {
        return Ok(n.to_string());
    }
    if let Some(prefix) = meta_str(v, "generateName").filter(|p| !p.is_empty()) {
        let suffix: String = clock::short_hash(&random_u64()).chars().take(5).collect();
        let name = format!("{prefix}{suffix}");
        v["metadata"]["name"] = name.clone().into();
        return Ok(name);
    }
    Err(rt.invalid(
        "",
        &[FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )],
    ))
}

fn validate_name(rt: &ResourceType, name: &str) -> Result<(), ApiError> {
    let errs: Vec<FieldError> = validation::dns1123_subdomain(name)
        .iter()
        .map(|e| FieldError::invalid_str("metadata.name", name, e))
        .collect();
    if errs.is_empty() {
        Ok(())
    } else {
        Err(rt.invalid(name, &errs))
    }
}

/// POST on the collection: 201, 409 AlreadyExists, 422, 400.
pub(crate) fn create(
    store: &mut Store,
    rt: &ResourceType,
    ctx: &WriteCtx,
    media_type: Option<&str>,
    body: &[u8],
) -> Reply {
    let mut v = decode_body(rt, media_type, body)?;
    check_namespace(&v, ctx.namespace)?;
    let name = create_name(rt, &mut v)?;
    create_object(store, rt, ctx, &name, v, Ownership::Update)
}

/// A create by a controller of the fake itself (no HTTP request, no log
/// entry), through the same rules as POST.
pub(crate) fn create_value(
    store: &mut Store,
    rt: &ResourceType,
    ctx: &WriteCtx,
    name: &str,
    v: Value,
) -> Reply {
    create_object(store, rt, ctx, name, v, Ownership::Update)
}

fn create_object(
    store: &mut Store,
    rt: &ResourceType,
    ctx: &WriteCtx,
    name: &str,
    v: Value,
    ownership: Ownership,
) -> Reply {
    validate_name(rt, name)?;
    if store.get(rt.resource, name).is_some() {
        return Err(status::already_exists(rt, name));
    }
    commit(store, rt, ctx, name, v, ownership).map(|v| (201, v))
}

/// PUT on an object (or its status).
pub(crate) fn replace(
    store: &mut Store,
    rt: &ResourceType,
    ctx: &WriteCtx,
    name: &str,
    media_type: Option<&str>,
    body: &[u8],
) -> Reply {
    let v = decode_body(rt, media_type, body)?;
    check_name(&v, name)?;
    check_namespace(&v, ctx.namespace)?;
    let Some(old) = store.get(rt.resource, name).cloned() else {
        if rt.put_creates && ctx.subresource.is_none() {
            return create_object(store, rt, ctx, name, v, Ownership::Update);
        }
        return Err(status::not_found(rt, name));
    };
    if rt.put_requires_rv && meta_str(&v, "resourceVersion").is_none_or(str::is_empty) {
        let qualified_kind = rt.qualified_resource();
        let err = FieldError::invalid(
            "metadata.resourceVersion",
            "0".into(),
            "must be specified for an update",
        );
        return Err(status::invalid(
            &qualified_kind,
            rt.group,
            rt.resource,
            name,
            &[err],
        ));
    }
    check_rv(rt, &v, &old, name)?;
    commit(store, rt, ctx, name, v, Ownership::Update).map(|v| (200, v))
}

/// 422 for invalid `PatchOptions`.
fn patch_options_invalid(err: FieldError) -> ApiError {
    status::invalid(
        "PatchOptions.meta.k8s.io",
        "meta.k8s.io",
        "PatchOptions",
        "",
        &[err],
    )
}

/// PATCH on an object (or its status), by media type.
#[allow(clippy::too_many_arguments)]
pub(crate) fn patch(
    store: &mut Store,
    rt: &ResourceType,
    ctx: &WriteCtx,
    name: &str,
    media_type: Option<&str>,
    body: &[u8],
    field_manager_given: bool,
    force: bool,
) -> Reply {
    let mt = media_type.unwrap_or_default();
    if !PATCH_TYPES.contains(&mt) {
        return Err(status::unsupported_media_type(&PATCH_TYPES));
    }
    if mt == "application/apply-patch+yaml" {
        if !field_manager_given {
            return Err(patch_options_invalid(FieldError::required(
                "fieldManager",
                "is required for apply patch",
            )));
        }
        return apply(store, rt, ctx, name, body, force);
    }
    if force {
        return Err(patch_options_invalid(FieldError::forbidden(
            "force",
            "may not be specified for non-apply patch",
        )));
    }
    let Some(old) = store.get(rt.resource, name).cloned() else {
        return Err(status::not_found(rt, name));
    };
    let p: Value = serde_json::from_slice(body).map_err(|e| status::bad_request(&e.to_string()))?;
    let new = match mt {
        "application/merge-patch+json" => {
            if !p.is_object() {
                return Err(status::bad_request("a merge patch must be a JSON object"));
            }
            patch::merge_patch(&old.value, &p)
        }
        "application/strategic-merge-patch+json" => {
            patch::strategic_merge(&old.value, &p).map_err(|e| status::bad_request(&e))?
        }
        _ => match patch::json_patch(&old.value, &p) {
            Ok(v) => v,
            Err(JsonPatchError::Decode(e)) => return Err(status::bad_request(&e)),
            Err(JsonPatchError::Apply(_)) => return Err(status::generic_invalid()),
        },
    };
    check_name(&new, name)?;
    check_namespace(&new, ctx.namespace)?;
    check_rv(rt, &new, &old, name)?;
    commit(store, rt, ctx, name, new, Ownership::Update).map(|v| (200, v))
}

/// Server-side apply: creates (201) or merges (200) with ownership tracking.
fn apply(
    store: &mut Store,
    rt: &ResourceType,
    ctx: &WriteCtx,
    name: &str,
    body: &[u8],
    force: bool,
) -> Reply {
    if ctx.subresource.is_some() {
        return Err(status::bad_request(
            "this fake does not support server-side apply on a subresource",
        ));
    }
    let config = decode_object(rt, body)?;
    for field in ["apiVersion", "kind"] {
        if config.get(field).and_then(Value::as_str).is_none() {
            return Err(status::bad_request(&format!(
                "invalid object type: {field} must be set for apply"
            )));
        }
    }
    if config.pointer("/metadata/managedFields").is_some() {
        return Err(status::bad_request("metadata.managedFields must be nil"));
    }
    check_name(&config, name)?;
    check_namespace(&config, ctx.namespace)?;
    let old = store.get(rt.resource, name).cloned();
    if let Some(o) = &old {
        check_rv(rt, &config, o, name)?;
    }
    let mut managed = old.as_ref().map(|o| o.managed.clone()).unwrap_or_default();
    let live = old.as_ref().map_or(Value::Null, |o| o.value.clone());
    let merged = managed
        .apply(ctx.manager, &live, &config, force, &clock::now())
        .map_err(|conflicts| conflict_error(&conflicts))?;
    match old {
        None => create_object(store, rt, ctx, name, merged, Ownership::Applied(managed)),
        Some(_) => {
            commit(store, rt, ctx, name, merged, Ownership::Applied(managed)).map(|v| (200, v))
        }
    }
}

/// The 409 of `NewApplyConflict`, worded as apimachinery's `conflict.go`.
fn conflict_error(conflicts: &[super::fields::Conflict]) -> ApiError {
    let message = match conflicts {
        [one] => format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            one.manager, one.path
        ),
        many => {
            let mut managers: Vec<&str> = many.iter().map(|c| c.manager.as_str()).collect();
            managers.sort();
            managers.dedup();
            let mut lines = Vec::new();
            for m in managers {
                lines.push(format!("conflicts with {m}:"));
                for c in many.iter().filter(|c| c.manager == m) {
                    lines.push(format!("- {}", c.path));
                }
            }
            format!(
                "Apply failed with {} conflicts: {}",
                many.len(),
                lines.join("\n")
            )
        }
    };
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|c| {
            json!({"reason": "FieldManagerConflict",
                   "message": format!("conflict with {}", c.manager),
                   "field": c.path})
        })
        .collect();
    status::failure(409, "Conflict", &message, Some(json!({ "causes": causes })))
}

/// DELETE: `DeleteOptions` from the body, `propagationPolicy` from the query too.
pub(crate) fn delete(
    store: &mut Store,
    rt: &ResourceType,
    ctx: &WriteCtx,
    name: &str,
    body: &[u8],
    query_policy: Option<&str>,
) -> Reply {
    let opts: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        serde_json::from_slice(body).map_err(|e| status::bad_request(&e.to_string()))?
    };
    let Some(old) = store.get(rt.resource, name).cloned() else {
        return Err(status::not_found(rt, name));
    };
    let policy = opts
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(query_policy)
        .unwrap_or("Background");
    let finalizer = match policy {
        "Background" => None,
        "Foreground" => Some("foregroundDeletion"),
        "Orphan" => Some("orphan"),
        other => {
            let err = FieldError::not_supported(
                "propagationPolicy",
                other,
                &["Foreground", "Background", "Orphan"],
            );
            let kind = "DeleteOptions.meta.k8s.io";
            return Err(status::invalid(
                kind,
                "meta.k8s.io",
                "DeleteOptions",
                "",
                &[err],
            ));
        }
    };
    for (field, label) in [("uid", "UID"), ("resourceVersion", "ResourceVersion")] {
        let want = opts
            .get("preconditions")
            .and_then(|p| p.get(field))
            .and_then(Value::as_str);
        let have = meta_str(&old.value, field).unwrap_or_default();
        if let Some(want) = want.filter(|w| *w != have) {
            let why = format!(
                "Precondition failed: {label} in precondition: {want}, {label} in object meta: {have}"
            );
            return Err(status::conflict(rt, name, &why));
        }
    }
    let Some(finalizer) = finalizer else {
        if !ctx.dry_run {
            store.remove(rt.resource, name);
        }
        let details = json!({"name": name, "group": rt.group, "kind": rt.resource,
                             "uid": meta_str(&old.value, "uid").unwrap_or_default()});
        let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
                          "status": "Success", "details": details});
        return Ok((200, body));
    };
    let mut marked = old.clone();
    let meta = &mut marked.value["metadata"];
    if meta.get("deletionTimestamp").is_none() {
        meta["deletionTimestamp"] = clock::now().into();
        meta["deletionGracePeriodSeconds"] = 0.into();
    }
    let mut finalizers: Vec<Value> = meta["finalizers"].as_array().cloned().unwrap_or_default();
    if !finalizers.contains(&finalizer.into()) {
        finalizers.push(finalizer.into());
    }
    meta["finalizers"] = finalizers.into();
    if ctx.dry_run {
        return Ok((200, marked.value));
    }
    Ok((200, store.put(rt.resource, name, marked)))
}

/// A status write as a controller makes it (no HTTP request, no log entry).
pub(crate) fn write_status(
    store: &mut Store,
    rt: &ResourceType,
    namespace: &str,
    manager: &str,
    name: &str,
    new: Value,
) -> Result<Value, ApiError> {
    let ctx = WriteCtx {
        namespace,
        manager,
        dry_run: false,
        subresource: Some("status"),
    };
    commit(store, rt, &ctx, name, new, Ownership::Update)
}
