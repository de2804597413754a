//! Changes on the node as a stream: what `GET /v1/events` sends, one Server-Sent Event
//! each (the event's name is its `kind`), and the pure function that tells them from
//! two looks at the node.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Generation;
use crate::fleet::RolloutStatus;
use crate::mesh::PlacedWorkload;
use crate::node::{Applying, Health, Status};

/// Where the stream is served.
pub const PATH: &str = "/v1/events";

/// One change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The node as it is when the stream starts; changes follow.
    Snapshot {
        /// Its status.
        status: Box<Status>,
    },
    /// A generation came into force, or what became of it changed (an apply's end:
    /// healthy, rolled back or unhealthy).
    Generation {
        /// Its record.
        generation: Generation,
    },
    /// An apply's progress changed: it started, moved to another phase, or a gated
    /// workload's standing changed.
    Progress {
        /// Where it is.
        applying: Applying,
    },
    /// A workload's state or health changed, or it came into the spec.
    Workload {
        /// Its name.
        name: String,
        /// Its state, as `status` shows it.
        state: String,
        /// What its probe finds, when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        health: Option<Health>,
    },
    /// A workload left the spec.
    WorkloadRemoved {
        /// Its name.
        name: String,
    },
    /// A mesh member's state changed (`alive`, `suspect`, `dead`), or it appeared.
    Member {
        /// Its node name.
        node: String,
        /// Its peer id.
        peer_id: String,
        /// Its state.
        state: String,
    },
    /// Where a mesh workload should run, or runs, changed.
    Placement {
        /// It, as `status` shows it.
        workload: PlacedWorkload,
    },
    /// This node's part in the fleet spec's rollout changed.
    Rollout {
        /// It, as `status` shows it.
        rollout: RolloutStatus,
    },
    /// The node became converged, or stopped being.
    Converged {
        /// Whether it is.
        converged: bool,
    },
    /// A kind this client does not know (from a newer xnoded): skipped.
    #[serde(other)]
    Unknown,
}

/// What one look at the node sees: its status, and every kept generation's record
/// (a rolled-back generation is no longer the one in force, so only its record says
/// what became of it).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    /// The status.
    pub status: Status,
    /// The kept generations, oldest first.
    pub generations: Vec<Generation>,
}

/// What changed from `before` to `after`, in the order a reader wants it: the
/// generations, the apply, the workloads, the mesh, and last whether it all
/// converged.
pub fn changes(before: &Seen, after: &Seen) -> Vec<Event> {
    let mut out = Vec::new();
    for g in &after.generations {
        if !before.generations.contains(g) {
            out.push(Event::Generation {
                generation: g.clone(),
            });
        }
    }
    let (before, after) = (&before.status, &after.status);
    if let Some(a) = &after.applying
        && before.applying.as_ref() != Some(a)
    {
        out.push(Event::Progress {
            applying: a.clone(),
        });
    }
    for w in &after.workloads {
        let was = before.workloads.iter().find(|b| b.name == w.name);
        if was.is_none_or(|b| (&b.state, &b.health) != (&w.state, &w.health)) {
            out.push(Event::Workload {
                name: w.name.clone(),
                state: w.state.clone(),
                health: w.health.clone(),
            });
        }
    }
    for b in &before.workloads {
        if !after.workloads.iter().any(|w| w.name == b.name) {
            out.push(Event::WorkloadRemoved {
                name: b.name.clone(),
            });
        }
    }
    let members = |s: &Status| {
        s.mesh
            .as_ref()
            .map(|m| m.members.clone())
            .unwrap_or_default()
    };
    let before_members = members(before);
    for m in members(after) {
        let was = before_members.iter().find(|b| b.peer_id == m.peer_id);
        if was.is_none_or(|b| b.state != m.state) {
            out.push(Event::Member {
                node: m.node,
                peer_id: m.peer_id,
                state: m.state,
            });
        }
    }
    let placed = |s: &Status| {
        s.mesh
            .as_ref()
            .and_then(|m| m.placement.as_ref())
            .map(|p| p.workloads.clone())
            .unwrap_or_default()
    };
    let before_placed = placed(before);
    for w in placed(after) {
        if !before_placed.contains(&w) {
            out.push(Event::Placement { workload: w });
        }
    }
    if after.rollout != before.rollout {
        out.push(Event::Rollout {
            rollout: after.rollout.clone(),
        });
    }
    if after.converged != before.converged {
        out.push(Event::Converged {
            converged: after.converged,
        });
    }
    out
}

