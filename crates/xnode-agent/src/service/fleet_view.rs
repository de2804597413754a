//! What `xnodectl fleet spec` and `xnodectl fleet status` are answered: the fleet spec
//! in force, and the whole fleet as this node hears it (every member's report, the
//! rollout, where each mesh workload runs).

use std::collections::BTreeMap;

use xnode_api::fleet::{FleetRow, FleetSpec, FleetStatus, FleetWorkload, Rollout};

use super::Reply;
use crate::nix::Realise;
use crate::units::Units;

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    pub(super) fn fleet_spec_reply(&self) -> Reply {
        let p = self.fleet.store.progress;
        let Some(kept) = self.fleet.store.specs.get(&p.newest) else {
            return Reply::error("this node has accepted no fleet spec");
        };
        Reply::ok(FleetSpec {
            generation: p.newest,
            hash: kept.spec.hash.to_string(),
            running: self.fleet_running(),
            signed: (*kept.envelope).clone(),
        })
    }

    pub(super) fn fleet_view(&self) -> Reply {
        let Some(view) = self.mesh.as_ref().and_then(|m| m.view()) else {
            return Reply::error("this node is not in the mesh, so it sees no fleet");
        };
        let view = view.aged(std::time::Instant::now());
        let me = self.fleet_status();
        let mine = self.fleet.told.as_ref().map(|(r, _)| {
            let mut r = r.clone();
            r.fleet.healthy_ms = self
                .fleet
                .healthy
                .map(|(_, t)| t.elapsed().as_millis() as u64);
            r
        });
        let rows: Vec<FleetRow> = view
            .members
            .iter()
            .map(|p| {
                let this_node = p.candidate.peer == view.me;
                FleetRow {
                    node: p.node.clone(),
                    peer_id: p.candidate.peer.to_string(),
                    live: p.candidate.live,
                    this_node,
                    report: if this_node {
                        mine.clone()
                    } else {
                        p.report.clone()
                    },
                }
            })
            .collect();
        let p = self.fleet.store.progress;
        let members = self.rollout_members(&view, tokio::time::Instant::now());
        let (phase, done, taking_part) = xnode_mesh::rollout::summary(p.into(), &members);
        let mut names: BTreeMap<String, Vec<&FleetRow>> = BTreeMap::new();
        for w in self
            .current
            .iter()
            .flat_map(|c| c.spec.workloads.iter())
            .filter(|(_, w)| matches!(w.placement, xnode_spec::Placement::Mesh(_)))
        {
            names.entry(w.0.clone()).or_default();
        }
        for (p, row) in view.members.iter().zip(&rows) {
            for w in p.candidate.running.iter().filter(|_| p.candidate.live) {
                names.entry(w.clone()).or_default().push(row);
            }
        }
        let workloads: Vec<FleetWorkload> = names
            .into_iter()
            .map(|(name, on)| FleetWorkload {
                healthy: !on.is_empty()
                    && on.iter().all(|r| {
                        r.report
                            .as_ref()
                            .is_none_or(|x| x.node.converged && x.node.failed == 0)
                    }),
                running_on: on.iter().map(|r| r.node.clone()).collect(),
                name,
            })
            .collect();
        Reply::ok(FleetStatus {
            members: rows,
            rollout: Rollout {
                state: phase.name().into(),
                newest: p.newest,
                stable: p.stable,
                failed: p.failed,
                done,
                members: taking_part,
                this_node: me.step,
            },
            conflict: me.conflict,
            workloads,
        })
    }
}
