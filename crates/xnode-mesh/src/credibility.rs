//! Whose death reports are believed. A `Gone` report is believed about a member this
//! node is not connected to (it has nothing better), so a member may kill another in
//! the eyes of the nodes that cannot check, and keep it from ever counting as settled
//! there. A report is found false when the member it killed is heard again in the
//! same incarnation: it was alive. The reporter's reports are then not acted on for a
//! while; the failure detector's own timeouts still find the dead.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// How long a member whose report was found false is not believed.
pub const DISTRUST: Duration = Duration::from_secs(300);
/// Entries kept at most (each is a member's, and members are bounded).
const MAX_ENTRIES: usize = 4 * crate::membership::MAX_MEMBERS;

/// The reports acted on, and the reporters found false, for peers `P`.
#[derive(Debug)]
pub struct Credibility<P> {
    /// Each member killed by a report: by whom, in which incarnation.
    killed: HashMap<P, (P, u64)>,
    /// Reporters not believed until then.
    distrusted: HashMap<P, Instant>,
}

impl<P: Hash + Eq + Clone> Default for Credibility<P> {
    fn default() -> Self {
        Credibility {
            killed: HashMap::new(),
            distrusted: HashMap::new(),
        }
    }
}

impl<P: Hash + Eq + Clone> Credibility<P> {
    /// Whether `reporter`'s reports are acted on now.
    pub fn believes(&self, reporter: &P, now: Instant) -> bool {
        self.distrusted
            .get(reporter)
            .is_none_or(|until| *until <= now)
    }

    /// `reporter`'s report killed `target`, which was in `incarnation`.
    pub fn killed(&mut self, target: P, reporter: P, incarnation: u64) {
        if self.killed.len() >= MAX_ENTRIES {
            self.killed.clear();
        }
        self.killed.insert(target, (reporter, incarnation));
    }

    /// `target` is heard alive in `incarnation`: if a report killed it in that very
    /// incarnation, the report was false, and its reporter (returned) is not believed
    /// for [`DISTRUST`].
    pub fn heard(&mut self, target: &P, incarnation: u64, now: Instant) -> Option<P> {
        let (reporter, killed_in) = self.killed.remove(target)?;
        if killed_in != incarnation {
            return None; // It did die, and came back anew.
        }
        if self.distrusted.len() >= MAX_ENTRIES {
            self.distrusted.retain(|_, until| *until > now);
            if self.distrusted.len() >= MAX_ENTRIES {
                return None;
            }
        }
        self.distrusted.insert(reporter.clone(), now + DISTRUST);
        Some(reporter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_refuted_in_the_same_incarnation_costs_its_reporter_belief_for_a_while() {
        let t0 = Instant::now();
        let mut c: Credibility<u32> = Credibility::default();
        assert!(c.believes(&9, t0));
        // A report that was true: the member came back as a new incarnation.
        c.killed(1, 9, 5);
        assert_eq!(c.heard(&1, 6, t0), None);
        assert!(c.believes(&9, t0));
        // A false one: heard again in the incarnation it was killed in.
        c.killed(1, 9, 6);
        assert_eq!(c.heard(&1, 6, t0), Some(9));
        assert!(!c.believes(&9, t0));
        assert!(c.believes(&8, t0), "only the one found false");
        assert!(c.believes(&9, t0 + DISTRUST));
        // Heard again with no report in between: nobody is blamed.
        assert_eq!(c.heard(&1, 6, t0), None);
    }

    #[test]
    fn the_tables_stay_bounded() {
        let t0 = Instant::now();
        let mut c: Credibility<u32> = Credibility::default();
        for p in 0..(MAX_ENTRIES as u32 * 3) {
            c.killed(p, p + 1_000_000, 1);
            c.heard(&p, 1, t0);
        }
        assert!(c.killed.len() <= MAX_ENTRIES);
        assert!(c.distrusted.len() <= MAX_ENTRIES);
    }
}
