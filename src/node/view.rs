//! What the manager knows of its node at the latest report window: the
//! kernel's sample with each resource judged, and the Node object's
//! conditions and kubelet version. One JSON rendering serves the REPORT's
//! `node` object and the `node` section of `/v1/status`.

use std::time::Instant;

use super::judge::{Judge, Level, CPU, DISK, MEMORY};
use super::proc::Sample;
use crate::json::Json;
use crate::kube::{KubeError, Node};

/// The Node conditions reports carry, in this order.
pub const CONDITIONS: [&str; 4] = ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];

/// The Node object's part, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeObject {
    pub kubelet: Option<String>,
    /// `True`, `False` or `Unknown` for each of [`CONDITIONS`]; `None` when absent.
    pub conditions: [Option<String>; 4],
}

#[derive(Debug)]
pub struct NodeView {
    /// `NODE_NAME`.
    pub name: Option<String>,
    /// The Node object as last read, or why it could not be.
    pub object: Result<NodeObject, String>,
    /// The kernel's latest sample; `None` before the first report window.
    pub sample: Option<Sample>,
    pub cpu: Level,
    pub memory: Level,
    pub disk: Level,
    judges: [Judge; 3],
}

impl NodeView {
    pub fn new(name: Option<String>, started: Instant) -> NodeView {
        let why = match name {
            Some(_) => "not read yet".to_string(),
            None => "NODE_NAME is not set (the manifests set it from spec.nodeName)".to_string(),
        };
        NodeView {
            name,
            object: Err(why),
            sample: None,
            cpu: Level::Unknown,
            memory: Level::Unknown,
            disk: Level::Unknown,
            judges: [
                Judge::new(CPU, started),
                Judge::new(MEMORY, started),
                Judge::new(DISK, started),
            ],
        }
    }

    /// Keeps what a `get` of the Node gave.
    pub fn set_object(&mut self, got: Result<Option<Node>, KubeError>) {
        let name = self.name.as_deref().unwrap_or_default();
        self.object = match got {
            Ok(Some(node)) => Ok(NodeObject::of(&node)),
            Ok(None) => Err(format!("there is no Node {name}")),
            Err(KubeError::Api { code: 403, .. }) => Err(format!(
                "not allowed to get Node {name}: the ClusterRole workload-manager-node-reader (get on nodes) is not bound to this ServiceAccount"
            )),
            Err(e) => Err(format!("cannot read Node {name}: {e}")),
        };
    }

    /// Takes one report window's sample and judges each resource by it.
    pub fn observe(&mut self, sample: Sample, now: Instant) {
        let [cpu, memory, disk] = &mut self.judges;
        self.cpu = cpu.observe(sample.cpu.used_percent, now);
        self.memory = memory.observe(sample.memory.as_ref().map(|m| m.used_percent), now);
        self.disk = disk.observe(sample.disk.as_ref().map(|d| d.used_percent), now);
        self.sample = Some(sample);
    }

    /// The REPORT's `node` object.
    pub fn write_json(&self, out: &mut Json) {
        self.write_fields(out);
        out.raw("}");
    }

    /// [`NodeView::write_json`] without the closing brace, for a caller
    /// that adds fields after these.
    pub fn write_fields(&self, out: &mut Json) {
        let s = self.sample.as_ref();
        let object = self.object.as_ref().ok();
        out.raw("{\"arch\":");
        out.opt_str(s.and_then(|s| s.arch.as_deref()));
        out.raw(",\"bootId\":");
        out.opt_str(s.and_then(|s| s.boot_id.as_deref()));
        out.raw(",\"conditions\":");
        match object {
            None => out.raw("null"),
            Some(o) => {
                for (i, (kind, status)) in CONDITIONS.iter().zip(&o.conditions).enumerate() {
                    out.raw(if i == 0 { "{" } else { "," });
                    out.str(kind);
                    out.raw(":");
                    out.opt_str(status.as_deref());
                }
                out.raw("}");
            }
        }
        out.raw(",\"cpu\":{\"cores\":");
        out.opt_num(s.and_then(|s| s.cpu.cores).map(u64::from));
        out.raw(",\"status\":");
        out.str(self.cpu.as_str());
        out.raw(",\"usedPercent\":");
        out.opt_percent(s.and_then(|s| s.cpu.used_percent));
        let disk = s.and_then(|s| s.disk.as_ref());
        out.raw("},\"disk\":{\"freeBytes\":");
        out.opt_num(disk.map(|d| d.free_bytes));
        out.raw(",\"status\":");
        out.str(self.disk.as_str());
        out.raw(",\"totalBytes\":");
        out.opt_num(disk.map(|d| d.total_bytes));
        out.raw(",\"usedPercent\":");
        out.opt_percent(disk.map(|d| d.used_percent));
        out.raw("},\"kernel\":");
        out.opt_str(s.and_then(|s| s.kernel.as_deref()));
        out.raw(",\"kubelet\":");
        out.opt_str(object.and_then(|o| o.kubelet.as_deref()));
        let memory = s.and_then(|s| s.memory.as_ref());
        out.raw(",\"memory\":{\"status\":");
        out.str(self.memory.as_str());
        out.raw(",\"totalBytes\":");
        out.opt_num(memory.map(|m| m.total_bytes));
        out.raw(",\"usedBytes\":");
        out.opt_num(memory.map(|m| m.used_bytes));
        out.raw(",\"usedPercent\":");
        out.opt_percent(memory.map(|m| m.used_percent));
        out.raw("},\"name\":");
        out.opt_str(object.and(self.name.as_deref()));
        out.raw(",\"uptimeSeconds\":");
        out.opt_num(s.and_then(|s| s.uptime).map(|u| u.as_secs()));
    }

    /// The same, as a JSON text.
    pub fn json_text(&self) -> String {
        let mut out = Json(String::with_capacity(640));
        self.write_json(&mut out);
        out.0
    }
}

impl NodeObject {
    fn of(node: &Node) -> NodeObject {
        let status = |kind: &str| {
            node.status
                .conditions
                .iter()
                .find(|c| c.kind == kind)
                .map(|c| crate::text::clean(&c.status, 16))
        };
        let kubelet = &node.status.node_info.kubelet_version;
        NodeObject {
            kubelet: (!kubelet.is_empty()).then(|| crate::text::clean(kubelet, 64)),
            conditions: CONDITIONS.map(status),
        }
    }
}
