#![allow(dead_code)] // each test crate uses its own subset of these helpers

//! Shared by the kube_* tests: a raw HTTPS client (ureq, trusting only the
//! fake's CA, no proxy, 4xx/5xx as answers) and object builders.

use std::time::Duration;

use serde_json::{json, Value};
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use wm_testkit::kube::FakeKube;

/// One answer: status, headers we look at, body (JSON if it parses).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub content_type: String,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
}

pub struct Client {
    agent: ureq::Agent,
    base: String,
    pub token: Option<String>,
}

impl Client {
    /// Trusts the fake's CA and uses its current token.
    pub fn new(kube: &FakeKube) -> Client {
        let mut cfg = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(20)));
        let token = if kube.url().starts_with("https") {
            let pem = std::fs::read(kube.ca_file()).unwrap();
            let ca = Certificate::from_pem(&pem).unwrap();
            let tls = TlsConfig::builder()
                .root_certs(RootCerts::new_with_certs(&[ca]))
                .build();
            cfg = cfg.tls_config(tls);
            Some(kube.token())
        } else {
            None
        };
        Client {
            agent: cfg.build().new_agent(),
            base: kube.url(),
            token,
        }
    }

    /// Sends `method path` with an optional (content type, body).
    pub fn send(&self, method: &str, path: &str, body: Option<(&str, String)>) -> Reply {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{}", self.base, path))
            .header("User-Agent", "kube-test/1.0");
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        let (ct, body) = body.unwrap_or(("", String::new()));
        if !ct.is_empty() {
            req = req.header("Content-Type", ct);
        }
        let resp = self.agent.run(req.body(body).unwrap()).expect("request");
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(String::from)
        };
        let status = resp.status().as_u16();
        let retry_after = header("retry-after");
        let content_type = header("content-type").unwrap_or_default();
        let text = resp.into_body().read_to_string().unwrap_or_default();
        Reply {
            status,
            retry_after,
            content_type,
            text,
        }
    }

    pub fn get(&self, path: &str) -> Reply {
        self.send("GET", path, None)
    }

    pub fn json(&self, method: &str, path: &str, body: &Value) -> Reply {
        self.send(method, path, Some(("application/json", body.to_string())))
    }

    pub fn patch(&self, path: &str, content_type: &str, body: &Value) -> Reply {
        self.send("PATCH", path, Some((content_type, body.to_string())))
    }
}

pub const DEPLOYS: &str = "/apis/apps/v1/namespaces/wm/deployments";
pub const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/wm/leases";

/// A minimal valid Deployment.
pub fn deployment(name: &str, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "workload-manager",
                                              "app": name}},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": name, "image": image}]}
            }
        }
    })
}

/// The expected Status body, to compare whole.
pub fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut s = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                       "message": message, "reason": reason, "code": code});
    if let Some(d) = details {
        s["details"] = d;
    }
    s
}
