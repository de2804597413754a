//! The lease that fences a node's mesh workloads whatever state its agent is in, and
//! the wait that keeps the majority from starting them before that lease has run out.
//! The argument is in `docs/mesh.md` ("The lease"); the test below checks its
//! inequalities against the constants the code uses, so a change to a timeout that
//! breaks it fails the build's tests.
//!
//! - Every mesh-placed unit is bound (`BindsTo=`) to a lease unit whose process (the
//!   relay) holds the lease until [`LEASE`] after the last renewal was *sent*, and
//!   feeds systemd's watchdog up to then. The agent's loop renews every
//!   [`RENEW_EVERY`], only while this node may own workloads, has heard a majority of
//!   its voters within [`RENEW_FRESH`], and has sent its own heartbeat on time.
//!   When the lease ends, systemd stops the mesh units, each within its stop timeout.
//! - A member that is lost (dead in this node's view) may still run what it ran until
//!   its lease has run out: no member starts a workload the lost one could run until
//!   [`TAKEOVER`] after it was last heard.

use std::time::{Duration, Instant};

/// How long the lease lasts after a renewal was sent.
pub const LEASE: Duration = Duration::from_millis(700);

/// How often the agent's loop renews the lease; a loop that stalls for
/// `LEASE - RENEW_EVERY` loses it (its mesh workloads stop, and start again once it
/// renews).
pub const RENEW_EVERY: Duration = Duration::from_millis(200);

/// The lease is renewed only while a majority of the voters, this node included, was
/// heard within this long: fresher than suspicion, so that a node cut off stops
/// renewing before the others even suspect it.
pub const RENEW_FRESH: Duration = Duration::from_millis(1000);

/// How late this node's own heartbeat may be before it stops renewing: the others'
/// last news of it is never more than a heartbeat and this old when it renews.
pub const BEAT_LATE: Duration = Duration::from_millis(100);

/// How late systemd may fire a timer it arms (sd-event's default accuracy): the stop
/// timeout of a unit that ignores SIGTERM, say.
pub const SYSTEMD_TIMER_SLACK: Duration = Duration::from_millis(250);

/// How long after a lost member was last heard its workloads may start elsewhere.
pub const TAKEOVER: Duration = Duration::from_millis(2300);

/// What the lease is renewed on: from when this node may own mesh workloads (quorate
/// and past its hold-down, as placement asks of an owner), and since when it has heard
/// a majority of its voters (itself counted as heard now). A node that may own nothing
/// holds no lease, so a decision it took before it lost its place (while frozen, say)
/// cannot start anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Majority {
    /// From when it may own workloads; `None` while it is not quorate.
    pub owns_from: Option<Instant>,
    /// Every voter of some majority was heard at or after this instant; `None` when no
    /// majority was ever heard.
    pub heard_since: Option<Instant>,
    /// Until when its last heartbeat counts as on time (sent within a heartbeat and
    /// [`BEAT_LATE`]); `None` before the first.
    pub beat_until: Option<Instant>,
}

impl Majority {
    /// No majority (a node not in the mesh, or fenced).
    pub const NONE: Majority = Majority {
        owns_from: None,
        heard_since: None,
        beat_until: None,
    };

    /// Whether the lease may be renewed at `now`.
    pub fn renews(&self, now: Instant) -> bool {
        self.owns_from.is_some_and(|t| now >= t)
            && self.beat_until.is_some_and(|t| now <= t)
            && self
                .heard_since
                .is_some_and(|t| now.saturating_duration_since(t) <= RENEW_FRESH)
    }

    /// From the voters' last-heard instants (`None`: never heard), this node not among
    /// them: the instant since which a strict majority of `voters + 1`, itself
    /// included, has been heard.
    pub fn heard_since_of(
        owns_from: Option<Instant>,
        others: &[Option<Instant>],
        now: Instant,
    ) -> Majority {
        // Others besides this node, for strictly more than half of all voters.
        let needed = others.len().div_ceil(2);
        let mut heard: Vec<Instant> = others.iter().flatten().copied().collect();
        heard.sort_unstable_by(|a, b| b.cmp(a));
        let heard_since = match needed {
            0 => Some(now),
            n => heard.get(n - 1).copied(),
        };
        Majority {
            owns_from,
            heard_since,
            beat_until: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::Timing;
    use crate::placement::CLAIM;
    use xnode_spec::unit::MESH_STOP_TIMEOUT;

    /// The margins of docs/mesh.md, from the constants in use.
    #[test]
    fn the_lease_runs_out_before_any_takeover_with_a_margin() {
        let t = Timing::default();
        let ms = Duration::from_millis;
        // Once the lease is out, its units are stopped within their stop timeout,
        // which systemd may fire late.
        let stop = MESH_STOP_TIMEOUT + SYSTEMD_TIMER_SLACK;
        // Killed, frozen, or cut off with its connections reset: it renews only with
        // its own heartbeat on time, so its last renewal is at most a late heartbeat
        // after the last one the others heard.
        let stopped_after_kill = t.heartbeat + BEAT_LATE + LEASE + stop;
        assert!(stopped_after_kill + ms(350) <= TAKEOVER);
        // Cut off in silence: it renews until it has not heard a majority for
        // RENEW_FRESH, and the others heard it up to one heartbeat before the cut.
        let stopped_after_cut = t.heartbeat + RENEW_FRESH + LEASE + stop;
        let takeover_after_silence = (t.dead_after + CLAIM).max(TAKEOVER);
        assert!(stopped_after_cut + ms(600) <= takeover_after_silence);
        // A renewal is due well within the lease, and the evidence it needs is fresher
        // than suspicion.
        assert!(RENEW_EVERY * 3 <= LEASE);
        assert!(RENEW_FRESH < t.suspect_after);
        assert!(RENEW_FRESH >= t.heartbeat * 2);
    }

    #[test]
    fn a_majority_is_heard_since_its_least_recent_member() {
        let now = Instant::now();
        let ago = |ms| Some(now - Duration::from_millis(ms));
        let owns = ago(0);
        let beating = |mut m: Majority| {
            m.beat_until = Some(now + Duration::from_secs(10));
            m
        };
        // Alone: always heard.
        assert_eq!(
            Majority::heard_since_of(owns, &[], now).heard_since,
            Some(now)
        );
        // Of three, one other is needed: the freshest.
        let m = beating(Majority::heard_since_of(owns, &[ago(900), ago(100)], now));
        assert_eq!(m.heard_since, ago(100));
        assert!(m.renews(now));
        let late = Majority {
            beat_until: Some(now - Duration::from_millis(1)),
            ..m
        };
        assert!(!late.renews(now), "its own heartbeat is late");
        assert!(!m.renews(now + RENEW_FRESH), "heard 1.1 s ago");
        // Of five, two others: the second freshest.
        let m = Majority::heard_since_of(owns, &[ago(50), None, ago(700), ago(3000)], now);
        assert_eq!(m.heard_since, ago(700));
        // Of four, two others (three of four is a majority, two is not).
        let m = Majority::heard_since_of(owns, &[ago(10), None, None], now);
        assert_eq!(m.heard_since, None);
        assert!(!m.renews(now));
        // Not quorate, or still in its hold-down: never.
        assert!(!Majority::heard_since_of(None, &[], now).renews(now));
        let later = Some(now + Duration::from_secs(1));
        assert!(!Majority::heard_since_of(later, &[], now).renews(now));
    }
}
