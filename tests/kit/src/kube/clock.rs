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
    let (a, b) = (random_u64(), random_u64());
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

/// A stable 10-character hash of a value, spelled like a `pod-template-hash`.
pub(crate) fn short_hash<T: Hash>(value: &T) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = std::collections::hash_map::DefaultHasher::new();
    value.hash(&mut h);
    let mut n = h.finish();
    (0..10)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
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
}
