//! A whole fake node around one manager process: the fake backend and the
//! fake Kubernetes API (namespace `edge`), and the environment that points
//! the manager at both.

use std::path::Path;

use crate::backend::{sample_manifest, FakeBackend};
use crate::kube::FakeKube;
use crate::proc::Manager;

/// The address of [`crate::proc::TEST_KEY`].
pub const TEST_ADDRESS: &str = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23";

pub struct FakeNode {
    pub backend: FakeBackend,
    pub kube: FakeKube,
}

impl Default for FakeNode {
    fn default() -> FakeNode {
        FakeNode::new()
    }
}

impl FakeNode {
    pub fn new() -> FakeNode {
        FakeNode {
            backend: FakeBackend::start(),
            kube: FakeKube::builder().namespace("edge").start(),
        }
    }

    /// Starts `bin` against both fakes, with `env` added (it wins).
    pub fn start(&self, bin: impl AsRef<Path>, env: &[(&str, &str)]) -> Manager {
        let (url, kube, token, ca) = (
            self.backend.url(),
            self.kube.url(),
            self.kube.token_file(),
            self.kube.ca_file(),
        );
        let (token, ca) = (token.display().to_string(), ca.display().to_string());
        // As the manifests set it from spec.nodeName.
        let mut all = vec![
            ("NODE_NAME", self.kube.node_name()),
            ("NODE_SYSTEM_ENDPOINT", url.as_str()),
            ("WM_KUBE_API_URL", kube.as_str()),
            ("WM_KUBE_TOKEN_FILE", token.as_str()),
            ("WM_KUBE_CA_FILE", ca.as_str()),
        ];
        all.extend_from_slice(env);
        Manager::start(bin, &all)
    }

    /// Publishes `workloads` for the test node, with a manifest for each.
    pub fn want(&self, workloads: &[(&str, &str)]) {
        for (name, version) in workloads {
            let image = format!("registry.example/{name}:{version}");
            self.backend
                .put_manifest(name, version, sample_manifest(name, &image));
        }
        self.backend.set_workloads(TEST_ADDRESS, workloads);
    }
}
