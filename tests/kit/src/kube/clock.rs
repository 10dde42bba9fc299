//! The API's timestamps (RFC 3339, UTC, whole seconds, on the wall clock)
//! and the random identifiers the fake hands out (uids, hashes).

use std::hash::{Hash, Hasher};

use crate::net::random_u64;
use crate::net::time::{rfc3339, unix_now};

/// The current time, RFC 3339.
pub(crate) fn now() -> String {
    rfc3339(unix_now())
}

/// A random RFC 4122 version-4 UUID, as object uids look.
pub(crate) fn uid() -> String {
    uuid4(random_u64(), random_u64())
}

/// Two 64-bit values spelled as a version-4 UUID.
fn uuid4(a: u64, b: u64) -> String {
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xfff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// A stable 64-bit hash (the same in every run: SipHash with fixed keys).
fn hash64<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    h.finish()
}

/// A stable 10-character hash of a value, spelled like a `pod-template-hash`
/// (the alphabet of apimachinery's `rand.SafeEncodeString`).
pub(crate) fn short_hash<T: Hash>(value: &T) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut n = hash64(value);
    (0..10)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

/// A version-4-shaped UUID derived from `seed`: the same seed, the same uid
/// (for objects the fake does not store, like a Deployment's ReplicaSets).
pub(crate) fn stable_uid<T: Hash + ?Sized>(seed: &T) -> String {
    uuid4(hash64(&(0u8, seed)), hash64(&(1u8, seed)))
}

/// 64 lowercase hex digits derived from `seed`, as container IDs and image
/// digests look.
pub(crate) fn hex64<T: Hash + ?Sized>(seed: &T) -> String {
    (0u8..4)
        .map(|i| format!("{:016x}", hash64(&(i, seed))))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_look_like_uuids() {
        let u = uid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, uid());
    }

    #[test]
    fn derived_ids_are_stable() {
        assert_eq!(stable_uid("a"), stable_uid("a"));
        assert_ne!(stable_uid("a"), stable_uid("b"));
        assert_eq!(stable_uid("a").len(), 36);
        assert_eq!(hex64("a").len(), 64);
        assert_eq!(short_hash(&"t").len(), 10);
    }
}
