//! DSNs and public keys as Relay reads them. A DSN is
//! `{scheme}://{public_key}[:{secret}]@{host}[:{port}]{path}/{project_id}`
//! (develop docs, "Parsing the DSN"); Relay keeps the key and the numeric
//! project id and compares only those. A public key is 32 ASCII
//! characters, optionally followed by `.flag` suffixes
//! (`ProjectKey::parse_with_flags`).

/// The parts of a DSN the fake compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Dsn {
    pub public_key: String,
    pub project_id: u64,
}

/// The key part of a `sentry_key` (before any `.flag`), if it is 32
/// ASCII characters, as Relay's `ProjectKey` requires.
pub(crate) fn project_key(key: &str) -> Option<&str> {
    let key = key.split('.').next().unwrap_or("");
    (key.len() == 32 && key.is_ascii()).then_some(key)
}

/// Parses a DSN; the error says which part is wrong.
pub(crate) fn parse(s: &str) -> Result<Dsn, String> {
    let (scheme, rest) = s
        .split_once("://")
        .ok_or_else(|| format!("{s:?} is not a DSN URL"))?;
    if !matches!(scheme, "http" | "https") {
        return Err(format!("unknown protocol {scheme:?} (http or https)"));
    }
    let (userinfo, location) = rest
        .split_once('@')
        .ok_or_else(|| "no public key (username) in the DSN".to_string())?;
    let user = userinfo.split(':').next().unwrap_or("");
    let public_key = project_key(user)
        .ok_or_else(|| format!("the DSN's public key {user:?} is not 32 characters"))?;
    let (host_port, path) = location.split_once('/').unwrap_or((location, ""));
    if host_port.is_empty() {
        return Err("no host in the DSN".into());
    }
    if let Some((_, port)) = host_port.rsplit_once(':') {
        if !host_port.ends_with(']') && port.parse::<u16>().is_err() {
            return Err(format!("the DSN's port {port:?} is not a number"));
        }
    }
    let project = path.rsplit('/').next().unwrap_or("");
    let project_id = project
        .parse::<u64>()
        .ok()
        .filter(|_| !project.is_empty() && project.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| format!("the DSN's project id {project:?} is not a number"))?;
    Ok(Dsn {
        public_key: public_key.to_string(),
        project_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "e12d836b15bb49d7bbf99e64295d995b";

    #[test]
    fn reads_the_docs_dsns() {
        for dsn in [
            format!("https://{KEY}:@sentry.io/42"),
            format!("https://{KEY}@sentry.io/42"),
            format!("http://{KEY}:secret@127.0.0.1:9000/some/path/42"),
            format!("https://{KEY}.no-cache@o1.ingest.sentry.io/42"),
        ] {
            assert_eq!(
                parse(&dsn),
                Ok(Dsn {
                    public_key: KEY.into(),
                    project_id: 42
                }),
                "{dsn}"
            );
        }
    }

    #[test]
    fn bad_dsns_are_reasons_not_panics() {
        for bad in [
            "",
            "sentry.io/42",
            &format!("ftp://{KEY}@sentry.io/42")[..],
            "https://sentry.io/42",
            "https://short@sentry.io/42",
            &format!("https://{KEY}@/42")[..],
            &format!("https://{KEY}@sentry.io")[..],
            &format!("https://{KEY}@sentry.io/")[..],
            &format!("https://{KEY}@sentry.io/abc")[..],
            &format!("https://{KEY}@sentry.io:port/42")[..],
            &format!("https://{KEY}@sentry.io/+42")[..],
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(project_key("ab"), None);
        assert_eq!(project_key(&format!("{KEY}.flag")), Some(KEY));
        assert_eq!(project_key(&"é".repeat(16)), None);
    }
}
