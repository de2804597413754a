//! Connection slots, and whom the node dials. The mesh port is open to anyone, and a
//! connection costs memory and a handshake, so who holds one is decided here: members
//! of the fleet and the peers reached at a bootstrap address (*trusted*) may always
//! connect, evicting a stranger when the node is full; strangers (whichever side
//! dialed) share a quarter of the slots, at most a few from one IP address (one /64 in
//! IPv6), and the one of them held longest makes room for a newcomer. So connections
//! held from throwaway peer ids cannot keep a new node from joining through this one:
//! it is a stranger only until its first heartbeat. Dials are decided by [`Dials`].

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p::PeerId;
use libp2p::core::transport::PortUse;
use libp2p::core::{Endpoint, Multiaddr, multiaddr::Protocol};
use libp2p::swarm::{
    CloseConnection, ConnectionClosed, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour,
    THandler, THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};

use super::dials::Dials;
use super::transport::Allowed;

/// Connections from one address (one /64 in IPv6, which one host may hold whole) that
/// are not yet members.
pub(super) const PER_IP: usize = 8;

/// Why a connection was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum Full {
    /// Every slot is a member's or a bootstrap peer's.
    #[error("every connection slot is held by a member")]
    Members,
}

#[derive(Debug, Clone)]
struct Conn<P> {
    peer: P,
    /// Its address, or its /64 in IPv6.
    net: Option<IpAddr>,
    /// Dialed at a bootstrap address: trusted before the peer id is known to be.
    vouched: bool,
    /// Order of arrival: the lowest was held longest.
    order: u64,
}

/// The decisions, apart from the swarm: connections keyed by `K`, peers `P`.
#[derive(Debug)]
pub(super) struct Slots<K, P> {
    max: usize,
    max_strangers: usize,
    trusted: HashSet<P>,
    conns: BTreeMap<K, Conn<P>>,
    arrivals: u64,
}

impl<K: Ord + Copy, P: Hash + Eq + Clone> Slots<K, P> {
    /// `max` connections in all; strangers coming in get a quarter of them.
    pub(super) fn new(max: usize) -> Self {
        Slots {
            max,
            max_strangers: (max / 4).max(1),
            trusted: HashSet::new(),
            conns: BTreeMap::new(),
            arrivals: 0,
        }
    }

    /// Members and bootstrap peers, as of now.
    pub(super) fn trust(&mut self, peers: HashSet<P>) {
        self.trusted = peers;
    }

    fn is_stranger(&self, c: &Conn<P>) -> bool {
        !c.vouched && !self.trusted.contains(&c.peer)
    }

    /// The stranger held longest, among those `matching`.
    fn longest_held(&self, matching: impl Fn(&Conn<P>) -> bool) -> Option<K> {
        self.conns
            .iter()
            .filter(|(_, c)| self.is_stranger(c) && matching(c))
            .min_by_key(|(_, c)| c.order)
            .map(|(k, _)| *k)
    }

    /// A connection is established: `Ok` with the connections to close to make room
    /// for it, or why it is refused.
    pub(super) fn admit(
        &mut self,
        id: K,
        peer: P,
        ip: Option<IpAddr>,
        vouched: bool,
    ) -> Result<Vec<K>, Full> {
        let net = ip.map(network);
        let conn = Conn {
            peer,
            net,
            vouched,
            order: self.arrivals,
        };
        let full = self.conns.len() >= self.max;
        let evict = if !self.is_stranger(&conn) {
            // Trusted: a stranger makes room when full.
            match (full, self.longest_held(|_| true)) {
                (false, _) => None,
                (true, Some(k)) => Some(k),
                (true, None) => return Err(Full::Members),
            }
        } else {
            let from_net = self
                .conns
                .values()
                .filter(|c| self.is_stranger(c) && c.net.is_some() && c.net == net)
                .count();
            let strangers = self.conns.values().filter(|c| self.is_stranger(c)).count();
            if net.is_some() && from_net >= PER_IP {
                self.longest_held(|c| c.net == net)
            } else if strangers >= self.max_strangers || full {
                match self.longest_held(|_| true) {
                    Some(k) => Some(k),
                    None => return Err(Full::Members),
                }
            } else {
                None
            }
        };
        self.arrivals += 1;
        self.conns.insert(id, conn);
        if let Some(k) = evict {
            self.conns.remove(&k);
        }
        Ok(evict.into_iter().collect())
    }

    /// A connection closed.
    pub(super) fn closed(&mut self, id: &K) {
        self.conns.remove(id);
    }
}

/// What the per-address bound counts: an IPv4 address, an IPv6 /64.
fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
    }
}

