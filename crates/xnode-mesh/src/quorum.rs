//! Fencing: a node that cannot see a majority of the mesh it last agreed on runs no mesh
//! workload, so the two sides of a partition never both run a singleton. A pure state
//! machine; the node persists its voters so a restart does not forget them.
//!
//! The rule, evaluated on every tick:
//!
//! 1. The *voters* are the last agreed membership: this node and the members it counted
//!    when it was last quorate.
//! 2. This node is *quorate* when strictly more than half of the voters are alive in its
//!    view, itself included (a suspect member does not count).
//! 3. While quorate, the voters follow the view: members heard alive join, members dead
//!    leave. While not quorate they are frozen, so a minority never shrinks its way to a
//!    majority.
//! 4. A node is *settled* for as long as it has been quorate without a break; it may own
//!    workloads only once settled for the hold-down, which it advertises to the others.
//!
//! Timing makes the sides take turns: the minority fences when the majority turns
//! suspect (1.5 s of silence), the majority takes over when the minority is dead
//! (2.5 s), so the minority has stopped before the majority starts.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::membership::State;

/// The voters and whether this node is quorate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum<P> {
    me: P,
    voters: BTreeSet<P>,
    quorate_since: Option<Instant>,
}

/// What an update changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Changed {
    /// The voters (persist them).
    pub voters: bool,
    /// Quorate or not.
    pub quorate: bool,
}

impl<P: Ord + Clone> Quorum<P> {
    /// Starts from the voters remembered from before (none on a new node), not yet
    /// quorate: the first update decides.
    pub fn new(me: P, remembered: impl IntoIterator<Item = P>) -> Self {
        let mut voters: BTreeSet<P> = remembered.into_iter().collect();
        voters.insert(me.clone());
        Quorum {
            me,
            voters,
            quorate_since: None,
        }
    }

    /// Applies the rule to the members as this node sees them now.
    pub fn update<'a>(
        &mut self,
        members: impl IntoIterator<Item = (&'a P, State)>,
        now: Instant,
    ) -> Changed
    where
        P: 'a,
    {
        let members: Vec<(&P, State)> = members.into_iter().collect();
        let alive = 1 + members
            .iter()
            .filter(|(p, s)| *s == State::Alive && **p != self.me && self.voters.contains(*p))
            .count();
        let quorate = 2 * alive > self.voters.len();
        let mut changed = Changed {
            quorate: quorate != self.quorate_since.is_some(),
            voters: false,
        };
        if !quorate {
            self.quorate_since = None;
            return changed;
        }
        self.quorate_since.get_or_insert(now);
        let voters: BTreeSet<P> = members
            .iter()
            .filter(|(_, s)| *s != State::Dead)
            .map(|(p, _)| (*p).clone())
            .chain([self.me.clone()])
            .collect();
        if voters != self.voters {
            self.voters = voters;
            changed.voters = true;
        }
        changed
    }

    /// Not quorate until the next update says so, settled anew from then: for a node
    /// that missed its own clock and cannot trust what it last saw.
    pub fn interrupt(&mut self) {
        self.quorate_since = None;
    }

    /// Whether this node may run mesh workloads at all.
    pub fn quorate(&self) -> bool {
        self.quorate_since.is_some()
    }

    /// How long it has been quorate without a break.
    pub fn settled(&self, now: Instant) -> Duration {
        self.quorate_since
            .map_or(Duration::ZERO, |since| now.saturating_duration_since(since))
    }

