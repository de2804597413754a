//! Replies about the node itself: its generations, its status, an apply's result, its
//! logs and state directories.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::fleet::RolloutStatus;
use crate::mesh::MeshStatus;

/// Where a spec came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
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

/// Every kept generation (`GET /v1/history`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct History {
    /// The generation in force.
    pub current: Option<u64>,
    /// The newest generation that proved healthy.
    pub last_good: Option<u64>,
    /// Kept generations, oldest first.
    pub generations: Vec<Generation>,
}

/// The node, its generation and every workload (`GET /v1/status`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Status {
    /// Its `node.name`, once it has a spec.
    pub node: Option<String>,
    /// Its owner (`node.owner`), who signs pushes, fleet specs and sessions.
    pub owner: Option<String>,
    /// The API over the network, when xnoded listens on TCP.
    pub remote: Option<RemoteStatus>,
    /// The machine, measured as the status was made.
    pub machine: Option<Machine>,
    /// The generation in force.
    pub generation: Option<Generation>,
    /// The newest generation that proved healthy.
    pub last_good: Option<u64>,
    /// The generation in force is healthy, no apply runs, and the units match it.
    pub converged: bool,
    /// The apply under way; none when no apply runs.
    pub applying: Option<Applying>,
    /// The spec file, and why it was rejected when it was.
    pub spec_file: SpecFile,
    /// systemd could not be read, or the last apply stopped short.
    pub last_error: Option<String>,
    /// Where Prometheus metrics are served, when they are.
    pub metrics_address: Option<String>,
    /// The node's part in the mesh, when it runs the mesh.
    pub mesh: Option<MeshStatus>,
    /// Its part in the rollout of the fleet spec.
    pub rollout: RolloutStatus,
    /// Every workload of the spec in force.
    pub workloads: Vec<WorkloadStatus>,
}

/// The machine: what it has and what is free, and its CPU time so far (two statuses
/// apart give its load).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Machine {
    /// Cores, memory and disk (of the state directory's filesystem), in bytes.
    pub resources: crate::mesh::Resources,
    /// CPU time spent busy since boot, all cores together, in seconds.
    pub cpu_seconds: f64,
}

/// The API over the network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct RemoteStatus {
    /// Where it listens (HTTPS).
    pub address: String,
    /// Its certificate's SHA-256 fingerprint, `sha256:<hex>`: what a client pins.
    pub fingerprint: String,
}

/// The apply under way.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Applying {
    /// Its generation, once recorded.
    pub generation: Option<u64>,
    /// How far it is.
    pub phase: Phase,
    /// Each workload the health gate waits on.
    pub workloads: BTreeMap<String, Gated>,
}

/// The steps of an apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Recording the generation and realising its store paths.
    #[default]
    Preparing,
    /// Carrying out the plan on systemd.
    Applying,
    /// Waiting for the changed workloads to be healthy.
    Gating,
    /// Putting the last good generation back.
    RollingBack,
}

/// Where one gated workload stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Gated {
    /// Not healthy yet.
    Waiting {
        /// What the last look saw.
        why: String,
    },
    /// Passed.
    Healthy,
    /// Did not pass.
    Unhealthy {
        /// Why.
        why: String,
    },
    /// A mesh workload placement moved off this node meanwhile: not waited on.
    Moved,
}

/// The spec file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct SpecFile {
    /// Its path.
    pub path: String,
    /// Why it was rejected, when it was.
    pub error: Option<String>,
}

/// One workload of the spec in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct WorkloadStatus {
    /// Its name.
    pub name: String,
    /// Its main unit.
    pub unit: String,
    /// systemd's ActiveState, or `absent` / `elsewhere` when there is no unit here.
    pub active_state: String,
    /// For people: the ActiveState, `exited` for a workload that ran to its end, or
    /// `absent` / `elsewhere`.
    pub state: String,
    /// Why its store paths or secrets could not be had.
    pub error: Option<String>,
    /// What the continuous probe finds, for a service with a probe that runs here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    /// Restarts, memory and CPU time, as systemd accounts them, for a running workload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// The size of its state directory, for a workload with `state: true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_bytes: Option<u64>,
}

/// A workload's health as its continuous probe sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Health {
    /// Passing its probe.
    pub healthy: bool,
    /// Why not, from the last failed probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// A running workload's use of the machine, sampled every 10 s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Usage {
    /// Restarts systemd made under the restart policy.
    pub restarts: u32,
    /// Memory in use, in bytes, when accounted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    /// CPU time used, in nanoseconds, when accounted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ns: Option<u64>,
}

/// What became of an apply or a reload (`POST /v1/apply`, `POST /v1/reload`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Applied {
    /// The generation it made (for an unchanged reload, the one in force).
    pub generation: u64,
    /// What became of it.
    pub outcome: Outcome,
    /// The generation put back in force when it was rolled back.
    #[serde(default)]
    pub rolled_back_to: Option<u64>,
    /// Its plan, one line per step.
    #[serde(default)]
    pub actions: Vec<String>,
    /// Units it wanted that belong to someone else, with why.
    #[serde(default)]
    pub refused: Vec<String>,
    /// Workloads held back, with why (store paths or secrets that could not be had).
    #[serde(default)]
    pub not_realised: BTreeMap<String, String>,
    /// A reload found the spec file's spec in force and healthy already.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unchanged: bool,
}

/// A rollback's result (`POST /v1/rollback`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RolledBack {
    /// The generation made.
    pub generation: u64,
    /// The generation whose spec it put back.
    pub restored: u64,
}

/// What applying a spec would do (`POST /v1/plan`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Plan {
    /// Steps, in the order they would run.
    pub actions: Vec<PlannedAction>,
    /// Units the spec wants that belong to someone else.
    pub refused: Vec<PlanRefusal>,
}

/// One step of a plan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PlannedAction {
    /// `create`, `update`, `remove`, `start`, `restart`, `stop`, …
    pub op: String,
    /// The unit.
    pub unit: String,
    /// The workload.
    pub workload: String,
    /// Why, for people.
    pub reason: String,
    /// The unit file to write, for `create` and `update`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// A unit the spec wants but the agent may not touch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PlanRefusal {
    /// The unit in the way.
    pub unit: String,
    /// The workload that wants its name.
    pub workload: String,
    /// Why it is left alone.
    pub reason: String,
}

/// One journal entry (`GET /v1/workloads/{workload}/logs`, and each event of a
/// followed log).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct LogLine {
    /// Microseconds since the Unix epoch.
    pub time_us: u64,
    /// syslog priority (0 emergency … 7 debug), when the entry has one.
    pub priority: Option<u8>,
    /// The message.
    pub message: String,
}

/// One workload state directory on the node (`GET /v1/state`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct StateDir {
    /// The workload it belongs to.
    pub workload: String,
    /// Where its data is.
    pub path: String,
    /// The size of its files, in bytes.
    pub bytes: u64,
    /// Whether the spec in force still has the workload.
    pub in_spec: bool,
}

/// A state directory deleted (`DELETE /v1/state/{workload}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Pruned {
    /// Its workload.
    pub workload: String,
    /// The bytes freed.
    pub bytes: u64,
}

/// A request carried out, in a sentence: what a push, an admission, a revocation or a
/// fleet spec came to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct Done(pub String);
