//! The swarm's make-up: the behaviours composed into one, their protocols and limits,
//! and the listening addresses (as rust-libp2p's `misc/server` keeps `behaviour.rs`).

use std::time::Duration;

use libp2p::core::upgrade::Version;
use libp2p::identity::Keypair;
use libp2p::swarm::NetworkBehaviour;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::{
    StreamProtocol, Swarm, Transport as _, connection_limits, dns, gossipsub, identify, kad, mdns,
    memory_connection_limits, noise, ping, request_response, tcp, yamux,
};
use tracing::warn;

use super::fleet_spec::{MAX_SPEC_RESPONSE, SpecRequest, SpecResponse};
use super::introductions::{MAX_INTRODUCTION_BYTES, PeersRequest, PeersResponse};
use super::{Config, FleetRequest, PushResponse, StartError};
use crate::message::MAX_MESSAGE;

/// Kademlia's protocol name: private, so the node never joins the public IPFS DHT.
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/xnode/kad/1.0.0");
/// Signed spec pushes, node to node.
pub const PUSH_PROTOCOL: StreamProtocol = StreamProtocol::new("/xnode/push/1.0.0");
/// Certificates and revocations delivered to one peer.
pub const FLEET_PROTOCOL: StreamProtocol = StreamProtocol::new("/xnode/fleet/1.0.0");
/// Introductions: a bootstrap peer names its peers on a fleet's topic.
pub const PEERS_PROTOCOL: StreamProtocol = StreamProtocol::new("/xnode/peers/1.0.0");
/// Signed fleet specs, fetched by a member from another.
pub const FLEET_SPEC_PROTOCOL: StreamProtocol = StreamProtocol::new("/xnode/fleet-spec/1.0.0");
/// A certificate or a revocation, with room to spare.
const MAX_FLEET_REQUEST: u64 = 16 * 1024;
const IDENTIFY_PROTOCOL: &str = "/xnode/id/1.0.0";

#[derive(NetworkBehaviour)]
pub(super) struct Behaviour {
    pub(super) limits: connection_limits::Behaviour,
    pub(super) memory: memory_connection_limits::Behaviour,
    // After the limits: a connection they refuse never reaches the slots, which
    // hear only of those that close.
    pub(super) slots: super::slots::Behaviour,
    pub(super) identify: identify::Behaviour,
    pub(super) ping: ping::Behaviour,
    pub(super) kad: kad::Behaviour<kad::store::MemoryStore>,
    pub(super) gossipsub: gossipsub::Behaviour,
    pub(super) push: super::push_peer::Behaviour,
    pub(super) fleet: request_response::json::Behaviour<FleetRequest, PushResponse>,
    pub(super) introductions: request_response::json::Behaviour<PeersRequest, PeersResponse>,
    pub(super) fleet_spec: request_response::json::Behaviour<SpecRequest, SpecResponse>,
    pub(super) mdns: Toggle<mdns::tokio::Behaviour>,
    /// Raw streams for protocols served beside the loop (Nix store paths).
    pub(super) streams: libp2p_stream::Behaviour,
}

/// Below this score a peer's gossip is ignored.
pub(super) const GRAYLIST: f64 = -80.0;

/// Peer scoring on the fleet's topic: a peer whose messages the node keeps rejecting
/// (a non-member's heartbeats, forged reports) loses score with the square of their
/// number, and past the graylist threshold everything it sends is ignored, until its
/// score decays back. Scores for sharing an IP are off: nodes behind one NAT, and the
/// test hosts on one loopback, are not Sybils for that.
fn peer_score(
    topic: &gossipsub::IdentTopic,
) -> (gossipsub::PeerScoreParams, gossipsub::PeerScoreThresholds) {
    let fleet = gossipsub::TopicScoreParams {
        topic_weight: 1.0,
        time_in_mesh_weight: 0.01,
        time_in_mesh_quantum: Duration::from_secs(1),
        time_in_mesh_cap: 100.0,
        first_message_deliveries_weight: 1.0,
        first_message_deliveries_cap: 10.0,
        // Members say little (two heartbeats a second), and a node outside its fleet
        // says nothing: being quiet is no fault here.
        mesh_message_deliveries_weight: 0.0,
        mesh_failure_penalty_weight: 0.0,
        invalid_message_deliveries_weight: -10.0,
        // Slow to forgive: a graylisted peer gets about three messages looked at every
        // six seconds, however much it sends.
        invalid_message_deliveries_decay: 0.99,
        ..Default::default()
    };
    let params = gossipsub::PeerScoreParams {
        topics: [(topic.hash(), fleet)].into_iter().collect(),
        app_specific_weight: 0.0,
        ip_colocation_factor_weight: 0.0,
        ..Default::default()
    };
    // Three rejected messages in a row graylist a peer.
    let thresholds = gossipsub::PeerScoreThresholds {
        gossip_threshold: -10.0,
        publish_threshold: -50.0,
        graylist_threshold: GRAYLIST,
        ..Default::default()
    };
    (params, thresholds)
}

