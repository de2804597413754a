//! The rest of the agent's way to a running mesh node, and what it answers: commands
//! over a channel into the node's loop.

use std::collections::{BTreeMap, BTreeSet};

use libp2p::{PeerId, request_response};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};

use crate::fencing::Majority;
use crate::fleet::{Certificate, Revocation};
use crate::membership::State;
use crate::message::Service;
use crate::ownership::View;
use crate::report::Report;

pub use xnode_api::mesh::{FleetMember, FleetView, Member, MeshNode, Provider};

/// What the node tells its owner (the agent, or a test harness).
#[derive(Debug)]
pub enum Event {
    /// A member changed state.
    Member {
        /// The member.
        peer_id: PeerId,
        /// Its node name.
        node: String,
        /// Its new state.
        state: State,
    },
    /// A signed push for this node arrived; answer through `reply`.
    Push {
        /// Who delivered it.
        from: PeerId,
        /// The push envelope, as it came: it holds a share of the node's push budget
        /// until dropped, so drop it once checked.
        push: crate::node::PushBytes,
        /// Accepted (with a note) or rejected (with the reason).
        reply: oneshot::Sender<Result<String, String>>,
    },
}

/// A push on the wire and its answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushResponse {
    /// Whether the node took it.
    pub accepted: bool,
    /// What it did, or why not.
    pub message: String,
}

impl PushResponse {
    /// The answer to send for a verdict.
    pub(crate) fn of(verdict: Result<String, String>) -> PushResponse {
        match verdict {
            Ok(message) => PushResponse {
                accepted: true,
                message,
            },
            Err(message) => PushResponse {
                accepted: false,
                message,
            },
        }
    }

    /// The verdict an answer carries.
    pub(crate) fn verdict(self) -> Result<String, String> {
        if self.accepted {
            Ok(self.message)
        } else {
            Err(self.message)
        }
    }
}

pub(crate) enum Command {
    Members(oneshot::Sender<Vec<Member>>),
    Providers(Option<String>, oneshot::Sender<Vec<Provider>>),
    Status(oneshot::Sender<MeshNode>),
    SetWorkloads(BTreeMap<String, String>, BTreeSet<String>),
    SetClosures(BTreeSet<String>),
    SetLocal(BTreeMap<String, String>, Vec<Service>),
    Push(PeerId, Vec<u8>, oneshot::Sender<Result<String, String>>),
    Respond(
        request_response::ResponseChannel<PushResponse>,
        PushResponse,
    ),
    Fleet(oneshot::Sender<FleetView>),
    Admit(PeerId, Certificate, oneshot::Sender<Result<String, String>>),
    Revoke(Revocation, oneshot::Sender<Result<String, String>>),
    SetReport(Report, Option<std::time::Instant>),
    Serve(BTreeMap<u64, std::sync::Arc<serde_json::Value>>),
    FetchSpec(
        PeerId,
        u64,
        oneshot::Sender<Result<serde_json::Value, String>>,
    ),
}

/// The rest of the agent's way to the mesh. Cheap to clone.
#[derive(Clone)]
pub struct Handle {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) views: watch::Receiver<View>,
    pub(crate) majority: watch::Receiver<Majority>,
    pub(crate) peer_id: PeerId,
    pub(crate) streams: libp2p_stream::Control,
}

/// The mesh stopped (its loop ended).
#[derive(Debug, thiserror::Error)]
#[error("the mesh is not running")]
pub struct Stopped;

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("peer_id", &self.peer_id)
            .finish_non_exhaustive()
    }
}

impl Handle {
    /// This node's peer id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).await.map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// Every known member, dead ones included.
    pub async fn members(&self) -> Result<Vec<Member>, Stopped> {
        self.ask(Command::Members).await
    }

    /// The live providers of `service`, or of every service.
    pub async fn providers(&self, service: Option<String>) -> Result<Vec<Provider>, Stopped> {
        self.ask(|tx| Command::Providers(service, tx)).await
    }

    /// This node's place in the mesh.
    pub async fn status(&self) -> Result<MeshNode, Stopped> {
        self.ask(Command::Status).await
    }

