//! The fleet in the node's loop: certificates and revocations delivered peer to peer,
//! revocations taken in and passed on, and what the node answers about its fleet.

use std::time::Instant;

use libp2p::{PeerId, request_response};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{debug, info};

use super::{Node, PushResponse, REPUBLISH, now_ms};
use crate::fleet::{Certificate, Revocation};
use crate::handle::{FleetMember, FleetView};
use crate::message::{MAX_REVOCATIONS_PER_MESSAGE, Message};

/// What one peer delivers to another on [`super::FLEET_PROTOCOL`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FleetRequest {
    /// The owner admits the receiver.
    Certificate {
        /// For the receiver.
        certificate: Certificate,
    },
    /// The owner revoked the receiver (or another member).
    Revocation {
        /// The owner's signed word.
        revocation: Revocation,
    },
}

type Reply = oneshot::Sender<Result<String, String>>;

fn revoked(news: usize) -> &'static str {
    if news > 0 {
        "revoked"
    } else {
        "already revoked"
    }
}

impl Node {
    /// A request from a peer: answered at once, in the loop (checking a certificate
    /// is one signature or two).
    pub(super) fn on_fleet(&mut self, event: request_response::Event<FleetRequest, PushResponse>) {
        use request_response::{Event as E, Message as M};
        match event {
            E::Message {
                peer,
                message: M::Request {
                    request, channel, ..
                },
                ..
            } => {
                let verdict = match request {
                    FleetRequest::Certificate { certificate } => self.take_certificate(certificate),
                    FleetRequest::Revocation { revocation } => self
                        .take_revocations(vec![revocation], true)
                        .map(|news| revoked(news).into()),
                };
                debug!(%peer, "fleet request: {verdict:?}");
                let answer = PushResponse::of(verdict);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .fleet
                    .send_response(channel, answer);
            }
            E::Message {
                message:
                    M::Response {
                        request_id,
                        response,
                    },
                ..
            } => {
                if let Some(reply) = self.fleet_pending.remove(&request_id) {
                    let _ = reply.send(response.verdict());
                }
            }
            E::OutboundFailure {
                request_id, error, ..
            } => {
                if let Some(reply) = self.fleet_pending.remove(&request_id) {
                    let _ = reply.send(Err(format!("it did not reach the node: {error}")));
                }
            }
            E::InboundFailure { .. } | E::ResponseSent { .. } => {}
        }
    }

    /// A certificate for this node.
    pub(super) fn take_certificate(&mut self, cert: Certificate) -> Result<String, String> {
        let fleet = self
            .fleet
            .as_mut()
            .ok_or("this node names no owner, so it joins no fleet")?;
        fleet
            .take(cert.clone(), now_ms() / 1000)
            .map_err(|e| format!("the certificate is refused: {e}"))?;
        info!(
            expires = cert.expires,
            "admitted to the fleet of {}", cert.owner
        );
        self.beat_now();
        self.check();
        Ok(format!("admitted until {}", cert.expires))
    }

    /// The owner's revocations, from a peer, a message or the local agent: how many
    /// were news, or why one was refused (the valid ones are taken all the same).
    /// Each revoked peer is dead here at once and is told itself, if connected: a
    /// revoked node that missed the news would go on running what the others take
    /// over. With `tell`, the news is published to the fleet (a message on the topic
    /// is passed on by gossip itself).
    pub(super) fn take_revocations(
        &mut self,
        batch: Vec<Revocation>,
        tell: bool,
    ) -> Result<usize, String> {
        let fleet = self
            .fleet
            .as_mut()
            .ok_or("this node names no owner, so it joins no fleet")?;
        let (news, refused) = match fleet.revoke(batch.iter().cloned()) {
            Ok(news) => (news, None),
            Err((news, why)) => (news, Some(why)),
        };
        if !news.is_empty() {
            let fresh: Vec<Revocation> = batch
                .into_iter()
                .filter(|r| news.contains(&r.peer))
                .collect();
            for r in &fresh {
                info!(peer = r.peer, "the owner revoked a member");
                let Ok(id) = r.peer.parse::<PeerId>() else {
                    continue;
                };
                if let Some(change) = self.membership.revoked(&id, Instant::now()) {
                    self.report(change);
                }
                if self.swarm.is_connected(&id) {
                    let request = FleetRequest::Revocation {
                        revocation: r.clone(),
                    };
                    self.swarm.behaviour_mut().fleet.send_request(&id, request);
                }
            }
            if tell {
                self.publish(&Message::Revocations { revocations: fresh });
            }
            self.check();
        }
        match refused {
            Some(why) => Err(format!("a revocation is refused: {why}")),
            None => Ok(news.len()),
        }
    }

