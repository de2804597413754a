//! The transport, and the one list of addresses it may dial. Every behaviour adds
//! addresses to a dial of its own accord (Kademlia those its queries' answers named,
//! mDNS those the link announced, identify and request-response those they cached), so
//! a rule on peer ids alone would still connect wherever an answer pointed. The list is
//! checked where every dial passes, before any name is resolved or any packet leaves,
//! and it is kept per peer (the swarm ends each address it dials a peer at with the
//! peer's id): the bootstrap addresses, for anyone; of a member or a bootstrap peer,
//! the addresses it gives of itself; of a peer a bootstrap peer (or the local link)
//! introduced, for a minute, the addresses it was introduced at.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::TryFutureExt as _;
use futures_util::future::MapErr;
use libp2p::core::multiaddr::Protocol;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::{Multiaddr, PeerId, Transport};

/// How long an introduction lets the node dial the peer introduced.
pub(super) const INTRODUCED_FOR: Duration = Duration::from_secs(60);
/// Peers introduced by bootstrap peers kept at once (an answer names at most 16)…
const MAX_INTRODUCED: usize = 256;
/// …and by the local link, where anyone may answer: a few, apart, so answers there
/// crowd out no bootstrap peer's.
const MAX_INTRODUCED_LOCALLY: usize = 32;
/// Addresses taken of one peer introduced.
const ADDRESSES_PER_PEER: usize = 8;

/// Who introduced a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A bootstrap peer: it is on this node's fleet topic.
    Bootstrap,
    /// An mDNS answer on the local link.
    Link,
}

/// `address` without a trailing `/p2p/…`, and that peer id.
pub(super) fn split(address: &Multiaddr) -> (Multiaddr, Option<PeerId>) {
    let mut a = address.clone();
    match a.iter().last() {
        Some(Protocol::P2p(peer)) => {
            a.pop();
            (a, Some(peer))
        }
        _ => (a, None),
    }
}

type Introduced = HashMap<PeerId, (HashSet<Multiaddr>, Instant)>;

#[derive(Debug, Default)]
struct Lists {
    bootstrap: HashSet<Multiaddr>,
    trusted: HashMap<PeerId, HashSet<Multiaddr>>,
    introduced: Introduced,
    introduced_locally: Introduced,
}

impl Lists {
    fn introduced(&self, peer: &PeerId, now: Instant) -> Option<&HashSet<Multiaddr>> {
        [&self.introduced, &self.introduced_locally]
            .into_iter()
            .filter_map(|t| t.get(peer))
            .find(|(_, until)| *until > now)
            .map(|(addresses, _)| addresses)
    }
}

/// The addresses the node may dial, shared by the node (which keeps it) and the
/// transport (which checks it).
#[derive(Debug, Clone, Default)]
pub(super) struct Allowed(Arc<RwLock<Lists>>);

impl Allowed {
    /// With the operator's bootstrap addresses, for good.
    pub(super) fn new(bootstrap: &[Multiaddr]) -> Self {
        let lists = Lists {
            bootstrap: bootstrap.iter().map(|a| split(a).0).collect(),
            ..Default::default()
        };
        Allowed(Arc::new(RwLock::new(lists)))
    }

    /// Each member's and bootstrap peer's own addresses, as of now.
    pub(super) fn trust(&self, addresses: impl IntoIterator<Item = (PeerId, Multiaddr)>) {
        let mut trusted: HashMap<PeerId, HashSet<Multiaddr>> = HashMap::new();
        for (peer, a) in addresses {
            trusted.entry(peer).or_default().insert(split(&a).0);
        }
        if let Ok(mut l) = self.0.write() {
            l.trusted = trusted;
        }
    }

    /// `peer`, introduced now by `source` at `addresses` (at most 8 are taken; a new
    /// introduction replaces the last), may be dialed there for a while. Past the
    /// source's bound, refused until older ones expire.
    pub(super) fn introduce(
        &self,
        peer: PeerId,
        addresses: &[Multiaddr],
        source: Source,
        now: Instant,
    ) -> bool {
        let Ok(mut l) = self.0.write() else {
            return false;
        };
        let (table, max) = match source {
            Source::Bootstrap => (&mut l.introduced, MAX_INTRODUCED),
            Source::Link => (&mut l.introduced_locally, MAX_INTRODUCED_LOCALLY),
        };
        if table.len() >= max && !table.contains_key(&peer) {
            table.retain(|_, (_, until)| *until > now);
            if table.len() >= max {
                return false;
            }
        }
        let taken = addresses
            .iter()
            .take(ADDRESSES_PER_PEER)
            .map(|a| split(a).0)
            .collect();
        table.insert(peer, (taken, now + INTRODUCED_FOR));
        true
    }

