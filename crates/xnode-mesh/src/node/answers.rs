//! What the node answers the rest of the agent about the mesh: its members and the
//! live providers of services.

use super::{Member, Node, Provider};
use crate::membership::State;

impl Node {
    pub(super) fn members(&self) -> Vec<Member> {
        self.membership
            .members()
            .map(|(peer, m)| Member {
                peer_id: peer.to_string(),
                node: m.info.node.clone(),
                state: state_name(m.state).into(),
                labels: m.info.labels.clone(),
                resources: m.info.resources,
                services: m.info.services.clone(),
                addresses: m.info.addresses.clone(),
            })
            .collect()
    }

    /// Live providers, this node included; a dead member's services are not answered.
    pub(super) fn providers(&self, name: Option<&str>) -> Vec<Provider> {
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

/// A member's state as people read it.
pub(super) fn state_name(state: State) -> &'static str {
    match state {
        State::Alive => "alive",
        State::Suspect => "suspect",
        State::Dead => "dead",
    }
}
