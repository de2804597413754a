//! Whom the node trusts, and at which addresses: members and bootstrap peers for the
//! slots, the dials and the push budgets, and the addresses each gives of itself for
//! the transport's list and the routing table.

use libp2p::{Multiaddr, PeerId};

use super::{MAX_LEARNED, Node, slots};

/// The addresses taken of a member: the first [`MAX_LEARNED`] of its heartbeat's that
/// parse.
fn member_addresses(m: &crate::membership::Member) -> impl Iterator<Item = Multiaddr> + '_ {
    m.info
        .addresses
        .iter()
        .filter_map(|a| a.parse().ok())
        .take(MAX_LEARNED)
}

/// This node's listen addresses as its heartbeat gives them: those others can reach
/// first (the others take only the first [`MAX_LEARNED`]), then the link-local and
/// loopback ones (a listener on 0.0.0.0 has one on each interface).
pub(super) fn heartbeat_addresses<'a>(
    listeners: impl Iterator<Item = &'a Multiaddr>,
) -> Vec<String> {
    let mut addresses: Vec<&Multiaddr> = listeners.collect();
    addresses.sort_by_key(|a| match slots::ip_of(a) {
        Some(std::net::IpAddr::V4(ip)) => u8::from(ip.is_loopback() || ip.is_link_local()),
        Some(std::net::IpAddr::V6(ip)) => {
            u8::from(ip.is_loopback() || (ip.segments()[0] & 0xffc0) == 0xfe80)
        }
        None => 0,
    });
    addresses.iter().map(|a| a.to_string()).collect()
}

impl Node {
    /// Members and bootstrap peers, for the slots, the dials and the push budgets; and
    /// the addresses they give of themselves, for the transport.
    pub(super) fn trust(&mut self) {
        let trusted: std::collections::HashSet<PeerId> = self
            .membership
            .live()
            .map(|(p, _)| *p)
            .chain(self.bootstrap_peers.iter().copied())
            .collect();
        let heartbeats = self
            .membership
            .live()
            .flat_map(|(p, m)| member_addresses(m).map(|a| (*p, a)));
        let announced = trusted.iter().flat_map(|p| {
            self.announced
                .get(p)
                .into_iter()
                .flatten()
                .map(|a| (*p, a.clone()))
        });
        self.allowed.trust(heartbeats.chain(announced));
        self.swarm.behaviour().push.trust(&trusted);
        self.swarm.behaviour_mut().slots.trust(trusted);
    }

    pub(super) fn learn_addresses(&mut self, peer: &PeerId) {
        let addresses: Vec<Multiaddr> = self
            .membership
            .get(peer)
            .map(|m| member_addresses(m).collect())
            .unwrap_or_default();
        for address in addresses {
            self.swarm.add_peer_address(*peer, address.clone());
            self.swarm.behaviour_mut().kad.add_address(peer, address);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_lists_reachable_addresses_before_loopback_and_link_local() {
        let listeners: Vec<Multiaddr> = [
            "/ip4/127.0.0.1/tcp/7720",
            "/ip6/fe80::1/tcp/7720",
            "/ip4/10.0.0.5/tcp/7720",
            "/ip6/::1/tcp/7720",
            "/ip6/2001:db8::5/tcp/7720",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let listed = heartbeat_addresses(listeners.iter());
        assert_eq!(
            listed[..2],
            ["/ip4/10.0.0.5/tcp/7720", "/ip6/2001:db8::5/tcp/7720"]
        );
        assert_eq!(listed.len(), 5);
    }
}
