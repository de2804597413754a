//! The health gate: after an apply, every changed workload must be up and pass its
//! probe within its health timeout, or the apply counts as unhealthy. A mesh workload
//! the apply changed is gated here if placement puts it here while the gate waits;
//! one that placement takes away is no longer waited on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;
use tokio::sync::watch;
use tokio::time::Instant;
use xnode_spec::plan::plan;
use xnode_spec::unit::main_unit;
use xnode_spec::{Kind, Placement, Spec};
use xnode_systemd::{ApplyOptions, UnitStatus};

pub use xnode_api::node::Gated;

use crate::health;
use crate::units::Units;

/// How often the gate looks again.
pub const POLL: Duration = Duration::from_millis(250);

/// How long a workload must stay up, probe passing, to count as healthy: a program
/// that starts and dies a moment later is not healthy. Never longer than the
/// workload's own health timeout.
pub const STABLE: Duration = Duration::from_secs(2);

/// How long the gate waits for placement to put a mesh workload the apply changed on
/// this node: the claim, and the heartbeats for the other members to hear this node's
/// new offers, with room for a loaded machine.
pub const PLACEMENT: Duration = Duration::from_secs(3);

/// What one look at a unit says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Running: now for the probe.
    Up,
    /// Not yet: starting, or restarting after a crash.
    NotYet(String),
    /// Failed for good: no point waiting.
    Down(String),
}

/// Judges a workload's main unit by its state alone, when that is enough: `None` when
/// how its process ended matters (failed, restarting, exited), and [`look`] at its
/// status decides. A timer has no process: it is up while active (waiting for its
/// next run, or running it).
pub fn look_at_state(active: &str, sub: &str, kind: Kind) -> Option<Look> {
    if kind == Kind::Timer {
        return Some(match active {
            "active" => Look::Up,
            "failed" => Look::Down(format!("the timer failed ({sub})")),
            _ => Look::NotYet(format!("{active} ({sub})")),
        });
    }
    match (active, sub) {
        ("active", "running") | ("reloading", _) => Some(Look::Up),
        ("failed", _) | ("activating", "auto-restart") | ("active", "exited") => None,
        (active, sub) => Some(Look::NotYet(format!("{active} ({sub})"))),
    }
}

/// Judges one status of a workload of `kind`. Pure, so the rules are table-tested.
pub fn look(s: &UnitStatus, kind: Kind) -> Look {
    let exit = || match s.exit_code {
        Some("exited") => format!("exit status {}", s.exit_status),
        Some(how) => format!("{how} by signal {}", s.exit_status),
        None => s.result.clone(),
    };
    match (s.active_state.as_str(), s.sub_state.as_str()) {
        ("active", "running") | ("reloading", _) => Look::Up,
        // A oneshot that failed is `failed`: one that stays `active` exited 0.
        ("active", "exited") if kind == Kind::Oneshot => Look::Up,
        // A service that ran to its end is not up, whatever its exit status.
        ("active", "exited") => {
            Look::Down(format!("exited ({}); a service must keep running", exit()))
        }
        ("failed", _) => Look::Down(format!("failed ({})", exit())),
        ("activating", "auto-restart") => {
            Look::NotYet(format!("restarting after a crash ({})", exit()))
        }
        (active, sub) => Look::NotYet(format!("{active} ({sub})")),
    }
}

/// What the gate needs from the rest of the agent while it waits.
pub struct Watch<'a> {
    /// Where placement puts mesh workloads now.
    pub placed: &'a watch::Receiver<BTreeSet<String>>,
    /// Told each workload's standing as it changes.
    pub report: &'a (dyn Fn(&str, Gated) + Sync),
}

