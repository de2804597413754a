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
/// Introductions kept at once from bootstrap peers (an answer names at most 16)…
const MAX_INTRODUCED: usize = 256;
/// …and from the local link, where anyone may answer: a few, apart, so answers there
/// crowd out no bootstrap peer's.
const MAX_INTRODUCED_LOCALLY: usize = 32;
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

/// Who introduced a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A bootstrap peer: it is on this node's fleet topic.
    Bootstrap,
    /// An mDNS answer on the local link.
    Link,
}

/// The decisions, apart from the swarm, for peers `P`.
#[derive(Debug)]
pub(super) struct Dials<P> {
    introduced: HashMap<P, Instant>,
    introduced_locally: HashMap<P, Instant>,
    rate: PerPeer<P>,
}

/// Adds `peer` to `table` until `until`, unless the table holds `max` live ones.
fn add<P: Hash + Eq>(table: &mut HashMap<P, Instant>, max: usize, peer: P, now: Instant) -> bool {
    if table.len() >= max {
        table.retain(|_, until| *until > now);
    }
    if table.len() >= max {
        return false;
    }
    table.insert(peer, now + INTRODUCED_FOR);
    true
}

impl<P: Hash + Eq + Clone> Dials<P> {
    pub(super) fn new() -> Self {
        Dials {
            introduced: HashMap::new(),
            introduced_locally: HashMap::new(),
            rate: PerPeer::new(DIAL_BURST, DIALS_PER_SEC),
        }
    }

    /// `peer` may be dialed for a while, though it is not trusted: a bootstrap peer
    /// says it is on this node's fleet topic, or it answered on the local link. Past
    /// the bound, introductions are refused until older ones expire.
    pub(super) fn introduce(&mut self, peer: P, source: Source, now: Instant) -> bool {
        match source {
            Source::Bootstrap => add(&mut self.introduced, MAX_INTRODUCED, peer, now),
            Source::Link => add(
                &mut self.introduced_locally,
                MAX_INTRODUCED_LOCALLY,
                peer,
                now,
            ),
        }
    }

    /// Whether the node may dial `peer` now (`trusted`: a member or a bootstrap
    /// peer); if so, the dial is counted.
    pub(super) fn allow(&mut self, peer: &P, trusted: bool, now: Instant) -> Result<(), Refused> {
        let live = |t: &HashMap<P, Instant>| t.get(peer).is_some_and(|until| *until > now);
        let introduced = live(&self.introduced) || live(&self.introduced_locally);
        if !trusted && !introduced {
            return Err(Refused::Stranger);
        }
        if !self.rate.allow(peer, now) {
            return Err(Refused::TooOften);
        }
        Ok(())
    }
}

/// Whether `ip` is on the local link or a private network, and is no address of this
/// host's own or a cloud's metadata service: the only addresses an mDNS answer (which
/// anyone on the link can send) is taken at.
pub(super) fn is_local(ip: IpAddr) -> bool {
    const METADATA_V4: [u8; 4] = [169, 254, 169, 254];
    match ip {
        IpAddr::V4(ip) => (ip.is_private() || ip.is_link_local()) && ip.octets() != METADATA_V4,
        IpAddr::V6(ip) => {
            let s = ip.segments();
            // fd00:ec2::254, the metadata service on IPv6.
            let metadata = s == [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254];
            // fc00::/7 (unique local) and fe80::/10 (link local).
            ((s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80) && !metadata
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
        assert!(d.introduce(1, Source::Bootstrap, t0));
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
            assert!(d.introduce(p, Source::Bootstrap, t0));
        }
        assert!(!d.introduce(9999, Source::Bootstrap, t0), "full");
        let later = t0 + INTRODUCED_FOR + Duration::from_secs(1);
        assert!(d.introduce(9999, Source::Bootstrap, later));
        assert_eq!(d.introduced.len(), 1);
        // The local link has a table of its own: it fills, and leaves the other be.
        for p in 0..MAX_INTRODUCED_LOCALLY as u32 {
            assert!(d.introduce(50_000 + p, Source::Link, later));
        }
        assert!(!d.introduce(99_999, Source::Link, later));
        assert!(d.introduce(10_000, Source::Bootstrap, later));
        assert_eq!(d.allow(&50_000, false, later), Ok(()));
    }

    #[test]
    fn local_addresses() {
        for (ip, local) in [
            ("192.168.1.5", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("169.254.3.4", true),
            ("127.0.0.1", false),
            ("169.254.169.254", false),
            ("fd00:ec2::254", false),
            ("8.8.8.8", false),
            ("100.64.0.1", false),
            ("fe80::1", true),
            ("fd00::1", true),
            ("::1", false),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_local(ip.parse().unwrap()), local, "{ip}");
        }
    }
}
