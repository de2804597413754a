//! The local API between `xnoded` and its clients (`xnodectl`, `curl`, the console):
//! HTTP/1.1 and JSON on a unix socket, one request per connection. Every operation is
//! a [`Request`] with a route under `/v1` ([`ROUTES`]); a refusal is a status with
//! `{"error": {"code", "message"}}`. See `docs/api.md`.

mod client;
mod request;

pub use client::{ClientError, call, follow};
pub use request::{Method, ROUTES, Request, Route};

use serde::{Deserialize, Serialize};

/// Where the agent listens unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/xnode/api.sock";

/// Largest body either side reads: a spec of 10,000 workloads fits easily.
pub const MAX_MESSAGE: u64 = 64 << 20;

/// Where a spec came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Source {
    /// The spec file (what the NixOS module writes).
    File {
        /// Its path.
        path: String,
    },
    /// `xnodectl apply` through the local API.
    Api,
    /// A rollback, to the spec of an earlier generation.
    Rollback {
        /// The generation whose spec was restored.
        to: u64,
    },
    /// A push signed by the node's owner, delivered over the mesh.
    Mesh {
        /// The peer that delivered it.
        peer: String,
        /// The push's own generation (the owner's counter).
        push_generation: u64,
    },
    /// A move in the rollout of the fleet spec: the node spec in force, with the
    /// workloads of this fleet generation.
    Fleet {
        /// The fleet generation moved to (0: none, its workloads all gone).
        generation: u64,
    },
}

/// What became of a generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Outcome {
    /// Accepted; being applied.
    Applying,
    /// Applied, and every changed workload passed its health check.
    Healthy,
    /// Applied, unhealthy, and replaced by the last good generation.
    RolledBack {
        /// Why.
        reason: String,
    },
    /// Applied and unhealthy, kept in force because rollback was turned off or there
    /// was nothing to go back to.
    Unhealthy {
        /// Why.
        reason: String,
    },
}

/// One generation's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Its number; numbers only grow.
    pub number: u64,
    /// The spec's content hash.
    pub hash: String,
    /// Where it came from.
    pub source: Source,
    /// When it was accepted, in seconds since the Unix epoch.
    pub accepted_at: u64,
    /// What became of it.
    pub outcome: Outcome,
    /// The fleet generation whose workloads it runs beside the node spec's; none
    /// without a fleet spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<u64>,
    /// The hash of its node spec alone, when it holds a fleet spec's workloads too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_hash: Option<String>,
}

impl Generation {
    /// The hash of its node spec alone: what a spec file, an apply or a push is
    /// compared with.
    pub fn node_hash(&self) -> &str {
        self.node_hash.as_deref().unwrap_or(&self.hash)
    }
}