/// Waits until every workload of `gated` is healthy, each within its own health
/// timeout, and starts and gates each of `late` (mesh workloads the apply changed)
/// that placement puts here within [`PLACEMENT`]. Returns the ones that were not
/// healthy, with why.
pub async fn wait_healthy<U: Units>(
    units: &U,
    spec: &Spec,
    gated: &[String],
    late: &[String],
    watch: &Watch<'_>,
) -> BTreeMap<String, String> {
    // One look at every unit a round, shared by the workloads' checks: a gate on 50
    // workloads costs one call to systemd each round, not 50.
    let (rounds, round) = watch::channel(None);
    let poll = async {
        loop {
            let states = units.states().await.map_err(|e| e.to_string()).map(|list| {
                let map: BTreeMap<String, (String, String)> = list
                    .into_iter()
                    .map(|(name, active, sub)| (name, (active, sub)))
                    .collect();
                Arc::new(map)
            });
            rounds.send_replace(Some(states));
            tokio::time::sleep(POLL).await;
        }
    };
    tokio::pin!(poll);
    let mut checks = FuturesUnordered::new();
    for name in gated {
        checks.push(check(units, spec, name.clone(), round.clone(), watch));
    }
    let mut late: BTreeSet<String> = late.iter().cloned().collect();
    let window = Instant::now() + PLACEMENT;
    let mut unhealthy = BTreeMap::new();
    loop {
        let waiting_for_placement = !late.is_empty() && Instant::now() < window;
        if checks.is_empty() && !waiting_for_placement {
            break;
        }
        tokio::select! {
            () = &mut poll => {}
            Some((name, verdict)) = checks.next() => {
                if let Some(why) = verdict {
                    unhealthy.insert(name, why);
                }
            }
            () = tokio::time::sleep(POLL), if waiting_for_placement => {
                let placed = watch.placed.borrow().clone();
                let now_here: Vec<String> = late.iter().filter(|w| placed.contains(*w)).cloned().collect();
                if now_here.is_empty() {
                    continue;
                }
                late.retain(|w| !now_here.contains(w));
                if let Err(why) = start(units, spec, &placed, &now_here).await {
                    for name in now_here {
                        (watch.report)(&name, Gated::Unhealthy { why: why.clone() });
                        unhealthy.insert(name, why.clone());
                    }
                    continue;
                }
                for name in now_here {
                    checks.push(check(units, spec, name, round.clone(), watch));
                }
            }
        }
    }
    unhealthy
}

/// The units' states of one round of the gate, or why they could not be read.
type Round = Option<Result<Arc<BTreeMap<String, (String, String)>>, String>>;

