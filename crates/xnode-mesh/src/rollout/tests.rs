use proptest::prelude::*;

use super::*;

fn policy(canary: u32, max_parallel: u32) -> Policy {
    Policy {
        max_parallel,
        canary,
        min_healthy_time: Duration::from_secs(10),
        auto_revert: true,
    }
}

fn member(peer: &str, newest: u64, running: u64, healthy_s: Option<u64>) -> Member<String> {
    Member {
        peer: peer.into(),
        progress: Progress {
            newest,
            running,
            healthy_ms: healthy_s.map(|s| s * 1000),
            ..Progress::default()
        },
    }
}

fn known(newest: u64, failed: u64, stable: u64) -> Known {
    Known {
        newest,
        failed,
        stable,
    }
}

/// The members of a five-member fleet in the order they move to generation 2.
fn order() -> Vec<String> {
    let members: Vec<Member<String>> = (0..5)
        .map(|i| member(&format!("n{i}"), 2, 1, Some(60)))
        .collect();
    ranked(2, &members).iter().map(|m| m.peer.clone()).collect()
}

#[test]
fn the_canary_moves_first_and_the_next_waits_until_it_has_been_healthy_long_enough() {
    let o = order();
    let fleet = |canary_healthy: Option<u64>| -> Vec<Member<String>> {
        o.iter()
            .enumerate()
            .map(|(i, p)| {
                if i == 0 {
                    member(
                        p,
                        2,
                        if canary_healthy.is_some() { 2 } else { 1 },
                        canary_healthy,
                    )
                } else {
                    member(p, 2, 1, Some(60))
                }
            })
            .collect()
    };
    let k = known(2, 0, 1);
    let p = policy(1, 1);
    let before = fleet(None);
    assert_eq!(step(&o[0], &before, k, &p), Step::Move(2), "the canary");
    for later in &o[1..] {
        assert!(
            matches!(step(later, &before, k, &p), Step::Wait { ref for_, left: None } if for_[0] == o[0]),
            "{later} waits for the canary"
        );
    }
    let young = fleet(Some(4));
    assert_eq!(
        step(&o[1], &young, k, &p),
        Step::Wait {
            for_: vec![o[0].clone()],
            left: Some(Duration::from_secs(6))
        }
    );
    let proven = fleet(Some(10));
    assert_eq!(step(&o[1], &proven, k, &p), Step::Move(2));
    assert!(matches!(step(&o[2], &proven, k, &p), Step::Wait { .. }));
    assert_eq!(step(&o[0], &proven, k, &p), Step::Stay, "it runs it");
}

#[test]
fn batches_follow_canary_and_max_parallel() {
    let o = order();
    // No canary, two at a time: the first two move together, the next two after them.
    let all_old: Vec<Member<String>> = o.iter().map(|p| member(p, 2, 1, Some(60))).collect();
    let k = known(2, 0, 1);
    let p = policy(0, 2);
    let moves: Vec<bool> = o
        .iter()
        .map(|me| step(me, &all_old, k, &p) == Step::Move(2))
        .collect();
    assert_eq!(moves, [true, true, false, false, false]);
    // Two canaries, then three at a time.
    let p = policy(2, 3);
    let mut fleet = all_old.clone();
    for m in fleet.iter_mut().take(2) {
        m.progress.running = 2;
        m.progress.healthy_ms = Some(10_000);
    }
    let moves: Vec<bool> = o
        .iter()
        .map(|me| step(me, &fleet, k, &p) == Step::Move(2))
        .collect();
    assert_eq!(moves, [false, false, true, true, true]);
}

#[test]
fn a_failed_generation_halts_and_reverts_only_those_that_run_it() {
    let o = order();
    let mut fleet: Vec<Member<String>> = o.iter().map(|p| member(p, 2, 1, Some(60))).collect();
    // The canary's gate failed: its apply put generation 1 back, and it says 2 failed.
    fleet[0].progress.failed = 2;
    let k = super::known(known(2, 0, 1), &fleet, true);
    assert_eq!(k, known(2, 2, 1), "everyone learns of the failure");
    for me in &o {
        assert_eq!(step(me, &fleet, k, &policy(1, 1)), Step::Stay, "{me}");
    }
    // With two canaries, one of which passed: it goes back to 1; nobody else moves.
    fleet[1].progress.running = 2;
    let moves: Vec<Step<String>> = o
        .iter()
        .map(|me| step(me, &fleet, k, &policy(2, 1)))
        .collect();
    assert_eq!(
        moves,
        [
            Step::Stay,
            Step::Move(1),
            Step::Stay,
            Step::Stay,
            Step::Stay
        ]
    );
    let keep = Policy {
        auto_revert: false,
        ..policy(2, 1)
    };
    assert_eq!(step(&o[1], &fleet, k, &keep), Step::Stay, "no auto_revert");
    // A new generation starts a new rollout.
    let k3 = super::known(known(3, 2, 1), &fleet, true);
    for m in &mut fleet {
        m.progress.newest = 3;
    }
    let first = ranked(3, &fleet)[0].peer.clone();
    assert_eq!(step(&first, &fleet, k3, &policy(1, 1)), Step::Move(3));
}

