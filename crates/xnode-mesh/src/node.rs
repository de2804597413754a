//! The mesh node: one libp2p swarm and one event loop, in the shape of rust-libp2p's
//! `misc/server`, driven by a command channel from the rest of the agent.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt as _;
use libp2p::identity::Keypair;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, connection_limits, gossipsub, identify, kad, mdns,
    memory_connection_limits, noise, ping, request_response, tcp, yamux,
};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::fencing::Majority;
use crate::handle::Command;
pub use crate::handle::{Event, Handle, MemberView, Provider, PushResponse, Status, Stopped};
use crate::membership::{Change, Membership, State, Timing};
use crate::message::{Heartbeat, MAX_MESSAGE, Message, Service};
use crate::ownership::Ownership;
pub use crate::ownership::{Placed, View};
use crate::resources;

/// Kademlia's protocol name: private, so the node never joins the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/xnode/kad/1.0.0");
/// Signed spec pushes, node to node.
pub const PUSH_PROTOCOL: StreamProtocol = StreamProtocol::new("/xnode/push/1.0.0");
const IDENTIFY_PROTOCOL: &str = "/xnode/id/1.0.0";
const MEMBERS_TOPIC: &str = "xnode/members/1";
/// A push is a spec: as large as the largest spec a node reads.
const MAX_PUSH: u64 = 64 << 20;

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

#[derive(NetworkBehaviour)]
struct Behaviour {
    limits: connection_limits::Behaviour,
    memory: memory_connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<kad::store::MemoryStore>,
    gossipsub: gossipsub::Behaviour,
    push: request_response::json::Behaviour<serde_json::Value, PushResponse>,
    mdns: Toggle<mdns::tokio::Behaviour>,
}

/// A running mesh node: [`Node::run`] it on the agent's runtime.
pub struct Node {
    swarm: Swarm<Behaviour>,
    config: Config,
    membership: Membership<PeerId>,
    topic: gossipsub::IdentTopic,
    incarnation: u64,
    seq: u64,
    commands: mpsc::Receiver<Command>,
    commands_tx: mpsc::Sender<Command>,
    events: mpsc::Sender<Event>,
    pending: HashMap<request_response::OutboundRequestId, oneshot::Sender<Result<String, String>>>,
    rejoin_at: Instant,
    backoff: Duration,
    rejected: u64,
    metrics: std::sync::Arc<crate::Metrics>,
    ownership: Ownership,
    views: watch::Sender<View>,
    majority: watch::Sender<Majority>,
    /// When the loop last turned: a long gap means it missed its own clock.
    turned: Instant,
    /// When it last sent a heartbeat.
    beat_at: Option<Instant>,
}

/// A loop that has not turned for this long was frozen or starved: every heartbeat it
/// should have handled in between is missing.
const STALL: Duration = Duration::from_millis(1500);

