//! The three non-apply patch formats: JSON merge patch (RFC 7386), strategic
//! merge patch (lists merged by their schema merge key, `$patch`,
//! `$setElementOrder`, `$retainKeys`, `$deleteFromPrimitiveList` directives)
//! and JSON patch (RFC 6902).

use serde_json::{Map, Value};

use super::schema::merge_key;

/// RFC 7386: objects merge, `null` deletes, everything else (lists too) replaces.
pub(crate) fn merge_patch(target: &Value, patch: &Value) -> Value {
    let Some(patch_map) = patch.as_object() else {
        return patch.clone();
    };
    let mut out = target.as_object().cloned().unwrap_or_default();
    for (k, v) in patch_map {
        if v.is_null() {
            out.remove(k);
        } else {
            let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
            out.insert(k.clone(), merged);
        }
    }
    Value::Object(out)
}

/// Strategic merge patch of `patch` (an object) onto `target`.
pub(crate) fn strategic_merge(target: &Value, patch: &Value) -> Result<Value, String> {
    let patch = patch
        .as_object()
        .ok_or("a strategic merge patch must be a JSON object")?;
    Ok(
        merge_map(target.as_object().cloned().unwrap_or_default(), patch)?
            .map(Value::Object)
            .unwrap_or_else(|| Value::Object(Map::new())),
    )
}

/// Merges a patch map; `None` means `$patch: delete` removed the whole map.
fn merge_map(
    mut target: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Option<Map<String, Value>>, String> {
    match patch.get("$patch").map(|v| v.as_str()) {
        None => {}
        Some(Some("delete")) => return Ok(None),
        Some(Some("replace")) => return Ok(Some(strip_directives(patch))),
        Some(other) => return Err(format!("unknown patch type: {other:?}")),
    }
    let mut orders = Vec::new();
    let mut retain: Option<Vec<String>> = None;
    for (k, v) in patch {
        if k == "$patch" {
            continue;
        } else if let Some(field) = k.strip_prefix("$setElementOrder/") {
            orders.push((field.to_string(), v.clone()));
        } else if k == "$retainKeys" {
            let keys = v.as_array().ok_or("$retainKeys must be a list")?;
            retain = Some(
                keys.iter()
                    .filter_map(|k| k.as_str().map(String::from))
                    .collect(),
            );
        } else if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let gone = v
                .as_array()
                .ok_or("$deleteFromPrimitiveList must be a list")?;
            if let Some(Value::Array(items)) = target.get_mut(field) {
                items.retain(|i| !gone.contains(i));
            }
        } else if k.starts_with('$') {
            return Err(format!("unknown strategic merge patch directive {k:?}"));
        } else if v.is_null() {
            target.remove(k);
        } else {
            let merged = merge_value(k, target.remove(k), v)?;
            if let Some(m) = merged {
                target.insert(k.clone(), m);
            }
        }
    }
    for (field, order) in orders {
        if let (Some(Value::Array(items)), Some(key)) = (target.get_mut(&field), merge_key(&field))
        {
            reorder(items, key, &order);
        }
    }
    if let Some(keep) = retain {
        target.retain(|k, _| keep.contains(k));
    }
    Ok(Some(target))
}

fn merge_value(field: &str, target: Option<Value>, patch: &Value) -> Result<Option<Value>, String> {
    Ok(match (target, patch) {
        (Some(Value::Object(t)), Value::Object(p)) => merge_map(t, p)?.map(Value::Object),
        (None, Value::Object(p)) => merge_map(Map::new(), p)?.map(Value::Object),
        (t, Value::Array(p)) => match merge_key(field) {
            Some(key) => Some(Value::Array(merge_list(
                t.and_then(|t| t.as_array().cloned()).unwrap_or_default(),
                p,
                key,
            )?)),
            None => Some(Value::Array(p.clone())),
        },
        (_, p) => Some(p.clone()),
    })
}

/// Merges a list of objects by `key`.
fn merge_list(mut target: Vec<Value>, patch: &[Value], key: &str) -> Result<Vec<Value>, String> {
    if patch
        .iter()
        .any(|p| p.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(patch
            .iter()
            .filter(|p| p.get("$patch").is_none())
            .map(|p| {
                p.as_object()
                    .map(strip_directives)
                    .map_or(p.clone(), Value::Object)
            })
            .collect());
    }
    for item in patch {
        let obj = item
            .as_object()
            .ok_or_else(|| format!("list items merged by {key:?} must be objects"))?;
        let id = obj
            .get(key)
            .ok_or_else(|| format!("map: {item} does not contain declared merge key: {key}"))?;
        let pos = target.iter().position(|t| t.get(key) == Some(id));
        match (pos, obj.get("$patch").and_then(Value::as_str)) {
            (Some(i), Some("delete")) => {
                target.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => {
                let existing = target[i].as_object().cloned().unwrap_or_default();
                match merge_map(existing, obj)? {
                    Some(m) => target[i] = Value::Object(m),
                    None => {
                        target.remove(i);
                    }
                }
            }
            (None, _) => target.push(Value::Object(strip_directives(obj))),
        }
    }
    Ok(target)
}

/// Orders `items` as `order` lists their keys; unlisted items keep their place at the end.
fn reorder(items: &mut [Value], key: &str, order: &Value) {
    let order: Vec<&Value> = order
        .as_array()
        .map(|o| o.iter().filter_map(|e| e.get(key)).collect())
        .unwrap_or_default();
    items.sort_by_key(|i| {
        i.get(key)
            .and_then(|k| order.iter().position(|o| *o == k))
            .unwrap_or(usize::MAX)
    });
}

fn strip_directives(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Why a JSON patch failed: the patch itself (400) or applying it (422).
#[derive(Debug, PartialEq)]
pub(crate) enum JsonPatchError {
    Decode(String),
    Apply(String),
}

/// Applies an RFC 6902 patch document.
pub(crate) fn json_patch(target: &Value, patch: &Value) -> Result<Value, JsonPatchError> {
    let ops = patch.as_array().ok_or_else(|| {
        JsonPatchError::Decode("a JSON patch must be a list of operations".into())
    })?;
    let mut doc = target.clone();
    for op in ops {
        let field = |name: &str| {
            op.get(name)
                .and_then(Value::as_str)
                .ok_or_else(|| JsonPatchError::Decode(format!("operation missing {name:?}: {op}")))
        };
        let path = pointer(field("path")?)?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| JsonPatchError::Apply("missing value".into()))
        };
        match field("op")? {
            "add" => add(&mut doc, &path, value()?)?,
            "remove" => {
                remove(&mut doc, &path)?;
            }
            "replace" => {
                remove(&mut doc, &path)?;
                add(&mut doc, &path, value()?)?;
            }
            "move" => {
                let v = remove(&mut doc, &pointer(field("from")?)?)?;
                add(&mut doc, &path, v)?;
            }
            "copy" => {
                let v = get(&doc, &pointer(field("from")?)?)?.clone();
                add(&mut doc, &path, v)?;
            }
            "test" => {
                if *get(&doc, &path)? != value()? {
                    return Err(JsonPatchError::Apply(format!(
                        "testing value {} failed",
                        field("path")?
                    )));
                }
            }
            other => return Err(JsonPatchError::Decode(format!("unexpected op {other:?}"))),
        }
    }
    Ok(doc)
}

