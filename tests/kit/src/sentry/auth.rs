//! Who a request says it is, read as Relay reads it
//! (`relay-server/src/extractors/request_meta.rs`): `X-Sentry-Auth:
//! Sentry sentry_key=…, sentry_version=7, sentry_client=…` (only a value
//! starting `Sentry `, case-insensitively, counts), the same in
//! `Authorization`, or `sentry_key`/`sentry_version` in the query (when it
//! contains `sentry_`). More than one of those is refused (401); none
//! falls back to the envelope header's `dsn` (401 if it has none: on the
//! envelope endpoint Relay never answers "missing authorization
//! information"). The key
//! must be 32 characters (400) and the version at most 7 (400). One rule
//! is the develop docs' rather than Relay's: `sentry_version` is required
//! (Relay would assume 7). `Basic` auth, which Relay also reads, is not
//! implemented. Whether the key and project are this fake's is
//! [`super::api`]'s check, after the envelope is read.

use super::dsn::{self, Dsn};
use super::errors::{self, SentryError};
use crate::net::http::{parse_query, Request};

/// The protocol version Relay speaks; a higher `sentry_version` is refused.
pub(crate) const PROTOCOL_VERSION: u16 = 7;

/// Where a request carried its auth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// No auth in the request; the envelope header's `dsn` was tried.
    None,
    /// `X-Sentry-Auth: Sentry …`.
    SentryAuthHeader,
    /// `Authorization: Sentry …`.
    AuthorizationHeader,
    /// `?sentry_key=…&sentry_version=…`.
    Query,
}

/// What a request claims, read without judging it (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    pub method: AuthMethod,
    pub pairs: Vec<(String, String)>,
}

impl Claim {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A header value if it is Sentry auth (`Sentry ` prefix, any case).
fn sentry_header<'a>(req: &'a Request, name: &str) -> Option<&'a str> {
    req.header(name)
        .filter(|h| h.len() >= 7 && h.is_char_boundary(7) && h[..7].eq_ignore_ascii_case("sentry "))
}

/// `key=value` pairs of a `Sentry k=v, k=v` header, trimmed, as Relay's
/// `Auth::from_str` splits them (a value ends at its second `=`).
fn header_pairs(value: &str) -> Vec<(String, String)> {
    let items = value.split_once(' ').map_or("", |(_, rest)| rest);
    items
        .split(',')
        .filter_map(|item| {
            let mut kv = item.split('=');
            Some((kv.next()?.trim().to_string(), kv.next()?.trim().to_string()))
        })
        .collect()
}

/// Every place the request carries auth, in Relay's order.
fn claims(req: &Request) -> Vec<Result<Claim, SentryError>> {
    let mut found = Vec::new();
    if let Some(h) = sentry_header(req, "x-sentry-auth") {
        found.push(Ok(Claim {
            method: AuthMethod::SentryAuthHeader,
            pairs: header_pairs(h),
        }));
    }
    if let Some(h) = sentry_header(req, "authorization") {
        found.push(Ok(Claim {
            method: AuthMethod::AuthorizationHeader,
            pairs: header_pairs(h),
        }));
    }
    if req.query.contains("sentry_") {
        found.push(
            parse_query(&req.query)
                .map(|pairs| Claim {
                    method: AuthMethod::Query,
                    pairs,
                })
                .map_err(errors::bad_auth),
        );
    }
    found
}

/// The request's claim as the log shows it (the first one, if several).
pub(crate) fn claim(req: &Request) -> Claim {
    claims(req)
        .into_iter()
        .find_map(Result::ok)
        .unwrap_or(Claim {
            method: AuthMethod::None,
            pairs: Vec::new(),
        })
}

/// Relay's `Auth::from_pairs`: a version that parses and a non-empty key;
/// the version and the key.
fn read_claim(claim: &Claim) -> Result<(u16, String), SentryError> {
    let version = match claim.get("sentry_version") {
        None => {
            return Err(errors::bad_auth(
                "sentry_version is missing (the develop docs require it; Relay would assume 7)",
            ))
        }
        Some(v) => v
            .split('.')
            .next()
            .and_then(|major| major.parse::<u16>().ok())
            .ok_or_else(|| errors::bad_auth("invalid value for version"))?,
    };
    let key = claim
        .get("sentry_key")
        .filter(|k| !k.is_empty())
        .ok_or_else(|| errors::bad_auth("missing public key in auth header"))?;
    Ok((version, key.to_string()))
}

