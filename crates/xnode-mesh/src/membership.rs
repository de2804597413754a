//! Who is in the mesh: a failure detector in the manner of SWIM, fed by gossiped
//! heartbeats, as a pure state machine (time is an argument; nothing here does I/O).
//!
//! - Every member publishes a heartbeat each [`Timing::heartbeat`].
//! - A member unheard for [`Timing::suspect_after`], or whose connection to us closed,
//!   is *suspect*; unheard for [`Timing::dead_after`] it is *dead*.
//! - Confirmation: a member that a node could not reach again after a closed
//!   connection is reported `Gone` to all, and is dead at once wherever nothing newer
//!   than that report was heard.
//! - Refutation: any heartbeat newer than what a node has (a higher incarnation, or a
//!   higher seq in the same one) makes the member alive again. A member wrongly
//!   reported gone refutes it with its next heartbeat; a restarted one comes back
//!   with a new incarnation. Old heartbeats still in flight change nothing.
//! - A `Gone` report is believed only about a heartbeat the reporter could have seen:
//!   the incarnation this node knows, and a seq no further ahead of the one it knows
//!   than gossip could have carried. A report of an incarnation or seq from the
//!   future is a lie, and changes nothing.
//! - How long a member has been settled (quorate without a break, which may make it
//!   an owner) is what this node saw itself: from the first heartbeat in which it said
//!   it was settled, not the length it claims.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::message::Heartbeat;

/// The most members one node keeps. Only members' heartbeats are believed, so only the
/// owner can come near it; a new member past it is not taken in until room is made.
pub const MAX_MEMBERS: usize = 1024;

/// A dead member is forgotten after this long: it is neither a voter nor a candidate
/// any more, and would only take room.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);

/// How far ahead of the last heartbeat a node heard a `Gone` report may be: ten
/// heartbeats (5 s by default) that reached the reporter and not this node yet.
pub const GONE_SEQ_AHEAD: u64 = 10;

/// The detector's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between a member's heartbeats.
    pub heartbeat: Duration,
    /// Unheard this long: suspect.
    pub suspect_after: Duration,
    /// Unheard this long: dead.
    pub dead_after: Duration,
}

impl Default for Timing {
    /// Heartbeats every 500 ms; suspect after 3 missed, dead after 5. Compare memberlist's
    /// LAN defaults: probe every 1 s, suspicion for 4 × log10(n) probe intervals (about
    /// 5 s at 20 nodes), so failures show after 4–8 s.
    fn default() -> Timing {
        Timing {
            heartbeat: Duration::from_millis(500),
            suspect_after: Duration::from_millis(1500),
            dead_after: Duration::from_millis(2500),
        }
    }
}

/// A member's state, as this node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Heard from lately.
    Alive,
    /// Not heard from lately, or its connection closed: not yet given up.
    Suspect,
    /// Given up on until it says something newer.
    Dead,
}

/// One member.
#[derive(Debug, Clone)]
pub struct Member {
    /// What it last said.
    pub info: Heartbeat,
    /// How we see it.
    pub state: State,
    /// When we last heard a heartbeat.
    pub heard: Instant,
    /// When its state last changed.
    pub since: Instant,
    /// Since when this node has heard it say, in every heartbeat, that it is settled
    /// (none while it says it is not, or is not alive).
    pub settled_since: Option<Instant>,
}

/// A change worth telling the rest of the node about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change<P> {
    /// A member never seen before, or back from the dead.
    Alive(P),
    /// A member is suspect.
    Suspect(P),
    /// A member is dead.
    Dead(P),
}

/// The members as one node sees them (not including itself).
#[derive(Debug, Clone)]
pub struct Membership<P> {
    timing: Timing,
    members: BTreeMap<P, Member>,
}

impl<P: Ord + Clone> Membership<P> {
    /// No members yet.
    pub fn new(timing: Timing) -> Self {
        Membership {
            timing,
            members: BTreeMap::new(),
        }
    }

