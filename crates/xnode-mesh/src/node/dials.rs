//! Whom the node dials. The mesh port is open to anyone, and anyone can name peers and
//! addresses (in a Kademlia answer, an identify message, an mDNS reply): a node that
//! dialed what it is told would connect wherever an attacker points it. So the node
//! dials only peers it has reason to: members and bootstrap peers (*trusted*), and the
//! peers a bootstrap peer (or the local link) introduced a moment ago, and each of them
//! only so often. Any other dial, whoever asked for it, is refused before a packet
//! leaves.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::rate::PerPeer;

/// How long an introduction lets the node dial the peer introduced.
pub(super) const INTRODUCED_FOR: Duration = Duration::from_secs(60);
/// Introductions kept at once (a bootstrap peer's answer names at most 16).
const MAX_INTRODUCED: usize = 256;
/// Dials to one peer at once: a redial after a closed connection, a query or two…
const DIAL_BURST: u32 = 4;
/// …and then one every five seconds.
const DIALS_PER_SEC: f64 = 0.2;

/// Why a dial was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum Refused {
    /// Neither a member, a bootstrap peer nor introduced.
    #[error("not a peer this node dials: neither a member, a bootstrap peer nor introduced")]
    Stranger,
    /// Dialed too often of late.
    #[error("dialed too often of late")]
    TooOften,
}

/// The decisions, apart from the swarm, for peers `P`.
#[derive(Debug)]
pub(super) struct Dials<P> {
    introduced: HashMap<P, Instant>,
    rate: PerPeer<P>,
}

impl<P: Hash + Eq + Clone> Dials<P> {
    pub(super) fn new() -> Self {
        Dials {
            introduced: HashMap::new(),
            rate: PerPeer::new(DIAL_BURST, DIALS_PER_SEC),
        }
    }

    /// `peer` may be dialed for a while, though it is not trusted: a bootstrap peer
    /// says it is on this node's fleet topic, or it answered on the local link. Past
    /// the bound, introductions are refused until older ones expire.
    pub(super) fn introduce(&mut self, peer: P, now: Instant) -> bool {
        if self.introduced.len() >= MAX_INTRODUCED {
            self.introduced.retain(|_, until| *until > now);
        }
        if self.introduced.len() >= MAX_INTRODUCED {
            return false;
        }
        self.introduced.insert(peer, now + INTRODUCED_FOR);
        true
    }

    /// Whether the node may dial `peer` now (`trusted`: a member or a bootstrap
    /// peer); if so, the dial is counted.
    pub(super) fn allow(&mut self, peer: &P, trusted: bool, now: Instant) -> Result<(), Refused> {
        let introduced = self.introduced.get(peer).is_some_and(|until| *until > now);
        if !trusted && !introduced {
            return Err(Refused::Stranger);
        }
        if !self.rate.allow(peer, now) {
            return Err(Refused::TooOften);
        }
        Ok(())
    }
}

/// Whether `ip` may be on the local link or a private network: the only addresses an
/// mDNS answer (which anyone on the link can send) is taken at.
pub(super) fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_private() || ip.is_link_local() || ip.is_loopback(),
        IpAddr::V6(ip) => {
            let first = ip.segments()[0];
            // fc00::/7 (unique local) and fe80::/10 (link local).
            (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 || ip.is_loopback()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_trusted_or_introduced_peers_and_each_only_so_often() {
        let t0 = Instant::now();
        let mut d: Dials<u32> = Dials::new();
        assert_eq!(d.allow(&1, false, t0), Err(Refused::Stranger));
        for _ in 0..DIAL_BURST {
            assert_eq!(d.allow(&2, true, t0), Ok(()));
        }
        assert_eq!(d.allow(&2, true, t0), Err(Refused::TooOften));
        assert_eq!(d.allow(&2, true, t0 + Duration::from_secs(5)), Ok(()));
        // Introduced: dialable for a while, then a stranger again.
        assert!(d.introduce(1, t0));
        assert_eq!(d.allow(&1, false, t0), Ok(()));
        assert_eq!(
            d.allow(&1, false, t0 + INTRODUCED_FOR + Duration::from_secs(1)),
            Err(Refused::Stranger)
        );
    }

    #[test]
    fn introductions_are_bounded_and_expire() {
        let t0 = Instant::now();
        let mut d: Dials<u32> = Dials::new();
        for p in 0..MAX_INTRODUCED as u32 {
            assert!(d.introduce(p, t0));
        }
        assert!(!d.introduce(9999, t0), "full");
        assert!(d.introduce(9999, t0 + INTRODUCED_FOR + Duration::from_secs(1)));
        assert_eq!(d.introduced.len(), 1);
    }

    #[test]
    fn local_addresses() {
        for (ip, local) in [
            ("192.168.1.5", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("169.254.3.4", true),
            ("127.0.0.1", true),
            ("8.8.8.8", false),
            ("100.64.0.1", false),
            ("fe80::1", true),
            ("fd00::1", true),
            ("::1", true),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_local(ip.parse().unwrap()), local, "{ip}");
        }
    }
}
