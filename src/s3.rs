//! The self-update file in S3. rust-s3 knows the bucket, region and
//! endpoint and signs a short-lived presigned GET (SigV4); the GET itself
//! goes through our ureq agent, so there is one TLS stack with the roots
//! compiled in, a timeout and no proxy. Anonymous access sends the plain
//! object URL. Neither the credentials nor a presigned URL (whose signature
//! grants access for its lifetime) ever appears in an error or a log.

use std::time::Duration;

use s3::creds::Credentials;
use s3::region::Region;
use s3::Bucket;

use crate::config::UpdateConfig;

/// Largest object read: the file names one version.
pub const MAX_OBJECT: u64 = crate::update::MAX_FILE as u64;
/// How long a presigned URL is valid (a few clock-skew minutes included).
const PRESIGN_SECS: u32 = 300;

/// A failed read of the version file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum S3Error {
    /// The bucket or credentials could not be set up.
    Setup(String),
    /// No answer: refused, reset, timed out, TLS failure.
    Unreachable(String),
    /// S3 answered with an error (`Code` and `Message` from its XML body).
    Answer {
        status: u16,
        code: String,
        message: String,
    },
}

impl std::fmt::Display for S3Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            S3Error::Setup(m) => write!(f, "S3 client setup: {m}"),
            S3Error::Unreachable(m) => write!(f, "S3 unreachable: {m}"),
            S3Error::Answer {
                status,
                code,
                message,
            } => {
                write!(f, "S3 answered {status}")?;
                if !code.is_empty() {
                    write!(f, " {code}")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
        }
    }
}

/// The client for one object.
pub struct S3 {
    bucket: Box<Bucket>,
    key: String,
    anonymous: bool,
    agent: ureq::Agent,
    /// `s3://bucket/key`, for messages.
    name: String,
}

impl S3 {
    /// A client with the public TLS roots compiled into the binary.
    pub fn new(config: &UpdateConfig, timeout: Duration) -> Result<S3, S3Error> {
        S3::with_tls(config, timeout, ureq::tls::TlsConfig::default())
    }

    /// A client trusting what `tls` trusts (tests: a private CA).
    pub fn with_tls(
        config: &UpdateConfig,
        timeout: Duration,
        tls: ureq::tls::TlsConfig,
    ) -> Result<S3, S3Error> {
        let region = match &config.endpoint {
            Some(endpoint) => Region::Custom {
                region: config.region.clone(),
                endpoint: endpoint.trim_end_matches('/').to_string(),
            },
            None => config
                .region
                .parse()
                .map_err(|e| S3Error::Setup(format!("region {:?}: {e}", config.region)))?,
        };
        let credentials = match &config.credentials {
            Some((key, secret)) => {
                Credentials::new(Some(key), Some(secret.expose()), None, None, None)
            }
            None => Credentials::anonymous(),
        }
        .map_err(|_| S3Error::Setup("the credentials were not accepted".to_string()))?;
        let mut bucket = Bucket::new(&config.bucket, region, credentials)
            .map_err(|e| S3Error::Setup(format!("bucket {:?}: {e}", config.bucket)))?;
        if config.endpoint.is_some() {
            bucket = bucket.with_path_style();
        }
        let agent = crate::outbound::config(timeout)
            .tls_config(tls)
            .build()
            .new_agent();
        Ok(S3 {
            bucket,
            key: config.key.trim_start_matches('/').to_string(),
            anonymous: config.credentials.is_none(),
            agent,
            name: format!("s3://{}/{}", config.bucket, config.key),
        })
    }

    /// `s3://bucket/key`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object's bytes (at most [`MAX_OBJECT`]).
    pub fn fetch(&self) -> Result<Vec<u8>, S3Error> {
        let url = if self.anonymous {
            format!("{}/{}", self.bucket.url(), encode_key(&self.key))
        } else {
            self.bucket
                .presign_get(&self.key, PRESIGN_SECS, None)
                .map_err(|e| {
                    S3Error::Setup(format!("presigning the GET: {}", redact(&e.to_string())))
                })?
        };
        let request = ureq::http::Request::builder()
            .method("GET")
            .uri(&url)
            .body(())
            .map_err(|_| S3Error::Setup("the object URL is not valid".to_string()))?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| S3Error::Unreachable(redact_url(&e.to_string(), &url)))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(if status == 200 { MAX_OBJECT } else { 64 * 1024 })
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => S3Error::Answer {
                    status,
                    code: String::new(),
                    message: format!("the object is larger than {MAX_OBJECT} bytes"),
                },
                e => S3Error::Unreachable(format!(
                    "reading the answer: {}",
                    redact_url(&e.to_string(), &url)
                )),
            })?;
        if status == 200 {
            return Ok(body);
        }
        let xml = String::from_utf8_lossy(&body);
        let field = |name: &str| {
            element(&xml, name)
                .map(|s| crate::text::printable(&crate::text::truncate(s, 200)))
                .unwrap_or_default()
        };
        Err(S3Error::Answer {
            status,
            code: field("Code"),
            message: field("Message"),
        })
    }
}

/// The text of the first `<name>…</name>` element.
fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml.get(start..)?.find(&format!("</{name}>"))?;
    xml.get(start..start + len)
}

/// An object key as a URL path: unreserved characters and `/` kept.
fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `message` without `url` or its query (a presigned URL's signature).
fn redact_url(message: &str, url: &str) -> String {
    let mut out = message.replace(url, "<object URL>");
    if let Some((_, query)) = url.split_once('?') {
        out = out.replace(query, "<signature>");
    }
    redact(&out)
}

/// Drops anything that looks like a SigV4 query string.
fn redact(message: &str) -> String {
    match message.find("X-Amz-") {
        Some(i) => format!("{}<signature>", &message[..i]),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_like_sentences() {
        let e = S3Error::Answer {
            status: 404,
            code: "NoSuchKey".into(),
            message: "The specified key does not exist.".into(),
        };
        assert_eq!(
            e.to_string(),
            "S3 answered 404 NoSuchKey: The specified key does not exist."
        );
        let e = S3Error::Answer {
            status: 500,
            code: String::new(),
            message: String::new(),
        };
        assert_eq!(e.to_string(), "S3 answered 500");
    }

    #[test]
    fn keys_are_encoded_as_paths() {
        assert_eq!(
            encode_key("workload-manager/latest"),
            "workload-manager/latest"
        );
        assert_eq!(encode_key("a b/ü?"), "a%20b/%C3%BC%3F");
    }

    #[test]
    fn presigned_urls_never_reach_messages() {
        let url = "https://s3.example/b/k?X-Amz-Algorithm=AWS4&X-Amz-Signature=abc";
        let m = redact_url(&format!("bad uri: {url}"), url);
        assert_eq!(m, "bad uri: <object URL>");
        let m = redact_url("io: X-Amz-Signature=abc in the way", url);
        assert!(!m.contains("abc"), "{m}");
        assert!(!redact("x X-Amz-Credential=AKIA/").contains("AKIA"));
    }

    #[test]
    fn error_elements_are_read_without_panicking() {
        let xml = "<Error><Code>AccessDenied</Code><Message>no</Message></Error>";
        assert_eq!(element(xml, "Code"), Some("AccessDenied"));
        assert_eq!(element(xml, "Message"), Some("no"));
        assert_eq!(element("<Code>", "Code"), None);
        assert_eq!(element("", "Code"), None);
    }
}
