//! The node's identity: its secp256k1 key, the Ethereum address derived from
//! it, and the signatures that authenticate every request to the backend.
//!
//! This module owns the node key once the configuration layer has read and
//! validated it. It turns the key into an EIP-55 address and signs with it:
//! EIP-191 `personal_sign` (keccak-256, RFC 6979 deterministic ECDSA, low-s,
//! `r‖s‖v` with `v` = 27/28), which standard tools (`ethers.verifyMessage`,
//! `eth_account.Account.recover_message`) recover the address from. It also
//! offers the matching free functions ([`request_message`],
//! [`recover_personal_sign`], [`eip55`]) so a fake backend in the tests can
//! check what the node sends.
//!
//! It must never print, log, format or return the key, in any form: nothing
//! here derives `Debug`, the hand-written `Debug` and `Display` of
//! [`NodeIdentity`] show only the address, and no [`IdentityError`] carries
//! any part of the key. The key itself is wiped from memory when the
//! [`NodeIdentity`] is dropped (k256's `SigningKey` zeroizes on drop), and the
//! decoded bytes are wiped as soon as the key is built.

use std::fmt;

use k256::ecdsa::{RecoveryId, Signature, SigningKey, VerifyingKey};
use k256::elliptic_curve::zeroize::Zeroize;
use sha2::Sha256;
use sha3::{Digest, Keccak256};

/// Header carrying the node's EIP-55 address.
pub const HEADER_ADDRESS: &str = "X-Node-Address";
/// Header carrying the Unix time (seconds) the request was signed at.
pub const HEADER_TIMESTAMP: &str = "X-Node-Timestamp";
/// Header carrying the EIP-191 signature of [`request_message`].
pub const HEADER_SIGNATURE: &str = "X-Node-Signature";

/// Why a key could not be used or a signature could not be recovered.
/// Never carries any part of the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    /// The key is not 64 characters long (after an optional `0x`).
    KeyLength { got: usize },
    /// The key has a character that is not a hex digit at this position
    /// (0-based, after an optional `0x`).
    KeyNotHex { position: usize },
    /// The key is zero or not below the secp256k1 group order.
    KeyOutOfRange,
    /// The signature is not `0x` + 130 hex digits with `v` 27 or 28.
    SignatureFormat(&'static str),
    /// The signature is well formed but no address can be recovered from it
    /// (invalid point, high `s`, or it does not verify).
    SignatureInvalid,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IdentityError::KeyLength { got } => write!(
                f,
                "node key must be 64 hex digits, got {got} characters (value not shown)"
            ),
            IdentityError::KeyNotHex { position } => write!(
                f,
                "node key has a non-hex character at position {position} (value not shown)"
            ),
            IdentityError::KeyOutOfRange => write!(
                f,
                "node key is not a valid secp256k1 private key: it must be non-zero and \
                 below the curve order (value not shown)"
            ),
            IdentityError::SignatureFormat(why) => write!(f, "malformed signature: {why}"),
            IdentityError::SignatureInvalid => {
                write!(
                    f,
                    "signature is invalid: no address can be recovered from it"
                )
            }
        }
    }
}

impl std::error::Error for IdentityError {}

/// The node's signing identity. Not `Clone`: share it behind an `Arc` so the
/// key exists once in memory.
pub struct NodeIdentity {
    key: SigningKey,
    address: String,
}

impl fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeIdentity")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for NodeIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.address)
    }
}

/// The three authentication headers of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// EIP-55 address, `0x` prefixed: the `X-Node-Address` value.
    pub address: String,
    /// Unix seconds: the `X-Node-Timestamp` value (in decimal).
    pub timestamp: u64,
    /// `0x` + 130 hex digits: the `X-Node-Signature` value.
    pub signature: String,
}

impl SignedHeaders {
    /// The headers as (name, value) pairs, ready to add to a request.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            (HEADER_ADDRESS, self.address.clone()),
            (HEADER_TIMESTAMP, self.timestamp.to_string()),
            (HEADER_SIGNATURE, self.signature.clone()),
        ]
    }
}

impl NodeIdentity {
    /// Builds the identity from the private key as 64 hex digits (either
    /// case; a leading `0x` is tolerated). A key that is zero or not below
    /// the curve order is an error, never a panic.
    pub fn from_hex(key_hex: &str) -> Result<NodeIdentity, IdentityError> {
        let digits = key_hex
            .strip_prefix("0x")
            .or_else(|| key_hex.strip_prefix("0X"))
            .unwrap_or(key_hex);
        if digits.len() != 64 {
            return Err(IdentityError::KeyLength {
                got: digits.chars().count(),
            });
        }
        let mut bytes = [0u8; 32];
        let decoded = decode_hex(digits.as_bytes(), &mut bytes);
        let key = match decoded {
            Ok(()) => SigningKey::from_slice(&bytes).map_err(|_| IdentityError::KeyOutOfRange),
            Err(position) => Err(IdentityError::KeyNotHex { position }),
        };
        bytes.zeroize();
        let key = key?;
        let address = eip55(&address_of(key.verifying_key()));
        Ok(NodeIdentity { key, address })
    }

