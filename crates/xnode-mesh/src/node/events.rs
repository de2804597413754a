//! What the swarm reports, taken in: connections that close (confirmed by a redial),
//! membership messages (each validated before it is believed or forwarded), and the
//! other behaviours' news.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{DialError, SwarmEvent};
use libp2p::{Multiaddr, PeerId, gossipsub, identify, mdns};
use tracing::{debug, info, warn};

use super::behaviour::{BehaviourEvent, KAD_PROTOCOL};
use super::slots::ip_of;
use super::transport::{Source, is_not_listed};
use super::{MAX_LEARNED, Node, now_ms};
use crate::fleet::{Refused, keeps_name};
use crate::membership::State;
use crate::message::Message;

impl Node {
    pub(super) fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.metrics.record_swarm(&event);
        match event {
            SwarmEvent::NewListenAddr { address, .. } => info!(%address, "mesh listening"),
            SwarmEvent::ConnectionEstablished {
                peer_id, endpoint, ..
            } => {
                if let Some(ip) = ip_of(endpoint.get_remote_address()) {
                    self.remote_ips.insert(peer_id, ip);
                }
                // A peer reached at an address the operator gave: trusted for the
                // routing table, as the members are.
                let new_bootstrap_peer = endpoint.is_dialer()
                    && self.allowed.is_bootstrap(endpoint.get_remote_address())
                    && self.bootstrap_peers.insert(peer_id);
                if new_bootstrap_peer {
                    self.trust();
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer_id, endpoint.get_remote_address().clone());
                }
                // The first peer: find the rest of the mesh through it.
                if self.swarm.connected_peers().count() == 1 {
                    self.bootstrap();
                } else if new_bootstrap_peer {
                    self.ask_for_introductions();
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } => {
                self.remote_ips.remove(&peer_id);
                self.announced.remove(&peer_id);
                if let Some(change) = self.membership.disconnected(&peer_id, Instant::now()) {
                    self.report(change);
                    // Confirm: is it gone, or was only this connection? A redial the
                    // node refused itself (too many of late) is no evidence: the
                    // failure detector decides.
                    let opts = DialOpts::peer_id(peer_id)
                        .condition(PeerCondition::DisconnectedAndNotDialing)
                        .build();
                    match self.swarm.dial(opts) {
                        Ok(()) | Err(DialError::Denied { .. }) => {}
                        Err(_) => self.confirm_gone(peer_id),
                    }
                }
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer_id),
                error,
                ..
            } => {
                debug!(%peer_id, "dial failed: {error}");
                // Every address refused by the node's own list: no evidence it is gone.
                if let DialError::Transport(tries) = &error
                    && tries.iter().all(|(_, e)| match e {
                        libp2p::TransportError::Other(e) => is_not_listed(e),
                        libp2p::TransportError::MultiaddrNotSupported(_) => false,
                    })
                {
                    return;
                }
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

    /// Whether `peer` may go by `name`: a name is one member's in a fleet. When two
    /// live members claim it, [`crate::fleet::keeps_name`] decides; this node holds
    /// its own name against any rival that does not outrank it. The other is not
    /// heard under it.
    fn claim_name(
        &mut self,
        name: &str,
        peer: PeerId,
        cert: &xnode_spec::fleet::Certificate,
    ) -> Result<(), PeerId> {
        let me = *self.swarm.local_peer_id();
        let rival = (cert, peer.to_bytes());
        if name == self.config.node
            && let Some(mine) = self
                .fleet
                .as_mut()
                .and_then(|f| f.certificate(now_ms() / 1000))
            && keeps_name((mine, &me.to_bytes()), (rival.0, &rival.1))
        {
            return Err(me);
        }
        if let Some(holder) = self.names.get(name).copied()
            && holder != peer
            && let Some(m) = self.membership.get(&holder)
            && m.state != State::Dead
            && m.info.node == name
            && keeps_name((&m.info.cert, &holder.to_bytes()), (rival.0, &rival.1))
        {
            return Err(holder);
        }
        if self.names.len() >= crate::membership::MAX_MEMBERS * 2 {
            let membership = &self.membership;
            self.names.retain(|n, p| {
                membership
                    .get(p)
                    .is_some_and(|m| m.state != State::Dead && m.info.node == *n)
            });
        }
        self.names.insert(name.to_owned(), peer);
        Ok(())
    }

    /// A member this node believes alive or suspect.
    pub(super) fn is_member(&self, peer: &PeerId) -> bool {
        self.membership
            .get(peer)
            .is_some_and(|m| m.state != State::Dead)
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
                if matches!(event, gossipsub::Event::Message { .. }) {
                    self.received += 1;
                }
                if let gossipsub::Event::Message {
                    propagation_source,
                    message_id,
                    message,
                } = event
                {
                    let verdict =
                        self.on_message(message.source, propagation_source, &message.data);
                    let acceptance = match verdict {
                        Ok(true) => gossipsub::MessageAcceptance::Accept,
                        Ok(false) => gossipsub::MessageAcceptance::Ignore,
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
                    self.take_announced(peer_id, info.listen_addrs);
                }
            }
            BehaviourEvent::Kad(event) => self.metrics.record_kad(&event),
            BehaviourEvent::Ping(event) => self.metrics.record_ping(&event),
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => self.on_mdns(found),
            BehaviourEvent::Push(event) => self.on_push(event),
            BehaviourEvent::Fleet(event) => self.on_fleet(event),
            BehaviourEvent::Introductions(event) => self.on_introductions(event),
            BehaviourEvent::FleetSpec(event) => self.on_fleet_spec(event),
            _ => {}
        }
    }

