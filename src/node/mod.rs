//! The node the manager runs on, as the REPORT's `node` object shows it:
//! facts read from the kernel ([`proc`]) and the judgement of how long a
//! value has stayed high ([`judge`]). Nothing here talks to Kubernetes; the
//! Node object's name, kubelet version and conditions come from `kube`.

pub mod judge;
pub mod proc;
