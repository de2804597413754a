//! The parts of `xnoded`, the node agent: the state directory with its generations
//! of specs, and the health probes that gate an apply.

pub mod health;
pub mod store;