/// Starts mesh workloads placement has just put here, as the apply would have.
async fn start<U: Units>(
    units: &U,
    spec: &Spec,
    placed: &BTreeSet<String>,
    names: &[String],
) -> Result<(), String> {
    let observed = units.observe().await.map_err(|e| e.to_string())?;
    let mut p = plan(spec, &observed, placed);
    p.actions.retain(|a| names.contains(&a.workload));
    units
        .apply(&p, &crate::units::apply_options(spec))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// One workload's gate: `None` when healthy (or moved away), else why not.
async fn check<U: Units>(
    units: &U,
    spec: &Spec,
    name: String,
    mut round: watch::Receiver<Round>,
    watch: &Watch<'_>,
) -> (String, Option<String>) {
    let Some(w) = spec.workloads.get(&name) else {
        return (name, None);
    };
    let mesh = matches!(w.placement, Placement::Mesh(_));
    let timeout = Duration::from_millis(w.health.timeout.as_millis());
    let deadline = Instant::now() + timeout;
    // A oneshot that exited 0 is done, and a set timer waits: nothing to watch stay up.
    let stable = match w.kind {
        Kind::Service => STABLE.min(timeout / 2),
        Kind::Oneshot | Kind::Timer => Duration::ZERO,
    };
    let unit = main_unit(&name, w);
    let mut up_since: Option<Instant> = None;
    loop {
        if mesh && !watch.placed.borrow().contains(&name) {
            // Stopped here at once: the loop's fencing stop may have come before this
            // gate's start of it.
            let stop = crate::placement::stops([&name]);
            let _ = units.apply(&stop, &ApplyOptions::default()).await;
            (watch.report)(&name, Gated::Moved);
            return (name, None);
        }
        if round.changed().await.is_err() {
            return (name, Some("the health gate stopped".into()));
        }
        let seen = match &*round.borrow_and_update() {
            None => continue,
            Some(Err(e)) => Err(e.clone()),
            Some(Ok(states)) => Ok(states.get(&unit).map_or_else(
                || Some(Look::NotYet("not loaded".into())),
                |(active, sub)| look_at_state(active, sub, w.kind),
            )),
        };
        let looked = match seen {
            Ok(Some(l)) => Ok(l),
            Ok(None) => units
                .status(&unit)
                .await
                .map(|s| look(&s, w.kind))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e),
        };
        let up = match looked {
            Ok(Look::Up) => health::probe(&w.health)
                .await
                .map_err(|e| format!("running, but its probe fails: {e}")),
            Ok(Look::Down(why)) => {
                (watch.report)(&name, Gated::Unhealthy { why: why.clone() });
                return (name, Some(why));
            }
            Ok(Look::NotYet(why)) => Err(why),
            Err(e) => Err(e),
        };
        let why = match up {
            Ok(()) => {
                let since = *up_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= stable {
                    (watch.report)(&name, Gated::Healthy);
                    return (name, None);
                }
                format!("up for less than {} ms", stable.as_millis())
            }
            Err(why) => {
                up_since = None;
                why
            }
        };
        if Instant::now() + POLL > deadline {
            let why = format!("not healthy within {}: {why}", w.health.timeout);
            (watch.report)(&name, Gated::Unhealthy { why: why.clone() });
            return (name, Some(why));
        }
        (watch.report)(&name, Gated::Waiting { why });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(active: &str, sub: &str, code: Option<&'static str>, n: i32) -> UnitStatus {
        UnitStatus {
            name: "xnode-w.service".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            result: if n == 0 {
                "success".into()
            } else {
                "exit-code".into()
            },
            exit_code: code,
            exit_status: n,
        }
    }

    #[test]
    fn looks() {
        let cases = [
            (status("active", "running", None, 0), Look::Up),
            (
                status("active", "exited", Some("exited"), 0),
                Look::Down("exited (exit status 0); a service must keep running".into()),
            ),
            (status("reloading", "reload", None, 0), Look::Up),
            (
                status("failed", "failed", Some("exited"), 1),
                Look::Down("failed (exit status 1)".into()),
            ),
            (
                status("failed", "failed", Some("killed"), 9),
                Look::Down("failed (killed by signal 9)".into()),
            ),
            (
                status("activating", "auto-restart", Some("exited"), 3),
                Look::NotYet("restarting after a crash (exit status 3)".into()),
            ),
            (
                status("activating", "start", None, 0),
                Look::NotYet("activating (start)".into()),
            ),
            (
                status("inactive", "dead", None, 0),
                Look::NotYet("inactive (dead)".into()),
            ),
        ];
        for (s, want) in cases {
            if let Some(quick) = look_at_state(&s.active_state, &s.sub_state, Kind::Service) {
                assert_eq!(quick, want, "the state alone says it: {s:?}");
            }
            assert_eq!(look(&s, Kind::Service), want, "{s:?}");
        }
        // A oneshot is done when it exited 0, and judged as a service otherwise.
        let done = status("active", "exited", Some("exited"), 0);
        assert_eq!(look(&done, Kind::Oneshot), Look::Up);
        let failed = status("failed", "failed", Some("exited"), 1);
        assert_eq!(
            look(&failed, Kind::Oneshot),
            Look::Down("failed (exit status 1)".into())
        );
        assert_eq!(
            look_at_state("active", "waiting", Kind::Timer),
            Some(Look::Up)
        );
        assert_eq!(
            look_at_state("active", "running", Kind::Timer),
            Some(Look::Up)
        );
        assert!(matches!(
            look_at_state("failed", "failed", Kind::Timer),
            Some(Look::Down(_))
        ));
        let running = status("activating", "start", None, 0);
        assert_eq!(
            look(&running, Kind::Oneshot),
            Look::NotYet("activating (start)".into())
        );
        for needs_more in [
            ("failed", "failed"),
            ("activating", "auto-restart"),
            ("active", "exited"),
        ] {
            assert_eq!(
                look_at_state(needs_more.0, needs_more.1, Kind::Service),
                None,
                "{needs_more:?}"
            );
        }
    }
}
