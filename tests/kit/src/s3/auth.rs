//! Authentication as S3 does it for one request: unsigned (allowed only on
//! an anonymous fake), SigV4 in the `Authorization` header, or SigV4 in
//! presigned query parameters; each failure answers S3's own error.

use super::clock::parse_amz_date;
use super::errors::{self, S3Error};
use super::sigv4::{self, Scope, ALGORITHM, UNSIGNED_PAYLOAD};
use crate::net::http::Request;
use crate::net::time::rfc3339;

/// Requests signed further than this from the server's time are refused.
const MAX_SKEW_SECS: i64 = 15 * 60;
/// The longest `X-Amz-Expires` S3 accepts: a week.
const MAX_EXPIRES_SECS: u64 = 604_800;

/// The one access key the fake knows, and its secret.
#[derive(Debug, Clone)]
pub(crate) struct Credentials {
    pub access_key: String,
    pub secret: String,
}

/// What the fake checks requests against (fixed at start).
pub(crate) struct Policy<'a> {
    /// `None`: the bucket is public and only unsigned requests make sense.
    pub credentials: Option<&'a Credentials>,
    pub region: &'a str,
    /// The fake's current time (Unix seconds).
    pub now: i64,
}

/// `Ok` if the request may proceed, else the error S3 answers.
pub(crate) fn check(p: &Policy, req: &Request, pairs: &[(String, String)]) -> Result<(), S3Error> {
    let query_auth = pairs
        .iter()
        .any(|(k, _)| k.starts_with("X-Amz-") && k != "X-Amz-Content-Sha256");
    match (req.header("authorization"), query_auth) {
        (Some(h), true) => Err(S3Error::new(
            400,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, \
             Signature query string parameter or the Authorization header should be specified",
        )
        .with("ArgumentName", "Authorization")
        .with("ArgumentValue", h)),
        (Some(h), false) => check_header(p, req, pairs, h),
        (None, true) => check_query(p, req, pairs),
        (None, false) if p.credentials.is_some() => Err(errors::access_denied()),
        (None, false) => Ok(()),
    }
}

/// The configured secret for this scope's key, or `InvalidAccessKeyId`.
fn secret_for<'a>(p: &Policy<'a>, scope: &Scope) -> Result<&'a str, S3Error> {
    match p.credentials {
        Some(c) if c.access_key == scope.access_key => Ok(&c.secret),
        _ => Err(errors::invalid_access_key_id(&scope.access_key)),
    }
}

/// Recomputes the signature; `SignatureDoesNotMatch` unless it is `provided`.
#[allow(clippy::too_many_arguments)]
fn verify(
    req: &Request,
    pairs: &[(String, String)],
    scope: &Scope,
    secret: &str,
    amz_date: &str,
    signed_headers: &str,
    payload_hash: &str,
    provided: &str,
) -> Result<(), S3Error> {
    let uri = sigv4::canonical_uri(&req.path).ok_or_else(errors::invalid_uri)?;
    let signed: Vec<&str> = signed_headers.split(';').collect();
    let creq = sigv4::canonical_request(
        &req.method,
        &uri,
        &sigv4::canonical_query(pairs),
        &sigv4::canonical_headers(&req.headers, &signed),
        signed_headers,
        payload_hash,
    );
    let sts = sigv4::string_to_sign(amz_date, scope, &creq);
    if sigv4::same_signature(&sigv4::signature(secret, scope, &sts), provided) {
        Ok(())
    } else {
        Err(errors::signature_does_not_match(
            &scope.access_key,
            &sts,
            provided,
            &creq,
        ))
    }
}

