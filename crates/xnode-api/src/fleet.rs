//! Replies about the fleet spec and its rollout.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// This node's part in the rollout of the fleet spec, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RolloutStatus {
    /// The newest fleet generation it accepted (0: none).
    pub newest: u64,
    /// The fleet generation it runs (0: none).
    pub running: u64,
    /// The highest generation it saw every member run healthy.
    pub stable: u64,
    /// The highest generation it knows failed its health gate somewhere.
    pub failed: u64,
    /// Why it cannot run the newest fleet generation.
    pub conflict: Option<String>,
    /// What it does next, for people.
    pub step: String,
}

/// The newest fleet spec this node accepted (`GET /v1/fleet/spec`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct FleetSpec {
    /// Its fleet generation.
    pub generation: u64,
    /// Its content hash.
    pub hash: String,
    /// The fleet generation this node runs.
    pub running: u64,
    /// The owner-signed envelope, as it came.
    pub signed: Value,
}

/// The fleet as this node hears it (`GET /v1/fleet/status`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct FleetStatus {
    /// Every member, this node among them.
    pub members: Vec<FleetRow>,
    /// The rollout as this node sees it.
    pub rollout: Rollout,
    /// Why this node cannot run the newest fleet generation.
    pub conflict: Option<String>,
    /// Each mesh workload: where it runs.
    pub workloads: Vec<FleetWorkload>,
}

/// A member, and what its heartbeats report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct FleetRow {
    /// Its `node.name`.
    pub node: String,
    /// Its peer id.
    pub peer_id: String,
    /// Whether it is alive.
    pub live: bool,
    /// Whether it is this node.
    pub this_node: bool,
    /// Its report; none for a member of an older release.
    pub report: Option<Report>,
}

/// What a member reports of itself in its heartbeats (their wire form too: a field
/// may be added, with a default, never removed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Report {
    /// Where it stands in the rollout.
    pub fleet: Progress,
    /// How the node itself is doing.
    pub node: NodeHealth,
}

/// A member's place in the rollout.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Progress {
    /// The newest fleet generation it accepted (0: none).
    pub newest: u64,
    /// The fleet generation it runs (0: none).
    pub running: u64,
    /// How long it has been healthy on `running`, in ms; absent while it moves to it,
    /// or when it did not pass its health gate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy_ms: Option<u64>,
    /// The highest generation it knows failed its health gate somewhere.
    pub failed: u64,
    /// The highest generation it saw every member run healthy.
    pub stable: u64,
    /// It cannot run `newest`.
    pub conflict: bool,
}

/// A member's health in brief.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct NodeHealth {
    /// Its generation in force (0: none yet).
    pub generation: u64,
    /// The first 16 hex digits of its node spec's hash.
    pub spec: String,
    /// Whether its units are as its spec wants them.
    pub converged: bool,
    /// How many of its workloads failed.
    pub failed: u32,
    /// Its last apply (not a rollback's): the generation it made.
    pub applied: u64,
    /// How that apply ended: `healthy`, `unhealthy`, `rolled-back`, `applying`.
    pub last_apply: String,
    /// Its xnoded's version.
    pub version: String,
}

/// The rollout as this node sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Rollout {
    /// `none`, `done`, `rolling out` or `halted`.
    pub state: String,
    /// The newest fleet generation.
    pub newest: u64,
    /// The highest generation every member ran healthy.
    pub stable: u64,
    /// The highest generation that failed somewhere.
    pub failed: u64,
    /// Live members that run the newest generation healthy.
    pub done: usize,
    /// Live members taking part.
    pub members: usize,
    /// What this node does next.
    pub this_node: String,
}

/// A mesh workload: where it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct FleetWorkload {
    /// Its name.
    pub name: String,
    /// The members it runs on, by node name.
    pub running_on: Vec<String>,
    /// Whether every member it runs on is converged and has no failed workload.
    pub healthy: bool,
}
