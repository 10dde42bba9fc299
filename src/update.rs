//! Self-update decisions (interfaces section 5): which version the S3 update
//! file names, whether the manager should roll its own container to it, and
//! which image that is.
//!
//! Pure: no I/O, no clock, no logging; the update-check job reads the file and
//! the manager's own Deployment, asks [`decide`], and carries the answer out.
//! It must never produce an image in another repository than the running
//! one, nor decide an update to a version older than or equal to the running
//! manager's own.

use std::cmp::Ordering;
use std::fmt;

use serde_json::Value;

/// The largest update file accepted, in bytes.
pub const MAX_FILE: usize = 4096;

/// Annotation on the manager's own Deployment that records the version that
/// was rolled back; that version is not tried again (see [`decide`]).
pub const ANNOTATION_REJECTED: &str = "workload-manager/rejected-version";

/// Fields that would name where the image comes from; the update file may
/// only name a version, so a file carrying one of these is refused.
const REFUSED_FIELDS: [&str; 3] = ["image", "repository", "registry"];

const WANT_VERSION: &str = "want MAJOR.MINOR.PATCH, e.g. 0.4.0";

/// A semantic version (semver.org 2.0.0), ordered by semver precedence (§11).
/// Build metadata is accepted by [`Version::parse`] but neither stored nor
/// compared, so `1.0.0+build.1 == 1.0.0`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: u64,
    pre: Vec<Ident>,
}

/// A pre-release identifier. The variant order is semver's: numeric
/// identifiers sort below alphanumeric ones (derived `Ord` relies on it).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Ident {
    Numeric(u64),
    Alphanumeric(String),
}

impl Version {
    /// Parses `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, with one optional leading
    /// `v` or `V` and surrounding whitespace ignored. Numbers must fit a u64
    /// and have no leading zeros; identifiers are non-empty `[0-9A-Za-z-]`.
    /// The error is a sentence for an operator and quotes at most 64
    /// characters of the input, control characters shown as `?`.
    pub fn parse(input: &str) -> Result<Version, String> {
        let trimmed = input.trim();
        let bad = |why: &str| format!("{} is not a semantic version ({why})", quote(trimmed));
        let s = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
        let (s, build) = s.split_once('+').map_or((s, None), |(s, b)| (s, Some(b)));
        if build.is_some_and(|b| !b.split('.').all(is_identifier)) {
            return Err(bad(WANT_VERSION));
        }
        let (core, pre) = s.split_once('-').map_or((s, None), |(c, p)| (c, Some(p)));
        let numbers = core.split('.').map(number).collect::<Result<Vec<_>, _>>();
        let [major, minor, patch] = numbers.map_err(bad)?[..] else {
            return Err(bad(WANT_VERSION));
        };
        let pre = pre.map_or(Ok(Vec::new()), |p| {
            p.split('.').map(pre_identifier).collect()
        });
        Ok(Version {
            major,
            minor,
            patch,
            pre: pre.map_err(bad)?,
        })
    }
}

/// The version this binary was built as (what `--version` prints).
pub fn running() -> Version {
    // Cargo refuses to build a package whose version is not semver, so the
    // fallback is unreachable; it exists only so there is no panic path.
    let zero = Version {
        major: 0,
        minor: 0,
        patch: 0,
        pre: Vec::new(),
    };
    Version::parse(env!("CARGO_PKG_VERSION")).unwrap_or(zero)
}

/// One numeric part: ASCII digits, no leading zero, fits a u64.
fn number(s: &str) -> Result<u64, &'static str> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(WANT_VERSION);
    }
    if s.len() > 1 && s.starts_with('0') {
        return Err("numbers may not have leading zeros");
    }
    s.parse().map_err(|_| "a number is too large")
}

fn pre_identifier(s: &str) -> Result<Ident, &'static str> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        number(s).map(Ident::Numeric)
    } else if is_identifier(s) {
        Ok(Ident::Alphanumeric(s.to_string()))
    } else {
        Err(WANT_VERSION)
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            // A release (no pre-release identifiers) ranks above its pre-releases.
            .then(self.pre.is_empty().cmp(&other.pre.is_empty()))
            // Dot by dot; a longer list wins when all before are equal.
            .then_with(|| self.pre.cmp(&other.pre))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The canonical form: no leading `v`, no build metadata.
impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match id {
                Ident::Numeric(n) => write!(f, "{n}")?,
                Ident::Alphanumeric(s) => f.write_str(s)?,
            }
        }
        Ok(())
    }
}