/// The public key (without flags) the request's headers or query
/// authenticate with; `Ok(None)` when they carry no auth (the caller then
/// tries [`from_envelope_header`]). Claims are read in Relay's order, so a
/// bad first one is refused before a second is seen.
pub(crate) fn from_request(req: &Request) -> Result<Option<String>, SentryError> {
    let mut found: Option<(u16, String)> = None;
    for claim in claims(req) {
        if found.is_some() {
            return Err(errors::multiple_auth());
        }
        found = Some(read_claim(&claim?)?);
    }
    let Some((version, key)) = found else {
        return Ok(None);
    };
    let public_key = dsn::project_key(&key).ok_or_else(errors::bad_public_key)?;
    if version > PROTOCOL_VERSION {
        return Err(errors::unsupported_version(version));
    }
    Ok(Some(public_key.to_string()))
}

/// Relay's fallback for a request without auth: the first line of the
/// body must be one JSON object with a `dsn`, which then authenticates.
pub(crate) fn from_envelope_header(body: &[u8]) -> Result<Dsn, SentryError> {
    #[derive(serde::Deserialize)]
    struct DsnOnly {
        dsn: String,
    }
    let line = body.split(|&b| b == b'\n').next().unwrap_or_default();
    let header: DsnOnly =
        serde_json::from_slice(line).map_err(|e| errors::bad_envelope_auth(e.to_string()))?;
    dsn::parse(&header.dsn).map_err(errors::bad_envelope_auth)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "e12d836b15bb49d7bbf99e64295d995b";

    fn req(headers: &[(&str, &str)], query: &str) -> Request {
        Request {
            method: "POST".into(),
            target: format!("/api/42/envelope/?{query}"),
            path: "/api/42/envelope/".into(),
            query: query.into(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            http11: true,
        }
    }

    #[test]
    fn header_query_and_authorization_are_read() {
        let header = format!("Sentry sentry_version=7, sentry_client=wm/0.1, sentry_key={KEY}");
        let want = Some(KEY.to_string());
        assert_eq!(
            from_request(&req(&[("X-Sentry-Auth", &header)], "")),
            Ok(want.clone())
        );
        let lower = header.replacen("Sentry", "sentry", 1);
        assert_eq!(
            from_request(&req(&[("authorization", &lower)], "")),
            Ok(want.clone())
        );
        let q = format!("sentry_key={KEY}&sentry_version=7.0");
        assert_eq!(from_request(&req(&[], &q)), Ok(want));
        // Not Sentry auth: ignored, as if absent.
        assert_eq!(
            from_request(&req(&[("Authorization", "Bearer x")], "a=1")),
            Ok(None)
        );
        assert_eq!(
            claim(&req(&[("X-Sentry-Auth", &header)], "")).get("sentry_client"),
            Some("wm/0.1")
        );
    }

    #[test]
    fn bad_claims_get_relays_codes() {
        let h = |v: &str| req(&[("X-Sentry-Auth", v)], "");
        let good = format!("Sentry sentry_version=7, sentry_key={KEY}");
        let both = req(&[("X-Sentry-Auth", &good)], &format!("sentry_key={KEY}"));
        let cases = [
            (both, 401, "multiple authorization payloads detected"),
            (
                h("Sentry sentry_version=7"),
                401,
                "bad x-sentry-auth header",
            ),
            (
                h(&format!("Sentry sentry_key={KEY}")),
                401,
                "bad x-sentry-auth header",
            ),
            (
                h(&format!("Sentry sentry_version=x, sentry_key={KEY}")),
                401,
                "bad x-sentry-auth header",
            ),
            (
                h("Sentry sentry_version=7, sentry_key=short"),
                400,
                "bad sentry DSN public key",
            ),
            (
                h(&format!("Sentry sentry_version=8, sentry_key={KEY}")),
                400,
                "unsupported protocol version (8)",
            ),
            (req(&[], "sentry_key=%zz"), 401, "bad x-sentry-auth header"),
        ];
        for (r, status, detail) in cases {
            let e = from_request(&r).unwrap_err();
            assert_eq!((e.status, e.detail.as_str()), (status, detail), "{r:?}");
        }
    }

    #[test]
    fn the_envelope_header_dsn_authenticates_a_bare_request() {
        let body =
            format!("{{\"dsn\":\"http://{KEY}@127.0.0.1:1/42\"}}\n{{\"type\":\"event\"}}\n{{}}");
        let d = from_envelope_header(body.as_bytes()).unwrap();
        assert_eq!((d.public_key.as_str(), d.project_id), (KEY, 42));
        for bad in [
            "",
            "{}",
            "{\"dsn\":1}",
            "{\"dsn\":\"https://x@h/1\"}",
            "{} {}",
        ] {
            let e = from_envelope_header(bad.as_bytes()).unwrap_err();
            assert_eq!(
                (e.status, e.detail.as_str()),
                (401, "bad envelope authentication header"),
                "{bad}"
            );
        }
    }
}