    /// Whether `peer` was introduced a moment ago.
    pub(super) fn is_introduced(&self, peer: &PeerId, now: Instant) -> bool {
        self.0
            .read()
            .is_ok_and(|l| l.introduced(peer, now).is_some())
    }

    /// Whether the node may dial `address` now: a bootstrap address, or one of the
    /// peer's it names.
    pub(super) fn allows(&self, address: &Multiaddr, now: Instant) -> bool {
        let (a, peer) = split(address);
        self.0.read().is_ok_and(|l| {
            l.bootstrap.contains(&a)
                || peer.is_some_and(|p| {
                    l.trusted.get(&p).is_some_and(|t| t.contains(&a))
                        || l.introduced(&p, now).is_some_and(|t| t.contains(&a))
                })
        })
    }

    /// Whether `address` is one of the operator's bootstrap addresses.
    pub(super) fn is_bootstrap(&self, address: &Multiaddr) -> bool {
        self.0
            .read()
            .is_ok_and(|l| l.bootstrap.contains(&split(address).0))
    }
}

/// The transport's refusal: not on the list. The node tells it from a failed dial (it
/// is no evidence that the peer is gone).
#[derive(Debug, thiserror::Error)]
#[error(
    "{0} is not an address this node dials (not a member's, a bootstrap peer's or one introduced)"
)]
pub(super) struct NotListed(Multiaddr);