/// Where a service's providers are recorded in Kademlia.
fn service_key(name: &str) -> kad::RecordKey {
    kad::RecordKey::new(&format!("xnode/service/{name}"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Node {
    /// Sets the node up and starts listening. Events go to `events`.
    pub fn new(
        key: Keypair,
        config: Config,
        events: mpsc::Sender<Event>,
        metrics: std::sync::Arc<crate::Metrics>,
    ) -> Result<(Node, Handle), StartError> {
        let setup = |e: &dyn std::fmt::Display| StartError::Setup(e.to_string());
        let peer_id = key.public().to_peer_id();
        let timing = config.timing;
        let mdns = config.mdns;
        let max_connections = config.max_connections;
        let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(
                tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| setup(&e))?
            .with_dns()
            .map_err(|e| setup(&e))?
            .with_behaviour(|key| {
                let gossip = gossipsub::ConfigBuilder::default()
                    // The first heartbeat at once, not after gossipsub's default 5 s.
                    .heartbeat_initial_delay(Duration::from_millis(100))
                    .heartbeat_interval(timing.heartbeat)
                    .validation_mode(gossipsub::ValidationMode::Strict)
                    .validate_messages()
                    .max_transmit_size(MAX_MESSAGE)
                    .build()?;
                let mut kad_config = kad::Config::new(KAD_PROTOCOL);
                kad_config.set_query_timeout(Duration::from_secs(30));
                let mut kad = kad::Behaviour::with_config(
                    key.public().to_peer_id(),
                    kad::store::MemoryStore::new(key.public().to_peer_id()),
                    kad_config,
                );
                kad.set_mode(Some(kad::Mode::Server));
                let limits = connection_limits::ConnectionLimits::default()
                    .with_max_established(Some(max_connections))
                    .with_max_pending_incoming(Some(max_connections / 2))
                    .with_max_established_per_peer(Some(2));
                let push = request_response::json::Behaviour::with_codec(
                    request_response::json::codec::Codec::default()
                        .set_request_size_maximum(MAX_PUSH)
                        .set_response_size_maximum(64 * 1024),
                    [(PUSH_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                );
                Ok(Behaviour {
                    limits: connection_limits::Behaviour::new(limits),
                    memory: memory_connection_limits::Behaviour::with_max_percentage(0.9),
                    identify: identify::Behaviour::new(identify::Config::new(
                        IDENTIFY_PROTOCOL.into(),
                        key.public(),
                    )),
                    ping: ping::Behaviour::new(ping::Config::new()),
                    kad,
                    gossipsub: gossipsub::Behaviour::new(
                        gossipsub::MessageAuthenticity::Signed(key.clone()),
                        gossip,
                    )?,
                    push,
                    mdns: Toggle::from(if mdns {
                        Some(mdns::tokio::Behaviour::new(
                            mdns::Config::default(),
                            key.public().to_peer_id(),
                        )?)
                    } else {
                        None
                    }),
                })
            })
            .map_err(|e| setup(&e))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        // One address that works is enough (a host without IPv6 cannot bind [::]).
        let (mut listening, mut failed) = (0, None);
        for address in &config.listen {
            match swarm.listen_on(address.clone()) {
                Ok(_) => listening += 1,
                Err(e) => {
                    let why =
                        std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string());
                    warn!(%address, "cannot listen: {why}");
                    failed = Some(StartError::Listen {
                        address: address.clone(),
                        why,
                    });
                }
            }
        }
        if let Some(e) = failed.filter(|_| listening == 0) {
            return Err(e);
        }
        let topic = gossipsub::IdentTopic::new(MEMBERS_TOPIC);
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| setup(&e))?;
        let (commands_tx, commands) = mpsc::channel(64);
        let ownership = Ownership::load(
            peer_id,
            &config.state_dir,
            config.hold_down,
            timing.heartbeat,
        );
        let membership = Membership::new(timing);
        let now = Instant::now();
        let (views, views_rx) =
            watch::channel(ownership.view(peer_id, &config.node, &config.labels, &membership, now));
        let (majority, majority_rx) = watch::channel(Majority::NONE);
        let node = Node {
            swarm,
            membership,
            topic,
            incarnation: now_ms(),
            seq: 0,
            commands,
            commands_tx: commands_tx.clone(),
            events,
            pending: HashMap::new(),
            rejoin_at: Instant::now(),
            rejected: 0,
            backoff: Duration::from_secs(1),
            metrics,
            ownership,
            views,
            majority,
            turned: now,
            beat_at: None,
            config,
        };
        Ok((
            node,
            Handle {
                commands: commands_tx,
                views: views_rx,
                majority: majority_rx,
                peer_id,
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

    /// Finds the rest of the mesh (again), and puts this node's provider records where
    /// the mesh now is: a record put while alone reaches nobody.
    fn bootstrap(&mut self) {
        let _ = self.swarm.behaviour_mut().kad.bootstrap();
        self.provide();
    }

    fn provide(&mut self) {
        for s in &self.config.services {
            if let Err(e) = self
                .swarm
                .behaviour_mut()
                .kad
                .start_providing(service_key(&s.name))
            {
                warn!("cannot publish service {}: {e}", s.name);
            }
        }
    }

    fn heartbeat(&mut self) -> Heartbeat {
        self.seq += 1;
        self.beat_at = Some(Instant::now());
        Heartbeat {
            node: self.config.node.clone(),
            incarnation: self.incarnation,
            seq: self.seq,
            labels: self.config.labels.clone(),
            resources: resources::measure(&self.config.state_dir),
            services: self.config.services.clone(),
            addresses: self.swarm.listeners().map(|a| a.to_string()).collect(),
            settled_ms: u64::try_from(self.ownership.settled(Instant::now()).as_millis())
                .unwrap_or(u64::MAX),
            offers: self.ownership.offers.clone(),
            running: self.ownership.running.clone(),
        }
    }

    fn publish(&mut self, message: &Message) {
        let topic = self.topic.clone();
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
        let hb = self.heartbeat();
        self.publish(&Message::Heartbeat(hb));
        self.rejoin_if_alone();
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
        let changed = self.ownership.update(&self.membership, now);
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
            State::Dead => warn!(%peer_id, node, "member dead"),
        }
        self.publish_majority(Instant::now());
        if state == State::Alive {
            self.learn_addresses(&peer_id);
        }
        let _ = self.events.try_send(Event::Member {
            peer_id,
            node,
            state,
        });
    }

    fn learn_addresses(&mut self, peer: &PeerId) {
        let addresses: Vec<Multiaddr> = self
            .membership
            .get(peer)
            .map(|m| {
                m.info
                    .addresses
                    .iter()
                    .filter_map(|a| a.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for address in addresses {
            self.swarm.add_peer_address(*peer, address.clone());
            self.swarm.behaviour_mut().kad.add_address(peer, address);
        }
    }

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record_swarm(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => info!(%address, "mesh listening"),
            // The first peer: find the rest of the mesh through it.
            SwarmEvent::ConnectionEstablished { .. }
                if self.swarm.connected_peers().count() == 1 =>
            {
                self.bootstrap();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                if let Some(change) = self.membership.disconnected(&peer_id, Instant::now()) {
                    self.report(change);
                    // Confirm: is it gone, or was only this connection?
                    let opts = DialOpts::peer_id(peer_id)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    if self.swarm.dial(opts).is_err() {
                        self.confirm_gone(peer_id);
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                error,
                ..
            } => {
                debug!(%peer_id, "dial failed: {error}");
                let suspect = self
                    .membership
                    .get(&peer_id)
                    .is_some_and(|m| m.state == State::Suspect);
                if suspect && !self.swarm.is_connected(&peer_id) {
                    self.confirm_gone(peer_id);
                }
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn confirm_gone(&mut self, peer: PeerId) {
        let Some(m) = self.membership.get(&peer) else {
            return;
        };
        let (incarnation, seq) = (m.info.incarnation, m.info.seq);
        if let Some(change) = self
            .membership
            .gone(&peer, incarnation, seq, Instant::now())
        {
            self.report(change);
            self.publish(&Message::Gone {
                peer: peer.to_string(),
                incarnation,
                seq,
            });
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Gossipsub(event) => {
                self.metrics.record_gossipsub(&event);
                if let gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                } = event
                {
                    let verdict = self.on_message(message.source, &message.data);
                    let acceptance = match verdict {
                        Ok(()) => gossipsub::MessageAcceptance::Accept,
                        Err(why) => {
                            self.metrics.rejected();
                            self.rejected += 1;
                            debug!(from = %propagation_source, "membership message rejected: {why}");
                            gossipsub::MessageAcceptance::Reject
                        }
                    };
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .report_message_validation_result(
                            &message_id,
                            &propagation_source,
                            acceptance,
                        );
                }
            }
            BehaviourEvent::Identify(event) => {
                self.metrics.record_identify(&event);
                if let identify::Event::Received { peer_id, info, .. } = event
                    && info.protocols.contains(&KAD_PROTOCOL)
                {
                    for address in info.listen_addrs {
                        self.swarm
                            .behaviour_mut()
                            .kad
                            .add_address(&peer_id, address);
                    }
                }
            }
            BehaviourEvent::Kad(event) => self.metrics.record_kad(&event),
            BehaviourEvent::Ping(event) => self.metrics.record_ping(&event),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, address) in found {
                    self.swarm.add_peer_address(peer, address.clone());
                    let _ = self.swarm.dial(address);
                }
            }
            BehaviourEvent::Push(event) => self.on_push(event),
            _ => {}
        }
    }

    fn on_message(&mut self, source: Option<PeerId>, data: &[u8]) -> Result<(), String> {
        let source = source.ok_or("an unsigned message")?;
        let message = Message::decode(data).map_err(|e| e.to_string())?;
        let now = Instant::now();
        match message {
            Message::Heartbeat(hb) => {
                if source == *self.swarm.local_peer_id() {
                    return Ok(());
                }
                if let Some(change) = self.membership.heard(&source, hb, now) {
                    self.report(change);
                }
                self.publish_majority(now);
            }
            Message::Gone {
                peer,
                incarnation,
                seq,
            } => {
                let peer: PeerId = peer.parse().map_err(|_| "Gone names no peer id")?;
                if peer == *self.swarm.local_peer_id() {
                    // Reported gone, but here: say so at once.
                    let hb = self.heartbeat();
                    self.publish(&Message::Heartbeat(hb));
                } else if self.swarm.is_connected(&peer) {
                    // Our own connection to it is up: that outweighs a report (which
                    // anyone may send). If it did die, that connection closes and we
                    // find out ourselves.
                } else if let Some(change) = self.membership.gone(&peer, incarnation, seq, now) {
                    self.report(change);
                }
            }
        }
        Ok(())
    }

    fn on_push(&mut self, event: request_response::Event<serde_json::Value, PushResponse>) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                let (reply, verdict) = oneshot::channel();
                let bytes = serde_json::to_vec(&request).unwrap_or_default();
                let delivered = self.events.try_send(Event::Push {
                    from: peer,
                    push: bytes,
                    reply,
                });
                let commands = self.commands_tx.clone();
                if delivered.is_err() {
                    let answer = PushResponse {
                        accepted: false,
                        message: "this node takes no pushes now (busy or not an agent)".into(),
                    };
                    let _ = self
                        .swarm
                        .behaviour_mut()
                        .push
                        .send_response(channel, answer);
                    return;
                }
                tokio::spawn(async move {
                    let answer = match verdict.await {
                        Ok(Ok(message)) => PushResponse {
                            accepted: true,
                            message,
                        },
                        Ok(Err(message)) => PushResponse {
                            accepted: false,
                            message,
                        },
                        Err(_) => PushResponse {
                            accepted: false,
                            message: "the node went away".into(),
                        },
                    };
                    let _ = commands.send(Command::Respond(channel, answer)).await;
                });
            }
            E::Message {
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(if response.accepted {
                        Ok(response.message)
                    } else {
                        Err(response.message)
                    });
                }
            }
            E::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.pending.remove(&request_id) {
                    let _ = reply.send(Err(format!("the push did not reach the node: {error}")));
                }
            }
            E::InboundFailure { peer, error, .. } => {
                debug!(%peer, "a push from this peer failed: {error}");
            }
            E::ResponseSent { .. } => {}
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Members(reply) => {
                let _ = reply.send(self.members());
            }
            Command::Providers(name, reply) => {
                let _ = reply.send(self.providers(name.as_deref()));
            }
            Command::Status(reply) => {
                let count = |s| {
                    self.membership
                        .members()
                        .filter(|(_, m)| m.state == s)
                        .count()
                };
                let status = Status {
                    peer_id: self.swarm.local_peer_id().to_string(),
                    listen: self.swarm.listeners().map(|a| a.to_string()).collect(),
                    connected: self.swarm.connected_peers().count(),
                    alive: count(State::Alive),
                    suspect: count(State::Suspect),
                    dead: count(State::Dead),
                    rejected: self.rejected,
                };
                let _ = reply.send(status);
            }
            Command::SetLocal(labels, services) => {
                for gone in self
                    .config
                    .services
                    .iter()
                    .filter(|s| !services.contains(s))
                {
                    let key = service_key(&gone.name);
                    self.swarm.behaviour_mut().kad.stop_providing(&key);
                }
                self.config.labels = labels;
                self.config.services = services;
                self.provide();
            }
            Command::SetWorkloads(offers, running) => {
                let news = running != self.ownership.running || offers != self.ownership.offers;
                self.ownership.offers = offers;
                self.ownership.running = running;
                if news {
                    // Said at once: a member waiting to take a workload over waits for
                    // this, and this node's own placement decides on its new offers.
                    let hb = self.heartbeat();
                    self.publish(&Message::Heartbeat(hb));
                    self.check();
                }
            }
            Command::Push(node, push, reply) => {
                let targets: Vec<PeerId> = self
                    .membership
                    .live()
                    .filter(|(_, m)| m.info.node == node)
                    .map(|(p, _)| *p)
                    .collect();
                match targets.as_slice() {
                    [peer] => {
                        let id = self.swarm.behaviour_mut().push.send_request(peer, push);
                        self.pending.insert(id, reply);
                    }
                    [] => {
                        let _ = reply.send(Err(format!("no live member is called {node:?}")));
                    }
                    _ => {
                        let _ = reply.send(Err(format!(
                            "{} live members call themselves {node:?}; not guessing",
                            targets.len()
                        )));
                    }
                }
            }
            Command::Respond(channel, answer) => {
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .push
                    .send_response(channel, answer);
            }
        }
    }

    fn members(&self) -> Vec<MemberView> {
        self.membership
            .members()
            .map(|(peer, m)| MemberView {
                peer_id: peer.to_string(),
                node: m.info.node.clone(),
                state: match m.state {
                    State::Alive => "alive",
                    State::Suspect => "suspect",
                    State::Dead => "dead",
                }
                .into(),
                labels: m.info.labels.clone(),
                resources: m.info.resources,
                services: m.info.services.clone(),
                addresses: m.info.addresses.clone(),
            })
            .collect()
    }

    /// Live providers, this node included; a dead member's services are not answered.
    fn providers(&self, name: Option<&str>) -> Vec<Provider> {
        let me = (
            self.swarm.local_peer_id().to_string(),
            &self.config.node,
            &self.config.services,
            self.swarm
                .listeners()
                .map(|a| a.to_string())
                .collect::<Vec<_>>(),
        );
        let others = self.membership.live().map(|(p, m)| {
            (
                p.to_string(),
                &m.info.node,
                &m.info.services,
                m.info.addresses.clone(),
            )
        });
        let mut out: Vec<Provider> = std::iter::once(me)
            .chain(others)
            .flat_map(|(peer_id, node, services, addresses)| {
                services
                    .iter()
                    .filter(|s| name.is_none_or(|n| n == s.name))
                    .map(move |s| Provider {
                        service: s.name.clone(),
                        node: node.clone(),
                        peer_id: peer_id.clone(),
                        addresses: addresses.clone(),
                        port: s.port,
                        protocol: s.protocol.clone(),
                    })
            })
            .collect();
        out.sort();
        out
    }
}