    /// What a peer says of its own addresses: taken whole only from a member or a
    /// bootstrap peer, and of anyone else only the addresses on the host it connects
    /// from (it could name any host for the mesh to dial). Only a member's and a
    /// bootstrap peer's go in the routing table: Kademlia asks whoever is in it, and
    /// dials whatever they answer. A stranger's are kept to introduce it to its own
    /// fleet-mates, should they ask.
    fn take_announced(&mut self, peer: PeerId, listen: Vec<Multiaddr>) {
        let trusted = self.bootstrap_peers.contains(&peer) || self.is_member(&peer);
        let seen_at = self.remote_ips.get(&peer).copied();
        let addresses: Vec<Multiaddr> = listen
            .into_iter()
            .filter(|a| trusted || seen_at.is_some_and(|ip| ip_of(a) == Some(ip)))
            .take(MAX_LEARNED)
            .collect();
        if trusted {
            for address in &addresses {
                self.swarm
                    .behaviour_mut()
                    .kad
                    .add_address(&peer, address.clone());
            }
        }
        if self.swarm.is_connected(&peer) {
            self.announced.insert(peer, addresses);
        }
        if trusted {
            self.trust();
        }
    }

    /// Peers that answered on the local link. Anyone on the link can answer, naming
    /// any address: only addresses on a local or private network are dialed, each
    /// such peer is introduced for a while (so the dial is allowed), and dials to it
    /// are rate-limited as any.
    fn on_mdns(&mut self, found: Vec<(PeerId, Multiaddr)>) {
        let own: Vec<_> = self.swarm.listeners().filter_map(ip_of).collect();
        let mut by_peer: HashMap<PeerId, Vec<Multiaddr>> = HashMap::new();
        for (peer, address) in found {
            let local =
                ip_of(&address).is_some_and(|ip| super::dials::is_local(ip) && !own.contains(&ip));
            let addresses = by_peer.entry(peer).or_default();
            if local && addresses.len() < MAX_LEARNED {
                addresses.push(address);
            }
        }
        for (peer, addresses) in by_peer {
            self.dial_introduced(peer, addresses, Source::Link);
        }
    }

