//! Kubernetes name rules shared by the API, the configuration and (later) the
//! desired state.

/// A DNS-1123 label: 1 to 63 of `a-z`, `0-9` and `-`, starting and ending
/// with a letter or digit. Workload names are labels.
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-')
}

/// A DNS-1123 subdomain: at most 253 bytes of dot-separated labels. Node
/// names are subdomains.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for good in ["a", "web", "web-1", "0abc", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good:?}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Web",
            "a.b",
            "a_b",
            "a b",
            "a\r\nb",
            "é",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn subdomains() {
        for good in ["edge-1", "node.example.com", "ip-10-0-0-1.ec2.internal"] {
            assert!(is_dns_subdomain(good), "{good:?}");
        }
        for bad in [
            "",
            ".a",
            "a.",
            "a..b",
            "A.b",
            "a/b",
            "../x",
            &"a.".repeat(127),
        ] {
            assert!(!is_dns_subdomain(bad), "{bad:?}");
        }
    }
}
