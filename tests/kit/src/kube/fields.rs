//! `metadata.managedFields` and server-side apply, modelled at the level of
//! leaf field paths: each manager (name, operation, subresource) owns a set
//! of leaves; associative list elements are addressed by their merge key
//! (`k:{"name":"web"}`), other lists are atomic leaves.
//!
//! * An update (create, PUT, merge/strategic/JSON patch) takes ownership of
//!   the leaves it changed or added, and other managers lose them.
//! * An apply owns exactly the leaves it sent; changing a leaf another
//!   manager owns is a conflict unless forced (forcing takes the leaf over);
//!   sending the same value shares it; leaves it sent before but no longer
//!   sends are removed unless someone else owns them (defaults come back
//!   afterwards, e.g. `spec.replicas` becomes 1).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::schema::merge_key;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Elem {
    Field(String),
    /// An associative list element, by its key as canonical JSON (`{"name":"web"}`).
    Key(String),
}

pub(crate) type Path = Vec<Elem>;

/// `.spec.template.spec.containers[name="web"].image`, as structured-merge-diff prints it.
pub(crate) fn path_string(path: &Path) -> String {
    let mut s = String::new();
    for e in path {
        match e {
            Elem::Field(f) => {
                s.push('.');
                s.push_str(f);
            }
            Elem::Key(k) => {
                let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
                s.push_str(&format!("[{}]", parts.join(",")));
            }
        }
    }
    s
}

/// The leaves of an object that field management tracks, with their values:
/// everything but `apiVersion`, `kind` and `metadata`, plus the label and
/// annotation maps.
pub(crate) fn leaves(obj: &Value) -> BTreeMap<Path, Value> {
    let mut out = BTreeMap::new();
    let Some(map) = obj.as_object() else {
        return out;
    };
    for (k, v) in map {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            walk(vec![Elem::Field(k.clone())], k, v, &mut out);
        }
    }
    for m in ["labels", "annotations"] {
        if let Some(v) = obj.pointer(&format!("/metadata/{m}")) {
            let path = vec![Elem::Field("metadata".into()), Elem::Field(m.into())];
            walk(path, m, v, &mut out);
        }
    }
    out
}

fn walk(path: Path, field: &str, v: &Value, out: &mut BTreeMap<Path, Value>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                let mut p = path.clone();
                p.push(Elem::Field(k.clone()));
                walk(p, k, child, out);
            }
        }
        Value::Array(items) => match keyed_items(field, items) {
            Some(keyed) => {
                for (key, item) in keyed {
                    let mut p = path.clone();
                    p.push(Elem::Key(key));
                    walk(p, "", item, out);
                }
            }
            None => {
                out.insert(path, v.clone());
            }
        },
        _ => {
            out.insert(path, v.clone());
        }
    }
}

/// The elements of an associative list with their keys; `None` if atomic.
fn keyed_items<'a>(field: &str, items: &'a [Value]) -> Option<Vec<(String, &'a Value)>> {
    let key = merge_key(field)?;
    items
        .iter()
        .map(|i| Some((json!({ key: i.get(key)? }).to_string(), i)))
        .collect()
}

/// The element of `items` addressed by a `Key` step.
fn position(items: &[Value], key: &str) -> Option<usize> {
    let key: Map<String, Value> = serde_json::from_str(key).ok()?;
    items
        .iter()
        .position(|i| key.iter().all(|(k, v)| i.get(k) == Some(v)))
}

/// Removes the value at `path`, then any object the removal left empty.
pub(crate) fn remove_path(obj: &mut Value, path: &[Elem]) {
    let Some((last, init)) = path.split_last() else {
        return;
    };
    let mut cur = &mut *obj;
    for e in init {
        let next = match (e, cur) {
            (Elem::Field(f), Value::Object(m)) => m.get_mut(f),
            (Elem::Key(k), Value::Array(a)) => position(a, k).and_then(|i| a.get_mut(i)),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    match (last, cur) {
        (Elem::Field(f), Value::Object(m)) => {
            m.remove(f);
        }
        (Elem::Key(k), Value::Array(a)) => {
            if let Some(i) = position(a, k) {
                a.remove(i);
            }
        }
        _ => return,
    }
    // Prune the parent if it became an empty object (but keep top-level fields).
    if init.len() > 1 {
        let parent = get_path(obj, init);
        if parent.is_some_and(|p| p.as_object().is_some_and(Map::is_empty)) {
            remove_path(obj, init);
        }
    }
}

fn get_path<'a>(obj: &'a Value, path: &[Elem]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, e| match (e, cur) {
        (Elem::Field(f), Value::Object(m)) => m.get(f),
        (Elem::Key(k), Value::Array(a)) => position(a, k).and_then(|i| a.get(i)),
        _ => None,
    })
}

