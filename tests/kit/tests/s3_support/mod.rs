#![allow(dead_code)] // each test crate uses its own subset of these helpers

//! Shared by the s3_* tests: the client the product will use (rust-s3 0.38,
//! sync, path-style, presigned GET sent with ureq 3: no proxy, 4xx/5xx as
//! answers, timeouts) and a minimal reader of S3 error XML.

use std::path::Path;
use std::time::Duration;

use s3::creds::Credentials;
use s3::region::Region;
use s3::Bucket;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

/// One answer: status, headers (names lower-cased), body as text.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A ureq agent as the product configures it; trusts only `ca` when given.
pub fn agent(ca: Option<&Path>) -> ureq::Agent {
    let mut cfg = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_connect(Some(Duration::from_secs(5)))
        .timeout_global(Some(Duration::from_secs(20)));
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).expect("read the CA file");
        let cert = Certificate::from_pem(&pem).expect("a PEM certificate");
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&[cert]))
            .build();
        cfg = cfg.tls_config(tls);
    }
    cfg.build().new_agent()
}

/// Sends `method url` (no body) and reads the whole answer.
pub fn send(agent: &ureq::Agent, method: &str, url: &str) -> Result<Reply, ureq::Error> {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .body(())
        .expect("a valid request");
    let mut resp = agent.run(req)?;
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let status = resp.status().as_u16();
    let text = resp.body_mut().read_to_string()?;
    Ok(Reply {
        status,
        headers,
        text,
    })
}

pub fn get(agent: &ureq::Agent, url: &str) -> Reply {
    send(agent, "GET", url).unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// A path-style bucket on an S3-compatible endpoint; `None` credentials
/// means anonymous.
pub fn bucket(
    endpoint: &str,
    region: &str,
    name: &str,
    creds: Option<(&str, &str)>,
) -> Box<Bucket> {
    let region = Region::Custom {
        region: region.to_string(),
        endpoint: endpoint.to_string(),
    };
    let credentials = match creds {
        Some((key, secret)) => Credentials::new(Some(key), Some(secret), None, None, None),
        None => Credentials::anonymous(),
    }
    .expect("credentials");
    Bucket::new(name, region, credentials)
        .expect("a bucket")
        .with_path_style()
}

/// rust-s3's presigned GET URL for `key`, valid `expiry_secs`.
pub fn presign_get(bucket: &Bucket, key: &str, expiry_secs: u32) -> String {
    bucket
        .presign_get(key, expiry_secs, None)
        .expect("presign_get")
}

/// The text of the first `<name>…</name>` element (entities not decoded).
pub fn element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(&xml[start..start + len])
}

/// The root element's name, after the XML declaration.
pub fn root(xml: &str) -> Option<&str> {
    let rest = xml.trim_start();
    let rest = match rest.strip_prefix("<?xml") {
        Some(r) => &r[r.find("?>")? + 2..],
        None => rest,
    };
    let rest = rest.trim_start().strip_prefix('<')?;
    let end = rest.find(|c: char| c == '>' || c.is_whitespace())?;
    Some(&rest[..end])
}

/// (root element, Code, Message): the part of an S3 error both S3 and its
/// emulators agree on.
pub fn error_shape(xml: &str) -> (String, String, String) {
    let get = |n| element(xml, n).unwrap_or_default().to_string();
    (
        root(xml).unwrap_or_default().to_string(),
        get("Code"),
        get("Message"),
    )
}
