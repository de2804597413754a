//! Which members run a mesh workload, decided by every node alone from its own view of
//! the membership, with no coordinator: rendezvous (highest random weight) hashing.
//!
//! Each eligible member that can run a workload gets the score
//! `sha256(workload ‖ 0 ‖ peer id)`; the `replicas` highest are its owners. Nodes that
//! see the same members compute the same owners, and a member that comes or goes
//! moves only the workloads it wins or held — about 1/n of them.
//!
//! Members that hold a workload's closure (its store paths, fetched ahead by the
//! next-ranked members: [`should_hold`]) rank before those that would have to download
//! it, so a failover goes where nothing need be fetched.
//!
//! Owning is not yet running: an owner starts a workload only while fewer than
//! `replicas` other live members say they run it, so a workload handed from one live
//! member to another is stopped there before it starts here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use sha2::{Digest as _, Sha256};

use crate::fencing::TAKEOVER;

/// How long a member must have been quorate, without a break, before it owns mesh
/// workloads: a node that flaps or has just come back does not pull workloads to
/// itself. Every member judges every other by it, so it is the same on all of them.
pub const HOLD_DOWN: Duration = Duration::from_secs(5);

/// How long a node must have owned a workload before it starts it: two heartbeats, so
/// that when owners change (a member passing its hold-down, say) every member's view
/// has caught up, and the member that is no longer owner does not start it too.
pub const CLAIM: Duration = Duration::from_secs(1);

/// A workload as this node's spec places it on the mesh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    /// The workload's name.
    pub name: String,
    /// How many members run it at once.
    pub replicas: usize,
    /// Labels a member must carry.
    pub labels: BTreeMap<String, String>,
    /// The hash of its definition: members run the same workload only if they agree
    /// on what it is.
    pub hash: String,
    /// The hash parts of its store paths: a member that holds them all (and so their
    /// closures) starts it with no download.
    pub roots: BTreeSet<String>,
}

/// A member (this node included) as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<P> {
    /// Its id.
    pub peer: P,
    /// Not dead: its reports still count.
    pub live: bool,
    /// Live and settled for the hold-down: it may own workloads.
    pub eligible: bool,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The mesh workloads it can run: name → definition hash.
    pub offers: BTreeMap<String, String>,
    /// The mesh workloads it says it runs.
    pub running: BTreeSet<String>,
    /// The closures it holds: their roots' hash parts.
    pub closures: BTreeSet<String>,
    /// How long since it was last heard (zero for this node).
    pub silent: Duration,
}

impl<P> Candidate<P> {
    /// Whether it holds `w`'s closure.
    fn holds(&self, w: &Wanted) -> bool {
        w.roots.iter().all(|r| self.closures.contains(r))
    }

    /// Whether it is lost but may still run `workload` under its lease: it offered or
    /// ran it, and was heard less than [`TAKEOVER`] ago.
    fn may_still_run(&self, workload: &str) -> bool {
        !self.live
            && self.silent < TAKEOVER
            && (self.offers.contains_key(workload) || self.running.contains(workload))
    }
}

/// How long until a lost member's lease has surely run out, so a start it holds back
/// may go ahead: when to decide again.
pub fn lease_wait<P>(members: &[Candidate<P>]) -> Option<Duration> {
    members
        .iter()
        .filter(|c| !c.live && c.silent < TAKEOVER)
        .map(|c| TAKEOVER - c.silent)
        .min()
}

/// What this node makes of one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<P> {
    /// Who should run it, best first.
    pub owners: Vec<P>,
    /// Live members that run it now.
    pub running: Vec<P>,
    /// Whether this node runs it.
    pub run_here: bool,
    /// This node owns it but waits for a member still running it to stop, or for a
    /// lost member's lease to run out.
    pub waiting: bool,
    /// Of those waits, the lease: nothing else holds this node back.
    pub leased: bool,
}

