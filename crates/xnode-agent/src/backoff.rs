//! A mesh replica that keeps failing here is withdrawn from this node for a while, so
//! placement moves it to a member where it may run. Placement alone moves work only
//! when a member dies; a node whose disk, kernel or neighbours break one workload
//! would otherwise keep it, crash-looping, for ever.
//!
//! Failing means restarting (systemd's NRestarts going up) or being given up on (the
//! unit failed). [`FAILURES`] restarts within [`WINDOW`], or one give-up, withdraw the
//! workload for [`FIRST`], doubled at each withdrawal in a row up to [`LONGEST`]. The
//! node stops offering it, so every member places it elsewhere, and offers it again
//! when the period is over.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use xnode_spec::Validated;
use xnode_spec::unit::unit_name;

use crate::units::Units;

/// How often the placed workloads' units are looked at.
pub const EVERY: Duration = Duration::from_secs(2);

/// Restarts within [`WINDOW`] that withdraw a workload.
pub const FAILURES: usize = 3;

/// How far back restarts count.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The first withdrawal's length.
pub const FIRST: Duration = Duration::from_secs(60);

/// The longest withdrawal.
pub const LONGEST: Duration = Duration::from_secs(16 * 60);

/// Without a withdrawal for this long, the next one is [`FIRST`] again.
pub const FORGIVEN: Duration = Duration::from_secs(60 * 60);

/// One workload's record here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Track {
    /// NRestarts when last seen running here.
    restarts: Option<u32>,
    /// Whether it was failed when last seen.
    failed: bool,
    /// When it failed, within [`WINDOW`].
    failures: VecDeque<Instant>,
    /// Withdrawn until then.
    until: Option<Instant>,
    /// The last withdrawal's length.
    last: Option<Duration>,
}

/// What each placed workload's unit was seen doing. Pure: table-tested.
#[derive(Debug, Clone, Default)]
pub struct Tracker {
    workloads: BTreeMap<String, Track>,
}

impl Tracker {
    /// Records a look at `name`'s unit: its NRestarts (none when it does not run) and
    /// whether it failed. Returns the length of a withdrawal this look starts.
    pub fn record(
        &mut self,
        name: &str,
        restarts: Option<u32>,
        failed: bool,
        now: Instant,
    ) -> Option<Duration> {
        let seen = self.workloads.contains_key(name);
        let t = self.workloads.entry(name.to_owned()).or_default();
        // A unit already failed when first seen (xnoded restarted, say) is counted
        // when it fails again, not now.
        if !seen {
            t.failed = failed;
        }
        // A start by hand or by placement resets NRestarts: a drop is no failure.
        let restarted = match (t.restarts, restarts) {
            (Some(before), Some(after)) if after > before => (after - before) as usize,
            _ => 0,
        };
        if restarts.is_some() {
            t.restarts = restarts;
        }
        let gave_up = failed && !t.failed;
        t.failed = failed;
        t.failures
            .extend(std::iter::repeat_n(now, restarted.min(FAILURES)));
        while t.failures.front().is_some_and(|at| now - *at > WINDOW) {
            t.failures.pop_front();
        }
        let withdrawn = t.until.is_some_and(|until| now < until);
        if withdrawn || !(gave_up || t.failures.len() >= FAILURES) {
            return None;
        }
        let long = match (t.last, t.until) {
            (Some(last), Some(until)) if now - until < FORGIVEN => (last * 2).min(LONGEST),
            _ => FIRST,
        };
        t.until = Some(now + long);
        t.last = Some(long);
        t.failures.clear();
        t.restarts = None;
        Some(long)
    }

