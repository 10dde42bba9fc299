//! The fault queue the fakes share: a fault hits the next N requests that
//! match it (by method and path), in the order injected. What a fault is
//! and what a hit does are each fake's own `FaultKind`.

/// A fault for the next `count` matching requests.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault<K> {
    pub kind: K,
    /// Only requests with this method (e.g. `"PUT"`); any if `None`.
    pub method: Option<String>,
    /// Only requests whose path (as sent, without the query) starts with
    /// this; any if `None`.
    pub path_prefix: Option<String>,
    /// Only requests whose path (as sent, without the query) contains
    /// this; any if `None`.
    pub path_contains: Option<String>,
    /// How many more requests it hits.
    pub count: usize,
}

impl<K> Fault<K> {
    /// The fault for the next single request.
    pub fn new(kind: K) -> Fault<K> {
        Fault {
            kind,
            method: None,
            path_prefix: None,
            path_contains: None,
            count: 1,
        }
    }

    /// Hits the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Fault<K> {
        self.count = n;
        self
    }

    /// Only requests with this method.
    pub fn method(mut self, method: &str) -> Fault<K> {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests whose path starts with `prefix`.
    pub fn path_prefix(mut self, prefix: &str) -> Fault<K> {
        self.path_prefix = Some(prefix.to_string());
        self
    }

    /// Only requests whose path contains `part` (e.g. `"/health"`).
    pub fn path_contains(mut self, part: &str) -> Fault<K> {
        self.path_contains = Some(part.to_string());
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        self.count > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && self
                .path_prefix
                .as_deref()
                .is_none_or(|p| path.starts_with(p))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// Consumes one hit of the first fault that matches `method` and `path`
/// and whose kind `applies` (to requests the fake's own rules allow);
/// returns its kind.
pub(crate) fn take<K: Clone>(
    faults: &mut Vec<Fault<K>>,
    method: &str,
    path: &str,
    applies: impl Fn(&K) -> bool,
) -> Option<K> {
    let i = faults
        .iter()
        .position(|f| f.matches(method, path) && applies(&f.kind))?;
    faults[i].count -= 1;
    let kind = faults[i].kind.clone();
    faults.retain(|f| f.count > 0);
    Some(kind)
}
