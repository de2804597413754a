//! Introductions: how the nodes of a fleet that share only a bootstrap peer (one of
//! another fleet, or of none) find each other, now that nobody dials what a stranger
//! names. A node asks its bootstrap peers which of their peers are on its fleet's
//! topic; the bootstrap peer answers with those peers and the addresses it took of
//! them (a stranger's only on the host it connects from); the node dials them. It
//! takes such answers from its bootstrap peers only: they are the operator's choice.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::{Multiaddr, PeerId, gossipsub, request_response};
use serde::{Deserialize, Serialize};
use tracing::debug;

use super::transport::Source;
use super::{MAX_LEARNED, Node};

/// Peers named in one answer.
pub(super) const MAX_INTRODUCTIONS: usize = 16;
/// A request or an answer, with room to spare (16 peers, 8 addresses each).
pub(super) const MAX_INTRODUCTION_BYTES: u64 = 64 * 1024;
/// A topic's name is a hash; anything much longer is not one.
const MAX_TOPIC: usize = 128;
/// How often a node that has no fleet-mate in sight asks again (two nodes that reach
/// their bootstrap peer at the same moment each find the other not there yet); one
/// with a fleet-mate asks at each bootstrap round.
const ASK_ALONE: Duration = Duration::from_secs(5);

/// "Who of your peers is on this topic?"
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeersRequest {
    /// The gossipsub topic's hash.
    pub topic: String,
}

/// The answer: peers on the topic, with their addresses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PeersResponse {
    /// At most [`MAX_INTRODUCTIONS`].
    pub peers: Vec<Introduced>,
}

/// One peer introduced.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Introduced {
    /// Its peer id.
    pub peer_id: String,
    /// Where to dial it: at most [`MAX_LEARNED`].
    pub addresses: Vec<String>,
}

/// Addresses each connected peer announced, as far as they are taken: a stranger's
/// only on the host it connects from. Kept for introductions, and dropped when the
/// peer's last connection closes.
pub(super) type Announced = HashMap<PeerId, Vec<Multiaddr>>;

/// Of `offered` (an answer's peers), those this node would dial: well formed, not
/// itself, at most [`MAX_LEARNED`] addresses each that parse, and some address.
pub(super) fn to_dial(offered: &[Introduced], me: &PeerId) -> Vec<(PeerId, Vec<Multiaddr>)> {
    offered
        .iter()
        .take(MAX_INTRODUCTIONS)
        .filter_map(|i| {
            let peer: PeerId = i.peer_id.parse().ok()?;
            let addresses: Vec<Multiaddr> = i
                .addresses
                .iter()
                .take(MAX_LEARNED)
                .filter_map(|a| a.parse().ok())
                .collect();
            (peer != *me && !addresses.is_empty()).then_some((peer, addresses))
        })
        .collect()
}

impl Node {
    /// Each heartbeat: a node with no fleet-mate in sight asks again, now and then.
    pub(super) fn ask_if_alone(&mut self, now: Instant) {
        let alone = self.membership.live().next().is_none();
        let due = self
            .asked_at
            .is_none_or(|t| now.saturating_duration_since(t) >= ASK_ALONE);
        if alone && due {
            self.ask_for_introductions();
        }
    }

    /// Asks each bootstrap peer connected now for this node's fleet-mates.
    pub(super) fn ask_for_introductions(&mut self) {
        let Some(topic) = &self.topic else {
            return;
        };
        self.asked_at = Some(Instant::now());
        let request = PeersRequest {
            topic: topic.hash().into_string(),
        };
        let connected: Vec<PeerId> = self
            .bootstrap_peers
            .iter()
            .filter(|p| self.swarm.is_connected(p))
            .copied()
            .collect();
        for peer in connected {
            self.swarm
                .behaviour_mut()
                .introductions
                .send_request(&peer, request.clone());
        }
    }

    pub(super) fn on_introductions(
        &mut self,
        event: request_response::Event<PeersRequest, PeersResponse>,
    ) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                let answer = self.introduce_to(&peer, &request.topic);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .introductions
                    .send_response(channel, answer);
            }
            E::Message {
                peer,
                message: M::Response { response, .. },
                ..
            } => {
                if !self.bootstrap_peers.contains(&peer) {
                    debug!(%peer, "introductions from a peer that is not a bootstrap peer, ignored");
                    return;
                }
                let me = *self.swarm.local_peer_id();
                for (introduced, addresses) in to_dial(&response.peers, &me) {
                    self.dial_introduced(introduced, addresses, Source::Bootstrap);
                }
            }
            E::OutboundFailure { peer, error, .. } => {
                // A bootstrap peer of an older release does not speak the protocol.
                debug!(%peer, "no introductions: {error}");
            }
            E::InboundFailure { .. } | E::ResponseSent { .. } => {}
        }
    }

    /// Dials `peer`, introduced by `source`, at `addresses` (and lets the node dial
    /// them for a while), unless it is connected already or too many are introduced.
    pub(super) fn dial_introduced(
        &mut self,
        peer: PeerId,
        addresses: Vec<Multiaddr>,
        source: Source,
    ) {
        if addresses.is_empty() || self.swarm.is_connected(&peer) {
            return;
        }
        if !self
            .allowed
            .introduce(peer, &addresses, source, Instant::now())
        {
            debug!(%peer, ?source, "too many peers introduced of late; not this one");
            return;
        }
        let opts = DialOpts::peer_id(peer)
            .addresses(addresses)
            .condition(PeerCondition::DisconnectedAndNotDialing)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, ?source, "cannot dial a peer introduced: {e}");
        }
    }

    /// The peers on `topic` connected here, but `asker`, with the addresses taken
    /// of them.
    fn introduce_to(&self, asker: &PeerId, topic: &str) -> PeersResponse {
        if topic.len() > MAX_TOPIC {
            return PeersResponse::default();
        }
        let topic = gossipsub::TopicHash::from_raw(topic);
        let peers = self
            .swarm
            .behaviour()
            .gossipsub
            .all_peers()
            .filter(|(p, topics)| *p != asker && topics.contains(&&topic))
            .filter_map(|(p, _)| {
                let addresses = self.announced.get(p).filter(|a| !a.is_empty())?;
                Some(Introduced {
                    peer_id: p.to_string(),
                    addresses: addresses.iter().map(|a| a.to_string()).collect(),
                })
            })
            .take(MAX_INTRODUCTIONS)
            .collect();
        PeersResponse { peers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_is_taken_within_its_bounds() {
        let me = PeerId::random();
        let other = PeerId::random();
        let addr = "/ip4/192.0.2.1/tcp/4001".to_string();
        let mut offered = vec![
            Introduced {
                peer_id: me.to_string(),
                addresses: vec![addr.clone()],
            },
            Introduced {
                peer_id: "not a peer id".into(),
                addresses: vec![addr.clone()],
            },
            Introduced {
                peer_id: PeerId::random().to_string(),
                addresses: vec!["not an address".into()],
            },
            Introduced {
                peer_id: other.to_string(),
                addresses: vec![addr.clone(); 20],
            },
        ];
        let taken = to_dial(&offered, &me);
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].0, other);
        assert_eq!(taken[0].1.len(), MAX_LEARNED);
        offered.extend((0..40).map(|_| Introduced {
            peer_id: PeerId::random().to_string(),
            addresses: vec![addr.clone()],
        }));
        assert_eq!(to_dial(&offered, &me).len(), MAX_INTRODUCTIONS - 3);
    }
}