/// The swarm of a node with `key`, listening where `config` says (one address that
/// works is enough: a host without IPv6 cannot bind [::]), scoring peers on `topic`,
/// dialing only what `allowed` allows.
pub(super) fn swarm(
    key: Keypair,
    config: &Config,
    topic: Option<&gossipsub::IdentTopic>,
    allowed: &super::transport::Allowed,
) -> Result<Swarm<Behaviour>, StartError> {
    let setup = |e: &dyn std::fmt::Display| StartError::Setup(e.to_string());
    let timing = config.timing;
    let mdns = config.mdns;
    let max_connections = config.max_connections;
    let bootstrap = config.bootstrap.clone();
    let mut swarm = libp2p::SwarmBuilder::with_existing_identity(key)
        .with_tokio()
        .with_other_transport(|key| {
            // TCP + Noise + Yamux, DNS names resolved, and every dial checked first.
            let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true))
                .upgrade(Version::V1)
                .authenticate(noise::Config::new(key)?)
                .multiplex(yamux::Config::default());
            let dns = dns::tokio::Transport::system(tcp)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(super::transport::Gated::new(
                dns,
                allowed.clone(),
            ))
        })
        .map_err(|e| setup(&e))?
        .with_behaviour(|key| {
            let gossip = gossipsub::ConfigBuilder::default()
                // The first heartbeat at once, not after gossipsub's default 5 s.
                .heartbeat_initial_delay(Duration::from_millis(100))
                .heartbeat_interval(timing.heartbeat)
                .validation_mode(gossipsub::ValidationMode::Strict)
                .validate_messages()
                .max_transmit_size(MAX_MESSAGE)
                // Every copy of a message costs a signature check before gossipsub
                // knows it for a duplicate: 4 mesh peers, not 6, send each member
                // fewer copies. Paths stay a few hops long at fleet sizes.
                .mesh_n(4)
                .mesh_n_low(3)
                .mesh_n_high(8)
                .mesh_outbound_min(2)
                .build()?;
            let mut kad_config = kad::Config::new(KAD_PROTOCOL);
            kad_config.set_query_timeout(Duration::from_secs(30));
            // Only the node decides who goes in the routing table (members and the
            // bootstrap peers): the table's peers are asked by every query, and a peer
            // that merely connects must not choose whom the mesh asks, or dials.
            kad_config.set_kbucket_inserts(kad::BucketInserts::Manual);
            let mut kad = kad::Behaviour::with_config(
                key.public().to_peer_id(),
                kad::store::MemoryStore::new(key.public().to_peer_id()),
                kad_config,
            );
            kad.set_mode(Some(kad::Mode::Server));
            // The total is the slots' to keep (they know members from strangers).
            let limits = connection_limits::ConnectionLimits::default()
                .with_max_pending_incoming(Some(max_connections / 2))
                .with_max_established_per_peer(Some(2));
            // One push at a time on a connection (and a peer has at most two).
            let push = super::push_peer::Behaviour::new(
                request_response::Config::default()
                    .with_request_timeout(Duration::from_secs(30))
                    .with_max_concurrent_streams(1),
                PUSH_PROTOCOL,
            );
            let mut gossipsub = gossipsub::Behaviour::new(
                gossipsub::MessageAuthenticity::Signed(key.clone()),
                gossip,
            )?;
            if let Some(topic) = topic {
                let (params, thresholds) = peer_score(topic);
                gossipsub.with_peer_score(params, thresholds)?;
            }
            let fleet = request_response::json::Behaviour::with_codec(
                request_response::json::codec::Codec::default()
                    .set_request_size_maximum(MAX_FLEET_REQUEST)
                    .set_response_size_maximum(MAX_FLEET_REQUEST),
                [(FLEET_PROTOCOL, request_response::ProtocolSupport::Full)],
                request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
            );
            Ok(Behaviour {
                limits: connection_limits::Behaviour::new(limits),
                memory: memory_connection_limits::Behaviour::with_max_percentage(0.9),
                slots: super::slots::Behaviour::new(
                    max_connections as usize,
                    &bootstrap,
                    allowed.clone(),
                ),
                identify: identify::Behaviour::new(identify::Config::new(
                    IDENTIFY_PROTOCOL.into(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(ping::Config::new()),
                kad,
                gossipsub,
                push,
                fleet,
                introductions: request_response::json::Behaviour::with_codec(
                    request_response::json::codec::Codec::default()
                        .set_request_size_maximum(MAX_INTRODUCTION_BYTES)
                        .set_response_size_maximum(MAX_INTRODUCTION_BYTES),
                    [(PEERS_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(10)),
                ),
                // Two at a time per connection: each answer may be a megabyte.
                fleet_spec: request_response::json::Behaviour::with_codec(
                    request_response::json::codec::Codec::default()
                        .set_request_size_maximum(1024)
                        .set_response_size_maximum(MAX_SPEC_RESPONSE),
                    [(FLEET_SPEC_PROTOCOL, request_response::ProtocolSupport::Full)],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(10))
                        .with_max_concurrent_streams(2),
                ),
                streams: libp2p_stream::Behaviour::new(),
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
                let why = std::error::Error::source(&e).map_or(e.to_string(), |s| s.to_string());
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
    Ok(swarm)
}