/// Whether `error`, as the swarm reports a transport's, is the list's refusal.
pub(super) fn is_not_listed(error: &std::io::Error) -> bool {
    let mut e: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(err) = e {
        if err.is::<NotListed>() {
            return true;
        }
        // An I/O error's source is its inner error's source: look at the inner one.
        e = match err.downcast_ref::<std::io::Error>() {
            Some(io) => io
                .get_ref()
                .map(|i| i as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    false
}

/// Why the transport did not dial.
#[derive(Debug, thiserror::Error)]
pub(super) enum GateError<E> {
    /// Not on the list.
    #[error("{0}")]
    Refused(#[from] NotListed),
    /// The transport's own.
    #[error(transparent)]
    Inner(E),
}

/// `inner`, dialing only what [`Allowed`] allows.
pub(super) struct Gated<T> {
    inner: T,
    allowed: Allowed,
}

impl<T> Gated<T> {
    pub(super) fn new(inner: T, allowed: Allowed) -> Self {
        Gated { inner, allowed }
    }
}

type Mapped<F, E> = MapErr<F, fn(E) -> GateError<E>>;

impl<T> Transport for Gated<T>
where
    T: Transport + Unpin,
    T::Error: std::error::Error + 'static,
{
    type Output = T::Output;
    type Error = GateError<T::Error>;
    type ListenerUpgrade = Mapped<T::ListenerUpgrade, T::Error>;
    type Dial = Mapped<T::Dial, T::Error>;

    fn listen_on(
        &mut self,
        id: ListenerId,
        address: Multiaddr,
    ) -> Result<(), TransportError<Self::Error>> {
        self.inner
            .listen_on(id, address)
            .map_err(|e| e.map(GateError::Inner))
    }

    fn remove_listener(&mut self, id: ListenerId) -> bool {
        self.inner.remove_listener(id)
    }

    fn dial(
        &mut self,
        address: Multiaddr,
        opts: DialOpts,
    ) -> Result<Self::Dial, TransportError<Self::Error>> {
        if !self.allowed.allows(&address, Instant::now()) {
            return Err(TransportError::Other(GateError::Refused(NotListed(
                address,
            ))));
        }
        let dial = self
            .inner
            .dial(address, opts)
            .map_err(|e| e.map(GateError::Inner))?;
        Ok(dial.map_err(GateError::Inner as fn(_) -> _))
    }

    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<TransportEvent<Self::ListenerUpgrade, Self::Error>> {
        Pin::new(&mut self.get_mut().inner).poll(cx).map(|event| {
            event
                .map_upgrade(|u| u.map_err(GateError::Inner as fn(_) -> _))
                .map_err(GateError::Inner)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Multiaddr {
        s.parse().unwrap()
    }

    #[test]
    fn each_peer_is_dialed_only_at_its_own_listed_addresses() {
        let t0 = Instant::now();
        let (p, q) = (PeerId::random(), PeerId::random());
        let at = |addr: &str, peer: &PeerId| a(&format!("{addr}/p2p/{peer}"));
        let allowed = Allowed::new(&[a(&format!("/dns4/boot.example/tcp/7720/p2p/{p}"))]);
        // The bootstrap address, with or without a peer id, whoever's.
        assert!(allowed.allows(&a("/dns4/boot.example/tcp/7720"), t0));
        assert!(allowed.allows(&at("/dns4/boot.example/tcp/7720", &q), t0));
        assert!(allowed.is_bootstrap(&a("/dns4/boot.example/tcp/7720")));
        assert!(!allowed.allows(&a("/ip4/192.0.2.9/tcp/7720"), t0));
        // A member's addresses, for that member only, as of the last word.
        allowed.trust([(p, a("/ip4/192.0.2.1/tcp/7720"))]);
        assert!(allowed.allows(&at("/ip4/192.0.2.1/tcp/7720", &p), t0));
        assert!(!allowed.allows(&at("/ip4/192.0.2.1/tcp/7720", &q), t0));
        assert!(
            !allowed.allows(&a("/ip4/192.0.2.1/tcp/7720"), t0),
            "no peer named"
        );
        allowed.trust([]);
        assert!(!allowed.allows(&at("/ip4/192.0.2.1/tcp/7720", &p), t0));
        // Introduced: for a while, at the addresses it was introduced at.
        assert!(allowed.introduce(q, &[a("/ip4/192.0.2.2/tcp/7720")], Source::Bootstrap, t0));
        assert!(allowed.is_introduced(&q, t0));
        assert!(allowed.allows(&at("/ip4/192.0.2.2/tcp/7720", &q), t0));
        assert!(!allowed.allows(&at("/ip4/192.0.2.3/tcp/7720", &q), t0));
        let later = t0 + INTRODUCED_FOR + Duration::from_secs(1);
        assert!(!allowed.allows(&at("/ip4/192.0.2.2/tcp/7720", &q), later));
        assert!(!allowed.is_introduced(&q, later));
    }

    #[test]
    fn introductions_are_bounded_per_source_and_per_peer() {
        let t0 = Instant::now();
        let allowed = Allowed::new(&[]);
        let many: Vec<Multiaddr> = (0..20)
            .map(|i| a(&format!("/ip4/10.0.0.{i}/tcp/1")))
            .collect();
        // The local link fills its own table, again and again with one peer too…
        let local = PeerId::random();
        for _ in 0..100 {
            assert!(allowed.introduce(local, &many, Source::Link, t0));
        }
        for _ in 1..MAX_INTRODUCED_LOCALLY {
            assert!(allowed.introduce(PeerId::random(), &many, Source::Link, t0));
        }
        assert!(!allowed.introduce(PeerId::random(), &many, Source::Link, t0));
        // …and leaves the bootstrap peers' be.
        for _ in 0..MAX_INTRODUCED {
            assert!(allowed.introduce(PeerId::random(), &many, Source::Bootstrap, t0));
        }
        assert!(!allowed.introduce(PeerId::random(), &many, Source::Bootstrap, t0));
        let l = allowed.0.read().unwrap();
        assert!(
            l.introduced_locally
                .values()
                .all(|(t, _)| t.len() == ADDRESSES_PER_PEER)
        );
        drop(l);
        let later = t0 + INTRODUCED_FOR + Duration::from_secs(1);
        assert!(allowed.introduce(PeerId::random(), &many, Source::Bootstrap, later));
    }

    #[test]
    fn the_refusal_is_told_from_other_failures() {
        let refused: GateError<std::io::Error> = NotListed(a("/ip4/192.0.2.1/tcp/1")).into();
        let boxed = std::io::Error::other(refused);
        assert!(is_not_listed(&boxed));
        assert!(!is_not_listed(&std::io::Error::other("connection refused")));
    }
}
