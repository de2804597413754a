//! How often each peer may make this node act: a token bucket per peer, as a pure
//! state machine (time is an argument).

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// A bucket of `burst` tokens per peer, refilled at `per_sec`.
#[derive(Debug)]
pub struct PerPeer<P> {
    burst: f64,
    per_sec: f64,
    buckets: HashMap<P, (f64, Instant)>,
}

/// Peers kept at most; beyond, the buckets that have filled up again are dropped (a
/// full bucket is what a peer not seen before gets anyway).
const MAX_PEERS: usize = 4096;

impl<P: Hash + Eq + Clone> PerPeer<P> {
    /// `burst` acts at once, then `per_sec`.
    pub fn new(burst: u32, per_sec: f64) -> Self {
        PerPeer {
            burst: f64::from(burst),
            per_sec,
            buckets: HashMap::new(),
        }
    }

    /// Whether `peer` may make this node act now; if so, it costs a token.
    pub fn allow(&mut self, peer: &P, now: Instant) -> bool {
        if self.buckets.len() >= MAX_PEERS && !self.buckets.contains_key(peer) {
            let (burst, per_sec) = (self.burst, self.per_sec);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() * per_sec < burst
            });
            if self.buckets.len() >= MAX_PEERS {
                return false;
            }
        }
        let (tokens, at) = self
            .buckets
            .entry(peer.clone())
            .or_insert((self.burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*at).as_secs_f64() * self.per_sec)
            .min(self.burst);
        *at = now;
        if *tokens < 1.0 {
            return false;
        }
        *tokens -= 1.0;
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_burst_then_the_rate_and_each_peer_on_its_own() {
        let t0 = Instant::now();
        let mut r = PerPeer::new(3, 2.0);
        assert_eq!((0..5).filter(|_| r.allow(&1, t0)).count(), 3);
        assert!(r.allow(&2, t0), "another peer has its own bucket");
        // Two a second: one after half a second, none more.
        let later = t0 + Duration::from_millis(500);
        assert!(r.allow(&1, later));
        assert!(!r.allow(&1, later));
        // Refilled, never beyond the burst.
        let much_later = t0 + Duration::from_secs(60);
        assert_eq!((0..5).filter(|_| r.allow(&1, much_later)).count(), 3);
    }

    #[test]
    fn the_table_stays_bounded() {
        let t0 = Instant::now();
        let mut r = PerPeer::new(1, 1.0);
        for p in 0..MAX_PEERS as u32 {
            assert!(r.allow(&p, t0));
        }
        // All empty: a new peer waits for room.
        assert!(!r.allow(&u32::MAX, t0));
        assert!(r.allow(&u32::MAX, t0 + Duration::from_secs(2)));
        assert!(r.buckets.len() <= MAX_PEERS);
    }
}