impl Event {
    /// Its kind: the name of its Server-Sent Event.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Snapshot { .. } => "snapshot",
            Event::Generation { .. } => "generation",
            Event::Progress { .. } => "progress",
            Event::Workload { .. } => "workload",
            Event::WorkloadRemoved { .. } => "workload_removed",
            Event::Member { .. } => "member",
            Event::Placement { .. } => "placement",
            Event::Rollout { .. } => "rollout",
            Event::Converged { .. } => "converged",
            Event::Unknown => "unknown",
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn seen(status: serde_json::Value, generations: serde_json::Value) -> Seen {
        Seen {
            status: serde_json::from_value(status).unwrap(),
            generations: serde_json::from_value(generations).unwrap(),
        }
    }

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(Event::kind).collect()
    }

    fn g(n: u64, state: &str) -> serde_json::Value {
        json!({"number": n, "hash": "h", "source": {"kind": "api"}, "accepted_at": 0,
               "outcome": {"state": state, "reason": "r"}})
    }

    #[test]
    fn changes_are_told_once_each_in_a_readers_order() {
        let w = |name: &str, state: &str| json!({"name": name, "state": state});
        let idle = seen(
            json!({"converged": true, "workloads": [w("a", "active"), w("b", "active")]}),
            json!([g(1, "healthy")]),
        );
        let applying = seen(
            json!({"converged": false,
                   "applying": {"generation": 2, "phase": "gating",
                                "workloads": {"c": {"state": "waiting", "why": "starting"}}},
                   "workloads": [w("a", "active"), w("c", "activating")]}),
            json!([g(1, "healthy"), g(2, "applying")]),
        );
        let gated = seen(
            json!({"converged": false,
                   "applying": {"generation": 2, "phase": "gating",
                                "workloads": {"c": {"state": "healthy"}}},
                   "workloads": [w("a", "active"), w("c", "active")]}),
            json!([g(1, "healthy"), g(2, "applying")]),
        );
        let done = seen(
            json!({"converged": true, "workloads": [w("a", "active"), w("c", "active")]}),
            json!([g(1, "healthy"), g(2, "healthy")]),
        );
        // Rolled back: generation 3 (the rollback) is in force, 2's record says why.
        let rolled = seen(
            json!({"converged": true, "workloads": [w("a", "active"), w("b", "active")]}),
            json!([g(1, "healthy"), g(2, "rolled_back"), g(3, "healthy")]),
        );
        // (before, after, the kinds of events)
        let table: [(&Seen, &Seen, &[&str]); 6] = [
            (&idle, &idle, &[]),
            (
                &idle,
                &applying,
                &[
                    "generation",
                    "progress",
                    "workload",
                    "workload_removed",
                    "converged",
                ],
            ),
            (&applying, &gated, &["progress", "workload"]),
            (&gated, &done, &["generation", "converged"]),
            (&done, &done, &[]),
            (
                &applying,
                &rolled,
                &[
                    "generation",
                    "generation",
                    "workload",
                    "workload_removed",
                    "converged",
                ],
            ),
        ];
        for (i, (before, after, want)) in table.into_iter().enumerate() {
            assert_eq!(kinds(&changes(before, after)), want, "row {i}");
        }
        let events = changes(&idle, &applying);
        assert!(events.contains(&Event::WorkloadRemoved { name: "b".into() }));
        assert!(events.contains(&Event::Workload {
            name: "c".into(),
            state: "activating".into(),
            health: None,
        }));
        let outcomes: Vec<String> = changes(&applying, &rolled)
            .iter()
            .filter_map(|e| match e {
                Event::Generation { generation } => {
                    Some(format!("{} {:?}", generation.number, generation.outcome))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            outcomes,
            [
                "2 RolledBack { reason: \"r\" }".to_owned(),
                "3 Healthy".to_owned()
            ]
        );
    }

    #[test]
    fn the_mesh_changes_are_told_too() {
        let mesh = |state: &str, running_on: &[&str], step: &str| {
            seen(
                json!({"mesh": {
                    "members": [{"peer_id": "p2", "node": "n2", "state": state, "labels": {},
                                 "resources": {"cpus": 1, "memory": 1, "memory_free": 1, "disk": 1, "disk_free": 1},
                                 "services": [], "addresses": []}],
                    "services": [],
                    "placement": {"quorate": true, "settled_secs": 1.0, "hold_down_secs": 1.0, "voters": 2,
                                  "workloads": [{"name": "db", "replicas": 1, "owners": ["n1"],
                                                 "running_on": running_on, "here": "runs"}]}},
                    "rollout": {"newest": 1, "running": 1, "stable": 1, "failed": 0, "step": step}}),
                json!([]),
            )
        };
        let before = mesh("alive", &["n2"], "runs what it should");
        let after = mesh("dead", &[], "moving to fleet generation 2");
        assert_eq!(
            kinds(&changes(&before, &after)),
            ["member", "placement", "rollout"]
        );
        assert_eq!(
            changes(&before, &after)[0],
            Event::Member {
                node: "n2".into(),
                peer_id: "p2".into(),
                state: "dead".into()
            }
        );
    }

    #[test]
    fn a_kind_from_a_newer_node_is_read_as_unknown() {
        let e: Event = serde_json::from_value(json!({"kind": "quota", "used": 3})).unwrap();
        assert_eq!(e, Event::Unknown);
    }

    #[test]
    fn every_kind_is_the_name_serde_gives_it() {
        let e = Event::Converged { converged: true };
        assert_eq!(serde_json::to_value(&e).unwrap()["kind"], e.kind());
        let e = Event::WorkloadRemoved { name: "a".into() };
        assert_eq!(serde_json::to_value(&e).unwrap()["kind"], e.kind());
    }
}