fn check_header(
    p: &Policy,
    req: &Request,
    pairs: &[(String, String)],
    value: &str,
) -> Result<(), S3Error> {
    let Some(h) = sigv4::parse_auth_header(value) else {
        return Err(if value.starts_with(ALGORITHM) {
            errors::authorization_header_malformed(
                "the authorization header requires three components: Credential, SignedHeaders, and Signature.",
            )
        } else {
            S3Error::new(400, "InvalidArgument", "Unsupported Authorization Type")
                .with("ArgumentName", "Authorization")
                .with("ArgumentValue", value)
        });
    };
    let scope = Scope::parse(&h.credential).ok_or_else(|| {
        errors::authorization_header_malformed(
            "the Credential is mal-formed; expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        )
    })?;
    let secret = secret_for(p, &scope)?;
    if scope.region != p.region {
        return Err(errors::authorization_header_malformed(&format!(
            "the region '{}' is wrong; expecting '{}'",
            scope.region, p.region
        ))
        .with("Region", p.region));
    }
    let amz_date = req.header("x-amz-date").unwrap_or_default();
    let Some(t) = parse_amz_date(amz_date) else {
        return Err(S3Error::new(
            403,
            "AccessDenied",
            "AWS authentication requires a valid Date or x-amz-date header",
        ));
    };
    if (p.now - t).abs() > MAX_SKEW_SECS {
        return Err(errors::request_time_too_skewed(amz_date, &rfc3339(p.now)));
    }
    let Some(payload_hash) = req.header("x-amz-content-sha256") else {
        return Err(errors::invalid_request(
            "Missing required header for this request: x-amz-content-sha256",
        ));
    };
    let computed = sigv4::sha256_hex(&req.body);
    if payload_hash != UNSIGNED_PAYLOAD && payload_hash != computed {
        return Err(S3Error::new(
            400,
            "XAmzContentSHA256Mismatch",
            "The provided 'x-amz-content-sha256' header does not match what was computed.",
        )
        .with("ClientComputedContentSHA256", payload_hash)
        .with("S3ComputedContentSHA256", computed));
    }
    verify(
        req,
        pairs,
        &scope,
        secret,
        amz_date,
        &h.signed_headers,
        payload_hash,
        &h.signature,
    )
}

fn check_query(p: &Policy, req: &Request, pairs: &[(String, String)]) -> Result<(), S3Error> {
    let param = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let (
        Some(algorithm),
        Some(credential),
        Some(signature),
        Some(amz_date),
        Some(signed_headers),
        Some(expires),
    ) = (
        param("X-Amz-Algorithm"),
        param("X-Amz-Credential"),
        param("X-Amz-Signature"),
        param("X-Amz-Date"),
        param("X-Amz-SignedHeaders"),
        param("X-Amz-Expires"),
    )
    else {
        return Err(errors::authorization_query_parameters_error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm, X-Amz-Credential, \
             X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders, and X-Amz-Expires parameters.",
        ));
    };
    if algorithm != ALGORITHM {
        return Err(errors::authorization_query_parameters_error(
            "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\"",
        ));
    }
    let scope = Scope::parse(credential).ok_or_else(|| {
        errors::authorization_query_parameters_error(
            "Error parsing the X-Amz-Credential parameter; the Credential is mal-formed; \
             expecting \"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".",
        )
    })?;
    let secret = secret_for(p, &scope)?;
    if scope.region != p.region {
        return Err(errors::authorization_query_parameters_error(&format!(
            "Error parsing the X-Amz-Credential parameter; the region '{}' is wrong; expecting '{}'",
            scope.region, p.region
        ))
        .with("Region", p.region));
    }
    let Some(t) = parse_amz_date(amz_date) else {
        return Err(errors::authorization_query_parameters_error(
            "X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"",
        ));
    };
    let Ok(expires) = expires.parse::<u64>() else {
        return Err(errors::authorization_query_parameters_error(
            "X-Amz-Expires should be a number",
        ));
    };
    if expires > MAX_EXPIRES_SECS {
        return Err(errors::authorization_query_parameters_error(
            "X-Amz-Expires must be less than a week (in seconds) that is 604800",
        ));
    }
    if t - p.now > MAX_SKEW_SECS {
        return Err(S3Error::new(
            403,
            "AccessDenied",
            "Request is not valid yet",
        ));
    }
    let expired_at = t + expires as i64;
    if p.now > expired_at {
        return Err(errors::request_expired(
            expires,
            &rfc3339(expired_at),
            &rfc3339(p.now),
        ));
    }
    let payload_hash = param("X-Amz-Content-Sha256").unwrap_or(UNSIGNED_PAYLOAD);
    verify(
        req,
        pairs,
        &scope,
        secret,
        amz_date,
        signed_headers,
        payload_hash,
        signature,
    )
}