    /// The node's address, EIP-55 mixed case, `0x` prefixed.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// EIP-191 `personal_sign` of `message`: `0x` + 130 hex digits, `r‖s‖v`,
    /// low-s, `v` = 27/28. Deterministic (RFC 6979): the same key and message
    /// always give the same signature.
    pub fn personal_sign(&self, message: &[u8]) -> String {
        let hash = eip191_hash(message);
        // Cannot fail: the prehash is 32 bytes, and RFC 6979 only yields a
        // zero r or s with negligible probability (~2^-256); k256 always
        // returns a recovery id.
        let (sig, recid) = self
            .key
            .sign_prehash_recoverable(&hash)
            .expect("secp256k1 signing of a 32-byte prehash");
        let mut raw = [0u8; 65];
        raw[..64].copy_from_slice(&sig.to_bytes());
        raw[64] = 27 + recid.to_byte();
        format!("0x{}", hex_lower(&raw))
    }

    /// Signs one backend request: the values of the `X-Node-Address`,
    /// `X-Node-Timestamp` and `X-Node-Signature` headers. `method` and
    /// `path_and_query` must be exactly what is sent (e.g. `GET`,
    /// `/v1/nodes/x/workloads?since=3`); `body` is the exact body bytes
    /// (empty for none).
    pub fn sign_request(
        &self,
        method: &str,
        path_and_query: &str,
        timestamp: u64,
        body: &[u8],
    ) -> SignedHeaders {
        let message = request_message(method, path_and_query, timestamp, body);
        SignedHeaders {
            address: self.address.clone(),
            timestamp,
            signature: self.personal_sign(message.as_bytes()),
        }
    }
}

/// The message signed for a request:
/// `METHOD\nPATH_AND_QUERY\nTIMESTAMP\nhex(sha256(body))` (lowercase hex; an
/// empty body hashes as the empty string).
pub fn request_message(method: &str, path_and_query: &str, timestamp: u64, body: &[u8]) -> String {
    let body_hash = Sha256::digest(body);
    format!(
        "{method}\n{path_and_query}\n{timestamp}\n{}",
        hex_lower(&body_hash)
    )
}

/// keccak-256 of `"\x19Ethereum Signed Message:\n" + len(message) + message`
/// (EIP-191 version 0x45, what `personal_sign` signs).
pub fn eip191_hash(message: &[u8]) -> [u8; 32] {
    let mut h = Keccak256::new();
    h.update(b"\x19Ethereum Signed Message:\n");
    h.update(message.len().to_string().as_bytes());
    h.update(message);
    h.finalize().into()
}

/// Recovers the EIP-55 address that made `signature_hex` (`0x` + 130 hex
/// digits, `r‖s‖v`, `v` 27 or 28, low `s`) over `message` with
/// [`NodeIdentity::personal_sign`]. A signature over another message
/// recovers another address, so compare the result with the expected one.
pub fn recover_personal_sign(message: &[u8], signature_hex: &str) -> Result<String, IdentityError> {
    let digits = signature_hex
        .strip_prefix("0x")
        .ok_or(IdentityError::SignatureFormat("missing 0x prefix"))?;
    if digits.len() != 130 {
        return Err(IdentityError::SignatureFormat(
            "expected 130 hex digits after 0x",
        ));
    }
    let mut raw = [0u8; 65];
    decode_hex(digits.as_bytes(), &mut raw)
        .map_err(|_| IdentityError::SignatureFormat("not hexadecimal"))?;
    let recid = match raw[64] {
        27 => RecoveryId::new(false, false),
        28 => RecoveryId::new(true, false),
        _ => return Err(IdentityError::SignatureFormat("v must be 27 or 28")),
    };
    let sig = Signature::from_slice(&raw[..64]).map_err(|_| IdentityError::SignatureInvalid)?;
    if sig.normalize_s().is_some() {
        // High s: malleable twin of a valid signature, refused (EIP-2).
        return Err(IdentityError::SignatureInvalid);
    }
    let vk = VerifyingKey::recover_from_prehash(&eip191_hash(message), &sig, recid)
        .map_err(|_| IdentityError::SignatureInvalid)?;
    Ok(eip55(&address_of(&vk)))
}