#[test]
fn stable_is_what_every_member_runs_healthy_and_conflicted_members_are_left_out() {
    let mut fleet: Vec<Member<String>> = (0..3)
        .map(|i| member(&format!("n{i}"), 2, 2, Some(1)))
        .collect();
    assert_eq!(super::known(known(2, 0, 1), &fleet, true).stable, 2);
    fleet[2].progress.running = 1;
    assert_eq!(super::known(known(2, 0, 1), &fleet, true).stable, 1);
    fleet[2].progress.conflict = true;
    assert_eq!(super::known(known(2, 0, 1), &fleet, true).stable, 2);
    assert_eq!(
        step(&"n2".to_string(), &fleet, known(2, 0, 1), &policy(0, 5)),
        Step::Stay
    );
    fleet[0].progress.healthy_ms = None;
    assert_eq!(
        super::known(known(2, 0, 1), &fleet, true).stable,
        1,
        "one is not healthy"
    );
    // What a member says is never taken beyond what this node knows is newest.
    fleet[1].progress.stable = 9;
    fleet[1].progress.failed = 9;
    assert_eq!(super::known(known(2, 0, 1), &fleet, true), known(2, 2, 2));
}

#[test]
fn a_member_that_has_not_fetched_the_generation_waits_for_it() {
    let fleet = vec![member("a", 1, 1, Some(60)), member("b", 2, 1, Some(60))];
    assert_eq!(
        step(&"a".to_string(), &fleet, known(2, 0, 1), &policy(0, 5)),
        Step::Stay
    );
    assert_eq!(
        step(&"b".to_string(), &fleet, known(2, 0, 1), &policy(0, 5)),
        Step::Move(2)
    );
}

/// Every member steps at once, each seeing what the others reported at the last
/// tick; a move takes one tick, then the member is healthy (or, for a bad generation,
/// rolled back and says it failed).
fn simulate(n: usize, canary: u32, max_parallel: u32, bad: bool) -> (usize, Vec<u64>, usize) {
    let p = Policy {
        min_healthy_time: Duration::ZERO,
        ..policy(canary, max_parallel)
    };
    let mut fleet: Vec<Member<String>> = (0..n)
        .map(|i| member(&format!("12D3KooW{i}"), 2, 1, Some(60)))
        .collect();
    let mut mine: Vec<Known> = vec![known(2, 0, 1); n];
    let mut most_moving = 0;
    let mut ever_ran = vec![false; n];
    for _ in 0..(4 * n + 8) {
        let seen = fleet.clone();
        let moving = seen
            .iter()
            .filter(|m| m.progress.healthy_ms.is_none())
            .count();
        most_moving = most_moving.max(moving);
        for (i, m) in fleet.iter_mut().enumerate() {
            // Last tick's move ends.
            if m.progress.healthy_ms.is_none() {
                if bad && m.progress.running == 2 {
                    m.progress.running = 1;
                    m.progress.failed = 2;
                }
                m.progress.healthy_ms = Some(0);
                continue;
            }
            mine[i] = super::known(mine[i], &seen, true);
            m.progress.failed = mine[i].failed;
            m.progress.stable = mine[i].stable;
            if let Step::Move(g) = step(&m.peer, &seen, mine[i], &p) {
                m.progress.running = g;
                m.progress.healthy_ms = None;
                ever_ran[i] |= g == 2;
            }
        }
    }
    let ran = ever_ran.iter().filter(|r| **r).count();
    (
        most_moving,
        fleet.iter().map(|m| m.progress.running).collect(),
        ran,
    )
}

proptest! {
    #[test]
    fn a_good_generation_reaches_everyone_a_batch_at_a_time(
        n in 1usize..12, canary in 0u32..3, max_parallel in 1u32..4
    ) {
        let (most_moving, running, _) = simulate(n, canary, max_parallel, false);
        let batch = canary.max(max_parallel) as usize;
        prop_assert!(most_moving <= batch, "{most_moving} moved at once");
        prop_assert!(running.iter().all(|g| *g == 2), "{running:?}");
    }

    #[test]
    fn a_bad_generation_never_goes_past_the_first_batch(
        n in 1usize..12, canary in 0u32..3, max_parallel in 1u32..4
    ) {
        let (_, running, ran) = simulate(n, canary, max_parallel, true);
        let first = if canary > 0 { canary } else { max_parallel } as usize;
        prop_assert!(ran <= first.min(n), "{ran} members ran it");
        prop_assert!(running.iter().all(|g| *g == 1), "all back on 1: {running:?}");
    }
}

#[test]
fn the_summary_counts_members_on_the_newest_generation() {
    let mut fleet = vec![member("a", 2, 2, Some(1)), member("b", 2, 1, Some(60))];
    assert_eq!(summary(known(2, 0, 1), &fleet), (Phase::RollingOut, 1, 2));
    fleet[1].progress.conflict = true;
    assert_eq!(summary(known(2, 0, 1), &fleet), (Phase::Done, 1, 1));
    assert_eq!(summary(known(2, 2, 1), &fleet).0, Phase::Halted);
    assert_eq!(summary(known(0, 0, 0), &fleet).0, Phase::None);
}
