//! Ethereum signatures as the backend checks them, written independently of
//! the product: EIP-191 `personal_sign` hashes (keccak-256 of
//! `"\x19Ethereum Signed Message:\n" + len + message`), public-key recovery
//! from a 65-byte `r‖s‖v` signature with `v` 27/28 and low `s` only, and
//! EIP-55 checksummed addresses.

use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
use sha3::{Digest, Keccak256};

/// Why a signature recovers to no address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureError {
    /// Not `0x` followed by 130 hex digits.
    Malformed,
    /// `v` is not 27 or 28.
    BadV(u8),
    /// `s` is in the upper half of the curve order (malleable; EIP-2).
    HighS,
    /// `r` or `s` is zero or out of range, or no key recovers from it.
    Unrecoverable,
}

impl std::fmt::Display for SignatureError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SignatureError::Malformed => {
                write!(f, "signature is not 0x followed by 130 hex digits")
            }
            SignatureError::BadV(v) => write!(f, "signature v is {v}, not 27 or 28"),
            SignatureError::HighS => {
                write!(f, "signature s is not in the lower half of the curve order")
            }
            SignatureError::Unrecoverable => write!(f, "no public key recovers from the signature"),
        }
    }
}

fn keccak256(bytes: &[u8]) -> [u8; 32] {
    Keccak256::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Decodes hex digits (either case); `None` on odd length or a non-hex digit.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The EIP-191 version 0x45 (`personal_sign`) hash of `message`.
pub fn personal_sign_hash(message: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"\x19Ethereum Signed Message:\n");
    h.update(message.len().to_string().as_bytes());
    h.update(message);
    h.finalize().into()
}

/// The EIP-55 spelling of a 20-byte address.
fn checksummed(addr: &[u8]) -> String {
    let lower = hex(addr);
    let hash = keccak256(lower.as_bytes());
    let spelled: String = lower
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            if nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect();
    format!("0x{spelled}")
}

/// The EIP-55 spelling of `address` (`0x` + 40 hex digits in any case);
/// `None` if it is not an address.
pub fn eip55(address: &str) -> Option<String> {
    let digits = address.strip_prefix("0x")?;
    if digits.len() != 40 {
        return None;
    }
    Some(checksummed(&unhex(digits)?))
}

/// The address (EIP-55) whose key made `signature` (`0x` + `r‖s‖v` in 130
/// hex digits) over `message` with `personal_sign`.
pub fn recover_personal_sign(message: &[u8], signature: &str) -> Result<String, SignatureError> {
    let bytes = signature
        .strip_prefix("0x")
        .filter(|h| h.len() == 130)
        .and_then(unhex)
        .ok_or(SignatureError::Malformed)?;
    let v = bytes[64];
    let recovery_id = match v {
        27 | 28 => RecoveryId::from_byte(v - 27).ok_or(SignatureError::BadV(v))?,
        _ => return Err(SignatureError::BadV(v)),
    };
    let sig = Signature::from_slice(&bytes[..64]).map_err(|_| SignatureError::Unrecoverable)?;
    if sig.normalize_s().is_some() {
        return Err(SignatureError::HighS);
    }
    let key = VerifyingKey::recover_from_prehash(&personal_sign_hash(message), &sig, recovery_id)
        .map_err(|_| SignatureError::Unrecoverable)?;
    let point = key.to_encoded_point(false);
    let hash = keccak256(point.as_bytes().get(1..).unwrap_or_default());
    Ok(checksummed(&hash[12..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eip55_spells_the_eip_examples() {
        for good in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            assert_eq!(eip55(&good.to_ascii_lowercase()).as_deref(), Some(good));
        }
        for bad in [
            "",
            "0x",
            "5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeZ",
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeA",
        ] {
            assert_eq!(eip55(bad), None, "{bad}");
        }
    }

    #[test]
    fn malformed_signatures_are_errors_not_panics() {
        let zeros = format!("0x{}", "00".repeat(64));
        for (sig, want) in [
            ("", SignatureError::Malformed),
            ("0x1234", SignatureError::Malformed),
            (
                &format!("{}1b", "00".repeat(64))[..],
                SignatureError::Malformed,
            ),
            (&format!("{zeros}1b")[..], SignatureError::Unrecoverable),
            (&format!("{zeros}00")[..], SignatureError::BadV(0)),
            (&format!("{zeros}1d")[..], SignatureError::BadV(29)),
            (
                &format!("0x{}1b", "zz".repeat(64))[..],
                SignatureError::Malformed,
            ),
        ] {
            assert_eq!(recover_personal_sign(b"m", sig), Err(want), "{sig}");
        }
    }
}