/// EIP-55 mixed-case checksum encoding of a 20-byte address, `0x` prefixed.
pub fn eip55(addr20: &[u8; 20]) -> String {
    let lower = hex_lower(addr20);
    let hash = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        out.push(if nibble >= 8 {
            c.to_ascii_uppercase()
        } else {
            c
        });
    }
    out
}

/// Last 20 bytes of keccak-256 of the uncompressed public key without 0x04.
fn address_of(vk: &VerifyingKey) -> [u8; 20] {
    let point = vk.to_encoded_point(false);
    let hash = Keccak256::digest(&point.as_bytes()[1..]);
    let mut addr = [0u8; 20];
    addr.copy_from_slice(&hash[12..]);
    addr
}

fn hex_lower(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    s
}

/// Decodes `hex` (either case, exactly `2 * out.len()` digits) into `out`;
/// on error, the position of the first non-hex byte.
fn decode_hex(hex: &[u8], out: &mut [u8]) -> Result<(), usize> {
    debug_assert_eq!(hex.len(), out.len() * 2);
    fn val(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        let hi = val(pair[0]).ok_or(2 * i)?;
        let lo = val(pair[1]).ok_or(2 * i + 1)?;
        out[i] = hi << 4 | lo;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// web3.js `web3.eth.accounts` documentation: the `create()` example of
    /// the web3-eth-accounts 1.x README (this key and address), and the
    /// `sign()` example at docs.web3js.org/api/web3-eth-accounts/function/sign.
    const WEB3JS_KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
    const WEB3JS_ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";

    /// Hardhat / Anvil default account #0 (printed by `npx hardhat node` and
    /// `anvil`; derived from the "test test … junk" mnemonic).
    const HARDHAT_KEY: &str = "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
    const HARDHAT_ADDRESS: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

    /// secp256k1 group order n (SEC 2, section 2.4.1).
    const CURVE_ORDER: &str = "fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141";

    fn decode_vec(hex: &str) -> Vec<u8> {
        let mut out = vec![0u8; hex.len() / 2];
        decode_hex(hex.as_bytes(), &mut out).unwrap();
        out
    }

    #[test]
    fn address_from_web3js_docs_key() {
        let id = NodeIdentity::from_hex(WEB3JS_KEY).unwrap();
        assert_eq!(id.address(), WEB3JS_ADDRESS);
    }

    #[test]
    fn address_from_hardhat_anvil_account_0() {
        let id = NodeIdentity::from_hex(HARDHAT_KEY).unwrap();
        assert_eq!(id.address(), HARDHAT_ADDRESS);
        // Upper case and a 0x prefix name the same key.
        let id = NodeIdentity::from_hex(&format!("0x{}", HARDHAT_KEY.to_uppercase())).unwrap();
        assert_eq!(id.address(), HARDHAT_ADDRESS);
    }

    #[test]
    fn eip55_test_cases_from_the_erc_text() {
        // ERC-55 "Mixed-case checksum address encoding", section "Test Cases"
        // (ethereum/ERCs, ERCS/erc-55.md; formerly EIPS/eip-55.md).
        for expected in [
            // All caps
            "0x52908400098527886E0F7030069857D2E4169EE7",
            "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
            // All lower
            "0xde709f2102306220921060314715629080e2fb77",
            "0x27b1fdb04752bbc536007a920d24acb045561c26",
            // Normal
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
            "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
            "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
        ] {
            let bytes: [u8; 20] = decode_vec(&expected[2..].to_lowercase())
                .try_into()
                .unwrap();
            assert_eq!(eip55(&bytes), expected);
        }
    }

    #[test]
    fn personal_sign_matches_web3js_sign_docs_example() {
        // web3.js docs (docs.web3js.org/api/web3-eth-accounts/function/sign):
        // web3.eth.accounts.sign('Some data', '0x4c08…2318') gives
        // messageHash 0x1da4…1655, v 0x1c, signature 0xb914…a0291c.
        let hash = eip191_hash(b"Some data");
        assert_eq!(
            hex_lower(&hash),
            "1da44b586eb0729ff70a73c326926f6ed5a25f5b056e7f47fbc6e58d86871655"
        );
        let expected = "0xb91467e570a6466aa9e9876cbcd013baba02900b8979d43fe208a4a4f339f5fd\
                        6007e74cd82e037b800186422fc2da167c747ef045e5d18a5f5d4300f8e1a029\
                        1c";
        let id = NodeIdentity::from_hex(WEB3JS_KEY).unwrap();
        // RFC 6979: byte-for-byte the same signature.
        assert_eq!(id.personal_sign(b"Some data"), expected);
        assert_eq!(
            recover_personal_sign(b"Some data", expected).unwrap(),
            WEB3JS_ADDRESS
        );
    }

    #[test]
    fn request_message_layout() {
        // sha256("") from FIPS 180-2 / the NIST example values.
        assert_eq!(
            request_message("GET", "/v1/nodes/self?since=3", 1_700_000_000, b""),
            "GET\n/v1/nodes/self?since=3\n1700000000\n\
             e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // sha256("abc") from FIPS 180-2, appendix B.1.
        assert_eq!(
            request_message("POST", "/v1/x", 0, b"abc"),
            "POST\n/v1/x\n0\n\
             ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn signed_request_round_trip_recovers_the_address() {
        let id = NodeIdentity::from_hex(HARDHAT_KEY).unwrap();
        let body = br#"{"workloads":[]}"#;
        let h = id.sign_request("POST", "/v1/nodes/heartbeat?x=1", 1_714_000_000, body);
        assert_eq!(h.address, HARDHAT_ADDRESS);
        assert_eq!(h.timestamp, 1_714_000_000);
        assert_eq!(h.signature.len(), 132);
        assert!(h.signature.starts_with("0x"));
        let message = request_message("POST", "/v1/nodes/heartbeat?x=1", 1_714_000_000, body);
        assert_eq!(
            recover_personal_sign(message.as_bytes(), &h.signature).unwrap(),
            HARDHAT_ADDRESS
        );
        // Another body, path or time recovers someone else.
        let other = request_message("POST", "/v1/nodes/heartbeat?x=1", 1_714_000_001, body);
        assert_ne!(
            recover_personal_sign(other.as_bytes(), &h.signature).ok(),
            Some(HARDHAT_ADDRESS.to_string())
        );
        let pairs = h.pairs();
        assert_eq!(pairs[0], ("X-Node-Address", HARDHAT_ADDRESS.to_string()));
        assert_eq!(pairs[1], ("X-Node-Timestamp", "1714000000".to_string()));
        assert_eq!(pairs[2], ("X-Node-Signature", h.signature.clone()));
    }

    #[test]
    fn signed_requests_match_ethers_sign_message() {
        // Not published: produced with ethers 6.17.0,
        // `new Wallet(<Hardhat key #0>).signMessage(msg)` where msg is built
        // the same way (`ethers.sha256` of the body), and checked with
        // `ethers.verifyMessage` → 0xf39F…2266. Pins byte-for-byte agreement
        // with a standard tool on request messages.
        let id = NodeIdentity::from_hex(HARDHAT_KEY).unwrap();
        let cases = [
            (
                "POST",
                "/v1/nodes/heartbeat?x=1",
                1_714_000_000,
                &br#"{"workloads":[]}"#[..],
                "0x661cb0787a956d660972697c6d639e1fd9416a0f1bbce0bdae193b8756fc53a9\
                 522c33091423f05acb0becaa06767a5d4ed21594c7f173b2781409af122faf7f1c",
            ),
            (
                "GET",
                "/v1/nodes/self",
                1_700_000_000,
                &b""[..],
                "0x539268379b41319ccb19f13156c4e87877a238ef77e2d3b809f36a261e0161d0\
                 535afafe181ed07c9766caeb1ecadb8352fb577bafc53a09becdb85cd01df3821c",
            ),
        ];
        for (method, path, ts, body, expected) in cases {
            assert_eq!(id.sign_request(method, path, ts, body).signature, expected);
        }
    }

    #[test]
    fn signatures_are_low_s_with_v_27_or_28() {
        // n / 2, big-endian.
        let half_n = decode_vec("7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0");
        let id = NodeIdentity::from_hex(WEB3JS_KEY).unwrap();
        let mut seen_v = [false; 2];
        for i in 0..32u32 {
            let msg = format!("message {i}");
            let sig = id.personal_sign(msg.as_bytes());
            let raw = decode_vec(&sig[2..]);
            assert!(raw[32..64] <= half_n[..], "high s for {msg:?}");
            assert!(raw[64] == 27 || raw[64] == 28);
            seen_v[usize::from(raw[64] - 27)] = true;
            assert_eq!(id.personal_sign(msg.as_bytes()), sig, "deterministic");
        }
        assert_eq!(seen_v, [true, true], "both parities in 32 messages");
    }

    #[test]
    fn recover_rejects_malformed_and_high_s_signatures() {
        let id = NodeIdentity::from_hex(WEB3JS_KEY).unwrap();
        let good = id.personal_sign(b"m");
        let fmt = |r: Result<String, IdentityError>| match r {
            Err(IdentityError::SignatureFormat(_)) => true,
            other => panic!("expected a format error, got {other:?}"),
        };
        assert!(fmt(recover_personal_sign(b"m", &good[2..])));
        assert!(fmt(recover_personal_sign(b"m", &good[..130])));
        assert!(fmt(recover_personal_sign(b"m", &format!("{good}00"))));
        assert!(fmt(recover_personal_sign(
            b"m",
            &format!("{}zz", &good[..130])
        )));
        for v in ["00", "01", "1d", "ff"] {
            assert!(fmt(recover_personal_sign(
                b"m",
                &format!("{}{v}", &good[..130])
            )));
        }
        // r = 0 and s = 0 are not signatures.
        let zero = format!("0x{}1b", "0".repeat(128));
        assert_eq!(
            recover_personal_sign(b"m", &zero),
            Err(IdentityError::SignatureInvalid)
        );
        // The high-s twin (s' = n - s, v flipped) is valid ECDSA but refused.
        let raw = decode_vec(&good[2..]);
        let sig = Signature::from_slice(&raw[..64]).unwrap();
        let s_high = -*sig.s();
        let twin = Signature::from_scalars(sig.r().to_bytes(), s_high.to_bytes()).unwrap();
        let v = if raw[64] == 27 { 28u8 } else { 27 };
        let twin_hex = format!("0x{}{}", hex_lower(&twin.to_bytes()), hex_lower(&[v]));
        assert_eq!(
            recover_personal_sign(b"m", &twin_hex),
            Err(IdentityError::SignatureInvalid)
        );
    }

    #[test]
    fn bad_keys_are_errors_not_panics() {
        let cases: Vec<(String, IdentityError)> = vec![
            (String::new(), IdentityError::KeyLength { got: 0 }),
            (
                HARDHAT_KEY[..63].to_string(),
                IdentityError::KeyLength { got: 63 },
            ),
            (
                format!("{HARDHAT_KEY}0"),
                IdentityError::KeyLength { got: 65 },
            ),
            (
                format!("0x{}", &HARDHAT_KEY[..62]),
                IdentityError::KeyLength { got: 62 },
            ),
            (
                format!("{}g", &HARDHAT_KEY[..63]),
                IdentityError::KeyNotHex { position: 63 },
            ),
            (
                format!("{} {}", &HARDHAT_KEY[..10], &HARDHAT_KEY[11..]),
                IdentityError::KeyNotHex { position: 10 },
            ),
            // Non-ASCII: 62 ASCII digits and one 2-byte character.
            (
                format!("{}é", &HARDHAT_KEY[..62]),
                IdentityError::KeyNotHex { position: 62 },
            ),
            ("0".repeat(64), IdentityError::KeyOutOfRange),
            (CURVE_ORDER.to_string(), IdentityError::KeyOutOfRange),
            ("f".repeat(64), IdentityError::KeyOutOfRange),
        ];
        for (key, expected) in cases {
            let err = NodeIdentity::from_hex(&key).unwrap_err();
            assert_eq!(err, expected, "{key:?}");
            let shown = format!("{err} {err:?}");
            if key.len() >= 16 {
                assert!(!shown.contains(&key[..16]), "{shown}");
            }
        }
        // n - 1 is the largest valid key.
        let n_minus_1 = format!("{}40", &CURVE_ORDER[..62]);
        assert!(NodeIdentity::from_hex(&n_minus_1).is_ok());
        assert!(NodeIdentity::from_hex(&format!("{}1", "0".repeat(63))).is_ok());
    }

    #[test]
    fn debug_and_display_never_show_the_key() {
        for (key, address) in [(WEB3JS_KEY, WEB3JS_ADDRESS), (HARDHAT_KEY, HARDHAT_ADDRESS)] {
            let id = NodeIdentity::from_hex(key).unwrap();
            let shown = format!("{id} {id:?} {id:#?}").to_lowercase();
            assert!(shown.contains(&address.to_lowercase()), "{shown}");
            // No 8-digit window of the key appears, in any case.
            for start in 0..=56 {
                assert!(!shown.contains(&key[start..start + 8]), "{shown}");
            }
            // Nor its bytes as decimal (the derived Debug of an array).
            let bytes = decode_vec(key);
            let decimal = format!("{:?}", &bytes[..4]);
            assert!(!shown.contains(&decimal[1..decimal.len() - 1]), "{shown}");
        }
        assert_eq!(
            format!("{:?}", NodeIdentity::from_hex(HARDHAT_KEY).unwrap()),
            format!("NodeIdentity {{ address: {HARDHAT_ADDRESS:?}, .. }}")
        );
    }
}