/// The version the S3 update file names. The file is a bare version string
/// or JSON: `{"version": "0.4.0"}` (other fields ignored) or `"0.4.0"`. A file
/// over [`MAX_FILE`] bytes, not UTF-8, empty, any other JSON, or JSON with an
/// `image`, `repository` or `registry` field is refused: the file may only
/// name a version, never where the image comes from.
pub fn parse_file(body: &[u8]) -> Result<Version, String> {
    if body.len() > MAX_FILE {
        return Err(format!(
            "the update file is {} bytes, more than the {MAX_FILE} allowed",
            body.len()
        ));
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| "the update file is not UTF-8 text".to_string())?
        .trim();
    if text.is_empty() {
        return Err("the update file is empty; it should name a version such as 0.4.0".into());
    }
    if !text.starts_with(['{', '[', '"']) {
        return Version::parse(text);
    }
    let json: Value = serde_json::from_str(text)
        .map_err(|e| format!("the update file is not valid JSON: {e}"))?;
    match json {
        Value::String(s) => Version::parse(&s),
        Value::Object(fields) => {
            let refused = fields
                .keys()
                .find(|k| REFUSED_FIELDS.contains(&k.to_ascii_lowercase().as_str()));
            if let Some(key) = refused {
                return Err(format!(
                    "the update file may only name a version, but it carries {}",
                    quote(key)
                ));
            }
            match fields.get("version") {
                Some(Value::String(s)) => Version::parse(s),
                _ => Err(
                    r#"the update file has no "version" string, e.g. {"version": "0.4.0"}"#.into(),
                ),
            }
        }
        _ => Err(r#"the update file must be a version or {"version": "0.4.0"}"#.into()),
    }
}

/// A container image reference split by the docker reference grammar,
/// `REPOSITORY[:TAG][@DIGEST]`. The repository keeps any registry host and
/// port: `registry:5000/wm` has no tag, `registry:5000/wm:1.2.3` has `1.2.3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageRef {
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// Splits `image`. The repository must be non-empty (it is not checked
    /// further); a tag is 1 to 128 of `[A-Za-z0-9_.-]`, not starting with `.`
    /// or `-`; a digest is `sha256:` and 64 lowercase hex digits. No
    /// whitespace or control characters anywhere.
    pub fn parse(image: &str) -> Result<ImageRef, String> {
        let bad = || {
            format!(
                "{} is not an image reference (want REPOSITORY[:TAG][@sha256:DIGEST])",
                quote(image)
            )
        };
        if image.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad());
        }
        let (rest, digest) = image
            .split_once('@')
            .map_or((image, None), |(r, d)| (r, Some(d)));
        // A `:` before the last `/` separates a registry port, not a tag.
        let (repository, tag) = match rest.rsplit_once(':') {
            Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
            _ => (rest, None),
        };
        if repository.is_empty()
            || tag.is_some_and(|t| !is_tag(t))
            || digest.is_some_and(|d| !is_digest(d))
        {
            return Err(bad());
        }
        Ok(ImageRef {
            repository: repository.into(),
            tag: tag.map(Into::into),
            digest: digest.map(Into::into),
        })
    }
}

fn is_tag(t: &str) -> bool {
    (1..=128).contains(&t.len())
        && !t.starts_with(['.', '-'])
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}

fn is_digest(d: &str) -> bool {
    d.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The image for `version`: exactly `current`'s repository, tagged with the
/// version in the current tag's style (`v0.4.0` if the current tag starts
/// with `v`, else `0.4.0`). A digest is dropped in favour of the tag. Errs if
/// `current` does not parse or the tag would exceed 128 characters.
pub fn image_for(current: &str, version: &Version) -> Result<String, String> {
    let image = ImageRef::parse(current)?;
    let style = match image.tag.as_deref() {
        Some(tag) if tag.starts_with('v') => "v",
        _ => "",
    };
    let tag = format!("{style}{version}");
    if !is_tag(&tag) {
        return Err(format!(
            "version {} is too long for an image tag (at most 128 characters)",
            quote(&tag)
        ));
    }
    Ok(format!("{}:{tag}", image.repository))
}

/// What the update check should do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The file names the running version or an older one.
    UpToDate { latest: Version },
    /// The file names a version that was rolled back before; wait for a newer one.
    Rejected { version: Version },
    /// Roll the manager's own container to `image`.
    Update { version: Version, image: String },
}

