//! The mesh node: one libp2p swarm and one event loop, in the shape of rust-libp2p's
//! `misc/server`, driven by a command channel from the rest of the agent. Here the loop
//! and membership; in `behaviour` the swarm's make-up, in `events` what the swarm
//! reports, in `commands` and `answers` the agent's requests, in `push` signed pushes.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use libp2p::identity::Keypair;
use libp2p::{Multiaddr, PeerId, Swarm, gossipsub, request_response};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::fencing::Majority;
use crate::fleet::{Fleet, FleetConfig};
use crate::handle::Command;
pub use crate::handle::{
    Event, FleetMember, FleetView, Handle, Member, MeshNode, Provider, PushResponse, Stopped,
};
use crate::membership::{Change, Membership, State, Timing};
use crate::message::{Heartbeat, Message, Service};
use crate::ownership::Ownership;
pub use crate::ownership::{Placed, View};
use crate::resources;

mod answers;
mod behaviour;
mod commands;
mod dials;
mod events;
mod fleet;
mod fleet_spec;
mod introductions;
mod push;
mod push_peer;
mod push_wire;
mod slots;
mod transport;
mod trust;

use behaviour::Behaviour;
pub use behaviour::{
    FLEET_PROTOCOL, FLEET_SPEC_PROTOCOL, KAD_PROTOCOL, PEERS_PROTOCOL, PUSH_PROTOCOL,
};
pub use fleet::FleetRequest;
pub use fleet_spec::{SpecRequest, SpecResponse};
pub use introductions::{Introduced, PeersRequest, PeersResponse};
pub use push_wire::PushBytes;

/// How often each member passes on the owner's revocations it keeps, for members that
/// were away when they were made.
const REPUBLISH: Duration = Duration::from_secs(30);

/// How this node takes part in the mesh.
#[derive(Debug, Clone)]
pub struct Config {
    /// Its `node.name`.
    pub node: String,
    /// Where to listen.
    pub listen: Vec<Multiaddr>,
    /// Whom to ask first.
    pub bootstrap: Vec<Multiaddr>,
    /// Look for peers on the local link too.
    pub mdns: bool,
    /// The failure detector's clock.
    pub timing: Timing,
    /// Its `node.labels`.
    pub labels: BTreeMap<String, String>,
    /// The services of its workloads.
    pub services: Vec<Service>,
    /// The state directory: whose filesystem's free space is advertised.
    pub state_dir: PathBuf,
    /// At most this many connections at once.
    pub max_connections: u32,
    /// How long a member must be quorate before it owns mesh workloads.
    pub hold_down: Duration,
    /// Its owner's fleet; with none, the node takes part in the mesh (the DHT, pushes)
    /// but in no fleet, and holds no mesh workload.
    pub fleet: Option<FleetConfig>,
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address was refused.
    #[error("cannot listen on {address}: {why}")]
    Listen {
        /// The address.
        address: Multiaddr,
        /// Why.
        why: String,
    },
    /// The swarm could not be made.
    #[error("cannot set up the mesh: {0}")]
    Setup(String),
}