    /// New labels and services to advertise (the spec changed), without waiting:
    /// `false` when the node's queue is full (it is stuck), so the caller tells it again.
    pub fn try_set_local(&self, labels: BTreeMap<String, String>, services: Vec<Service>) -> bool {
        self.commands
            .try_send(Command::SetLocal(labels, services))
            .is_ok()
    }

    /// The members as placement sees them, anew whenever something placement depends
    /// on changes: a member, the quorum, what a member offers or runs, or who is past
    /// the hold-down. (Silences grow in between: see [`View::aged`].)
    pub fn views(&self) -> watch::Receiver<View> {
        self.views.clone()
    }

    /// What the lease is renewed on, kept current as heartbeats come in.
    pub fn majority(&self) -> watch::Receiver<Majority> {
        self.majority.clone()
    }

    /// The mesh workloads this node can run (name → definition hash) and runs now,
    /// without waiting: `false` when the node's queue is full (it is stuck), so the
    /// caller tells it again later.
    pub fn try_set_workloads(
        &self,
        offers: BTreeMap<String, String>,
        running: BTreeSet<String>,
    ) -> bool {
        self.commands
            .try_send(Command::SetWorkloads(offers, running))
            .is_ok()
    }

    /// The closures this node holds and serves (their roots' hash parts), without
    /// waiting: `false` when the node's queue is full, so the caller tells it again.
    pub fn try_set_closures(&self, closures: BTreeSet<String>) -> bool {
        self.commands
            .try_send(Command::SetClosures(closures))
            .is_ok()
    }

    /// Opens and accepts raw streams of protocols served beside the loop: each
    /// stream's bytes go between the two ends without passing through it.
    pub fn streams(&self) -> libp2p_stream::Control {
        self.streams.clone()
    }

    /// This node's fleet: its standing and the members it knows.
    pub async fn fleet(&self) -> Result<FleetView, Stopped> {
        self.ask(Command::Fleet).await
    }

    /// Delivers the owner's certificate to `peer` (this node, or one connected to it);
    /// its answer comes back.
    pub async fn admit(
        &self,
        peer: PeerId,
        cert: Certificate,
    ) -> Result<Result<String, String>, Stopped> {
        self.ask(|tx| Command::Admit(peer, cert, tx)).await
    }

    /// Takes the owner's revocation here and tells the fleet.
    pub async fn revoke(&self, revocation: Revocation) -> Result<Result<String, String>, Stopped> {
        self.ask(|tx| Command::Revoke(revocation, tx)).await
    }

    /// How this node is doing, for its heartbeats, and since when it has been healthy
    /// on its fleet generation (the heartbeats say for how long), without waiting:
    /// `false` when the node's queue is full, so the caller tells it again.
    pub fn try_set_report(
        &self,
        report: Report,
        healthy_since: Option<std::time::Instant>,
    ) -> bool {
        self.commands
            .try_send(Command::SetReport(report, healthy_since))
            .is_ok()
    }

    /// The signed fleet specs to serve to members, by generation (all of them, each
    /// time: what is not here is no longer served).
    pub async fn serve_fleet_specs(
        &self,
        specs: BTreeMap<u64, std::sync::Arc<serde_json::Value>>,
    ) -> Result<(), Stopped> {
        self.commands
            .send(Command::Serve(specs))
            .await
            .map_err(|_| Stopped)
    }

    /// Fetches the member `peer`'s signed fleet spec of `generation`, unchecked.
    pub async fn fetch_fleet_spec(
        &self,
        peer: PeerId,
        generation: u64,
    ) -> Result<Result<serde_json::Value, String>, Stopped> {
        self.ask(|tx| Command::FetchSpec(peer, generation, tx))
            .await
    }

    /// Delivers a signed push (its envelope's bytes) to the member `peer`; its answer
    /// comes back.
    pub async fn push(
        &self,
        peer: PeerId,
        push: Vec<u8>,
    ) -> Result<Result<String, String>, Stopped> {
        self.ask(|tx| Command::Push(peer, push, tx)).await
    }
}
