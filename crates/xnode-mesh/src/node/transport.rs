//! The transport, and the one list of addresses it may dial. Every behaviour adds
//! addresses to a dial of its own accord (Kademlia those its queries' answers named,
//! mDNS those the link announced, identify and request-response those they cached), so
//! a rule on peer ids alone would still connect wherever an answer pointed. The list is
//! checked where every dial passes, before any name is resolved or any packet leaves:
//! the bootstrap addresses, the addresses members and bootstrap peers give of
//! themselves, and for a minute those a bootstrap peer (or the local link) introduced.

use std::collections::{HashMap, HashSet};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::TryFutureExt as _;
use futures_util::future::MapErr;
use libp2p::core::multiaddr::Protocol;
use libp2p::core::transport::{DialOpts, ListenerId, TransportError, TransportEvent};
use libp2p::{Multiaddr, Transport};

/// How long an introduced address may be dialed.
const INTRODUCED_FOR: Duration = super::dials::INTRODUCED_FOR;
/// Introduced addresses kept at once.
const MAX_INTRODUCED: usize = 1024;

/// `address` without a trailing `/p2p/…`: the swarm appends the peer id it dials.
pub(super) fn without_p2p(address: &Multiaddr) -> Multiaddr {
    let mut a = address.clone();
    if matches!(a.iter().last(), Some(Protocol::P2p(_))) {
        a.pop();
    }
    a
}

#[derive(Debug, Default)]
struct Lists {
    bootstrap: HashSet<Multiaddr>,
    trusted: HashSet<Multiaddr>,
    introduced: HashMap<Multiaddr, Instant>,
}

/// The addresses the node may dial, shared by the node (which keeps it) and the
/// transport (which checks it).
#[derive(Debug, Clone, Default)]
pub(super) struct Allowed(Arc<RwLock<Lists>>);

impl Allowed {
    /// With the operator's bootstrap addresses, for good.
    pub(super) fn new(bootstrap: &[Multiaddr]) -> Self {
        let lists = Lists {
            bootstrap: bootstrap.iter().map(without_p2p).collect(),
            ..Default::default()
        };
        Allowed(Arc::new(RwLock::new(lists)))
    }

    /// Members' and bootstrap peers' own addresses, as of now.
    pub(super) fn trust(&self, addresses: impl IntoIterator<Item = Multiaddr>) {
        if let Ok(mut l) = self.0.write() {
            l.trusted = addresses.into_iter().map(|a| without_p2p(&a)).collect();
        }
    }

    /// Addresses of a peer introduced now, dialable for a while. Past the bound,
    /// refused until older ones expire.
    pub(super) fn introduce(&self, addresses: &[Multiaddr], now: Instant) -> bool {
        let Ok(mut l) = self.0.write() else {
            return false;
        };
        if l.introduced.len() + addresses.len() > MAX_INTRODUCED {
            l.introduced.retain(|_, until| *until > now);
            if l.introduced.len() + addresses.len() > MAX_INTRODUCED {
                return false;
            }
        }
        for a in addresses {
            l.introduced.insert(without_p2p(a), now + INTRODUCED_FOR);
        }
        true
    }

    /// Whether the node may dial `address` now.
    pub(super) fn allows(&self, address: &Multiaddr, now: Instant) -> bool {
        let a = without_p2p(address);
        self.0.read().is_ok_and(|l| {
            l.bootstrap.contains(&a)
                || l.trusted.contains(&a)
                || l.introduced.get(&a).is_some_and(|until| *until > now)
        })
    }

    /// Whether `address` is one of the operator's bootstrap addresses.
    pub(super) fn is_bootstrap(&self, address: &Multiaddr) -> bool {
        self.0
            .read()
            .is_ok_and(|l| l.bootstrap.contains(&without_p2p(address)))
    }
}

/// Why the transport did not dial.
#[derive(Debug, thiserror::Error)]
pub(super) enum GateError<E> {
    /// Not on the list.
    #[error(
        "{0} is not an address this node dials (not a member's, a bootstrap peer's or one introduced)"
    )]
    Refused(Multiaddr),
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
            return Err(TransportError::Other(GateError::Refused(address)));
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
    fn only_listed_addresses_are_dialed() {
        let t0 = Instant::now();
        let peer = "/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN";
        let allowed = Allowed::new(&[a(&format!("/dns4/boot.example/tcp/7720{peer}"))]);
        // The bootstrap address, with or without the peer id the swarm appends.
        assert!(allowed.allows(&a("/dns4/boot.example/tcp/7720"), t0));
        assert!(allowed.allows(&a(&format!("/dns4/boot.example/tcp/7720{peer}")), t0));
        assert!(allowed.is_bootstrap(&a("/dns4/boot.example/tcp/7720")));
        assert!(!allowed.allows(&a("/ip4/192.0.2.9/tcp/7720"), t0));
        // Members' addresses, as of the last word.
        allowed.trust([a("/ip4/192.0.2.1/tcp/7720")]);
        assert!(allowed.allows(&a(&format!("/ip4/192.0.2.1/tcp/7720{peer}")), t0));
        allowed.trust([]);
        assert!(!allowed.allows(&a("/ip4/192.0.2.1/tcp/7720"), t0));
        // Introduced: for a while.
        assert!(allowed.introduce(&[a("/ip4/192.0.2.2/tcp/7720")], t0));
        assert!(allowed.allows(&a("/ip4/192.0.2.2/tcp/7720"), t0));
        let later = t0 + INTRODUCED_FOR + Duration::from_secs(1);
        assert!(!allowed.allows(&a("/ip4/192.0.2.2/tcp/7720"), later));
    }

    #[test]
    fn introductions_are_bounded() {
        let t0 = Instant::now();
        let allowed = Allowed::new(&[]);
        let many: Vec<Multiaddr> = (0..MAX_INTRODUCED)
            .map(|i| a(&format!("/ip4/10.0.{}.{}/tcp/1", i / 256, i % 256)))
            .collect();
        assert!(allowed.introduce(&many, t0));
        assert!(!allowed.introduce(&[a("/ip4/10.9.9.9/tcp/1")], t0));
        let later = t0 + INTRODUCED_FOR + Duration::from_secs(1);
        assert!(allowed.introduce(&[a("/ip4/10.9.9.9/tcp/1")], later));
    }
}
