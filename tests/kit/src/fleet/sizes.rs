//! What one call weighs on the wire, measured on the manager's own code:
//! a report as `report::close_window` builds it (with heartbeats, the
//! Deployments' status, the Node object and a kernel sample of this
//! machine), the signed headers of `identity`, and the bodies the backend
//! contract gives.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use workload_manager::identity::NodeIdentity;
use workload_manager::state::{DeploymentView, Identity, State};
use workload_manager::workloads::Reported;

/// Bytes per call, request line and headers included.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// One report's JSON in a delivery body.
    pub report: u64,
    /// A delivery's request line, headers and `{"reports":[]}`.
    pub health_request: u64,
    /// The `202 {"accepted":N}` answer.
    pub health_answer: u64,
    /// A signed GET's request line and headers.
    pub get_request: u64,
    /// `200` with the desired list of the node's workloads.
    pub workloads_answer: u64,
    /// `304 Not Modified`.
    pub not_modified: u64,
    /// `200` with a Deployment manifest.
    pub manifest_answer: u64,
    /// A signed `PUT …/version` with its body, and its `204`.
    pub put_version: u64,
    /// A `503` with `Retry-After` and an error body.
    pub refusal: u64,
    /// A presigned S3 GET and its answer.
    pub s3: u64,
}

const KEY: &str = "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318";
/// Host, Content-Type, Content-Length, Accept-Encoding, User-Agent and the
/// line ends around them, as ureq sends them.
const PLAIN_HEADERS: u64 = 150;
/// Status line, Date, Content-Type, Content-Length, ETag of an answer.
const ANSWER_HEADERS: u64 = 140;

impl Sizes {
    /// Sizes for nodes running `workloads` (name, version).
    pub fn measure(workloads: &BTreeMap<String, String>) -> Sizes {
        let node = NodeIdentity::from_hex(KEY).expect("a valid key");
        let address = node.address().to_string();
        let signed = |method: &str, path: &str, body: &[u8]| -> u64 {
            let headers = node.sign_request(method, path, 1_795_867_200, body);
            let pairs: u64 = headers
                .pairs()
                .iter()
                .map(|(k, v)| (k.len() + v.len() + 4) as u64)
                .sum();
            (method.len() + path.len() + 11) as u64 + pairs + PLAIN_HEADERS
        };
        let report = report_json(workloads, &address).len() as u64;
        let health_path = format!("/v1/nodes/{address}/health");
        let listed: Vec<serde_json::Value> = workloads
            .iter()
            .map(|(name, version)| serde_json::json!({"name": name, "version": version}))
            .collect();
        let desired = serde_json::json!({ "workloads": listed }).to_string();
        let put_body = r#"{"version":"1.4.0","appliedAt":"2026-12-02T10:00:00Z"}"#;
        Sizes {
            report,
            health_request: signed("POST", &health_path, b"{}") + 14,
            health_answer: ANSWER_HEADERS + 16,
            get_request: signed("GET", &format!("/v1/nodes/{address}/workloads"), b""),
            workloads_answer: ANSWER_HEADERS + desired.len() as u64,
            not_modified: ANSWER_HEADERS - 40,
            manifest_answer: ANSWER_HEADERS + MANIFEST_BYTES,
            put_version: signed(
                "PUT",
                &format!("/v1/nodes/{address}/workloads/web/version"),
                put_body.as_bytes(),
            ) + put_body.len() as u64
                + ANSWER_HEADERS,
            refusal: ANSWER_HEADERS + 60,
            // A presigned query string (SigV4) of about 600 bytes, and S3's
            // answer headers around a few bytes of version.
            s3: 700 + 400,
        }
    }

    /// One line for the bench's output.
    pub fn describe(&self) -> String {
        let (up, down) = self.delivery(1);
        format!(
            "call sizes (from the manager's code): a report {} B; a delivery of one report {} B up, {} B down; a signed GET {} B; GET workloads answer {} B (304: {} B)",
            self.report, up, down, self.get_request, self.workloads_answer, self.not_modified
        )
    }

    /// The bytes of a delivery of `n` reports, both ways.
    pub fn delivery(&self, n: usize) -> (u64, u64) {
        let n = n as u64;
        (
            self.health_request + n * self.report + n.saturating_sub(1),
            self.health_answer,
        )
    }
}

/// A typical workload manifest: one container, probes, resources.
const MANIFEST_BYTES: u64 = 1_400;

/// One report of a node whose workloads all heartbeat healthy and run.
fn report_json(workloads: &BTreeMap<String, String>, address: &str) -> String {
    let start = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_867_200);
    let identity = Identity {
        version: env!("CARGO_PKG_VERSION"),
        namespace: "workload-manager".into(),
        pod_name: "workload-manager-5d8f7c9b4-x2x9q".into(),
        node_address: Some(address.to_string()),
    };
    let mut state = State::new(identity, Duration::from_secs(30), start);
    state.run_id = "1795867200000.1a2b3c4d".into();
    let names: BTreeSet<String> = workloads.keys().cloned().collect();
    state.workloads.set_desired(names, start);
    state.desired = Some(workloads.clone());
    let mut host = workload_manager::node::proc::Host::new("/");
    state.node.observe(host.sample(), start);
    let node: workload_manager::kube::Node = serde_json::from_value(serde_json::json!({
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status"},
                {"type": "MemoryPressure", "status": "False"},
                {"type": "DiskPressure", "status": "False"},
                {"type": "PIDPressure", "status": "False"}
            ],
            "nodeInfo": {"kubeletVersion": "v1.31.4+k3s1"}
        }
    }))
    .expect("a Node");
    state.node.set_object(Ok(Some(node)));
    for (name, version) in workloads {
        let d: workload_manager::kube::Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": name, "generation": 2,
                "labels": {"app.kubernetes.io/managed-by": "workload-manager", "workload-manager/workload": name},
                "annotations": {"workload-manager/version": version}
            },
            "spec": {"replicas": 1},
            "status": {"observedGeneration": 2, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1, "availableReplicas": 1,
                "conditions": [{"type": "Available", "status": "True"}, {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}
        }))
        .expect("a Deployment");
        state
            .deployments
            .insert(name.clone(), DeploymentView::of(&d));
    }
    let later = start + Duration::from_secs(55);
    for name in workloads.keys() {
        let _ = state.workloads.record(
            name,
            Reported::Healthy,
            "ok",
            later,
            wall + Duration::from_secs(55),
        );
    }
    let end = start + Duration::from_secs(60);
    workload_manager::report::close_window(&mut state, end, wall + Duration::from_secs(60)).json
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_of_three_workloads_weighs_what_the_contract_shows() {
        let workloads: BTreeMap<String, String> =
            [("web", "1.4.0"), ("db", "2.0.1"), ("cache", "7.2.4")]
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
        let sizes = Sizes::measure(&workloads);
        assert!(
            (900..4000).contains(&sizes.report),
            "a report with a node section and three workloads: {} bytes",
            sizes.report
        );
        assert!(
            sizes.get_request > 300,
            "signed headers: {}",
            sizes.get_request
        );
        assert_eq!(
            sizes.delivery(2).0,
            sizes.health_request + 2 * sizes.report + 1
        );
    }
}