    /// Every [`REPUBLISH`], the revocations this node keeps, for members that were
    /// away when they were made.
    pub(super) fn republish_revocations(&mut self) {
        let now = Instant::now();
        if now < self.republish_at {
            return;
        }
        self.republish_at = now + REPUBLISH;
        // Members only: a node outside the fleet has no standing to speak on its topic.
        let Some(fleet) = self.fleet.as_mut() else {
            return;
        };
        if fleet.certificate(now_ms() / 1000).is_none() {
            return;
        }
        let all: Vec<Revocation> = fleet.revocations().cloned().collect();
        for chunk in all.chunks(MAX_REVOCATIONS_PER_MESSAGE) {
            self.publish(&Message::Revocations {
                revocations: chunk.to_vec(),
            });
        }
    }

    /// Delivers the owner's certificate to `peer` (or takes it, for this node).
    pub(super) fn admit(&mut self, peer: PeerId, cert: Certificate, reply: Reply) {
        if peer == *self.swarm.local_peer_id() {
            let _ = reply.send(self.take_certificate(cert));
            return;
        }
        // Not a member (yet), so not a peer this node dials: it must be connected here
        // (it joins through this node, or this node through it).
        if !self.swarm.is_connected(&peer) && !self.is_member(&peer) {
            let _ = reply.send(Err(format!(
                "{peer} is not connected to this node: deliver the certificate from a node it \
                 is connected to (its bootstrap peer), or start it with a join key"
            )));
            return;
        }
        let request = FleetRequest::Certificate { certificate: cert };
        let id = self
            .swarm
            .behaviour_mut()
            .fleet
            .send_request(&peer, request);
        self.fleet_pending.insert(id, reply);
    }

    /// Takes the owner's revocation, and tells the fleet and the revoked peer.
    pub(super) fn revoke(&mut self, revocation: Revocation, reply: Reply) {
        let verdict = self
            .take_revocations(vec![revocation], true)
            .map(|news| revoked(news).into());
        let _ = reply.send(verdict);
    }

    /// The fleet as this node sees it.
    pub(super) fn fleet_view(&mut self) -> FleetView {
        let now = now_ms() / 1000;
        let me = self.swarm.local_peer_id().to_string();
        let Some(fleet) = self.fleet.as_mut() else {
            return FleetView::default();
        };
        let standing = fleet.standing(now);
        let mine = fleet.certificate(now).cloned();
        let mut members: Vec<FleetMember> = mine
            .map(|c| FleetMember {
                node: self.config.node.clone(),
                peer_id: me.clone(),
                state: "this node".into(),
                expires: c.expires,
                admitted_by: c.admitted_by(),
            })
            .into_iter()
            .collect();
        members.extend(self.membership.members().map(|(peer, m)| FleetMember {
            node: m.info.node.clone(),
            peer_id: peer.to_string(),
            state: super::answers::state_name(m.state).into(),
            expires: m.info.cert.expires,
            admitted_by: m.info.cert.admitted_by(),
        }));
        FleetView {
            owner: Some(fleet.owner().to_string()),
            standing: Some(standing),
            members,
            revoked: fleet.revocations().count(),
        }
    }
}