    /// The last agreed membership, this node included.
    pub fn voters(&self) -> &BTreeSet<P> {
        &self.voters
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use State::{Alive, Dead, Suspect};
    use proptest::prelude::*;

    fn view(states: &[(u32, State)]) -> Vec<(&u32, State)> {
        states.iter().map(|(p, s)| (p, *s)).collect()
    }

    #[test]
    fn the_rule() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        // A new node is quorate alone, and takes in the members it hears.
        let mut q = Quorum::new(0u32, []);
        q.update(view(&[]), t0);
        assert!(q.quorate());
        let all = [(1, Alive), (2, Alive), (3, Alive), (4, Alive)];
        assert_eq!(
            q.update(view(&all), t0),
            Changed {
                voters: true,
                quorate: false
            }
        );
        assert_eq!(q.voters().len(), 5);
        // Two of five suspect: three alive is a majority; suspects stay voters.
        q.update(
            view(&[(1, Alive), (2, Alive), (3, Suspect), (4, Suspect)]),
            t0,
        );
        assert!(q.quorate());
        assert_eq!(q.voters().len(), 5);
        // They die: the voters shrink to the three.
        q.update(view(&[(1, Alive), (2, Alive), (3, Dead), (4, Dead)]), t0);
        assert_eq!(q.voters(), &BTreeSet::from([0, 1, 2]));
        assert_eq!(q.settled(later), Duration::from_secs(10));
        // One more suspect: two of three is still a majority.
        q.update(view(&[(1, Alive), (2, Suspect), (3, Dead), (4, Dead)]), t0);
        assert!(q.quorate());
        // Both others suspect: one of three is not. Fenced, the voters frozen.
        let changed = q.update(view(&[(1, Suspect), (2, Suspect)]), later);
        assert!(changed.quorate && !q.quorate());
        assert_eq!(q.settled(later), Duration::ZERO);
        q.update(view(&[(1, Dead), (2, Dead)]), later);
        assert_eq!(
            q.voters(),
            &BTreeSet::from([0, 1, 2]),
            "frozen while fenced"
        );
        assert!(!q.quorate());
        // One back: two of three again, settled anew from then.
        q.update(view(&[(1, Alive), (2, Dead)]), later);
        assert!(q.quorate());
        assert_eq!(
            q.settled(later + Duration::from_secs(1)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn a_restarted_node_is_fenced_until_it_sees_a_majority_of_what_it_remembers() {
        let t0 = Instant::now();
        let mut q = Quorum::new(0u32, [0, 1, 2, 3, 4]);
        q.update(view(&[]), t0);
        assert!(!q.quorate(), "alone of five");
        q.update(view(&[(1, Alive)]), t0);
        assert!(!q.quorate(), "two of five");
        // Members it never counted do not make a majority of those it did.
        q.update(view(&[(1, Alive), (7, Alive), (8, Alive)]), t0);
        assert!(!q.quorate());
        q.update(view(&[(1, Alive), (2, Alive)]), t0);
        assert!(q.quorate(), "three of five");
    }

    proptest! {
        /// Cut the voters into two sides that cannot see each other: at most one side
        /// is quorate, however each side's members fare meanwhile.
        #[test]
        fn two_sides_of_a_partition_are_never_both_quorate(
            n in 1u32..12,
            cut in proptest::collection::vec(any::<bool>(), 12),
            deaths in proptest::collection::vec(0u32..12, 0..6),
        ) {
            let t0 = Instant::now();
            let side = |p: u32| cut[p as usize];
            let mut nodes: Vec<Quorum<u32>> = (0..n).map(|me| {
                let mut q = Quorum::new(me, []);
                let everyone: Vec<(u32, State)> = (0..n).filter(|p| *p != me).map(|p| (p, Alive)).collect();
                q.update(view(&everyone), t0);
                q
            }).collect();
            // After the cut, each node sees its own side alive and the other side go
            // suspect, then dead; some of its own side may die too.
            for phase in [Suspect, Dead] {
                for me in 0..n {
                    let states: Vec<(u32, State)> = (0..n).filter(|p| *p != me).map(|p| {
                        let s = if side(p) != side(me) { phase }
                            else if deaths.contains(&p) { Dead } else { Alive };
                        (p, s)
                    }).collect();
                    nodes[me as usize].update(view(&states), t0);
                }
            }
            let quorate_sides: BTreeSet<bool> = (0..n)
                .filter(|me| !deaths.contains(me) && nodes[*me as usize].quorate())
                .map(side)
                .collect();
            prop_assert!(quorate_sides.len() <= 1, "{quorate_sides:?}");
        }
    }
}
