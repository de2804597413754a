//! The rest of the agent's requests to the node, answered in its loop.

use super::{Command, MeshNode, Node};
use crate::membership::State;

impl Node {
    pub(super) fn on_command(&mut self, command: Command) {
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
                let status = MeshNode {
                    peer_id: self.swarm.local_peer_id().to_string(),
                    listen: self.swarm.listeners().map(|a| a.to_string()).collect(),
                    connected: self.swarm.connected_peers().count(),
                    alive: count(State::Alive),
                    suspect: count(State::Suspect),
                    dead: count(State::Dead),
                    received: self.received,
                    rejected: self.rejected,
                    graylisted: self
                        .swarm
                        .connected_peers()
                        .filter(|p| {
                            self.swarm
                                .behaviour()
                                .gossipsub
                                .peer_score(p)
                                .is_some_and(|s| s < super::behaviour::GRAYLIST)
                        })
                        .count(),
                    quorate: self.views.borrow().quorate,
                    voters: self.views.borrow().voters,
                };
                let _ = reply.send(status);
            }
            Command::SetLocal(labels, services) => {
                self.config.labels = labels;
                self.config.services = services;
            }
            Command::SetWorkloads(offers, running) => {
                let news = running != self.ownership.running || offers != self.ownership.offers;
                self.ownership.offers = offers;
                self.ownership.running = running;
                if news {
                    // Said at once: a member waiting to take a workload over waits for
                    // this, and this node's own placement decides on its new offers.
                    self.beat_now();
                    self.check();
                }
            }
            Command::SetClosures(closures) => {
                self.ownership.closures = closures;
            }
            Command::Push(peer, push, reply) => {
                if self.membership.live().any(|(p, _)| *p == peer) {
                    let push = super::PushBytes::outgoing(push);
                    let id = self.swarm.behaviour_mut().push.send_request(&peer, push);
                    self.pending.insert(id, reply);
                } else {
                    let _ = reply.send(Err(format!(
                        "no live member of this node's fleet has peer id {peer}"
                    )));
                }
            }
            Command::Fleet(reply) => {
                let _ = reply.send(self.fleet_view());
            }
            Command::Admit(peer, cert, reply) => self.admit(peer, cert, reply),
            Command::Revoke(revocation, reply) => self.revoke(revocation, reply),
            Command::SetReport(report, since) => {
                let news = self.ownership.report.as_ref().map(|(r, _)| r) != Some(&report)
                    || self.ownership.report.as_ref().map(|(_, s)| s.is_some())
                        != Some(since.is_some());
                self.ownership.report = Some((report, since));
                if news {
                    // A move in a rollout is news the next member waits for.
                    self.beat_now();
                    self.check();
                }
            }
            Command::Serve(specs) => self.served = specs,
            Command::FetchSpec(peer, generation, reply) => {
                self.fetch_spec(peer, generation, reply);
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
}
