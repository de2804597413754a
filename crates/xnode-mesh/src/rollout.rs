//! How a new fleet generation reaches the members, decided by every member alone from
//! the progress the others report in their heartbeats, with no coordinator.
//!
//! The members are ranked by rendezvous score for the generation: the first `canary`
//! move first, then `max_parallel` at a time. A member moves once every member ranked
//! in an earlier batch runs the new generation and has been healthy on it for
//! `min_healthy_time`. A member whose move fails its health gate is rolled back by its
//! own apply and says so: the generation has failed, and nobody moves to it again.
//! With `auto_revert`, every member that runs it returns to the last generation that
//! was healthy on every member. Members ranked after the canaries never run it.

use std::time::Duration;

use crate::placement::score;
use crate::report::Progress;

/// The rollout policy of a generation (the fleet spec's `rollout`, made one for the
/// whole generation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// How many move at once after the canaries (at least 1).
    pub max_parallel: u32,
    /// How many move first.
    pub canary: u32,
    /// How long a batch must be healthy before the next moves.
    pub min_healthy_time: Duration,
    /// Whether a failed generation is reverted everywhere.
    pub auto_revert: bool,
}

/// A live member as the rollout sees it, this node included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member<P> {
    /// Its id.
    pub peer: P,
    /// What it reported (its `healthy_ms` aged to now).
    pub progress: Progress,
}

/// What this node should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step<P> {
    /// Nothing to do: it runs what it should.
    Stay,
    /// Wait for these members, ranked ahead of it, to be healthy on the generation
    /// (for `left`, at most, when they all run it healthy already).
    Wait {
        /// The members it waits for.
        for_: Vec<P>,
        /// How long until the last of them has been healthy long enough, if all are.
        left: Option<Duration>,
    },
    /// Run this generation (0: no fleet workloads at all).
    Move(u64),
}

/// The overall state of the fleet's rollout, the same on every member that hears the
/// same heartbeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The newest generation any member accepted.
    pub newest: u64,
    /// The highest generation known to have failed.
    pub failed: u64,
    /// The highest generation seen healthy on every member.
    pub stable: u64,
}

/// What the members' reports and this node's own knowledge add up to: the highest of
/// each, and, when `complete` (this node hears a report from every voter, so no member
/// is missing from `members`), a generation that runs healthy on every member counts
/// as stable. A node that has just started hears only itself: what it runs is no
/// evidence of the fleet.
pub fn known<P>(mine: Known, members: &[Member<P>], complete: bool) -> Known {
    let mut k = mine;
    for m in members {
        k.failed = k.failed.max(m.progress.failed.min(k.newest));
        k.stable = k.stable.max(m.progress.stable.min(k.newest));
    }
    let taking_part: Vec<&Progress> = members
        .iter()
        .map(|m| &m.progress)
        .filter(|p| !p.conflict)
        .collect();
    if let Some(first) = taking_part.first().filter(|_| complete) {
        let g = first.running;
        let everywhere = taking_part
            .iter()
            .all(|p| p.running == g && p.healthy_ms.is_some());
        if everywhere && g > k.stable && g != k.failed {
            k.stable = g;
        }
    }
    k
}

/// Where the rollout of the newest generation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No fleet spec yet.
    None,
    /// Every member taking part runs the newest generation healthy.
    Done,
    /// Members are moving to it.
    RollingOut,
    /// It failed on a member: nobody else moves to it.
    Halted,
}

impl Phase {
    /// Its name, as `xnodectl fleet status` and the metrics show it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::None => "none",
            Phase::Done => "done",
            Phase::RollingOut => "rolling out",
            Phase::Halted => "halted",
        }
    }
}

/// The rollout in brief: its phase, and how many of the members taking part run the
/// newest generation healthy.
pub fn summary<P>(known: Known, members: &[Member<P>]) -> (Phase, usize, usize) {
    let taking_part: Vec<&Progress> = members
        .iter()
        .map(|m| &m.progress)
        .filter(|p| !p.conflict)
        .collect();
    let done = taking_part
        .iter()
        .filter(|p| p.running == known.newest && p.healthy_ms.is_some())
        .count();
    let phase = match known.newest {
        0 => Phase::None,
        n if known.failed >= n => Phase::Halted,
        _ if done == taking_part.len() => Phase::Done,
        _ => Phase::RollingOut,
    };
    (phase, done, taking_part.len())
}

/// The order in which members move to `generation`: highest score first, ties by id.
pub fn ranked<P: ToString>(generation: u64, members: &[Member<P>]) -> Vec<&Member<P>> {
    let key = format!("fleet/{generation}");
    let mut ranked: Vec<(u64, String, &Member<P>)> = members
        .iter()
        .filter(|m| !m.progress.conflict)
        .map(|m| {
            let id = m.peer.to_string();
            (score(&key, &id), id, m)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    ranked.into_iter().map(|(_, _, m)| m).collect()
}

/// The batch a member at `rank` moves in: 0 for the canaries.
fn batch(rank: usize, policy: &Policy) -> usize {
    let canary = policy.canary as usize;
    if rank < canary {
        0
    } else {
        1 + (rank - canary) / (policy.max_parallel.max(1) as usize)
    }
}

/// What `me` (among `members`, with what it knows in `known`) does next. `policy` is
/// the newest generation's.
pub fn step<P: ToString + Clone + Eq>(
    me: &P,
    members: &[Member<P>],
    known: Known,
    policy: &Policy,
) -> Step<P> {
    let Some(mine) = members.iter().find(|m| m.peer == *me) else {
        return Step::Stay;
    };
    let running = mine.progress.running;
    if known.failed >= known.newest && known.newest > 0 {
        // Halted. The members that run it (or anything newer than what was healthy
        // everywhere) go back, if the policy says so; the others stay where they are.
        let back = policy.auto_revert && running > known.stable;
        return if back {
            Step::Move(known.stable)
        } else {
            Step::Stay
        };
    }
    if running == known.newest || mine.progress.conflict || mine.progress.newest < known.newest {
        // It has it, cannot run it, or has yet to fetch it.
        return Step::Stay;
    }
    let order = ranked(known.newest, members);
    let Some(rank) = order.iter().position(|m| m.peer == *me) else {
        return Step::Stay;
    };
    let mine_batch = batch(rank, policy);
    let ahead = order[..rank]
        .iter()
        .enumerate()
        .filter(|(i, _)| batch(*i, policy) < mine_batch)
        .map(|(_, m)| m);
    let mut waiting = Vec::new();
    let mut left = Duration::ZERO;
    for m in ahead {
        let healthy = (m.progress.running == known.newest)
            .then_some(m.progress.healthy_ms)
            .flatten()
            .map(Duration::from_millis);
        match healthy {
            Some(h) if h >= policy.min_healthy_time => {}
            Some(h) => {
                left = left.max(policy.min_healthy_time - h);
                waiting.push(m.peer.clone());
            }
            None => {
                waiting.push(m.peer.clone());
                left = Duration::MAX;
            }
        }
    }
    if waiting.is_empty() {
        Step::Move(known.newest)
    } else {
        Step::Wait {
            for_: waiting,
            left: (left != Duration::MAX).then_some(left),
        }
    }
}

#[cfg(test)]
mod tests;