/// Merges an applied configuration into the live object: objects merge,
/// associative lists merge by key, everything else is replaced, `null` removes.
fn apply_merge(live: &mut Map<String, Value>, config: &Map<String, Value>) {
    for (k, v) in config {
        match (live.get_mut(k), v) {
            (_, Value::Null) => {
                live.remove(k);
            }
            (Some(Value::Object(l)), Value::Object(c)) => apply_merge(l, c),
            (Some(Value::Array(l)), Value::Array(c)) if merge_key(k).is_some() => {
                let key = merge_key(k).unwrap_or_default();
                for item in c {
                    let existing = l.iter_mut().find(|x| x.get(key) == item.get(key));
                    match (existing, item) {
                        (Some(Value::Object(e)), Value::Object(i)) => apply_merge(e, i),
                        _ => l.push(item.clone()),
                    }
                }
            }
            _ => {
                live.insert(k.clone(), v.clone());
            }
        }
    }
}

/// One manager's entry.
#[derive(Debug, Clone)]
struct Entry {
    manager: String,
    operation: &'static str,
    api_version: String,
    subresource: Option<String>,
    time: String,
    fields: BTreeSet<Path>,
}

impl Entry {
    fn is(&self, manager: &str, operation: &str, subresource: Option<&str>) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
    }

    /// How conflict messages name this manager (apimachinery's `printManager`).
    fn display(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s.push_str(&format!(" with subresource {sub:?}"));
        }
        if self.operation == "Update" {
            s.push_str(&format!(" using {} at {}", self.api_version, self.time));
        }
        s
    }
}

/// An apply conflict: who owns which leaf.
#[derive(Debug, Clone)]
pub(crate) struct Conflict {
    pub manager: String,
    pub path: String,
}

/// The managed-fields state of one object.
#[derive(Debug, Clone, Default)]
pub(crate) struct ManagedFields(Vec<Entry>);

impl ManagedFields {
    fn entry(
        &mut self,
        manager: &str,
        operation: &'static str,
        api_version: &str,
        subresource: Option<&str>,
    ) -> &mut Entry {
        let i = match self
            .0
            .iter()
            .position(|e| e.is(manager, operation, subresource))
        {
            Some(i) => i,
            None => {
                self.0.push(Entry {
                    manager: manager.into(),
                    operation,
                    api_version: api_version.into(),
                    subresource: subresource.map(String::from),
                    time: String::new(),
                    fields: BTreeSet::new(),
                });
                self.0.len() - 1
            }
        };
        &mut self.0[i]
    }

    /// Records a non-apply write by `manager` that turned `old` into `new`.
    pub fn record_update(
        &mut self,
        manager: &str,
        api_version: &str,
        subresource: Option<&str>,
        old: Option<&Value>,
        new: &Value,
        now: &str,
    ) {
        let before = old.map(leaves).unwrap_or_default();
        let changed: BTreeSet<Path> = leaves(new)
            .into_iter()
            .filter(|(p, v)| before.get(p) != Some(v))
            .map(|(p, _)| p)
            .collect();
        if changed.is_empty() {
            return;
        }
        for e in &mut self.0 {
            if !e.is(manager, "Update", subresource) {
                e.fields.retain(|p| !changed.contains(p));
            }
        }
        let e = self.entry(manager, "Update", api_version, subresource);
        e.fields.extend(changed);
        e.time = now.into();
    }