    /// A heartbeat from `peer` (the gossip message's signed source).
    pub fn heard(&mut self, peer: &P, hb: Heartbeat, now: Instant) -> Option<Change<P>> {
        match self.members.get_mut(peer) {
            None => {
                if self.members.len() >= MAX_MEMBERS {
                    // Not those dead for less than the takeover delay: placement still
                    // waits on what they may run.
                    self.forget_dead(now, crate::fencing::TAKEOVER);
                    if self.members.len() >= MAX_MEMBERS {
                        return None;
                    }
                }
                self.members.insert(
                    peer.clone(),
                    Member {
                        settled_since: (hb.settled_ms > 0).then_some(now),
                        info: hb,
                        state: State::Alive,
                        heard: now,
                        since: now,
                    },
                );
                Some(Change::Alive(peer.clone()))
            }
            Some(m) => {
                if (hb.incarnation, hb.seq) <= (m.info.incarnation, m.info.seq) {
                    return None; // Old news, e.g. delayed in the gossip.
                }
                // Settled without a break as far as this node saw: alive all along,
                // the same incarnation, and settled in its last heartbeat too, for no
                // less than before (less means it broke off and settled again).
                let unbroken = m.state == State::Alive
                    && hb.incarnation == m.info.incarnation
                    && m.info.settled_ms > 0
                    && hb.settled_ms >= m.info.settled_ms;
                m.settled_since = match (hb.settled_ms > 0, unbroken) {
                    (false, _) => None,
                    (true, true) => m.settled_since.or(Some(now)),
                    (true, false) => Some(now),
                };
                m.info = hb;
                m.heard = now;
                if m.state == State::Alive {
                    return None;
                }
                m.state = State::Alive;
                m.since = now;
                Some(Change::Alive(peer.clone()))
            }
        }
    }

    /// Our connection to `peer` closed: suspect it until it is heard again.
    pub fn disconnected(&mut self, peer: &P, now: Instant) -> Option<Change<P>> {
        self.set(peer, State::Suspect, now)
    }

    /// Someone could not reach `peer` after its heartbeat `(incarnation, seq)`.
    pub fn gone(
        &mut self,
        peer: &P,
        incarnation: u64,
        seq: u64,
        now: Instant,
    ) -> Option<Change<P>> {
        let m = self.members.get(peer)?;
        if (m.info.incarnation, m.info.seq) > (incarnation, seq) {
            return None; // We heard it since: the report is out of date.
        }
        if incarnation != m.info.incarnation || seq - m.info.seq > GONE_SEQ_AHEAD {
            return None; // A heartbeat nobody could have seen yet: a false report.
        }
        self.set(peer, State::Dead, now)
    }

    /// The owner revoked `peer`: dead at once, and never heard again (the caller
    /// refuses its heartbeats), so it is forgotten with the other dead.
    pub fn revoked(&mut self, peer: &P, now: Instant) -> Option<Change<P>> {
        self.set(peer, State::Dead, now)
    }

    /// Forgets members dead for at least `after`.
    fn forget_dead(&mut self, now: Instant, after: Duration) {
        self.members.retain(|_, m| {
            m.state != State::Dead || now.saturating_duration_since(m.since) < after
        });
    }

    /// Time passes: members unheard for long enough turn suspect, then dead; the long
    /// dead are forgotten.
    pub fn tick(&mut self, now: Instant) -> Vec<Change<P>> {
        self.forget_dead(now, FORGET_AFTER);
        let mut changes = Vec::new();
        for (peer, m) in &mut self.members {
            let silent = now.saturating_duration_since(m.heard);
            let state = if silent >= self.timing.dead_after {
                State::Dead
            } else if silent >= self.timing.suspect_after && m.state == State::Alive {
                State::Suspect
            } else {
                continue;
            };
            if state != m.state {
                m.state = state;
                m.since = now;
                changes.push(match state {
                    State::Dead => Change::Dead(peer.clone()),
                    _ => Change::Suspect(peer.clone()),
                });
            }
        }
        changes
    }

    fn set(&mut self, peer: &P, state: State, now: Instant) -> Option<Change<P>> {
        let m = self.members.get_mut(peer)?;
        // Never back up: a dead member stays dead until it is heard again.
        if m.state == state || m.state == State::Dead {
            return None;
        }
        m.state = state;
        m.since = now;
        Some(match state {
            State::Dead => Change::Dead(peer.clone()),
            State::Suspect => Change::Suspect(peer.clone()),
            State::Alive => Change::Alive(peer.clone()),
        })
    }

    /// A member, if known.
    pub fn get(&self, peer: &P) -> Option<&Member> {
        self.members.get(peer)
    }

    /// Every known member, dead ones included.
    pub fn members(&self) -> impl Iterator<Item = (&P, &Member)> {
        self.members.iter()
    }

    /// Members not given up on (alive or suspect): the ones that count as present.
    pub fn live(&self) -> impl Iterator<Item = (&P, &Member)> {
        self.members.iter().filter(|(_, m)| m.state != State::Dead)
    }

