//! What `status` answers: the node, its generation, the apply under way, the rollout,
//! every workload, and the mesh's part (asked for beside the loop).

use tokio::sync::oneshot;
use xnode_api::mesh::MeshStatus;
use xnode_api::node::{Applying, Health, Machine, SpecFile, Status, WorkloadStatus};
use xnode_spec::unit::main_unit;

use super::Reply;
use crate::nix::Realise;
use crate::store::Outcome;
use crate::units::Units;

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// Whether the node is as its spec says: the generation in force is healthy, no
    /// apply runs, and the units as last observed match it.
    pub(super) fn is_converged(&self) -> bool {
        let state = self.state.borrow();
        let healthy = state
            .current
            .and_then(|n| state.generations.iter().find(|g| g.number == n))
            .is_some_and(|g| g.outcome == Outcome::Healthy);
        healthy
            && !self.apply.running()
            && self.observed.is_ok()
            && (self.current.is_none() || self.in_sync)
    }

    /// The node, its generation, the apply under way, every workload; the mesh's part
    /// is asked for beside the loop.
    pub(super) fn status(&self, reply: oneshot::Sender<Reply>) {
        let state = self.state.borrow().clone();
        let generation = state
            .current
            .and_then(|n| state.generations.iter().find(|g| g.number == n))
            .cloned();
        let applying = self.apply.progress().map(|p| Applying {
            generation: p.generation,
            phase: p.phase,
            workloads: p.workloads,
        });
        let placed = self.placed.borrow().clone();
        let live = self.beside.live.borrow().clone();
        let usage = self.beside.usage.borrow().clone();
        let not_realised = self.not_realised.clone().unwrap_or_default();
        let mut workloads = Vec::new();
        if let (Some(current), Ok(observed)) = (&self.current, &self.observed) {
            for (name, w) in &current.spec.workloads {
                let unit = main_unit(name, w);
                let seen = observed.iter().find(|u| u.name == unit);
                let elsewhere =
                    w.placement != xnode_spec::Placement::Local && !placed.contains(name);
                let absent = if elsewhere { "elsewhere" } else { "absent" };
                let active_state = seen.map_or(absent.to_owned(), |u| u.active_state.to_string());
                let state = match seen {
                    Some(u) if u.sub_state.as_deref() == Some("exited") => "exited".to_owned(),
                    // Its unit is kept ready here while it runs elsewhere.
                    Some(u) if elsewhere && !u.active_state.is_running() => "elsewhere".to_owned(),
                    _ => active_state.clone(),
                };
                workloads.push(WorkloadStatus {
                    name: name.clone(),
                    unit,
                    active_state,
                    state,
                    error: not_realised.get(name).cloned(),
                    health: live.get(name).map(|l| Health {
                        healthy: l.healthy,
                        why: l.why.clone(),
                    }),
                    usage: usage.get(name).copied(),
                    state_bytes: w.state.then_some(0),
                });
            }
        }
        let mut status = Status {
            node: self.current.as_ref().map(|c| c.spec.node.name.clone()),
            owner: self
                .current
                .as_ref()
                .and_then(|c| c.spec.node.owner.as_ref())
                .map(ToString::to_string),
            remote: self.settings.remote.clone(),
            machine: None,
            generation,
            last_good: state.last_good,
            converged: self.is_converged(),
            applying,
            spec_file: SpecFile {
                path: self.spec_file.path().display().to_string(),
                error: self.spec_file.error.clone(),
            },
            last_error: self
                .observed
                .as_ref()
                .err()
                .or(self.apply_error.as_ref())
                .cloned(),
            metrics_address: self.settings.metrics_address.map(|a| a.to_string()),
            mesh: None,
            rollout: self.fleet_status(),
            workloads,
        };
        let mesh = self.mesh.as_ref().map(|m| {
            (
                m.handle().ok(),
                m.placement_status(&self.beside.withdrawn.borrow()),
                m.error(),
            )
        });
        let state_dir = self.apply.state_dir();
        tokio::spawn(async move {
            measure_state(&mut status.workloads).await;
            status.machine = tokio::task::spawn_blocking(move || Machine {
                resources: xnode_mesh::resources::measure(&state_dir),
                cpu_seconds: xnode_mesh::resources::cpu_seconds(),
            })
            .await
            .ok();
            let Some((handle, placement, error)) = mesh else {
                let _ = reply.send(Reply::ok(status));
                return;
            };
            status.mesh = Some(match handle {
                Some(h) => MeshStatus {
                    node: h.status().await.ok(),
                    members: h.members().await.unwrap_or_default(),
                    fleet: h.fleet().await.ok(),
                    services: h.providers(None).await.unwrap_or_default(),
                    placement,
                    error,
                },
                None => MeshStatus {
                    node: None,
                    members: Vec::new(),
                    fleet: None,
                    services: Vec::new(),
                    placement: None,
                    error,
                },
            });
            let _ = reply.send(Reply::ok(status));
        });
    }
}

/// Fills in the size of each state directory, measured off the loop.
async fn measure_state(workloads: &mut [WorkloadStatus]) {
    if workloads.iter().all(|w| w.state_bytes.is_none()) {
        return;
    }
    let Ok(dirs) = tokio::task::spawn_blocking(crate::state_dirs::list_recent).await else {
        return;
    };
    for w in workloads.iter_mut().filter(|w| w.state_bytes.is_some()) {
        w.state_bytes = dirs.iter().find(|d| d.workload == w.name).map(|d| d.bytes);
    }
}