    /// Server-side apply of `config` by `manager` onto `live` (`Null` when
    /// absent). Returns the merged object (defaults not yet applied), or the
    /// conflicts when not forced.
    pub fn apply(
        &mut self,
        manager: &str,
        live: &Value,
        config: &Value,
        force: bool,
        now: &str,
    ) -> Result<Value, Vec<Conflict>> {
        let api_version = config["apiVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut config = config.clone();
        if let Some(c) = config.as_object_mut() {
            c.remove("status");
        }
        let applied = leaves(&config);
        let current = leaves(live);
        let is_me = |e: &Entry| e.is(manager, "Apply", None);

        let mut conflicts = Vec::new();
        let mut taken = Vec::new();
        for (path, value) in &applied {
            if current.get(path).is_none_or(|v| v == value) {
                continue;
            }
            for (i, e) in self.0.iter().enumerate() {
                if !is_me(e) && e.fields.contains(path) {
                    conflicts.push(Conflict {
                        manager: e.display(),
                        path: path_string(path),
                    });
                    taken.push((i, path.clone()));
                }
            }
        }
        if !conflicts.is_empty() && !force {
            return Err(conflicts);
        }
        for (i, path) in taken {
            self.0[i].fields.remove(&path);
        }

        let mut obj = if live.is_object() {
            live.clone()
        } else {
            json!({})
        };
        let previous = self
            .0
            .iter()
            .find(|e| is_me(e))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let owned_elsewhere = |path: &[Elem]| {
            applied.keys().any(|p| p.starts_with(path))
                || self
                    .0
                    .iter()
                    .any(|e| !is_me(e) && e.fields.iter().any(|p| p.starts_with(path)))
        };
        for path in previous.iter().filter(|p| !applied.contains_key(*p)) {
            if !owned_elsewhere(path) {
                remove_path(&mut obj, path);
            }
            // A list element nobody owns anything in any more goes too.
            for (i, e) in path.iter().enumerate() {
                if matches!(e, Elem::Key(_)) && !owned_elsewhere(&path[..=i]) {
                    remove_path(&mut obj, &path[..=i]);
                }
            }
        }
        if let (Some(o), Some(c)) = (obj.as_object_mut(), config.as_object()) {
            let mut c = c.clone();
            c.remove("metadata");
            apply_merge(o, &c);
            for m in ["labels", "annotations"] {
                if let Some(Value::Object(add)) = config.pointer(&format!("/metadata/{m}")) {
                    let meta = o.entry("metadata").or_insert_with(|| json!({}));
                    if let Some(meta) = meta.as_object_mut() {
                        let target = meta.entry(m).or_insert_with(|| json!({}));
                        if let Some(t) = target.as_object_mut() {
                            apply_merge(t, add);
                        }
                    }
                }
            }
        }
        let e = self.entry(manager, "Apply", &api_version, None);
        e.fields = applied.into_keys().collect();
        e.time = now.into();
        Ok(obj)
    }

    /// Drops leaves that no longer exist in `obj`, then empty entries.
    pub fn prune(&mut self, obj: &Value) {
        let present = leaves(obj);
        for e in &mut self.0 {
            e.fields.retain(|p| present.contains_key(p));
        }
        self.0.retain(|e| !e.fields.is_empty());
    }

    /// Whether both have the same owners of the same leaves (times ignored).
    pub fn same_owners(&self, other: &ManagedFields) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| {
                a.is(&b.manager, b.operation, b.subresource.as_deref()) && a.fields == b.fields
            })
    }

    /// Ownership as a client sent it in `metadata.managedFields` (the API
    /// server takes a non-empty list in a create or update as the new
    /// ownership: how kubectl hands client-side-apply fields to server-side
    /// apply). `None` when it is not such a list.
    pub fn parse(list: &Value) -> Option<ManagedFields> {
        let mut entries = Vec::new();
        for e in list.as_array().filter(|a| !a.is_empty())? {
            let operation = match e["operation"].as_str()? {
                "Apply" => "Apply",
                "Update" => "Update",
                _ => return None,
            };
            let mut fields = BTreeSet::new();
            parse_fields_v1(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            entries.push(Entry {
                manager: e["manager"].as_str()?.to_string(),
                operation,
                api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                subresource: e["subresource"].as_str().map(String::from),
                time: e["time"].as_str().unwrap_or_default().to_string(),
                fields,
            });
        }
        Some(ManagedFields(entries))
    }

    /// The `metadata.managedFields` list.
    pub fn render(&self) -> Value {
        self.0
            .iter()
            .map(|e| {
                let mut entry = json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": fields_v1(&e.fields),
                });
                if let Some(sub) = &e.subresource {
                    entry["subresource"] = sub.as_str().into();
                }
                entry
            })
            .collect()
    }
}

