//! Time and identifiers only S3 spells this way: SigV4's `YYYYMMDDTHHMMSSZ`,
//! and random request ids and host ids.

use crate::net::random_u64;
use crate::net::time::days_from_civil;

/// Parses SigV4's `20151021T072800Z`; `None` unless exactly that shape.
pub(crate) fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, sec) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec)
}

/// A request id as S3 spells it: 16 upper-case hex digits.
pub(crate) fn request_id() -> String {
    format!("{:016X}", random_u64())
}

/// A host id (`x-amz-id-2`): 57 random bytes in base64, 76 characters.
pub(crate) fn host_id() -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bytes: Vec<u8> = (0..8).flat_map(|_| random_u64().to_le_bytes()).collect();
    bytes.truncate(57);
    bytes
        .chunks(3)
        .flat_map(|c| {
            let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
            (0..4).map(move |i| B64[(n >> (18 - 6 * i) & 63) as usize] as char)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_instants() {
        assert_eq!(parse_amz_date("20151021T072800Z"), Some(1_445_412_480));
        assert_eq!(parse_amz_date("20000229T000000Z"), Some(951_782_400));
        for bad in [
            "",
            "2015-10-21T07:28:00Z",
            "20151321T072800Z",
            "2015102XT072800Z",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn ids_have_s3_shapes() {
        let (r, h) = (request_id(), host_id());
        assert_eq!(r.len(), 16);
        assert!(r
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_lowercase()));
        assert_eq!(h.len(), 76);
        assert_ne!(r, request_id());
    }
}
