//! Replies about the mesh: its members, their services, this node's fleet and where
//! mesh workloads are placed.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The node's part in the mesh, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct MeshStatus {
    /// The mesh node, once it runs.
    #[serde(flatten)]
    pub node: Option<MeshNode>,
    /// The members as this node sees them.
    pub members: Vec<Member>,
    /// This node's fleet.
    pub fleet: Option<FleetView>,
    /// Every live service provider.
    pub services: Vec<Provider>,
    /// Where mesh workloads go, when the spec has any.
    pub placement: Option<Placement>,
    /// Why the node could not join the mesh.
    pub error: Option<String>,
}

/// This node's place in the mesh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MeshNode {
    /// Its peer id.
    pub peer_id: String,
    /// Where it listens.
    pub listen: Vec<String>,
    /// Peers it is connected to.
    pub connected: usize,
    /// Members alive.
    pub alive: usize,
    /// Members suspect.
    pub suspect: usize,
    /// Members dead.
    pub dead: usize,
    /// Gossip messages on the fleet's topic delivered since start (each once, however
    /// many copies came).
    pub received: u64,
    /// Membership messages rejected since start (malformed, out of bounds, or not a
    /// member's).
    pub rejected: u64,
    /// Connected peers whose gossip is ignored for having sent too many rejected
    /// messages (graylisted by peer scoring).
    pub graylisted: usize,
    /// Whether this node sees a majority of its voters (and is a member).
    pub quorate: bool,
    /// Its voters, itself included.
    pub voters: usize,
}

/// A member as this node sees it (`GET /v1/mesh/peers`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Member {
    /// Its peer id.
    pub peer_id: String,
    /// Its `node.name`.
    pub node: String,
    /// `alive`, `suspect` or `dead`.
    pub state: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// What it has.
    pub resources: Resources,
    /// Its services.
    pub services: Vec<Service>,
    /// Where it listens.
    pub addresses: Vec<String>,
}

/// What a member has, as it says in its heartbeats (this is their wire form too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Resources {
    /// CPU cores.
    pub cpus: u32,
    /// Memory, bytes.
    pub memory: u64,
    /// Memory available, bytes.
    pub memory_free: u64,
    /// Disk of the state directory's filesystem, bytes.
    pub disk: u64,
    /// Disk free there, bytes.
    pub disk_free: u64,
}

/// A service a member offers: a workload's `expose` entry (its heartbeats' wire form
/// too).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct Service {
    /// The service name (a DNS label).
    pub name: String,
    /// The port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// One live provider of a service (`GET /v1/mesh/services`).
#[derive(
    Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(default)]
pub struct Provider {
    /// The service.
    pub service: String,
    /// The node offering it.
    pub node: String,
    /// Its peer id.
    pub peer_id: String,
    /// Its addresses (multiaddrs; the IP parts are where to connect).
    pub addresses: Vec<String>,
    /// The service's port.
    pub port: u16,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// What the owner signs to push a spec to this node (`POST /v1/mesh/push/draft`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PushDraft {
    /// The text to sign, as it is (for an `eth:` owner, as EIP-712 typed data: the
    /// first line its kind, the second its subject).
    pub payload: String,
    /// This node's peer id, for the push's `peer`.
    pub peer: String,
    /// The push's `generation`: the time in milliseconds.
    pub generation: u64,
    /// The push's `timestamp`, in seconds.
    pub timestamp: u64,
}

/// This node's fleet as it sees it (`GET /v1/fleet/members`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct FleetView {
    /// The fleet's owner; none when the node names none.
    pub owner: Option<String>,
    /// Whether this node is a member.
    pub standing: Option<Standing>,
    /// This node (when a member) and every member it knows.
    pub members: Vec<FleetMember>,
    /// How many peers the owner revoked.
    pub revoked: usize,
}

/// Whether this node is a member, and why not when it is not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Standing {
    /// Admitted, until `expires`.
    Member {
        /// Its certificate's expiry.
        expires: u64,
        /// The owner, or a join key.
        admitted_by: String,
        /// Set when the certificate expires soon and nothing will renew it.
        warning: Option<String>,
    },
    /// Not admitted.
    Outside {
        /// Why, and what to do.
        why: String,
    },
}

/// A member of the fleet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct FleetMember {
    /// Its `node.name`.
    pub node: String,
    /// Its peer id.
    pub peer_id: String,
    /// `this node`, `alive`, `suspect` or `dead`.
    pub state: String,
    /// When its certificate expires (seconds since the Unix epoch).
    pub expires: u64,
    /// `owner`, or the join key that admitted it.
    pub admitted_by: String,
}

/// Placement, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct Placement {
    /// Whether this node sees a majority of the mesh; if not, it is fenced.
    pub quorate: bool,
    /// How long it has been quorate.
    pub settled_secs: f64,
    /// How long a member must be quorate before it owns mesh workloads.
    pub hold_down_secs: f64,
    /// The last agreed membership's size.
    pub voters: usize,
    /// Each mesh workload.
    pub workloads: Vec<PlacedWorkload>,
}

/// One mesh workload, in `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(default)]
pub struct PlacedWorkload {
    /// Its name.
    pub name: String,
    /// How many should run.
    pub replicas: usize,
    /// The members that should run it, by node name, best first.
    pub owners: Vec<String>,
    /// The live members that run it now.
    pub running_on: Vec<String>,
    /// `runs` here, `waiting` for a member still running it to stop, `withdrawn` from
    /// this node for failing here, or `no`.
    pub here: String,
}
