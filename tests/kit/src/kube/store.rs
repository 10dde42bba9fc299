//! The object store: objects by (resource, name) in the fake's single
//! namespace, with their managed fields, and the one global resourceVersion
//! counter that every write bumps.

use std::collections::BTreeMap;

use serde_json::Value;

use super::fields::ManagedFields;

/// One stored object.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// The object as served, `metadata.managedFields` included.
    pub value: Value,
    pub managed: ManagedFields,
}

impl Stored {
    /// An object no field manager owns yet.
    pub fn new(value: Value) -> Stored {
        Stored {
            value,
            managed: ManagedFields::default(),
        }
    }
}

/// All objects; iteration is ordered by name within a resource.
#[derive(Debug)]
pub(crate) struct Store {
    rv: u64,
    objects: BTreeMap<(&'static str, String), Stored>,
}

impl Store {
    pub fn new() -> Store {
        Store {
            rv: 1000,
            objects: BTreeMap::new(),
        }
    }

    /// The current global resourceVersion (what a list reports).
    pub fn resource_version(&self) -> String {
        self.rv.to_string()
    }

    pub fn get(&self, resource: &'static str, name: &str) -> Option<&Stored> {
        self.objects.get(&(resource, name.to_string()))
    }

    /// The objects of one resource, ordered by name.
    pub fn list(&self, resource: &'static str) -> impl Iterator<Item = &Stored> {
        self.objects
            .range((resource, String::new())..)
            .take_while(move |((r, _), _)| *r == resource)
            .map(|(_, s)| s)
    }

    /// Writes an object: bumps the counter, stamps `resourceVersion` and
    /// `managedFields`, and returns the object as stored.
    pub fn put(&mut self, resource: &'static str, name: &str, mut stored: Stored) -> Value {
        self.rv += 1;
        stamp(&mut stored, Some(self.rv.to_string()));
        let value = stored.value.clone();
        self.objects.insert((resource, name.to_string()), stored);
        value
    }

    /// Deletes an object (a write: the counter moves).
    pub fn remove(&mut self, resource: &'static str, name: &str) -> Option<Stored> {
        let gone = self.objects.remove(&(resource, name.to_string()));
        if gone.is_some() {
            self.rv += 1;
        }
        gone
    }
}

/// Sets `metadata.resourceVersion` (or removes it) and renders `managedFields`.
pub(crate) fn stamp(stored: &mut Stored, rv: Option<String>) {
    let managed = stored.managed.render();
    if let Some(meta) = stored
        .value
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
    {
        match rv {
            Some(rv) => meta.insert("resourceVersion".into(), rv.into()),
            None => meta.remove("resourceVersion"),
        };
        if managed.as_array().is_some_and(|a| !a.is_empty()) {
            meta.insert("managedFields".into(), managed);
        } else {
            meta.remove("managedFields");
        }
    }
}
