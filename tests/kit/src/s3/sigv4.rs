//! AWS Signature Version 4 as S3 checks it: the canonical request, the
//! string to sign, the HMAC-SHA256 key derivation, and the parsing of an
//! `Authorization: AWS4-HMAC-SHA256 ...` header or presigned `X-Amz-*` query
//! parameters. The verdict (which error for which failure) is in `auth.rs`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::net::http::percent_decode;

pub(crate) const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// The payload hash of presigned requests (and of header-signed ones that opt out).
pub(crate) const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// SigV4's URI encoding: unreserved characters (`A-Z a-z 0-9 - . _ ~`) as
/// they are, every other byte as `%XX`; `/` kept unless `encode_slash`.
pub(crate) fn uri_encode(bytes: &[u8], encode_slash: bool) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (b == b'/' && !encode_slash) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `AKID/20130524/us-east-1/s3/aws4_request`, split.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scope {
    pub access_key: String,
    pub date: String,
    pub region: String,
    pub service: String,
}

impl Scope {
    /// `None` unless five `/`-separated parts ending in `aws4_request`.
    pub fn parse(credential: &str) -> Option<Scope> {
        let parts: Vec<&str> = credential.split('/').collect();
        match parts.as_slice() {
            [key, date, region, service, "aws4_request"] if !key.is_empty() => Some(Scope {
                access_key: key.to_string(),
                date: date.to_string(),
                region: region.to_string(),
                service: service.to_string(),
            }),
            _ => None,
        }
    }

    /// The scope without the access key, as in the string to sign.
    pub fn scope(&self) -> String {
        format!(
            "{}/{}/{}/aws4_request",
            self.date, self.region, self.service
        )
    }
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct AuthHeader {
    pub credential: String,
    pub signed_headers: String,
    pub signature: String,
}

/// Parses the header's value; `None` if a part is missing.
pub(crate) fn parse_auth_header(value: &str) -> Option<AuthHeader> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => credential = Some(v.to_string()),
            Some(("SignedHeaders", v)) => signed_headers = Some(v.to_string()),
            Some(("Signature", v)) => signature = Some(v.to_string()),
            _ => {}
        }
    }
    Some(AuthHeader {
        credential: credential?,
        signed_headers: signed_headers?,
        signature: signature?,
    })
}

/// The canonical URI of a raw request path: decoded, then encoded once by
/// SigV4's rules (S3 does not double-encode); `None` if an escape is invalid.
pub(crate) fn canonical_uri(raw_path: &str) -> Option<String> {
    Some(uri_encode(&percent_decode(raw_path, false)?, false))
}

/// The canonical query string of decoded pairs, minus `X-Amz-Signature`.
pub(crate) fn canonical_query(pairs: &[(String, String)]) -> String {
    let mut enc: Vec<(String, String)> = pairs
        .iter()
        .filter(|(k, _)| k != "X-Amz-Signature")
        .map(|(k, v)| {
            (
                uri_encode(k.as_bytes(), true),
                uri_encode(v.as_bytes(), true),
            )
        })
        .collect();
    enc.sort();
    enc.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `name:value\n` for each signed header (lower-case, sorted as given by the
/// client): values of repeated headers joined by `,`, trimmed, inner runs of
/// spaces collapsed.
pub(crate) fn canonical_headers(headers: &[(String, String)], signed: &[&str]) -> String {
    let mut out = String::new();
    for name in signed {
        let values: Vec<String> = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        out.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    out
}

/// The canonical request, from its parts.
pub(crate) fn canonical_request(
    method: &str,
    canonical_uri: &str,
    canonical_query: &str,
    canonical_headers: &str,
    signed_headers: &str,
    payload_hash: &str,
) -> String {
    format!("{method}\n{canonical_uri}\n{canonical_query}\n{canonical_headers}\n{signed_headers}\n{payload_hash}")
}

pub(crate) fn string_to_sign(amz_date: &str, scope: &Scope, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{}\n{}",
        scope.scope(),
        sha256_hex(canonical_request.as_bytes())
    )
}

/// HMAC chain `AWS4`+secret → date → region → service → `aws4_request`,
/// then the hex signature of the string to sign.
pub(crate) fn signature(secret: &str, scope: &Scope, string_to_sign: &str) -> String {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), &scope.date);
    let k_region = hmac(&k_date, &scope.region);
    let k_service = hmac(&k_region, &scope.service);
    let k_signing = hmac(&k_service, "aws4_request");
    hex(&hmac(&k_signing, string_to_sign))
}

/// Compares two signatures without an early exit.
pub(crate) fn same_signature(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0, |acc, (x, y)| acc | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";

    fn scope() -> Scope {
        Scope::parse("AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request").unwrap()
    }

    /// The GET Object example of the S3 SigV4 documentation.
    #[test]
    fn header_signature_matches_the_aws_example() {
        let headers = vec![
            (
                "Host".to_string(),
                "examplebucket.s3.amazonaws.com".to_string(),
            ),
            ("Range".to_string(), "bytes=0-9".to_string()),
            ("x-amz-content-sha256".to_string(), sha256_hex(b"")),
            ("x-amz-date".to_string(), "20130524T000000Z".to_string()),
        ];
        let signed = ["host", "range", "x-amz-content-sha256", "x-amz-date"];
        let creq = canonical_request(
            "GET",
            &canonical_uri("/test.txt").unwrap(),
            "",
            &canonical_headers(&headers, &signed),
            &signed.join(";"),
            &sha256_hex(b""),
        );
        let sts = string_to_sign("20130524T000000Z", &scope(), &creq);
        assert_eq!(
            signature(SECRET, &scope(), &sts),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    /// The presigned-URL example of the S3 SigV4 documentation.
    #[test]
    fn query_signature_matches_the_aws_example() {
        let pairs: Vec<(String, String)> = [
            ("X-Amz-Algorithm", ALGORITHM),
            (
                "X-Amz-Credential",
                "AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request",
            ),
            ("X-Amz-Date", "20130524T000000Z"),
            ("X-Amz-Expires", "86400"),
            ("X-Amz-SignedHeaders", "host"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let headers = vec![(
            "host".to_string(),
            "examplebucket.s3.amazonaws.com".to_string(),
        )];
        let creq = canonical_request(
            "GET",
            "/test.txt",
            &canonical_query(&pairs),
            &canonical_headers(&headers, &["host"]),
            "host",
            UNSIGNED_PAYLOAD,
        );
        let sts = string_to_sign("20130524T000000Z", &scope(), &creq);
        assert_eq!(
            signature(SECRET, &scope(), &sts),
            "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }

    #[test]
    fn parses_and_rejects_headers_and_scopes() {
        let h = parse_auth_header(
            "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        )
        .unwrap();
        assert_eq!(h.signed_headers, "host;x-amz-date");
        assert_eq!(Scope::parse(&h.credential).unwrap().access_key, "AK");
        assert_eq!(parse_auth_header("AWS4-HMAC-SHA256 Credential=x"), None);
        assert_eq!(parse_auth_header("AWS AK:sig"), None);
        assert_eq!(Scope::parse("AK/20130524/us-east-1/s3"), None);
        assert_eq!(uri_encode("a b/ü~".as_bytes(), false), "a%20b/%C3%BC~");
        assert_eq!(canonical_uri("/b/%zz"), None);
    }
}