/// Decides on the version the file names. Never an update to a version
/// older than or equal to `running`; never again to `rejected` or anything
/// older; otherwise an update to [`image_for`]`(current_image, latest)`.
/// `current_image` is only parsed when an update is due, so an unparsable
/// one is an error only then.
pub fn decide(
    running: &Version,
    latest: &Version,
    rejected: Option<&Version>,
    current_image: &str,
) -> Result<Decision, String> {
    if latest <= running {
        return Ok(Decision::UpToDate {
            latest: latest.clone(),
        });
    }
    let version = latest.clone();
    if rejected.is_some_and(|r| latest <= r) {
        return Ok(Decision::Rejected { version });
    }
    let image = image_for(current_image, latest)?;
    Ok(Decision::Update { version, image })
}

/// The image to restore when the manager did not record the previous one
/// itself (e.g. after a restart): [`image_for`]`(current_image, running)`,
/// the same repository with the running version in the current tag's style.
pub fn rollback_image(current_image: &str, running: &Version) -> Result<String, String> {
    image_for(current_image, running)
}

/// The version recorded in [`ANNOTATION_REJECTED`]; none if the annotation
/// is absent or does not parse.
pub fn rejected(annotation: Option<&str>) -> Option<Version> {
    annotation.and_then(|a| Version::parse(a).ok())
}

/// `s` quoted for an error: at most 64 characters, control characters as `?`.
fn quote(s: &str) -> String {
    let printable = |c: char| if c.is_control() { '?' } else { c };
    let shown: String = s.chars().take(64).map(printable).collect();
    let more = if s.chars().nth(64).is_some() {
        "…"
    } else {
        ""
    };
    format!("\"{shown}{more}\"")
}

/// The manager's container in its own Deployment (JSON as read): its
/// index in the pod template and its image.
pub fn own_container(deployment: &Value, container: &str) -> Result<(usize, String), String> {
    let containers = deployment
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .ok_or("the Deployment has no containers")?;
    let (index, found) = containers
        .iter()
        .enumerate()
        .find(|(_, c)| c["name"] == container)
        .ok_or_else(|| format!("the Deployment has no container named {container:?}"))?;
    let image = found["image"]
        .as_str()
        .ok_or_else(|| format!("container {container:?} has no image"))?;
    Ok((index, image.to_string()))
}

/// The version recorded as rolled back on the manager's own Deployment.
pub fn rejected_on(deployment: &Value) -> Option<Version> {
    let annotation = deployment
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(ANNOTATION_REJECTED))
        .and_then(Value::as_str);
    rejected(annotation)
}

