//! Whom the node dials. The mesh port is open to anyone, and anyone can name peers and
//! addresses (in a Kademlia answer, an identify message, an mDNS reply): a node that
//! dialed what it is told would connect wherever an attacker points it. So the node
//! dials only peers it has reason to: members and bootstrap peers (*trusted*), and the
//! peers a bootstrap peer (or the local link) introduced a moment ago
//! ([`super::transport::Allowed`] keeps those, with the addresses each may be dialed
//! at), and each of them only so often. Any other dial, whoever asked for it, is
//! refused before a packet leaves.

use std::hash::Hash;
use std::net::IpAddr;
use std::time::Instant;

use crate::rate::PerPeer;

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
    rate: PerPeer<P>,
}

impl<P: Hash + Eq + Clone> Dials<P> {
    pub(super) fn new() -> Self {
        Dials {
            rate: PerPeer::new(DIAL_BURST, DIALS_PER_SEC),
        }
    }

    /// Whether the node may dial `peer` now (`known`: a member, a bootstrap peer or
    /// introduced); if so, the dial is counted.
    pub(super) fn allow(&mut self, peer: &P, known: bool, now: Instant) -> Result<(), Refused> {
        if !known {
            return Err(Refused::Stranger);
        }
        if !self.rate.allow(peer, now) {
            return Err(Refused::TooOften);
        }
        Ok(())
    }
}

/// Whether `ip` is on a private network and is no cloud service's: the only addresses
/// an mDNS answer (which anyone on the link can send) is taken at. Not loopback (this
/// host's own services), not link-local (169.254/16 holds the clouds' metadata,
/// credential and DNS services; fe80::/10 needs a zone to be dialed at all).
pub(super) fn is_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => ip.is_private(),
        IpAddr::V6(ip) => {
            let s = ip.segments();
            // fc00::/7 (unique local), but fd00:ec2::/32 (a cloud's services).
            (s[0] & 0xfe00) == 0xfc00 && !(s[0] == 0xfd00 && s[1] == 0x0ec2)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn only_known_peers_and_each_only_so_often() {
        let t0 = Instant::now();
        let mut d: Dials<u32> = Dials::new();
        assert_eq!(d.allow(&1, false, t0), Err(Refused::Stranger));
        for _ in 0..DIAL_BURST {
            assert_eq!(d.allow(&2, true, t0), Ok(()));
        }
        assert_eq!(d.allow(&2, true, t0), Err(Refused::TooOften));
        assert_eq!(d.allow(&3, true, t0), Ok(()), "each peer on its own");
        assert_eq!(d.allow(&2, true, t0 + Duration::from_secs(5)), Ok(()));
    }

    #[test]
    fn local_addresses() {
        for (ip, local) in [
            ("192.168.1.5", true),
            ("10.1.2.3", true),
            ("172.16.0.1", true),
            ("169.254.3.4", false),
            ("169.254.169.254", false),
            ("169.254.170.2", false),
            ("127.0.0.1", false),
            ("8.8.8.8", false),
            ("100.64.0.1", false),
            ("fe80::1", false),
            ("fd00::1", true),
            ("fd00:ec2::254", false),
            ("::1", false),
            ("2001:db8::1", false),
        ] {
            assert_eq!(is_local(ip.parse().unwrap()), local, "{ip}");
        }
    }
}
