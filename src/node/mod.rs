//! The node the manager runs on, as the REPORT's `node` object shows it:
//! facts read from the kernel ([`proc`]) and the judgement of how long a
//! value has stayed high ([`judge`]), put together with the Node object's
//! kubelet version and conditions (read by `kube`) in [`view`].

pub mod judge;
pub mod proc;
pub mod view;
