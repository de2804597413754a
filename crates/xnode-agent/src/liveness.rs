//! Continuous health: every running service with a probe is probed all the time, not
//! only in an apply's gate. A provider that fails its probe is withdrawn from the
//! mesh's service answers until it passes again; `status` and the metrics show each
//! workload's health.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use serde::Serialize;
use tokio::sync::watch;
use xnode_spec::{Kind, Placement, Validated};

/// How often each probe runs.
pub const EVERY: Duration = Duration::from_secs(2);

/// Failures in a row before a workload counts as unhealthy: one lost probe on a loaded
/// machine does not withdraw a service.
pub const FAILURES: u32 = 2;

/// Probes at once, so a node with many services probes them in bounded time.
const AT_ONCE: usize = 16;

/// One workload's health as the probes see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Liveness {
    /// Passing its probe.
    pub healthy: bool,
    /// Why not, from the last failed probe.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
    /// Failed probes in a row.
    #[serde(skip)]
    failures: u32,
}

/// The probed workloads' health. Pure: what a probe result does to it is table-tested.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tracker {
    workloads: BTreeMap<String, Liveness>,
}

impl Tracker {
    /// Records one probe of `name`; whether its health changed. A workload is healthy
    /// from its first pass, and unhealthy after [`FAILURES`] failures in a row.
    pub fn record(&mut self, name: &str, result: Result<(), String>) -> bool {
        let entry = self.workloads.entry(name.to_owned()).or_insert(Liveness {
            healthy: false,
            why: Some("not probed yet".into()),
            failures: FAILURES,
        });
        let was = entry.healthy;
        match result {
            Ok(()) => {
                entry.failures = 0;
                entry.healthy = true;
                entry.why = None;
            }
            Err(why) => {
                entry.failures = entry.failures.saturating_add(1);
                entry.why = Some(why);
                if entry.failures >= FAILURES {
                    entry.healthy = false;
                }
            }
        }
        was != entry.healthy
    }

    /// Forgets the workloads no longer probed; whether any was.
    pub fn keep(&mut self, probed: &BTreeSet<String>) -> bool {
        let before = self.workloads.len();
        self.workloads.retain(|name, _| probed.contains(name));
        before != self.workloads.len()
    }

    /// Each probed workload's health.
    pub fn health(&self) -> &BTreeMap<String, Liveness> {
        &self.workloads
    }
}

/// The workloads to probe: services with a probe that run here (local ones, and mesh
/// ones placement put here).
pub fn probed(spec: &Validated, placed: &BTreeSet<String>) -> BTreeSet<String> {
    spec.spec
        .workloads
        .iter()
        .filter(|(name, w)| {
            w.kind == Kind::Service
                && (w.health.http.is_some() || w.health.tcp.is_some())
                && match w.placement {
                    Placement::Local => true,
                    Placement::Mesh(_) => placed.contains(*name),
                }
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// Probes the spec in force every [`EVERY`], and publishes each probed workload's
/// health whenever a workload's health changes. Ends when the spec's sender goes.
pub async fn run(
    mut spec: watch::Receiver<Option<Arc<Validated>>>,
    placed: watch::Receiver<BTreeSet<String>>,
    out: watch::Sender<BTreeMap<String, Liveness>>,
) {
    let mut tracker = Tracker::default();
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = spec.changed() => if changed.is_err() { return },
        }
        let Some(current) = spec.borrow().clone() else {
            continue;
        };
        let names = probed(&current, &placed.borrow());
        let mut changed = tracker.keep(&names);
        let results: Vec<(String, Result<(), String>)> = futures_util::stream::iter(names)
            .map(|name| {
                let current = current.clone();
                async move {
                    let result = match current.spec.workloads.get(&name) {
                        Some(w) => crate::health::probe(&w.health)
                            .await
                            .map_err(|e| e.to_string()),
                        None => Ok(()),
                    };
                    (name, result)
                }
            })
            .buffer_unordered(AT_ONCE)
            .collect()
            .await;
        for (name, result) in results {
            if tracker.record(&name, result) {
                let l = &tracker.health()[&name];
                match &l.why {
                    None => tracing::info!(workload = name, "{name} passes its probe"),
                    Some(why) => tracing::warn!(
                        workload = name,
                        "{name} fails its probe ({why}); its services are withdrawn until it passes"
                    ),
                }
                changed = true;
            }
        }
        // Published only on a change (of health, or of why a probe fails), so the
        // loop wakes only then.
        out.send_if_modified(|health| {
            let fresh = tracker.health();
            let differs = changed || health != fresh;
            if differs {
                *health = fresh.clone();
            }
            differs
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pass_is_healthy_at_once_and_only_repeated_failures_withdraw_it() {
        let mut t = Tracker::default();
        // (probe result, healthy after, changed)
        let steps: [(Result<(), &str>, bool, bool); 7] = [
            (Err("refused"), false, false),
            (Ok(()), true, true),
            (Err("refused"), true, false),
            (Ok(()), true, false),
            (Err("refused"), true, false),
            (Err("timeout"), false, true),
            (Ok(()), true, true),
        ];
        for (i, (result, healthy, changed)) in steps.into_iter().enumerate() {
            let got = t.record("web", result.map_err(str::to_owned));
            assert_eq!(got, changed, "step {i}");
            assert_eq!(t.health()["web"].healthy, healthy, "step {i}");
        }
        assert_eq!(t.health()["web"].why, None);
        t.record("web", Err("timeout".into()));
        assert_eq!(t.health()["web"].why.as_deref(), Some("timeout"));
        assert!(t.keep(&BTreeSet::new()));
        assert!(t.health().is_empty());
    }

    #[test]
    fn only_running_services_with_a_probe_are_probed() {
        let spec = xnode_spec::parse_value(&serde_json::json!({
            "version": 1,
            "node": {"name": "n", "owner": "ed25519:11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="},
            "workloads": {
                "web": {"command": ["/bin/web"], "health": {"tcp": {"port": 80}}},
                "plain": {"command": ["/bin/plain"]},
                "job": {"command": ["/bin/job"], "kind": "oneshot"},
                "here": {"command": ["/bin/m"], "health": {"tcp": {"port": 81}}, "placement": {"mesh": {}}},
                "there": {"command": ["/bin/m"], "health": {"tcp": {"port": 82}}, "placement": {"mesh": {}}},
            }
        }))
        .unwrap();
        let placed: BTreeSet<String> = ["here".to_owned()].into();
        let names: Vec<String> = probed(&spec, &placed).into_iter().collect();
        assert_eq!(names, ["here", "web"]);
    }
}