/// A JSON patch (RFC 6902) that changes the image of container `index`
/// from `from` to `to` and nothing else, failing as a whole if that
/// container is no longer `name` running `from`; with `reject`, it also
/// records that version as rolled back.
pub fn image_patch(
    deployment: &Value,
    index: usize,
    name: &str,
    from: &str,
    to: &str,
    reject: Option<&Version>,
) -> Value {
    let container = format!("/spec/template/spec/containers/{index}");
    let mut ops = vec![
        serde_json::json!({"op": "test", "path": format!("{container}/name"), "value": name}),
        serde_json::json!({"op": "test", "path": format!("{container}/image"), "value": from}),
        serde_json::json!({"op": "replace", "path": format!("{container}/image"), "value": to}),
    ];
    if let Some(version) = reject {
        let version = version.to_string();
        if deployment
            .pointer("/metadata/annotations")
            .is_some_and(Value::is_object)
        {
            ops.push(serde_json::json!({
                "op": "add",
                "path": format!("/metadata/annotations/{}", ANNOTATION_REJECTED.replace('~', "~0").replace('/', "~1")),
                "value": version,
            }));
        } else {
            ops.push(serde_json::json!({
                "op": "add",
                "path": "/metadata/annotations",
                "value": {ANNOTATION_REJECTED: version},
            }));
        }
    }
    Value::Array(ops)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    #[test]
    fn parses_versions() {
        for (input, canonical) in [
            ("0.4.0", "0.4.0"),
            ("v0.4.0", "0.4.0"),
            ("V0.4.0", "0.4.0"),
            (" \t1.2.3\n", "1.2.3"),
            ("1.0.0-alpha.1", "1.0.0-alpha.1"),
            ("1.0.0-x-y.0.a-b", "1.0.0-x-y.0.a-b"),
            ("1.0.0+build.01", "1.0.0"),
            ("1.0.0-rc.1+exp.sha.5114f85", "1.0.0-rc.1"),
            ("18446744073709551615.0.0", "18446744073709551615.0.0"),
        ] {
            let got = Version::parse(input).map(|v| v.to_string());
            assert_eq!(got.as_deref(), Ok(canonical), "{input:?}");
        }
        let x = v("1.2.3-rc.1");
        assert_eq!((x.major, x.minor, x.patch, x.pre.len()), (1, 2, 3, 2));
    }

    #[test]
    fn rejects_non_versions() {
        let bad = "|v|1.2|1.2.3.4|01.2.3|1.02.3|1.2.03|1.0.0-01|1.0.0-|1.0.0+|1.0.0-a..b|1.0.0+a..b\
                   |vv1.2.3|1.2.3 x|1 .2.3|1.2.3/x|1.2.3:x|1.2.3@x|a.b.c|-1.2.3|+1.2.3|1.2.3-é\
                   |1.2.3\u{0}|1.2.3-a\u{7f}|latest|18446744073709551616.0.0|1.0.0-18446744073709551616";
        for bad in bad.split('|') {
            assert!(Version::parse(bad).is_err(), "{bad:?}");
        }
        let want = "\"1.2\" is not a semantic version (want MAJOR.MINOR.PATCH, e.g. 0.4.0)";
        assert_eq!(Version::parse("1.2"), Err(want.to_string()));
        let e = Version::parse("01.2.3").unwrap_err();
        assert!(e.contains("leading zeros"), "{e}");
    }

    #[test]
    fn errors_quote_little_and_no_control_characters() {
        let e = Version::parse(&format!("1.2.\u{1b}[31m{}", "x".repeat(200))).unwrap_err();
        assert!(e.starts_with("\"1.2.?[31mxxx"), "{e}");
        assert!(!e.chars().any(char::is_control), "{e}");
        assert!(e.contains(&format!("{}…\"", "x".repeat(55))), "{e}");
        assert!(!e.contains(&"x".repeat(56)), "{e}");
    }

    #[test]
    fn semver_precedence() {
        let chain = "1.0.0-alpha 1.0.0-alpha.1 1.0.0-alpha.beta 1.0.0-beta 1.0.0-beta.2 \
                     1.0.0-beta.11 1.0.0-rc.1 1.0.0 2.0.0 2.1.0 2.1.1 10.0.0";
        let chain: Vec<&str> = chain.split_whitespace().collect();
        assert_eq!(chain.len(), 12);
        for (i, a) in chain.iter().enumerate() {
            for (j, b) in chain.iter().enumerate() {
                assert_eq!(v(a).cmp(&v(b)), i.cmp(&j), "{a} vs {b}");
            }
        }
        assert_eq!(v("1.0.0+build.1"), v("1.0.0"));
        assert_eq!(v("1.0.0+a").cmp(&v("1.0.0+b")), Ordering::Equal);
        assert!(v("1.0.0-2") < v("1.0.0-10"), "numeric, not lexical");
        assert!(v("1.0.0-99") < v("1.0.0-a"), "numeric below alphanumeric");
        assert!(v("1.0.0-B") < v("1.0.0-a"), "ASCII order");
    }

    #[test]
    fn running_is_the_crate_version() {
        assert_eq!(running().to_string(), env!("CARGO_PKG_VERSION"));
        assert_ne!(running(), v("0.0.0"));
    }

    #[test]
    fn file_forms() {
        let forms = "0.4.0|0.4.0\n| v0.4.0 |\r\nV0.4.0\r\n|0.4.0+build.7|{\"version\":\"0.4.0\",\"notes\":\"x\"}\
                     | {\"version\": \" v0.4.0 \"} |\"0.4.0\"";
        for body in forms.split('|') {
            assert_eq!(parse_file(body.as_bytes()), Ok(v("0.4.0")), "{body:?}");
        }
        let rc = parse_file(br#"{"version":"0.5.0-rc.1"}"#);
        assert_eq!(rc, Ok(v("0.5.0-rc.1")));
    }

    #[test]
    fn garbage_files_are_refused() {
        let big = "1".repeat(5 * 1024);
        let garbage = r#"|latest|1.2| |[1]|["0.4.0"]|3|null|"0.4"|{"version": "0.4.0"|{"version": 3}
                         |{"tag": "0.4.0"}|{"image": "evil/x:9.9.9", "version": "9.9.9"}
                         |{"repository": "evil/x", "version": "9.9.9"}|{"version": "9.9.9", "Registry": "e"}"#;
        for body in garbage
            .split('|')
            .map(str::trim_start)
            .chain([" \n", "\u{0}", &big])
        {
            assert!(parse_file(body.as_bytes()).is_err(), "{body:?}");
        }
        assert!(parse_file(b"0.4.0\xff").is_err());
        let e = parse_file(br#"{"image": "evil/x:9.9.9", "version": "9.9.9"}"#).unwrap_err();
        assert!(e.contains("may only name a version"), "{e}");
        let e = parse_file(big.as_bytes()).unwrap_err();
        assert!(e.contains("5120 bytes") && !e.contains("1111"), "{e}");
    }

    #[test]
    fn image_references() {
        let (with_digest, tag_and_digest) = (format!("a/b@{DIGEST}"), format!("a/b:1.0@{DIGEST}"));
        for (image, want) in [
            ("wm", ("wm", None, None)),
            ("wm:1.0", ("wm", Some("1.0"), None)),
            ("registry:5000/repo", ("registry:5000/repo", None, None)),
            (
                "registry:5000/repo:1.2.3",
                ("registry:5000/repo", Some("1.2.3"), None),
            ),
            (
                "Docker.IO/Library/WM:Latest",
                ("Docker.IO/Library/WM", Some("Latest"), None),
            ),
            (&with_digest, ("a/b", None, Some(DIGEST))),
            (&tag_and_digest, ("a/b", Some("1.0"), Some(DIGEST))),
        ] {
            let got = ImageRef::parse(image).unwrap();
            let got = (
                got.repository.as_str(),
                got.tag.as_deref(),
                got.digest.as_deref(),
            );
            assert_eq!(got, want, "{image:?}");
        }
        let bad = format!(
            "|:1.0|@{DIGEST}|a b:1.0|a/b:|a/b:-x|a/b:.x|a/b:1+2|a/b@|a/b@sha256:00|a/b@md5:00\
             |a/b@{}|a/b@{DIGEST}@{DIGEST}|a/b\n:1.0|wm:{}",
            DIGEST.to_uppercase(),
            "a".repeat(129)
        );
        for bad in bad.split('|') {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?}");
        }
        assert!(ImageRef::parse(&format!("wm:{}", "a".repeat(128))).is_ok());
    }

    #[test]
    fn image_for_keeps_repository_and_tag_style() {
        let with_digest = format!("a/b@{DIGEST}");
        let tag_and_digest = format!("a/b:1.0.0@{DIGEST}");
        let v_and_digest = format!("a/b:v1.0.0@{DIGEST}");
        for (current, want) in [
            ("registry:5000/a/b:v1.0.0", "registry:5000/a/b:v0.4.0"),
            (&with_digest, "a/b:0.4.0"),
            (&tag_and_digest, "a/b:0.4.0"),
            (&v_and_digest, "a/b:v0.4.0"),
            ("localhost/wm", "localhost/wm:0.4.0"),
            ("registry:5000/wm", "registry:5000/wm:0.4.0"),
            ("docker.io/library/wm:latest", "docker.io/library/wm:0.4.0"),
            ("wm:V1.0.0", "wm:0.4.0"),
        ] {
            let got = image_for(current, &v("v0.4.0+build.9"));
            assert_eq!(got.as_deref(), Ok(want), "{current:?}");
            let (before, after) = (ImageRef::parse(current), ImageRef::parse(want));
            assert_eq!(after.unwrap().repository, before.unwrap().repository);
        }
        let got = image_for("ghcr.io/o/wm:v0.1.0", &v("0.2.0-rc.1"));
        assert_eq!(got.as_deref(), Ok("ghcr.io/o/wm:v0.2.0-rc.1"));
        assert!(image_for("a b", &v("0.4.0")).is_err());
        let long = v(&format!("1.0.0-{}", "a".repeat(130)));
        assert!(image_for("wm:1.0.0", &long).is_err());
    }

    #[test]
    fn decisions() {
        let (running, image) = (v("0.1.0"), "ghcr.io/o/wm:v0.1.0");
        let up_to_date = |s: &str| Decision::UpToDate { latest: v(s) };
        let rejected = |s: &str| Decision::Rejected { version: v(s) };
        let update = |s: &str| Decision::Update {
            version: v(s),
            image: format!("ghcr.io/o/wm:v{s}"),
        };
        for (latest, rejected_version, want) in [
            ("0.1.0", None, up_to_date("0.1.0")),
            ("0.1.0+other", None, up_to_date("0.1.0")),
            ("0.0.9", None, up_to_date("0.0.9")),
            ("0.1.0-rc.1", None, up_to_date("0.1.0-rc.1")),
            ("0.1.0", Some("0.1.0"), up_to_date("0.1.0")),
            ("0.2.0-rc.1", None, update("0.2.0-rc.1")),
            ("0.2.0", None, update("0.2.0")),
            ("0.2.0", Some("0.2.0"), rejected("0.2.0")),
            ("0.2.0", Some("v0.2.0+b"), rejected("0.2.0")),
            ("0.2.0", Some("0.3.0"), rejected("0.2.0")),
            ("0.2.0-rc.1", Some("0.2.0"), rejected("0.2.0-rc.1")),
            ("0.2.0", Some("0.2.0-rc.1"), update("0.2.0")),
            ("0.3.0", Some("0.2.0"), update("0.3.0")),
        ] {
            let r = rejected_version.map(v);
            let got = decide(&running, &v(latest), r.as_ref(), image);
            assert_eq!(got, Ok(want), "{latest} {rejected_version:?}");
        }
        assert!(decide(&running, &v("0.2.0"), None, "not an image").is_err());
        let got = decide(&running, &v("0.1.0"), None, "not an image");
        assert_eq!(got, Ok(up_to_date("0.1.0")));
    }

    #[test]
    fn rollback_and_rejected_annotation() {
        let got = rollback_image("ghcr.io/o/wm:v0.2.0", &v("0.1.0"));
        assert_eq!(got.as_deref(), Ok("ghcr.io/o/wm:v0.1.0"));
        let got = rollback_image(&format!("wm@{DIGEST}"), &v("0.1.0"));
        assert_eq!(got.as_deref(), Ok("wm:0.1.0"));
        assert_eq!(rejected(Some("v0.2.0")), Some(v("0.2.0")));
        assert_eq!(rejected(Some("0.2.0-rc.1")), Some(v("0.2.0-rc.1")));
        for garbage in [None, Some(""), Some("yes"), Some("0.2")] {
            assert_eq!(rejected(garbage), None, "{garbage:?}");
        }
    }

    #[test]
    fn the_image_patch_touches_one_image_and_tests_it_first() {
        let d = serde_json::json!({
            "metadata": {"name": "workload-manager"},
            "spec": {"template": {"spec": {"containers": [
                {"name": "sidecar", "image": "other:1"},
                {"name": "workload-manager", "image": "r/wm:0.1.0"}
            ]}}}
        });
        assert_eq!(
            own_container(&d, "workload-manager"),
            Ok((1, "r/wm:0.1.0".to_string()))
        );
        assert!(own_container(&d, "nope")
            .unwrap_err()
            .contains("no container named"));
        assert!(own_container(&serde_json::json!({}), "x").is_err());
        let p = image_patch(&d, 1, "workload-manager", "r/wm:0.1.0", "r/wm:0.2.0", None);
        assert_eq!(p.as_array().map(Vec::len), Some(3));
        assert_eq!(p[0]["op"], "test");
        assert_eq!(p[0]["path"], "/spec/template/spec/containers/1/name");
        assert_eq!(p[1]["value"], "r/wm:0.1.0");
        assert_eq!(
            p[2],
            serde_json::json!({"op": "replace", "path": "/spec/template/spec/containers/1/image", "value": "r/wm:0.2.0"})
        );

        let v = Version::parse("0.2.0").unwrap();
        let p = image_patch(
            &d,
            1,
            "workload-manager",
            "r/wm:0.2.0",
            "r/wm:0.1.0",
            Some(&v),
        );
        assert_eq!(p[3]["path"], "/metadata/annotations");
        assert_eq!(p[3]["value"][ANNOTATION_REJECTED], "0.2.0");
        let annotated = serde_json::json!({"metadata": {"annotations": {"a": "b"}}});
        let p = image_patch(&annotated, 0, "x", "a", "b", Some(&v));
        assert_eq!(
            p[3]["path"],
            "/metadata/annotations/workload-manager~1rejected-version"
        );
        assert_eq!(
            rejected_on(
                &serde_json::json!({"metadata": {"annotations": {ANNOTATION_REJECTED: "0.2.0"}}})
            ),
            Some(v)
        );
        assert_eq!(rejected_on(&annotated), None);
    }
}