/// The `FieldsV1` trie: `f:<field>`, `k:<key>` (with `.` for the element itself).
fn fields_v1(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut node = &mut root;
        for e in path {
            let (name, is_key) = match e {
                Elem::Field(f) => (format!("f:{f}"), false),
                Elem::Key(k) => (format!("k:{k}"), true),
            };
            let child = node.entry(name).or_insert_with(|| json!({}));
            if is_key {
                child
                    .as_object_mut()
                    .map(|c| c.insert(".".into(), json!({})));
            }
            node = match child.as_object_mut() {
                Some(c) => c,
                None => break,
            };
        }
    }
    Value::Object(root)
}

/// The leaves of a `FieldsV1` trie (the inverse of [`fields_v1`]): a node
/// with nothing below it but `.` is a leaf.
fn parse_fields_v1(node: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
    let Some(map) = node.as_object() else {
        return;
    };
    let mut below = false;
    for (k, child) in map {
        let elem = if let Some(f) = k.strip_prefix("f:") {
            Elem::Field(f.to_string())
        } else if let Some(key) = k.strip_prefix("k:") {
            // canonical JSON, as `leaves` writes keys
            let canonical = serde_json::from_str::<Value>(key)
                .map(|v| v.to_string())
                .unwrap_or_else(|_| key.to_string());
            Elem::Key(canonical)
        } else {
            continue;
        };
        below = true;
        path.push(elem);
        parse_fields_v1(child, path, out);
        path.pop();
    }
    if !below && !path.is_empty() {
        out.insert(path.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rendered_list_parses_back() {
        let mut m = ManagedFields::default();
        m.record_update("kubectl", "apps/v1", None, None, &deploy(2, "a"), "t");
        let back = ManagedFields::parse(&m.render()).expect("parses");
        assert!(back.same_owners(&m), "{:?} vs {:?}", back, m);
        assert!(ManagedFields::parse(&json!([])).is_none());
    }

    fn deploy(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
               "spec": {"replicas": replicas, "template": {"spec": {"containers": [
                   {"name": "web", "image": image}]}}}})
    }

    #[test]
    fn leaves_key_containers_by_name() {
        let l = leaves(&deploy(2, "a"));
        let s: Vec<String> = l.keys().map(path_string).collect();
        assert!(s.contains(&r#".spec.template.spec.containers[name="web"].image"#.to_string()));
        assert!(s.contains(&".spec.replicas".to_string()));
    }

    #[test]
    fn apply_conflicts_with_an_updater_unless_forced() {
        let mut mf = ManagedFields::default();
        let live = deploy(2, "a");
        mf.record_update("kubectl-edit", "apps/v1", None, None, &live, "T");
        let err = mf
            .apply("wm", &live, &deploy(3, "a"), false, "T")
            .unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].path, ".spec.replicas");
        assert_eq!(err[0].manager, r#""kubectl-edit" using apps/v1 at T"#);
        let merged = mf.apply("wm", &live, &deploy(3, "a"), true, "T").unwrap();
        assert_eq!(merged["spec"]["replicas"], 3);
    }

    #[test]
    fn apply_removes_what_it_no_longer_sends() {
        let mut mf = ManagedFields::default();
        let mut two = deploy(1, "a");
        two["spec"]["template"]["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "side", "image": "s"}));
        let live = mf.apply("wm", &Value::Null, &two, false, "T").unwrap();
        let live = mf.apply("wm", &live, &deploy(1, "a"), false, "T").unwrap();
        let containers = live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap();
        assert_eq!(containers.len(), 1);
        let mut no_replicas = deploy(1, "a");
        no_replicas["spec"]
            .as_object_mut()
            .unwrap()
            .remove("replicas");
        let live = mf.apply("wm", &live, &no_replicas, false, "T").unwrap();
        assert!(live["spec"].get("replicas").is_none());
    }
}