/// The IP address of a multiaddr, if it starts with one.
pub(super) fn ip_of(address: &Multiaddr) -> Option<IpAddr> {
    match address.iter().next()? {
        Protocol::Ip4(ip) => Some(IpAddr::V4(ip)),
        Protocol::Ip6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

/// [`Slots`] and [`Dials`] as a behaviour of the swarm: it refuses or admits each
/// dial and each established connection, and closes those evicted.
pub(super) struct Behaviour {
    slots: Slots<ConnectionId, PeerId>,
    dials: Dials<PeerId>,
    /// The bootstrap addresses (and the others the node may dial).
    allowed: Allowed,
    /// The peer ids the bootstrap addresses name, if they do.
    bootstrap_ids: HashSet<PeerId>,
    peers: HashMap<ConnectionId, PeerId>,
    closing: VecDeque<(PeerId, ConnectionId)>,
}

impl Behaviour {
    /// At most `max` connections; the `bootstrap` addresses are the operator's.
    pub(super) fn new(max: usize, bootstrap: &[Multiaddr], allowed: Allowed) -> Self {
        let bootstrap_ids = bootstrap
            .iter()
            .filter_map(|a| match a.iter().last() {
                Some(Protocol::P2p(peer)) => Some(peer),
                _ => None,
            })
            .collect();
        Behaviour {
            slots: Slots::new(max),
            dials: Dials::new(),
            allowed,
            bootstrap_ids,
            peers: HashMap::new(),
            closing: VecDeque::new(),
        }
    }

    /// Members and bootstrap peers, as of now.
    pub(super) fn trust(&mut self, peers: HashSet<PeerId>) {
        self.slots.trust(peers);
    }

    fn admit(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        remote: &Multiaddr,
        vouched: bool,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let evicted = self
            .slots
            .admit(id, peer, ip_of(remote), vouched)
            .map_err(ConnectionDenied::new)?;
        self.peers.insert(id, peer);
        for k in evicted {
            if let Some(p) = self.peers.remove(&k) {
                self.closing.push_back((p, k));
            }
        }
        Ok(dummy::ConnectionHandler)
    }
}

impl NetworkBehaviour for Behaviour {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_established_inbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        self.admit(id, peer, remote, false)
    }

    /// A dial to a known peer id, whoever asked for it (Kademlia's queries, a redial):
    /// refused unless [`Dials`] allows it. Dials to an address alone are the node's
    /// own (bootstrap addresses).
    fn handle_pending_outbound_connection(
        &mut self,
        _: ConnectionId,
        peer: Option<PeerId>,
        addresses: &[Multiaddr],
        _: Endpoint,
    ) -> Result<Vec<Multiaddr>, ConnectionDenied> {
        if let Some(peer) = peer {
            let now = Instant::now();
            let known = self.slots.trusted.contains(&peer)
                || self.bootstrap_ids.contains(&peer)
                || addresses.iter().any(|a| self.allowed.is_bootstrap(a))
                || self.allowed.is_introduced(&peer, now);
            self.dials
                .allow(&peer, known, now)
                .map_err(ConnectionDenied::new)?;
        }
        Ok(vec![])
    }

    fn handle_established_outbound_connection(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        address: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        let vouched = self.allowed.is_bootstrap(address);
        self.admit(id, peer, address, vouched)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        if let FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) = event {
            self.slots.closed(&connection_id);
            self.peers.remove(&connection_id);
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Infallible, THandlerInEvent<Self>>> {
        match self.closing.pop_front() {
            Some((peer_id, id)) => Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::One(id),
            }),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn strangers_share_a_quarter_and_a_few_per_address_and_members_always_get_in() {
        let mut s: Slots<u32, u32> = Slots::new(64);
        s.trust([100, 101].into_iter().collect());
        // One address: its ninth stranger makes room by evicting its first.
        for k in 0..PER_IP as u32 {
            assert_eq!(s.admit(k, 1000 + k, ip(1), false), Ok(vec![]));
        }
        assert_eq!(s.admit(8, 1008, ip(1), false), Ok(vec![0]));
        // Strangers in all: a quarter of 64. Past that, the longest held makes room.
        for k in 9..17 {
            assert_eq!(s.admit(k, 2000 + k, ip(2), false), Ok(vec![]), "{k}");
        }
        assert_eq!(s.admit(17, 3000, ip(3), false), Ok(vec![1]));
        // Members' connections, and those this node dialed at a bootstrap address,
        // are not strangers': up to 64.
        for k in 18..66 {
            let (peer, vouched) = if k % 2 == 0 {
                (100, false)
            } else {
                (4000 + k, true)
            };
            assert_eq!(s.admit(k, peer, ip(5), vouched), Ok(vec![]), "{k}");
        }
        assert_eq!(s.conns.len(), 64);
        // Full: a member evicts the stranger held longest; so does a stranger.
        assert_eq!(s.admit(66, 101, ip(4), false), Ok(vec![2]));
        assert_eq!(s.admit(67, 5000, ip(4), false), Ok(vec![3]));
        assert_eq!(s.conns.len(), 64);
        // A stranger that became a member is no longer one.
        s.trust([100, 101, 5000].into_iter().collect());
        assert!(!s.is_stranger(&s.conns[&67]));
        s.closed(&67);
        assert_eq!(s.conns.len(), 63);
    }

    #[test]
    fn an_ipv6_slash_64_is_one_address() {
        let mut s: Slots<u32, u32> = Slots::new(64);
        let v6 = |last: u16| Some(IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, last]));
        for k in 0..PER_IP as u32 {
            assert_eq!(s.admit(k, 1000 + k, v6(k as u16), false), Ok(vec![]));
        }
        // Another host of the same /64: the first of them makes room.
        assert_eq!(s.admit(8, 1008, v6(999), false), Ok(vec![0]));
        // Another /64 is another address.
        let other = Some(IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]));
        assert_eq!(s.admit(9, 1009, other, false), Ok(vec![]));
        // A quarter of 64, whichever side dialed: the longest held makes room.
        for k in 10..17 {
            assert_eq!(s.admit(k, 2000 + k, ip(7), false), Ok(vec![]), "{k}");
        }
        assert_eq!(s.admit(17, 3000, ip(8), false), Ok(vec![1]));
    }

    #[test]
    fn a_node_full_of_members_refuses_the_next_one() {
        let mut s: Slots<u32, u32> = Slots::new(4);
        s.trust((0..10).collect());
        for k in 0..4 {
            assert_eq!(s.admit(k, k, ip(1), false), Ok(vec![]));
        }
        assert_eq!(s.admit(4, 4, ip(1), false), Err(Full::Members));
        assert_eq!(s.admit(5, 99, ip(1), false), Err(Full::Members));
    }
}
