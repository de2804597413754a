//! The parts of `xnoded`, the node agent: the state directory with its generations
//! of specs, the health probes and the health gate that judge an apply, and the small
//! interface through which the agent acts on systemd.

pub mod gate;
pub mod health;
pub mod store;
pub mod units;
