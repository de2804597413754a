//! The agent's side of mesh placement: what its spec offers the mesh, what it runs, and
//! which mesh workloads the mesh's view puts here, decided by `xnode_mesh::placement`.
//! A workload that comes here because the member running it was lost is a failover.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use xnode_api::mesh as api;
use xnode_mesh::node::View;
use xnode_mesh::placement::{
    CLAIM, Decision, Wanted, decide, definition_hash, lease_wait, should_hold,
};
use xnode_spec::plan::{Action, ActiveState, ObservedUnit, Op, Plan, Reason};
use xnode_spec::unit::unit_name;
use xnode_spec::{Placement as Where, Spec};

/// The spec's mesh workloads, as placement wants them.
pub fn wanted(spec: &Spec) -> Vec<Wanted> {
    spec.workloads
        .iter()
        .filter_map(|(name, w)| match &w.placement {
            Where::Mesh(m) => Some(Wanted {
                name: name.clone(),
                replicas: m.replicas as usize,
                labels: m.labels.clone(),
                hash: definition_hash(w),
                roots: w
                    .store_paths
                    .iter()
                    .filter_map(|p| xnode_nix::HashPart::of_path(p).ok().map(String::from))
                    .collect(),
            }),
            Where::Local => None,
        })
        .collect()
}

/// The mesh workloads with store paths whose closures this node should hold: those it
/// owns, and those it stands by for (`standbys` members past the owners fetch ahead).
pub fn to_hold(view: &View, wanted: &[Wanted], standbys: usize) -> BTreeSet<String> {
    let candidates: Vec<_> = view.members.iter().map(|p| p.candidate.clone()).collect();
    wanted
        .iter()
        .filter(|w| !w.roots.is_empty() && should_hold(&view.me, w, &candidates, standbys))
        .map(|w| w.name.clone())
        .collect()
}

/// The plan that stops the units of mesh workloads placement moved off this node,
/// whether or not they were seen running (a start may be under way).
pub fn stops<'a>(workloads: impl IntoIterator<Item = &'a String>) -> Plan {
    Plan {
        actions: workloads
            .into_iter()
            .map(|w| Action {
                op: Op::Stop,
                unit: unit_name(w),
                workload: w.clone(),
                reason: Reason::NotPlacedHere,
                content: None,
            })
            .collect(),
        refused: Vec::new(),
    }
}

/// The mesh workloads this node can run: not those whose store paths it lacks, nor
/// those `withdrawn` from it for failing here (`crate::backoff`).
pub fn offers(
    wanted: &[Wanted],
    not_realised: &BTreeMap<String, String>,
    withdrawn: &BTreeSet<String>,
) -> BTreeMap<String, String> {
    wanted
        .iter()
        .filter(|w| !not_realised.contains_key(&w.name) && !withdrawn.contains(&w.name))
        .map(|w| (w.name.clone(), w.hash.clone()))
        .collect()
}

/// The closures this node holds of its spec's workloads placed on it alone, for members
/// to fetch from it: the hash parts of the store paths of every one realised here.
pub fn closures(spec: &Spec, not_realised: &BTreeMap<String, String>) -> BTreeSet<String> {
    spec.workloads
        .iter()
        .filter(|(name, w)| w.placement == Where::Local && !not_realised.contains_key(*name))
        .flat_map(|(_, w)| &w.store_paths)
        .filter_map(|p| xnode_nix::HashPart::of_path(p).ok().map(String::from))
        .collect()
}

/// The mesh workloads whose units are up here — or still on their way down, since
/// a member taking one over waits until it is gone.
pub fn running(wanted: &[Wanted], observed: &[ObservedUnit]) -> BTreeSet<String> {
    wanted
        .iter()
        .filter(|w| {
            let unit = unit_name(&w.name);
            observed.iter().any(|u| {
                u.name == unit
                    && (u.active_state.is_running() || u.active_state == ActiveState::Deactivating)
            })
        })
        .map(|w| w.name.clone())
        .collect()
}

/// The last decisions, and the failovers not yet completed.
#[derive(Debug, Default)]
pub struct Placement {
    view: Option<(bool, Duration, Duration, usize)>,
    decisions: BTreeMap<String, (usize, Decision<PeerId>)>,
    /// Since when this node has owned each workload it owns and does not run yet.
    claims: BTreeMap<String, Instant>,
    /// Workloads whose claim is over (or that run here): a failed start is retried
    /// under the unit's backoff, not claimed again.
    owned: BTreeSet<String>,
    names: BTreeMap<PeerId, String>,
    /// Workloads taken over here: when the member running them was last heard.
    failing_over: BTreeMap<String, Instant>,
    /// When the lease of the member lost last runs out.
    lease_ends: Option<Instant>,
}