/// A running mesh node: [`Node::run`] it on the agent's runtime.
pub struct Node {
    swarm: Swarm<Behaviour>,
    config: Config,
    membership: Membership<PeerId>,
    fleet: Option<Fleet>,
    topic: Option<gossipsub::IdentTopic>,
    incarnation: u64,
    seq: u64,
    commands: mpsc::Receiver<Command>,
    commands_tx: mpsc::Sender<Command>,
    events: mpsc::UnboundedSender<Event>,
    pending: HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<String, String>>>,
    fleet_pending:
        HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<String, String>>>,
    spec_pending: HashMap<request_response::OutboundRequestId, fleet_spec::Reply>,
    /// The signed fleet specs this node serves to members.
    served: fleet_spec::Served,
    republish_at: Instant,
    rejoin_at: Instant,
    backoff: Duration,
    received: u64,
    rejected: u64,
    metrics: std::sync::Arc<crate::Metrics>,
    ownership: Ownership,
    views: watch::Sender<View>,
    majority: watch::Sender<Majority>,
    /// When the loop last turned: a long gap means it missed its own clock.
    turned: Instant,
    /// When it last sent a heartbeat.
    beat_at: Option<Instant>,
    /// How many `Gone` reports each member may still make this node act on.
    reports: crate::rate::PerPeer<PeerId>,
    /// Whose `Gone` reports were found false of late.
    credibility: crate::credibility::Credibility<PeerId>,
    /// Peers reached at a bootstrap address.
    bootstrap_peers: std::collections::HashSet<PeerId>,
    /// The address each connected peer connects from.
    remote_ips: HashMap<PeerId, std::net::IpAddr>,
    /// Which member goes by each node name.
    names: HashMap<String, PeerId>,
    /// What each connected peer says of its addresses, as far as it is taken.
    announced: introductions::Announced,
    /// When this node last asked its bootstrap peers for introductions.
    asked_at: Option<Instant>,
    /// The addresses the transport may dial.
    allowed: transport::Allowed,
}

/// The addresses taken of one peer: a member has a few (its interfaces, IPv4 and
/// IPv6), and each is dialed by the mesh.
const MAX_LEARNED: usize = 8;

/// `Gone` reports a member may make at once (every member of a fleet cut off, say)…
const REPORT_BURST: u32 = 64;
/// …and then each second.
const REPORTS_PER_SEC: f64 = 8.0;

