//! The parts of `xnoded`, the node agent: the state directory with its generations
//! of specs, the health probes and the health gate that judge an apply, the deploy
//! flow with its rollback, mesh placement and the lease that fences it, the loop that
//! runs all of it beside its requests, and the small interfaces through which the
//! agent acts on systemd and Nix.

pub mod accept;
pub mod backoff;
pub mod console;
pub mod deadline;
pub mod deploy;
pub mod dns;
#[cfg(test)]
mod fake;
pub mod firewall;
pub mod fleet_store;
pub mod gate;
pub mod health;
pub mod http;
pub mod lease;
pub mod liveness;
pub mod logs;
pub mod mesh;
pub mod metrics;
pub mod nix;
pub mod nix_peers;
pub mod placement;
pub mod remote;
pub mod secrets;
pub mod server;
pub mod service;
pub mod state_dirs;
pub mod store;
pub mod streams;
pub mod units;
pub mod usage;
pub mod watchdog;