/// A workload that came up here after the member running it was lost.
#[derive(Debug, Clone, PartialEq)]
pub struct Failover {
    /// The workload.
    pub workload: String,
    /// From the lost member's last heartbeat to running here.
    pub took: Duration,
}

impl Placement {
    /// The mesh workloads to run here.
    pub fn placed(&self) -> BTreeSet<String> {
        self.decisions
            .iter()
            .filter(|(_, (_, d))| d.run_here)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// When to decide again though nothing new is heard: a claim waiting out
    /// [`CLAIM`], or a start held back until a lost member's lease has run out.
    pub fn next_decision(&self, now: Instant) -> Option<Instant> {
        let claims = self.claims.values().map(|since| *since + CLAIM);
        claims.chain(self.lease_ends).filter(|t| *t > now).min()
    }

    /// Decides every wanted workload from `view`, aged to `now`.
    pub fn update(&mut self, view: &View, wanted: &[Wanted], now: Instant) {
        let view = view.aged(now);
        let candidates: Vec<_> = view.members.iter().map(|p| p.candidate.clone()).collect();
        self.lease_ends = lease_wait(&candidates).map(|wait| now + wait);
        self.names = view
            .members
            .iter()
            .map(|p| (p.candidate.peer, p.node.clone()))
            .collect();
        let mut decisions = BTreeMap::new();
        let mut claims = BTreeMap::new();
        for w in wanted {
            let mut d = decide(&view.me, view.quorate, w, &candidates);
            let here = d.running.contains(&view.me);
            // The claim runs while a lost member's lease does: it is not started after.
            let wants = d.run_here || d.leased;
            if !wants {
                self.owned.remove(&w.name);
            } else if here {
                self.owned.insert(w.name.clone());
            }
            let claimed = self.claims.get(&w.name).copied();
            let owned = self.owned.contains(&w.name);
            if wants && !here && !owned && claimed.is_none() {
                // A new claim. A failover if a member that ran it is lost now.
                let before = self.decisions.get(&w.name).map(|(_, d)| d);
                let lost = before
                    .into_iter()
                    .flat_map(|b| &b.running)
                    .filter_map(|p| view.members.iter().find(|m| &m.candidate.peer == p))
                    .filter(|m| !m.candidate.live)
                    .map(|m| now.checked_sub(m.candidate.silent).unwrap_or(now))
                    .min();
                if let Some(at) = lost {
                    self.failing_over.insert(w.name.clone(), at);
                }
            }
            if wants && !here && !owned {
                let since = claimed.unwrap_or(now);
                if now.duration_since(since) < CLAIM || d.leased {
                    claims.insert(w.name.clone(), since);
                    d.run_here = false;
                    d.waiting = true;
                } else {
                    self.owned.insert(w.name.clone());
                }
            }
            if !d.run_here && !claims.contains_key(&w.name) {
                self.failing_over.remove(&w.name);
            }
            decisions.insert(w.name.clone(), (w.replicas, d));
        }
        self.failing_over
            .retain(|name, _| decisions.contains_key(name));
        self.owned.retain(|name| decisions.contains_key(name));
        self.decisions = decisions;
        self.claims = claims;
        self.view = Some((view.quorate, view.settled, view.hold_down, view.voters));
    }

    /// No mesh, or no mesh workloads: nothing is placed here.
    pub fn clear(&mut self) {
        *self = Placement::default();
    }

    /// The failovers completed by the units now `running`.
    pub fn completed(&mut self, running: &BTreeSet<String>) -> Vec<Failover> {
        let done: Vec<String> = self
            .failing_over
            .keys()
            .filter(|w| running.contains(*w))
            .cloned()
            .collect();
        done.into_iter()
            .filter_map(|w| {
                let at = self.failing_over.remove(&w)?;
                Some(Failover {
                    workload: w,
                    took: at.elapsed(),
                })
            })
            .collect()
    }

    /// What `status` shows; `withdrawn` are the workloads withdrawn from this node for
    /// failing here (`crate::backoff`).
    pub fn status(&self, withdrawn: &BTreeSet<String>) -> Option<api::Placement> {
        let (quorate, settled, hold_down, voters) = self.view?;
        let name = |p: &PeerId| self.names.get(p).cloned().unwrap_or_else(|| p.to_string());
        Some(api::Placement {
            quorate,
            settled_secs: settled.as_secs_f64(),
            hold_down_secs: hold_down.as_secs_f64(),
            voters,
            workloads: self
                .decisions
                .iter()
                .map(|(w, (replicas, d))| api::PlacedWorkload {
                    name: w.clone(),
                    replicas: *replicas,
                    owners: d.owners.iter().map(name).collect(),
                    running_on: d.running.iter().map(name).collect(),
                    here: if d.run_here {
                        "runs"
                    } else if withdrawn.contains(w) {
                        "withdrawn"
                    } else if d.waiting {
                        "waiting"
                    } else {
                        "no"
                    }
                    .into(),
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use xnode_mesh::fencing::TAKEOVER;
    use xnode_mesh::node::Placed;
    use xnode_mesh::placement::{Candidate, owners};

    fn member(peer: PeerId, live: bool, running: &[&str]) -> Placed {
        Placed {
            node: peer.to_string(),
            candidate: Candidate {
                peer,
                live,
                eligible: live,
                labels: BTreeMap::new(),
                offers: BTreeMap::from([("w".into(), "0123456789abcdef".into())]),
                running: running.iter().map(|s| (*s).to_owned()).collect(),
                closures: BTreeSet::new(),
                silent: Duration::from_millis(if live { 0 } else { 3000 }),
            },
            report: None,
        }
    }

    fn view(me: PeerId, members: Vec<Placed>) -> View {
        View {
            at: Instant::now(),
            me,
            quorate: true,
            settled: Duration::from_secs(60),
            hold_down: Duration::from_secs(5),
            voters: members.len(),
            members,
        }
    }

    /// The singleton `w`, and two peers: `other` ranks first for it, `me` takes over
    /// when `other` is lost.
    fn singleton_and_pair() -> ([Wanted; 1], PeerId, PeerId) {
        let wanted = [Wanted {
            name: "w".into(),
            replicas: 1,
            labels: BTreeMap::new(),
            hash: "0123456789abcdef".into(),
            roots: BTreeSet::new(),
        }];
        let ranked = owners("w", 2, &[PeerId::random(), PeerId::random()]);
        (wanted, ranked[0], ranked[1])
    }

    #[test]
    fn an_owner_claims_then_runs_and_counts_a_failover() {
        let (wanted, other, me) = singleton_and_pair();
        let t0 = Instant::now();
        let mut p = Placement::default();
        p.update(
            &view(me, vec![member(me, true, &[]), member(other, true, &["w"])]),
            &wanted,
            t0,
        );
        assert!(p.placed().is_empty(), "the other owns it");

        let dead = view(
            me,
            vec![member(me, true, &[]), member(other, false, &["w"])],
        );
        p.update(&dead, &wanted, t0);
        assert!(p.placed().is_empty(), "claimed, not yet started");
        assert_eq!(p.next_decision(t0), Some(t0 + CLAIM));
        p.update(&dead, &wanted, t0 + CLAIM / 2);
        assert!(p.placed().is_empty());
        p.update(&dead, &wanted, t0 + CLAIM);
        assert_eq!(p.placed(), BTreeSet::from(["w".to_owned()]));
        assert_eq!(p.next_decision(t0 + CLAIM), None);
        // A start that failed is not claimed again: it stays placed, under backoff.
        p.update(&dead, &wanted, t0 + CLAIM * 2);
        assert_eq!(p.placed(), BTreeSet::from(["w".to_owned()]));
        let done = p.completed(&BTreeSet::from(["w".to_owned()]));
        assert_eq!(done.len(), 1);
        assert!(
            done[0].took >= Duration::from_secs(3),
            "from the last heartbeat: {done:?}"
        );
        assert!(
            p.completed(&BTreeSet::from(["w".to_owned()])).is_empty(),
            "counted once"
        );
        let status = p.status(&BTreeSet::new()).unwrap();
        assert_eq!(status.workloads[0].owners, [me.to_string()]);
        assert_eq!(status.workloads[0].here, "runs");
    }

    #[test]
    fn a_takeover_waits_for_the_lost_members_lease() {
        let (wanted, other, me) = singleton_and_pair();
        // Killed: dead at once, heard 300 ms ago.
        let mut lost = member(other, false, &["w"]);
        lost.candidate.silent = Duration::from_millis(300);
        let v = view(me, vec![member(me, true, &[]), lost]);
        let mut p = Placement::default();
        p.update(&v, &wanted, v.at);
        let lease_out = v.at + TAKEOVER - Duration::from_millis(300);
        assert_eq!(p.next_decision(v.at), Some(v.at + CLAIM), "the claim first");
        p.update(&v, &wanted, v.at + CLAIM);
        assert!(p.placed().is_empty(), "the claim is over, the lease is not");
        assert_eq!(p.next_decision(v.at + CLAIM), Some(lease_out));
        p.update(&v, &wanted, lease_out);
        assert_eq!(p.placed(), BTreeSet::from(["w".to_owned()]));
    }
}
