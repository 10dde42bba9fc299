//! What the fake answers to one request: path-style routing
//! (`/{bucket}/{key}`, keys may contain `/`), authentication, then the
//! bucket and the object, with S3's headers on a successful GET or HEAD.
//! Listing and writes are not implemented (501 / 405): tests set objects
//! through [`super::FakeS3::put_object`].

use super::auth::{self, Policy};
use super::errors::{self, S3Error};
use super::state::Shared;
use crate::net::http::{parse_query, percent_decode_utf8, Request, Response};
use crate::net::time::http_date;

/// The decoded bucket and key of a raw path (`""` where absent); `None` if
/// it does not decode to UTF-8.
pub(crate) fn split_path(raw: &str) -> Option<(String, String)> {
    let rest = raw.strip_prefix('/')?;
    let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
    let decode = |s: &str| percent_decode_utf8(s, false);
    Some((decode(bucket)?, decode(key)?))
}

/// The fake's answer to listing buckets or objects, which it does not serve.
fn listing_not_implemented() -> S3Error {
    S3Error::new(
        501,
        "NotImplemented",
        "The fake S3 serves objects only; listing is not implemented",
    )
}

pub(crate) fn handle(shared: &Shared, req: &Request) -> Result<Response, S3Error> {
    let pairs = parse_query(&req.query).map_err(|_| errors::invalid_uri())?;
    let (bucket, key) = split_path(&req.path).ok_or_else(errors::invalid_uri)?;
    let policy = Policy {
        credentials: shared.cfg.credentials.as_ref(),
        region: &shared.cfg.region,
        now: shared.clock.now(),
    };
    auth::check(&policy, req, &pairs)?;
    if bucket.is_empty() {
        return Err(listing_not_implemented());
    }
    let st = shared.lock();
    let objects = st
        .buckets
        .get(&bucket)
        .ok_or_else(|| errors::no_such_bucket(&bucket))?;
    if key.is_empty() {
        return Err(listing_not_implemented());
    }
    if !matches!(req.method.as_str(), "GET" | "HEAD") {
        return Err(errors::method_not_allowed(&req.method));
    }
    let obj = objects.get(&key).ok_or_else(|| errors::no_such_key(&key))?;
    Ok(Response::new(200, obj.body.clone())
        .with_header("Last-Modified", &http_date(obj.last_modified))
        .with_header("ETag", &obj.etag)
        .with_header("Accept-Ranges", "bytes")
        .with_header("Content-Type", &obj.content_type))
}