fn pointer(p: &str) -> Result<Vec<String>, JsonPatchError> {
    if p.is_empty() {
        return Ok(vec![]);
    }
    let rest = p
        .strip_prefix('/')
        .ok_or_else(|| JsonPatchError::Decode(format!("invalid JSON pointer {p:?}")))?;
    Ok(rest
        .split('/')
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn missing(path: &[String]) -> JsonPatchError {
    JsonPatchError::Apply(format!("path /{} does not exist", path.join("/")))
}

fn get<'a>(doc: &'a Value, path: &[String]) -> Result<&'a Value, JsonPatchError> {
    path.iter()
        .try_fold(doc, |v, seg| match v {
            Value::Object(m) => m.get(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        })
        .ok_or_else(|| missing(path))
}

fn parent<'a>(
    doc: &'a mut Value,
    path: &[String],
) -> Result<(&'a mut Value, String), JsonPatchError> {
    let (last, init) = path
        .split_last()
        .ok_or_else(|| JsonPatchError::Apply("cannot change the document root".into()))?;
    let mut cur = doc;
    for seg in init {
        cur = match cur {
            Value::Object(m) => m.get_mut(seg),
            Value::Array(a) => seg.parse::<usize>().ok().and_then(|i| a.get_mut(i)),
            _ => None,
        }
        .ok_or_else(|| missing(path))?;
    }
    Ok((cur, last.clone()))
}

fn add(doc: &mut Value, path: &[String], value: Value) -> Result<(), JsonPatchError> {
    let (p, last) = parent(doc, path)?;
    match p {
        Value::Object(m) => {
            m.insert(last, value);
        }
        Value::Array(a) if last == "-" => a.push(value),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i <= a.len() => a.insert(i, value),
            _ => return Err(missing(path)),
        },
        _ => return Err(missing(path)),
    }
    Ok(())
}

fn remove(doc: &mut Value, path: &[String]) -> Result<Value, JsonPatchError> {
    let (p, last) = parent(doc, path)?;
    match p {
        Value::Object(m) => m.remove(&last),
        Value::Array(a) => match last.parse::<usize>() {
            Ok(i) if i < a.len() => Some(a.remove(i)),
            _ => None,
        },
        _ => None,
    }
    .ok_or_else(|| missing(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_replaces_lists_and_deletes_nulls() {
        let t = json!({"a": 1, "b": {"c": 2, "d": 3}, "l": [1, 2]});
        let p = json!({"a": null, "b": {"c": 9}, "l": [3]});
        assert_eq!(
            merge_patch(&t, &p),
            json!({"b": {"c": 9, "d": 3}, "l": [3]})
        );
    }

    #[test]
    fn strategic_merge_merges_containers_by_name() {
        let t = json!({"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]});
        let p = json!({"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"},
                                      {"name": "a", "$patch": "delete"}]});
        assert_eq!(
            strategic_merge(&t, &p).unwrap(),
            json!({"containers": [{"name": "b", "image": "z"}, {"name": "c", "image": "w"}]})
        );
    }

    #[test]
    fn strategic_merge_honours_set_element_order() {
        let t = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        let p = json!({"$setElementOrder/env": [{"name": "B"}, {"name": "A"}]});
        assert_eq!(
            strategic_merge(&t, &p).unwrap(),
            json!({"env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]})
        );
    }

    #[test]
    fn json_patch_ops_and_failures() {
        let t = json!({"a": [1, 2], "b": "x"});
        let p = json!([{"op": "add", "path": "/a/-", "value": 3},
                       {"op": "replace", "path": "/b", "value": "y"},
                       {"op": "test", "path": "/b", "value": "y"},
                       {"op": "move", "from": "/b", "path": "/c"}]);
        assert_eq!(
            json_patch(&t, &p).unwrap(),
            json!({"a": [1, 2, 3], "c": "y"})
        );
        let bad = json!([{"op": "test", "path": "/b", "value": "nope"}]);
        assert!(matches!(
            json_patch(&t, &bad),
            Err(JsonPatchError::Apply(_))
        ));
        assert!(matches!(
            json_patch(&t, &json!({})),
            Err(JsonPatchError::Decode(_))
        ));
    }
}
