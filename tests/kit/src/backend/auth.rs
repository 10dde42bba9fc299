//! Request authentication as the backend performs it: the three `X-Node-*`
//! headers, the signed message
//! `METHOD\nPATH_AND_QUERY\nTIMESTAMP\nhex(sha256(body))` rebuilt from the
//! request exactly as received, the signature recovered to an address and
//! compared case-insensitively, and the timestamp checked against the
//! fake's clock (at most 300 s either way).

use sha2::{Digest, Sha256};

use super::eip191::{eip55, recover_personal_sign};
use crate::net::http::Request;

/// Largest accepted difference between `X-Node-Timestamp` and the fake's clock.
pub(crate) const MAX_SKEW_SECS: i64 = 300;

pub(crate) const HEADER_ADDRESS: &str = "X-Node-Address";
pub(crate) const HEADER_TIMESTAMP: &str = "X-Node-Timestamp";
pub(crate) const HEADER_SIGNATURE: &str = "X-Node-Signature";

/// The message a request's signature covers.
fn signed_message(method: &str, path_and_query: &str, timestamp: &str, body: &[u8]) -> String {
    let digest: String = Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{method}\n{path_and_query}\n{timestamp}\n{digest}")
}

fn header<'a>(req: &'a Request, name: &str) -> Result<&'a str, String> {
    req.header(name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| format!("the {name} header is missing"))
}

/// The node's address (lower-case `0x…`) if the request is authentic at
/// `now` (Unix seconds); otherwise why not, for the 401's message.
pub(crate) fn authenticate(req: &Request, now: i64) -> Result<String, String> {
    let address = header(req, HEADER_ADDRESS)?;
    let timestamp = header(req, HEADER_TIMESTAMP)?;
    let signature = header(req, HEADER_SIGNATURE)?;

    let checksummed = eip55(address).ok_or_else(|| {
        format!("{HEADER_ADDRESS} {address:?} is not 0x followed by 40 hex digits")
    })?;
    let lower = address.to_ascii_lowercase();
    let mixed_case = address != lower && address[2..] != address[2..].to_ascii_uppercase();
    if mixed_case && address != checksummed {
        return Err(format!(
            "{HEADER_ADDRESS} {address} fails its EIP-55 checksum (expected {checksummed})"
        ));
    }
    let ts: i64 = Some(timestamp)
        .filter(|t| t.len() <= 18 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| format!("{HEADER_TIMESTAMP} {timestamp:?} is not Unix seconds"))?;

    let message = signed_message(&req.method, &req.target, timestamp, &req.body);
    let recovered = recover_personal_sign(message.as_bytes(), signature)
        .map_err(|e| format!("{HEADER_SIGNATURE}: {e}"))?;
    if recovered.to_ascii_lowercase() != lower {
        return Err(format!(
            "the signature does not recover to {HEADER_ADDRESS} {address} (it recovers to {recovered}; \
             check that the message is METHOD\\nPATH_AND_QUERY\\nTIMESTAMP\\nhex(sha256(body)) of this request)"
        ));
    }
    let skew = ts - now;
    if skew.abs() > MAX_SKEW_SECS {
        return Err(format!(
            "{HEADER_TIMESTAMP} {ts} is {} s off the server clock ({now}); at most {MAX_SKEW_SECS} s is allowed",
            skew.abs()
        ));
    }
    Ok(lower)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_hashes_an_empty_body_as_sha256_of_nothing() {
        assert_eq!(
            signed_message("GET", "/api/v1/x?a=1", "1714000000", b""),
            "GET\n/api/v1/x?a=1\n1714000000\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_reasons_not_panics() {
        let req = |headers: &[(&str, &str)]| Request {
            method: "GET".into(),
            target: "/".into(),
            path: "/".into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            http11: true,
        };
        let addr = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        let sig = format!("0x{}1b", "11".repeat(64));
        for (headers, want) in [
            (vec![], "X-Node-Address header is missing"),
            (
                vec![(HEADER_ADDRESS, addr)],
                "X-Node-Timestamp header is missing",
            ),
            (
                vec![
                    (HEADER_ADDRESS, "0x12"),
                    (HEADER_TIMESTAMP, "1"),
                    (HEADER_SIGNATURE, "0x"),
                ],
                "not 0x followed by 40 hex digits",
            ),
            (
                vec![
                    (HEADER_ADDRESS, "0x5AAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"),
                    (HEADER_TIMESTAMP, "1"),
                    (HEADER_SIGNATURE, &sig),
                ],
                "fails its EIP-55 checksum",
            ),
            (
                vec![
                    (HEADER_ADDRESS, addr),
                    (HEADER_TIMESTAMP, "-5"),
                    (HEADER_SIGNATURE, &sig),
                ],
                "is not Unix seconds",
            ),
            (
                vec![
                    (HEADER_ADDRESS, addr),
                    (HEADER_TIMESTAMP, "1"),
                    (HEADER_SIGNATURE, "0xzz"),
                ],
                "130 hex digits",
            ),
        ] {
            let err = authenticate(&req(&headers), 1).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}