    /// Whether to believe (and pass on) a message: `Ok(false)` passes on nothing but
    /// blames nobody; `Err` is blamed on whoever sent it, and on each peer that passed
    /// it on. So only what is wrong in itself is an `Err` (malformed, forged, another
    /// fleet's or another peer's certificate). What only this node's view refuses (a
    /// revocation or an expiry it knows of, a sender it has not heard yet) may have
    /// been right by the forwarder's view: it is ignored, and nobody is blamed.
    fn on_message(
        &mut self,
        source: Option<PeerId>,
        from: PeerId,
        data: &[u8],
    ) -> Result<bool, String> {
        let source = source.ok_or("an unsigned message")?;
        // Straight from its author, a message this node refuses is the author's
        // fault, whatever the reason: it is blamed.
        let ignore = |why: String| if from == source { Err(why) } else { Ok(false) };
        let message = Message::decode(data).map_err(|e| e.to_string())?;
        let now = Instant::now();
        let me = *self.swarm.local_peer_id();
        let fleet = self.fleet.as_ref().ok_or("this node is in no fleet")?;
        let is_member = |node: &Node, p: &PeerId| node.is_member(p);
        match message {
            Message::Heartbeat(hb) => {
                if source == me {
                    return Ok(true);
                }
                let known = self.membership.get(&source).map(|m| &m.info.cert);
                match fleet.admits(&source.to_string(), &hb.cert, known, now_ms() / 1000) {
                    Ok(()) => {}
                    // A certificate refused only by this release's rules (one a join
                    // key signed naming no node) may be passed on by a member of the
                    // release before: ignored, not blamed.
                    Err(e @ (Refused::Revoked(_) | Refused::Expired { .. } | Refused::Unnamed)) => {
                        debug!(%source, "a heartbeat no longer counted: {e}");
                        return ignore(format!("not a member's heartbeat: {e}"));
                    }
                    Err(e) => return Err(format!("not a member's heartbeat: {e}")),
                }
                if hb.cert.node.as_ref().is_some_and(|n| *n != hb.node) {
                    return Err(format!(
                        "the heartbeat says node {:?}, its certificate names another",
                        hb.node
                    ));
                }
                if let Err(holder) = self.claim_name(&hb.node, source, &hb.cert) {
                    debug!(%source, %holder, node = hb.node, "a heartbeat under a name another member holds, not counted");
                    return Ok(false);
                }
                let incarnation = hb.incarnation;
                if let Some(change) = self.membership.heard(&source, *hb, now) {
                    if let Some(liar) = self.credibility.heard(&source, incarnation, now) {
                        warn!(%liar, member = %source, "a member reported another gone that was alive; its reports are not acted on for {} s", crate::credibility::DISTRUST.as_secs());
                    }
                    self.report(change);
                }
                self.publish_majority(now);
            }
            Message::Gone {
                peer,
                incarnation,
                seq,
            } => {
                if source != me && !is_member(self, &source) {
                    // Not a member's, as far as this node knows.
                    return ignore("a Gone report from a non-member".into());
                }
                let peer: PeerId = peer.parse().map_err(|_| "Gone names no peer id")?;
                if source != me && !self.credibility.believes(&source, now) {
                    // It reported a death that was not: not again for a while.
                    return Ok(false);
                }
                if source != me && !self.reports.allow(&source, now) {
                    // A member may report many deaths at once (a partition), but not
                    // without end: the rest are neither acted on nor passed on.
                    return Ok(false);
                }
                if peer == me {
                    // Reported gone, but here: say so now, unless a heartbeat just
                    // went out (one refutation answers any number of reports).
                    let refuted = self.beat_at.is_some_and(|t| {
                        now.saturating_duration_since(t) < self.config.timing.heartbeat / 2
                    });
                    if !refuted {
                        self.beat_now();
                    }
                } else if self.swarm.is_connected(&peer) {
                    // Our own connection to it is up: that outweighs a report (which
                    // any member may send). If it did die, that connection closes and
                    // we find out ourselves.
                } else if let Some(change) = self.membership.gone(&peer, incarnation, seq, now) {
                    if source != me {
                        self.credibility.killed(peer, source, incarnation);
                    }
                    self.report(change);
                }
            }
            Message::Revocations { revocations } => {
                return self
                    .take_revocations(revocations, false)
                    .map(|news| news > 0);
            }
            Message::Unknown => {
                if !is_member(self, &source) {
                    return ignore("a message from a non-member".into());
                }
            }
        }
        Ok(true)
    }
}