/// A loop that has not turned for this long was frozen or starved: every heartbeat it
/// should have handled in between is missing.
const STALL: Duration = Duration::from_millis(1500);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    /// Sets the node up and starts listening. Events go to `events`, which is never
    /// full: no member's change is ever dropped, and pushes are bounded by their
    /// budget, not by the channel.
    pub fn new(
        key: Keypair,
        config: Config,
        events: mpsc::UnboundedSender<Event>,
        metrics: std::sync::Arc<crate::Metrics>,
    ) -> Result<(Node, Handle), StartError> {
        let setup = |e: &dyn std::fmt::Display| StartError::Setup(e.to_string());
        let peer_id = key.public().to_peer_id();
        let timing = config.timing;
        let topic = config
            .fleet
            .as_ref()
            .map(|f| gossipsub::IdentTopic::new(crate::fleet::topic(&f.owner)));
        let allowed = transport::Allowed::new(&config.bootstrap);
        let mut swarm = behaviour::swarm(key, &config, topic.as_ref(), &allowed)?;
        let streams = swarm.behaviour().streams.new_control();
        if let Some(topic) = &topic {
            swarm
                .behaviour_mut()
                .gossipsub
                .subscribe(topic)
                .map_err(|e| setup(&e))?;
        }
        let fleet = config
            .fleet
            .as_ref()
            .map(|f| Fleet::load(f, &peer_id.to_string(), &config.node, &config.state_dir));
        let (commands_tx, commands) = mpsc::channel(64);
        let ownership = Ownership::load(
            peer_id,
            &config.state_dir,
            config.hold_down,
            timing.heartbeat,
            fleet.as_ref(),
        );
        let membership = Membership::new(timing);
        let now = Instant::now();
        let (views, views_rx) =
            watch::channel(ownership.view(peer_id, &config.node, &config.labels, &membership, now));
        let (majority, majority_rx) = watch::channel(Majority::NONE);
        let node = Node {
            swarm,
            membership,
            fleet,
            topic,
            incarnation: crate::state_file::next_incarnation(&config.state_dir, now_ms()),
            seq: 0,
            commands,
            commands_tx: commands_tx.clone(),
            events,
            pending: HashMap::new(),
            fleet_pending: HashMap::new(),
            spec_pending: HashMap::new(),
            served: Default::default(),
            republish_at: now + REPUBLISH,
            rejoin_at: Instant::now(),
            received: 0,
            rejected: 0,
            backoff: Duration::from_secs(1),
            metrics,
            ownership,
            views,
            majority,
            turned: now,
            beat_at: None,
            reports: crate::rate::PerPeer::new(REPORT_BURST, REPORTS_PER_SEC),
            credibility: Default::default(),
            bootstrap_peers: Default::default(),
            remote_ips: HashMap::new(),
            names: HashMap::new(),
            announced: HashMap::new(),
            asked_at: None,
            allowed,
            config,
        };
        Ok((
            node,
            Handle {
                commands: commands_tx,
                views: views_rx,
                majority: majority_rx,
                peer_id,
                streams,
            },
        ))
    }

    /// Runs until every [`Handle`] is gone.
    pub async fn run(mut self) {
        let mut beat = tokio::time::interval(self.config.timing.heartbeat);
        // After a stall, one beat, not a burst of the missed ones.
        beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut bootstrap = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                event = self.swarm.select_next_some() => {
                    self.turn();
                    self.on_swarm(event);
                }
                command = self.commands.recv() => match command {
                    Some(command) => {
                        self.turn();
                        self.on_command(command);
                    }
                    None => return,
                },
                _ = beat.tick() => {
                    self.turn();
                    self.on_beat();
                }
                _ = bootstrap.tick() => self.bootstrap(),
            }
        }
    }

    /// Before anything else it handles: a loop that missed its own clock treats all it
    /// knew as stale (its lease is not renewed, it owns nothing for a hold-down), and
    /// only then takes in what queued up meanwhile.
    fn turn(&mut self) {
        let now = Instant::now();
        let gap = now.saturating_duration_since(self.turned);
        self.turned = now;
        if gap > STALL {
            warn!(
                gap_ms = gap.as_millis() as u64,
                "the mesh loop stood still for {} ms; starting over as if just joined",
                gap.as_millis()
            );
            self.ownership.interrupt();
            self.majority.send_replace(Majority::NONE);
            self.metrics.quorate(false);
        }
    }

    /// The lease's evidence, after anything that may change it.
    fn publish_majority(&mut self, now: Instant) {
        let mut m = self.ownership.majority(&self.membership, now);
        m.beat_until = self
            .beat_at
            .map(|t| t + self.config.timing.heartbeat + crate::fencing::BEAT_LATE);
        self.majority.send_if_modified(|old| {
            let changed = *old != m;
            *old = m;
            changed
        });
    }

    /// Finds the rest of the mesh (again): through the members and bootstrap peers
    /// (Kademlia), and the fleet-mates the bootstrap peers introduce.
    fn bootstrap(&mut self) {
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
        self.ask_for_introductions();
    }

    /// This node's heartbeat, if it is a member: a node outside its fleet says nothing
    /// (the members would refuse it, and count it against the sender).
    fn heartbeat(&mut self) -> Option<Heartbeat> {
        let cert = self.fleet.as_mut()?.certificate(now_ms() / 1000)?.clone();
        self.seq += 1;
        self.beat_at = Some(Instant::now());
        Some(Heartbeat {
            cert,
            node: self.config.node.clone(),
            incarnation: self.incarnation,
            seq: self.seq,
            labels: self.config.labels.clone(),
            resources: resources::measure(&self.config.state_dir),
            services: self.config.services.clone(),
            addresses: trust::heartbeat_addresses(self.swarm.listeners()),
            settled_ms: u64::try_from(self.ownership.settled(Instant::now()).as_millis())
                .unwrap_or(u64::MAX),
            offers: self.ownership.offers.clone(),
            running: self.ownership.running.clone(),
            report: self.ownership.report(Instant::now()),
            closures: self.ownership.closures.clone(),
        })
    }

    fn beat_now(&mut self) {
        if let Some(hb) = self.heartbeat() {
            self.publish(&Message::Heartbeat(Box::new(hb)));
        }
    }

    fn publish(&mut self, message: &Message) {
        let Some(topic) = self.topic.clone() else {
            return;
        };
        if let Err(e) = self
            .swarm
            .behaviour_mut()
            .gossipsub
            .publish(topic, message.encode())
        {
            // Alone in the mesh (no peer on the topic yet): nothing to tell.
            debug!("membership message not sent: {e}");
        }
    }

    /// Each heartbeat: say we are alive, look at the others. Membership and quorum are
    /// looked at on this clock, not a faster one: each wake-up of the loop polls the
    /// whole swarm, which an idle node would pay for; the minority of a partition still
    /// stops 1.5 s before the majority takes over.
    fn on_beat(&mut self) {
        self.beat_now();
        self.republish_revocations();
        self.rejoin_if_alone();
        self.ask_if_alone(Instant::now());
        self.check();
        self.metrics.members(&self.membership);
    }

    /// The detector's timeouts, then the fencing rule; the agent hears of anything
    /// that may move a workload.
    fn check(&mut self) {
        let now = Instant::now();
        for change in self.membership.tick(now) {
            self.report(change);
        }
        self.trust();
        let member = self
            .fleet
            .as_mut()
            .is_some_and(|f| f.certificate(now_ms() / 1000).is_some());
        let changed = self.ownership.update(&self.membership, member, now);
        let view = self.view(now);
        if changed.quorate {
            self.metrics.quorate(view.quorate);
            if view.quorate {
                info!(
                    voters = view.voters,
                    "a majority of the mesh is in sight again"
                );
            } else {
                warn!(
                    voters = view.voters,
                    "fenced: fewer than a majority of the mesh in sight; mesh workloads stop here"
                );
            }
        }
        if self.ownership.moved(&view) {
            self.views.send_replace(view);
        }
        self.publish_majority(now);
    }

    fn view(&self, now: Instant) -> View {
        self.ownership.view(
            *self.swarm.local_peer_id(),
            &self.config.node,
            &self.config.labels,
            &self.membership,
            now,
        )
    }

    /// With no peer at all, dial the bootstrap peers again, backing off to 30 s.
    fn rejoin_if_alone(&mut self) {
        if self.swarm.connected_peers().next().is_some() {
            self.backoff = Duration::from_secs(1);
            return;
        }
        let now = Instant::now();
        if now < self.rejoin_at || self.config.bootstrap.is_empty() {
            return;
        }
        for address in self.config.bootstrap.clone() {
            if let Err(e) = self.swarm.dial(address.clone()) {
                debug!("cannot dial bootstrap peer {address}: {e}");
            }
        }
        self.rejoin_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_secs(30));
    }

    fn report(&mut self, change: Change<PeerId>) {
        let (peer_id, state) = match change {
            Change::Alive(p) => (p, State::Alive),
            Change::Suspect(p) => (p, State::Suspect),
            Change::Dead(p) => (p, State::Dead),
        };
        let node = self
            .membership
            .get(&peer_id)
            .map(|m| m.info.node.clone())
            .unwrap_or_default();
        match state {
            State::Alive => info!(%peer_id, node, "member alive"),
            State::Suspect => info!(%peer_id, node, "member suspect"),
            State::Dead => {
                warn!(%peer_id, node, "member dead");
                // No longer asked for peers; taken back when it lives again. (A
                // bootstrap peer stays: its address is the operator's.)
                if !self.bootstrap_peers.contains(&peer_id) {
                    self.swarm.behaviour_mut().kad.remove_peer(&peer_id);
                }
            }
        }
        self.publish_majority(Instant::now());
        self.trust();
        if state == State::Alive {
            self.learn_addresses(&peer_id);
        }
        let _ = self.events.send(Event::Member {
            peer_id,
            node,
            state,
        });
    }
}