    /// The workloads withdrawn from this node at `now`.
    pub fn withdrawn(&self, now: Instant) -> BTreeSet<String> {
        self.workloads
            .iter()
            .filter(|(_, t)| t.until.is_some_and(|until| now < until))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Forgets the workloads no longer in the spec.
    pub fn keep(&mut self, wanted: &BTreeSet<String>) {
        self.workloads.retain(|name, _| wanted.contains(name));
    }
}

/// Looks at the units of the mesh workloads `placed` here (of the spec in force) every [`EVERY`], and
/// publishes the workloads withdrawn from this node whenever that set changes. Ends
/// when the receivers are gone.
pub async fn run<U: Units + Send + Sync + 'static>(
    units: Arc<U>,
    spec: watch::Receiver<Option<Arc<Validated>>>,
    placed: watch::Receiver<BTreeSet<String>>,
    out: watch::Sender<BTreeSet<String>>,
) {
    let mut tracker = Tracker::default();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !out.is_closed() {
        tick.tick().await;
        let wanted: BTreeSet<String> = spec
            .borrow()
            .iter()
            .flat_map(|v| v.spec.workloads.keys().cloned())
            .collect();
        tracker.keep(&wanted);
        let placed = placed.borrow().clone();
        if !placed.is_empty()
            && let Ok(states) = units.states().await
        {
            for name in &placed {
                let unit = unit_name(name);
                let state = states.iter().find(|(u, ..)| *u == unit);
                let failed = state.is_some_and(|(_, active, _)| active == "failed");
                let restarts = match state {
                    Some(_) => units.usage(&unit).await.ok().map(|u| u.restarts),
                    None => None,
                };
                if let Some(long) = tracker.record(name, restarts, failed, Instant::now()) {
                    tracing::warn!(
                        workload = name,
                        "{name} keeps failing here; withdrawn from this node for {} s, so \
                         placement moves it elsewhere",
                        long.as_secs()
                    );
                }
            }
        }
        let now = tracker.withdrawn(Instant::now());
        out.send_if_modified(|before| {
            let differs = *before != now;
            if differs {
                *before = now;
            }
            differs
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restarts_within_the_window_withdraw_a_workload_for_longer_each_time() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = Tracker::default();
        // (seconds from t0, NRestarts, failed, withdrawal started)
        let steps: [(u64, Option<u32>, bool, Option<Duration>); 12] = [
            (0, Some(0), false, None),
            (2, Some(1), false, None),
            // Slow restarts fall out of the window.
            (70, Some(2), false, None),
            (72, Some(3), false, None),
            (74, Some(4), false, Some(FIRST)),
            // Withdrawn: further looks start nothing.
            (76, Some(9), true, None),
            // Back after the period (started anew: NRestarts dropped).
            (140, Some(0), false, None),
            (142, Some(3), false, Some(FIRST * 2)),
            // Back again, and given up on by systemd at once.
            (300, None, false, None),
            (302, None, true, Some(FIRST * 4)),
            // Long after, a withdrawal is the first again.
            (302 + 240 + 3700, Some(0), false, None),
            (302 + 240 + 3702, Some(5), false, Some(FIRST)),
        ];
        for (i, (at, restarts, failed, started)) in steps.into_iter().enumerate() {
            let got = t.record("web", restarts, failed, t0 + s(at));
            assert_eq!(got, started, "step {i}");
            let withdrawn = t.withdrawn(t0 + s(at)).contains("web");
            assert_eq!(withdrawn, matches!(i, 4 | 5 | 7 | 9 | 11), "step {i}");
        }
    }

    #[test]
    fn withdrawals_never_exceed_the_longest() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        let mut at = t0;
        let mut longest = Duration::ZERO;
        for _ in 0..20 {
            t.record("web", None, false, at);
            let long = t
                .record("web", None, true, at)
                .expect("a give-up withdraws");
            longest = longest.max(long);
            at += long + Duration::from_secs(1);
        }
        assert_eq!(longest, LONGEST);
    }

    #[test]
    fn a_unit_failed_when_first_seen_counts_when_it_fails_again() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        assert_eq!(t.record("web", None, true, t0), None);
        assert_eq!(t.record("web", Some(0), false, t0), None);
        assert_eq!(t.record("web", None, true, t0), Some(FIRST));
    }

    #[test]
    fn a_workload_gone_from_the_spec_is_forgotten() {
        let t0 = Instant::now();
        let mut t = Tracker::default();
        t.record("web", None, false, t0);
        t.record("web", None, true, t0);
        assert!(t.withdrawn(t0).contains("web"));
        t.keep(&BTreeSet::new());
        assert!(t.withdrawn(t0).is_empty());
    }
}