    /// The timing in use.
    pub fn timing(&self) -> Timing {
        self.timing
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::message::{Heartbeat, Resources};

    fn hb(incarnation: u64, seq: u64) -> Heartbeat {
        Heartbeat {
            cert: crate::fleet::testing::example(),
            node: "n".into(),
            incarnation,
            seq,
            labels: Default::default(),
            resources: Resources::default(),
            services: vec![],
            addresses: vec![],
            settled_ms: 0,
            offers: Default::default(),
            running: Default::default(),
            report: None,
            closures: Default::default(),
        }
    }

    fn ms(start: Instant, n: u64) -> Instant {
        start + Duration::from_millis(n)
    }

    #[test]
    fn a_member_lives_is_suspected_dies_and_comes_back() {
        let t0 = Instant::now();
        let mut m = Membership::new(Timing::default());
        // (event, at ms, expected change)
        assert_eq!(m.heard(&1, hb(1, 1), t0), Some(Change::Alive(1)));
        assert_eq!(m.heard(&1, hb(1, 2), ms(t0, 500)), None);
        assert_eq!(m.tick(ms(t0, 1900)), vec![]);
        assert_eq!(m.tick(ms(t0, 2000)), vec![Change::Suspect(1)]);
        assert_eq!(m.tick(ms(t0, 2900)), vec![]);
        assert_eq!(m.tick(ms(t0, 3000)), vec![Change::Dead(1)]);
        assert_eq!(m.live().count(), 0);
        // A heartbeat sent before it died, delivered late: still dead.
        assert_eq!(m.heard(&1, hb(1, 2), ms(t0, 3100)), None);
        assert_eq!(m.get(&1).map(|x| x.state), Some(State::Dead));
        // Restarted: a new incarnation starts its seq again, and is taken back.
        assert_eq!(m.heard(&1, hb(2, 1), ms(t0, 4000)), Some(Change::Alive(1)));
        assert_eq!(m.live().count(), 1);
    }

    #[test]
    fn a_closed_connection_is_suspicion_and_a_confirmed_report_is_death() {
        let t0 = Instant::now();
        let mut m = Membership::new(Timing::default());
        m.heard(&1, hb(1, 5), t0);
        assert_eq!(m.disconnected(&1, ms(t0, 10)), Some(Change::Suspect(1)));
        assert_eq!(m.disconnected(&1, ms(t0, 20)), None);
        // A report older than what we heard is ignored; a current one kills (see
        // below for those too new to be true).
        assert_eq!(m.gone(&1, 1, 4, ms(t0, 30)), None);
        assert_eq!(m.gone(&1, 1, 5, ms(t0, 40)), Some(Change::Dead(1)));
        assert_eq!(m.disconnected(&1, ms(t0, 50)), None, "dead stays dead");
        // Wrongly reported: its next heartbeat refutes it.
        assert_eq!(m.heard(&1, hb(1, 6), ms(t0, 500)), Some(Change::Alive(1)));
        // A report about an unknown member is no member.
        assert_eq!(m.gone(&2, 1, 1, ms(t0, 600)), None);
        assert!(m.get(&2).is_none());
    }

    #[test]
    fn a_report_of_a_heartbeat_nobody_could_have_seen_is_a_lie() {
        let t0 = Instant::now();
        let mut m = Membership::new(Timing::default());
        m.heard(&1, hb(7, 100), t0);
        // (incarnation, seq) reported → believed?
        for (incarnation, seq, believed) in [
            (7, 99, false),              // heard since
            (u64::MAX, u64::MAX, false), // from the future
            (8, 1, false),               // an incarnation this node never saw
            (7, 100 + GONE_SEQ_AHEAD + 1, false),
            (7, u64::MAX, false),
            (7, 100 + GONE_SEQ_AHEAD, true), // heartbeats still on their way here
        ] {
            let change = m.gone(&1, incarnation, seq, ms(t0, 10));
            assert_eq!(change.is_some(), believed, "({incarnation}, {seq})");
        }
        let mut m = Membership::new(Timing::default());
        m.heard(&1, hb(7, 100), t0);
        assert_eq!(m.gone(&1, 7, 100, ms(t0, 10)), Some(Change::Dead(1)));
    }

    #[test]
    fn settled_is_counted_from_what_this_node_saw_not_what_a_member_claims() {
        let t0 = Instant::now();
        let mut m = Membership::new(Timing::default());
        let settled = |inc, seq, ms| Heartbeat {
            settled_ms: ms,
            ..hb(inc, seq)
        };
        // A newcomer that claims an hour of being settled: from now on, as seen here.
        m.heard(&1, settled(1, 1, 3_600_000), t0);
        assert_eq!(m.get(&1).unwrap().settled_since, Some(t0));
        m.heard(&1, settled(1, 2, 3_600_500), ms(t0, 500));
        assert_eq!(m.get(&1).unwrap().settled_since, Some(t0), "unbroken");
        // It broke off (claims less than before): settled anew.
        m.heard(&1, settled(1, 3, 100), ms(t0, 1000));
        assert_eq!(m.get(&1).unwrap().settled_since, Some(ms(t0, 1000)));
        // Not settled: none; settled again: from then.
        m.heard(&1, settled(1, 4, 0), ms(t0, 1500));
        assert_eq!(m.get(&1).unwrap().settled_since, None);
        m.heard(&1, settled(1, 5, 500), ms(t0, 2000));
        assert_eq!(m.get(&1).unwrap().settled_since, Some(ms(t0, 2000)));
        // Suspected in between: settled anew from when it is heard again.
        m.disconnected(&1, ms(t0, 2100));
        m.heard(&1, settled(1, 6, 1000), ms(t0, 2500));
        assert_eq!(m.get(&1).unwrap().settled_since, Some(ms(t0, 2500)));
        // Restarted with a new incarnation: anew.
        m.heard(&1, settled(2, 1, 9_999_999), ms(t0, 3000));
        assert_eq!(m.get(&1).unwrap().settled_since, Some(ms(t0, 3000)));
    }

    #[test]
    fn the_dead_are_forgotten_and_the_table_has_a_bound() {
        let t0 = Instant::now();
        let mut m = Membership::new(Timing::default());
        m.heard(&1, hb(1, 1), t0);
        assert_eq!(m.revoked(&1, ms(t0, 10)), Some(Change::Dead(1)));
        m.tick(ms(t0, 10) + FORGET_AFTER - Duration::from_millis(1));
        assert!(m.get(&1).is_some());
        m.tick(ms(t0, 10) + FORGET_AFTER);
        assert!(m.get(&1).is_none(), "forgotten");
        for p in 0..MAX_MEMBERS as u32 {
            m.heard(&p, hb(1, 1), t0);
        }
        assert_eq!(m.heard(&9999, hb(1, 1), t0), None, "full");
        assert!(m.get(&9999).is_none());
        m.revoked(&0, t0);
        assert_eq!(
            m.heard(&9999, hb(1, 1), t0),
            None,
            "dead too lately to forget"
        );
        let later = t0 + crate::fencing::TAKEOVER;
        assert_eq!(
            m.heard(&9999, hb(1, 1), later),
            Some(Change::Alive(9999)),
            "a dead one made room"
        );
        assert_eq!(m.members().count(), MAX_MEMBERS);
    }

    proptest! {
        /// Whatever happens, a member is alive right after its newest heartbeat, and
        /// dead whenever it has been silent for `dead_after`.
        #[test]
        fn the_newest_heartbeat_wins_and_silence_kills(
            events in prop::collection::vec((0u8..4, 0u64..3, 0u64..20, 0u64..400), 1..60)
        ) {
            let t0 = Instant::now();
            let timing = Timing::default();
            let mut m = Membership::new(timing);
            let mut now = t0;
            let mut newest: Option<(u64, u64)> = None;
            let mut last_heard = t0;
            for (kind, inc, seq, step) in events {
                now += Duration::from_millis(step);
                match kind {
                    0 => {
                        let was_newer = newest.is_none_or(|n| (inc, seq) > n);
                        m.heard(&7, hb(inc, seq), now);
                        if was_newer {
                            newest = Some((inc, seq));
                            last_heard = now;
                            prop_assert_eq!(m.get(&7).unwrap().state, State::Alive);
                        }
                    }
                    1 => { m.disconnected(&7, now); }
                    2 => { m.gone(&7, inc, seq, now); }
                    _ => { m.tick(now); }
                }
                if let Some(member) = m.get(&7) {
                    prop_assert_eq!((member.info.incarnation, member.info.seq), newest.unwrap());
                }
            }
            m.tick(last_heard + timing.dead_after);
            if newest.is_some() {
                prop_assert_eq!(m.get(&7).unwrap().state, State::Dead);
            }
        }
    }
}