/// What members compare to agree that they run the same workload: 16 hex digits of
/// the sha256 of its canonical definition, placement included.
pub fn definition_hash(w: &xnode_spec::Workload) -> String {
    let value = serde_json::to_value(w).unwrap_or_default();
    let digest = Sha256::digest(xnode_spec::canonical_json(&value));
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

/// The rendezvous score of `peer` for `workload`.
pub fn score(workload: &str, peer: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(workload.as_bytes())
        .chain_update([0])
        .chain_update(peer.as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// The `replicas` peers of `peers` that rank highest for `workload`, best first.
pub fn owners<'a, P: ToString + Clone + 'a>(
    workload: &str,
    replicas: usize,
    peers: impl IntoIterator<Item = &'a P>,
) -> Vec<P> {
    let mut ranked: Vec<(u64, String, &P)> = peers
        .into_iter()
        .map(|p| {
            let id = p.to_string();
            (score(workload, &id), id, p)
        })
        .collect();
    // Ties (never seen with sha256, but possible) go by id, the same on every node.
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    ranked
        .into_iter()
        .take(replicas)
        .map(|(_, _, p)| p.clone())
        .collect()
}

/// The `replicas` owners of `wanted` among `able`. With store paths: those that run
/// it, then those that hold its closure, then the rest, each group by rendezvous
/// score. (One that runs it keeps it: a member that finishes fetching later, or first
/// holds a new definition's closure, does not take it away.) Without: by score alone.
fn owners_holding_first<P: ToString + Clone>(wanted: &Wanted, able: &[&Candidate<P>]) -> Vec<P> {
    let rank = |c: &Candidate<P>| {
        if wanted.roots.is_empty() || c.running.contains(&wanted.name) {
            0
        } else if c.holds(wanted) {
            1
        } else {
            2
        }
    };
    let mut chosen: Vec<P> = Vec::new();
    for group in 0..3 {
        let more = wanted.replicas.saturating_sub(chosen.len());
        let peers = able.iter().filter(|c| rank(c) == group).map(|c| &c.peer);
        chosen.extend(owners(&wanted.name, more, peers));
    }
    chosen
}

/// Whether `me` should hold `wanted`'s closure: it owns the workload, or it is among
/// the `standbys` members ranked next by rendezvous score (not by holding, so the
/// standbys stay put while they fetch) that would take it over.
pub fn should_hold<P: ToString + Clone + Eq>(
    me: &P,
    wanted: &Wanted,
    members: &[Candidate<P>],
    standbys: usize,
) -> bool {
    let able: Vec<&Candidate<P>> = members
        .iter()
        .filter(|c| c.eligible && can_run(c, wanted))
        .collect();
    owners_holding_first(wanted, &able).contains(me)
        || owners(
            &wanted.name,
            wanted.replicas + standbys,
            able.iter().map(|c| &c.peer),
        )
        .contains(me)
}

fn can_run<P>(c: &Candidate<P>, w: &Wanted) -> bool {
    c.offers.get(&w.name) == Some(&w.hash)
        && w.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v))
}

/// Decides `wanted` for the node `me`, which is among `members`. A node that is not
/// quorate (fenced) runs nothing.
pub fn decide<P: ToString + Clone + Eq>(
    me: &P,
    quorate: bool,
    wanted: &Wanted,
    members: &[Candidate<P>],
) -> Decision<P> {
    let able: Vec<&Candidate<P>> = members
        .iter()
        .filter(|c| c.eligible && can_run(c, wanted))
        .collect();
    let owners = owners_holding_first(wanted, &able);
    // Every live member that runs it counts, whatever it makes of it: one still
    // running an older definition, or no longer matching the labels, must stop first.
    let running: Vec<P> = members
        .iter()
        .filter(|c| c.live && c.running.contains(&wanted.name))
        .map(|c| c.peer.clone())
        .collect();
    let here = running.contains(me);
    let others = running.len() - usize::from(here);
    let owner = quorate && owners.contains(me);
    // A lost member may still run it until its lease runs out (crate::fencing).
    let free = owner && (here || others < wanted.replicas);
    let leased = free && !here && members.iter().any(|c| c.may_still_run(&wanted.name));
    let run_here = free && !leased;
    Decision {
        owners,
        running,
        run_here,
        waiting: owner && !run_here,
        leased,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wanted(name: &str, replicas: usize) -> Wanted {
        Wanted {
            name: name.into(),
            replicas,
            labels: BTreeMap::new(),
            hash: "h1".into(),
            roots: BTreeSet::new(),
        }
    }

    fn member(peer: &str) -> Candidate<String> {
        Candidate {
            peer: peer.into(),
            live: true,
            eligible: true,
            labels: BTreeMap::new(),
            offers: BTreeMap::from([("w".into(), "h1".into())]),
            running: BTreeSet::new(),
            closures: BTreeSet::new(),
            silent: Duration::ZERO,
        }
    }

    fn nodes(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn decisions() {
        let all = || ["a", "b", "c", "d", "e"].map(member).to_vec();
        let w = wanted("w", 1);
        let peers: Vec<String> = all().into_iter().map(|c| c.peer).collect();
        let ranked = owners("w", 5, &peers);
        let (top, second) = (ranked[0].clone(), ranked[1].clone());
        let with = |f: &dyn Fn(&mut Vec<Candidate<String>>)| {
            let mut m = all();
            f(&mut m);
            m
        };
        let at = |m: &[Candidate<String>], p: &str| m.iter().position(|c| c.peer == p).unwrap();
        type Case<'a> = (&'a str, Vec<Candidate<String>>, &'a str, bool, bool, bool);
        // (what, members, me, quorate, run_here, waiting)
        let cases: Vec<Case> = vec![
            ("the top scorer runs it", all(), &top, true, true, false),
            ("no one else does", all(), &second, true, false, false),
            ("not while fenced", all(), &top, false, false, false),
            (
                "the next one takes over from a dead owner once its lease is out",
                with(&|m| {
                    let i = at(m, &top);
                    m[i].live = false;
                    m[i].eligible = false;
                    m[i].running.insert("w".into());
                    m[i].silent = TAKEOVER;
                }),
                &second,
                true,
                true,
                false,
            ),
            (
                "but not while the dead owner may still hold its lease",
                with(&|m| {
                    let i = at(m, &top);
                    m[i].live = false;
                    m[i].eligible = false;
                    m[i].running.insert("w".into());
                    m[i].silent = TAKEOVER - Duration::from_millis(1);
                }),
                &second,
                true,
                false,
                true,
            ),
            (
                "nor while a lost member that offered it may have started it",
                with(&|m| {
                    let i = at(m, &top);
                    m[i].live = false;
                    m[i].eligible = false;
                    m[i].silent = Duration::from_millis(100);
                }),
                &second,
                true,
                false,
                true,
            ),
            (
                "a lost member that never offered it holds nothing back",
                with(&|m| {
                    let i = at(m, &top);
                    m[i].live = false;
                    m[i].eligible = false;
                    m[i].offers.clear();
                    m[i].silent = Duration::from_millis(100);
                }),
                &second,
                true,
                true,
                false,
            ),
            (
                "an owner waits while a live member still runs it",
                with(&|m| {
                    let i = at(m, &second);
                    m[i].running.insert("w".into());
                }),
                &top,
                true,
                false,
                true,
            ),
            (
                "and keeps running what it already runs",
                with(&|m| {
                    for p in [&top, &second] {
                        let i = at(m, p);
                        m[i].running.insert("w".into());
                    }
                }),
                &top,
                true,
                true,
                false,
            ),
            (
                "a member in its hold-down owns nothing",
                with(&|m| {
                    let i = at(m, &top);
                    m[i].eligible = false;
                }),
                &second,
                true,
                true,
                false,
            ),
            (
                "a member running another definition of it must stop first",
                with(&|m| {
                    let i = at(m, &second);
                    m[i].offers.insert("w".into(), "h2".into());
                    m[i].running.insert("w".into());
                }),
                &top,
                true,
                false,
                true,
            ),
            (
                "a member with another definition is no candidate",
                with(&|m| {
                    let i = at(m, &top);
                    m[i].offers.insert("w".into(), "h2".into());
                }),
                &second,
                true,
                true,
                false,
            ),
        ];
        for (what, members, me, quorate, run_here, waiting) in cases {
            let d = decide(&me.to_owned(), quorate, &w, &members);
            assert_eq!(
                (d.run_here, d.waiting),
                (run_here, waiting),
                "{what}: {d:?}"
            );
        }
    }

    #[test]
    fn a_start_held_back_by_a_lease_is_decided_again_when_it_runs_out() {
        let mut members = vec![member("a"), member("b"), member("c")];
        assert_eq!(lease_wait(&members), None);
        members[1].live = false;
        members[1].silent = Duration::from_millis(300);
        members[2].live = false;
        members[2].silent = TAKEOVER + Duration::from_secs(1);
        assert_eq!(
            lease_wait(&members),
            Some(TAKEOVER - Duration::from_millis(300))
        );
    }

    #[test]
    fn labels_constrain_the_owners() {
        let mut members: Vec<Candidate<String>> = nodes(6).iter().map(|p| member(p)).collect();
        for c in members.iter_mut().step_by(2) {
            c.labels.insert("disk".into(), "ssd".into());
        }
        let mut w = wanted("w", 2);
        w.labels.insert("disk".into(), "ssd".into());
        let d = decide(&members[0].peer.clone(), true, &w, &members);
        assert_eq!(d.owners.len(), 2);
        for o in &d.owners {
            let c = members.iter().find(|c| &c.peer == o).unwrap();
            assert_eq!(c.labels.get("disk").map(String::as_str), Some("ssd"));
        }
        w.labels.insert("gpu".into(), "yes".into());
        assert!(
            decide(&members[0].peer.clone(), true, &w, &members)
                .owners
                .is_empty()
        );
    }

    #[test]
    fn holders_of_the_closure_own_first_and_the_next_ranked_fetch_it_ahead() {
        let members: Vec<Candidate<String>> = nodes(5).iter().map(|p| member(p)).collect();
        let mut w = wanted("w", 1);
        w.roots.insert("r".repeat(32));
        let peers: Vec<String> = members.iter().map(|c| c.peer.clone()).collect();
        let ranked = owners("w", 5, &peers);
        let at = |p: &str| members.iter().position(|c| c.peer == p).unwrap();
        // No one holds it: the top scorer owns it; it and the next one fetch it.
        let d = decide(&ranked[0], true, &w, &members);
        assert_eq!(d.owners, [ranked[0].clone()]);
        let fetchers: Vec<&String> = ranked
            .iter()
            .filter(|p| should_hold(*p, &w, &members, 1))
            .collect();
        assert_eq!(fetchers, [&ranked[0], &ranked[1]]);
        assert!(
            ranked
                .iter()
                .all(|p| !should_hold(p, &w, &members, 0) || *p == ranked[0])
        );
        // Only the fourth holds it: it owns it, and still the top two fetch it.
        let mut held = members.clone();
        held[at(&ranked[3])].closures = w.roots.clone();
        assert_eq!(
            decide(&ranked[0], true, &w, &held).owners,
            [ranked[3].clone()]
        );
        assert!(should_hold(&ranked[0], &w, &held, 1) && should_hold(&ranked[1], &w, &held, 1));
        assert!(!should_hold(&ranked[2], &w, &held, 1));
        // Once the top two hold it too, the top scorer owns it again, unless the
        // fourth runs it: one that runs it keeps it.
        for p in &ranked[..2] {
            held[at(p)].closures = w.roots.clone();
        }
        assert_eq!(
            decide(&ranked[0], true, &w, &held).owners,
            [ranked[0].clone()]
        );
        held[at(&ranked[3])].running.insert("w".into());
        assert_eq!(
            decide(&ranked[0], true, &w, &held).owners,
            [ranked[3].clone()]
        );
        // A new definition it does not hold yet: it keeps running it meanwhile.
        held[at(&ranked[3])].closures.clear();
        assert_eq!(
            decide(&ranked[0], true, &w, &held).owners,
            [ranked[3].clone()]
        );
        // A workload with no store paths is held by everyone: score alone decides.
        let plain = wanted("w", 1);
        assert_eq!(
            decide(&ranked[0], true, &plain, &held).owners,
            [ranked[0].clone()]
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]

        #[test]
        fn removing_a_node_moves_only_its_workloads(n in 2usize..30, gone in 0usize..30, replicas in 1usize..4) {
            let all = nodes(n);
            let gone = &all[gone % n];
            let rest: Vec<String> = all.iter().filter(|p| *p != gone).cloned().collect();
            for i in 0..200 {
                let w = format!("workload-{i}");
                let before = owners(&w, replicas, &all);
                let after = owners(&w, replicas, &rest);
                let kept: Vec<&String> = before.iter().filter(|p| *p != gone).collect();
                // Every owner that is still there stays an owner, in the same order.
                prop_assert_eq!(&after.iter().take(kept.len()).collect::<Vec<_>>(), &kept);
                if !before.contains(gone) {
                    prop_assert_eq!(&after, &before);
                }
            }
        }

        #[test]
        fn adding_a_node_moves_about_one_in_n(n in 2usize..20) {
            let before_nodes = nodes(n);
            let after_nodes = nodes(n + 1);
            let new = &after_nodes[n];
            let total = 2000;
            let mut moved = 0;
            for i in 0..total {
                let w = format!("workload-{i}");
                let before = owners(&w, 1, &before_nodes);
                let after = owners(&w, 1, &after_nodes);
                if before != after {
                    // Whatever moves, moves to the new node.
                    prop_assert_eq!(&after[0], new);
                    moved += 1;
                }
            }
            let share = f64::from(moved) / f64::from(total);
            let expected = 1.0 / (n as f64 + 1.0);
            prop_assert!((share - expected).abs() < 0.35 * expected + 0.01,
                "moved {share:.3} of the workloads, expected about {expected:.3}");
        }
    }
}
