//! Requests from the local API, answered at once: from what the loop holds, or by a
//! task that replies itself (a plan needs systemd, logs the journal, peers the mesh).
//! Applies, rollbacks and reloads start the apply job and reply when it ends;
//! `status` is answered in `status`.

use std::time::SystemTime;

use tokio::sync::oneshot;
use tracing::{info, warn};
use xnode_api::Request;
use xnode_api::node::{Applied, History, Plan, PlanRefusal, PlannedAction};
use xnode_spec::plan::plan;
use xnode_spec::unit::unit_name;
use xnode_spec::{Validated, push};

use super::apply::{Job, Waiter};
use super::{Done, Reply};
use crate::deploy::Deployed;
use crate::metrics::OutcomeLabel;
use crate::nix::Realise;
use crate::store::{Outcome, Source};
use crate::units::Units;

/// What the API hands the loop. A spec in a request is validated before it comes
/// here, beside the loop (a spec may be 64 MiB).
pub enum Command {
    /// A request to answer.
    Request(Request, oneshot::Sender<Reply>),
    /// `apply`, with its spec validated.
    Apply {
        /// The spec.
        spec: Box<Validated>,
        /// Its bytes, as recorded.
        raw: Vec<u8>,
        /// Keep the result even if it is unhealthy.
        no_rollback: bool,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
    /// `plan`, with its spec validated.
    Plan {
        /// The spec.
        spec: Box<Validated>,
        /// Where the answer goes.
        reply: oneshot::Sender<Reply>,
    },
}

/// A plan, as `plan` answers it.
fn planned(p: &xnode_spec::plan::Plan) -> Plan {
    Plan {
        actions: p
            .actions
            .iter()
            .map(|a| PlannedAction {
                op: a.op.to_string(),
                unit: a.unit.clone(),
                workload: a.workload.clone(),
                reason: a.reason.to_string(),
                content: a.content.clone(),
            })
            .collect(),
        refused: p
            .refused
            .iter()
            .map(|r| PlanRefusal {
                unit: r.unit.clone(),
                workload: r.workload.clone(),
                reason: r.reason.clone(),
            })
            .collect(),
    }
}

/// What an apply came to, as `apply` and `reload` answer it.
pub(super) fn applied(d: &Deployed) -> Applied {
    Applied {
        generation: d.generation,
        outcome: d.outcome.clone(),
        rolled_back_to: d.rolled_back_to,
        actions: d
            .plan
            .actions
            .iter()
            .map(|a| format!("{} {}: {}", a.op, a.unit, a.reason))
            .collect(),
        refused: d.plan.refused.iter().map(|r| r.reason.clone()).collect(),
        not_realised: d.not_realised.clone(),
        unchanged: false,
    }
}

/// A push for this node, checked beside the loop.
pub(super) struct CheckedPush {
    from: String,
    reply: oneshot::Sender<Result<String, String>>,
    verdict: Result<push::Accepted, String>,
}

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    pub(super) fn on_command(&mut self, command: Command) {
        match command {
            Command::Apply {
                spec,
                raw,
                no_rollback,
                reply,
            } => match self.node_job(*spec, raw, Source::Api, !no_rollback) {
                Ok(job) => self.run_job(job, Some(Waiter::Apply(reply))),
                Err(why) => {
                    let _ = reply.send(Reply::error(why));
                }
            },
            Command::Plan { spec, reply } => {
                // Planned as it would be applied: with the fleet spec's workloads.
                let spec = match self.with_fleet(&spec) {
                    Ok(merged) => merged,
                    Err(why) => {
                        let _ = reply.send(Reply::error(why));
                        return;
                    }
                };
                let (units, placed) = (self.units.clone(), self.placed.borrow().clone());
                tokio::spawn(async move {
                    let answer = match units.observe().await {
                        Ok(observed) => Reply::ok(planned(&plan(&spec.spec, &observed, &placed))),
                        Err(e) => Reply::error(e.to_string()),
                    };
                    let _ = reply.send(answer);
                });
            }
            Command::Request(request, reply) => self.on_request(request, reply),
        }
    }

    fn on_request(&mut self, request: Request, reply: oneshot::Sender<Reply>) {
        match request {
            Request::Status => self.status(reply),
            Request::History => {
                let state = self.state.borrow();
                let _ = reply.send(Reply::ok(History {
                    current: state.current,
                    last_good: state.last_good,
                    generations: state.generations.clone(),
                }));
            }
            Request::GenerationSpec { generation } => self.generation_spec(generation, reply),
            Request::Rollback => self.rollback(reply),
            Request::Reload => self.read_spec_file(Some(Waiter::Reload(reply))),
            Request::Logs { workload, lines } => self.logs(workload, lines, reply),
            Request::StateList => self.state_list(reply),
            Request::StatePrune { workload } => self.state_prune(workload, reply),
            Request::MeshPeers
            | Request::MeshServices { .. }
            | Request::FleetMembers
            | Request::FleetAdmit { .. }
            | Request::FleetRevoke { .. }
            | Request::PushDraft { .. } => self.mesh_query(request, reply),
            Request::MeshPush { push } => self.push(push, reply),
            Request::FleetApply { spec } => self.fleet_apply(spec, reply),
            Request::FleetSpec => {
                let _ = reply.send(self.fleet_spec_reply());
            }
            Request::FleetStatus => {
                let _ = reply.send(self.fleet_view());
            }
            Request::Apply { .. } | Request::Plan { .. } => {
                let _ = reply.send(Reply::error("a spec must be validated before the loop"));
            }
        }
    }

    /// Back to the last good generation, or the good one before it when the current
    /// generation is the last good.
    fn rollback(&mut self, reply: oneshot::Sender<Reply>) {
        let state = self.state.borrow().clone();
        let target = state
            .generations
            .iter()
            .rev()
            .filter(|g| Some(g.number) != state.current && g.outcome == Outcome::Healthy)
            .map(|g| g.number)
            .next();
        let Some(to) = target else {
            let _ = reply.send(Reply::error(
                "there is no earlier healthy generation to roll back to",
            ));
            return;
        };
        if let Some(busy) = self.apply.busy() {
            let _ = reply.send(Reply::error(busy));
            return;
        }
        self.metrics.rollbacks.inc();
        info!("rolling back to generation {to}");
        self.run_job(Job::Restore { to }, Some(Waiter::Rollback(reply, to)));
    }

    /// The node spec of a kept generation: its spec, less the workloads of the fleet
    /// spec it ran beside (while that fleet spec is kept), read beside the loop.
    fn generation_spec(&self, number: u64, reply: oneshot::Sender<Reply>) {
        let kept = self
            .state
            .borrow()
            .generations
            .iter()
            .find(|g| g.number == number)
            .map(|g| g.fleet);
        let fleet = match kept {
            None => {
                let _ = reply.send(Reply::error(format!(
                    "generation {number} is not kept (xnodectl history lists those that are)"
                )));
                return;
            }
            Some(None) => None,
            Some(Some(f)) => match self.fleet.store.specs.get(&f) {
                Some(kept) => Some(std::sync::Arc::clone(kept)),
                None => {
                    let _ = reply.send(Reply::error(format!(
                        "generation {number} ran beside fleet generation {f}, which is no longer kept, so its node spec alone cannot be told"
                    )));
                    return;
                }
            },
        };
        let path = crate::store::spec_path(&self.apply.state_dir(), number);
        tokio::spawn(async move {
            let answer = match tokio::fs::read(&path).await {
                Ok(bytes) => match xnode_spec::json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(spec) => Reply::ok(xnode_spec::fleet_spec::node_part(
                        &spec,
                        fleet.as_ref().map(|k| &k.spec.spec),
                    )),
                    Err(e) => {
                        Reply::error(format!("generation {number}'s spec is unreadable: {e}"))
                    }
                },
                Err(e) => Reply::error(format!("generation {number}'s spec cannot be read: {e}")),
            };
            let _ = reply.send(answer);
        });
    }

    fn logs(&self, workload: String, lines: usize, reply: oneshot::Sender<Reply>) {
        let known = self
            .current
            .as_ref()
            .is_some_and(|c| c.spec.workloads.contains_key(&workload));
        if !known {
            let why = format!("the current spec has no workload {workload:?}");
            let _ = reply.send(Reply::error(why));
            return;
        }
        let unit = unit_name(&workload);
        tokio::spawn(async move {
            let answer =
                match tokio::task::spawn_blocking(move || crate::logs::tail(&unit, lines)).await {
                    Ok(Ok(lines)) => Reply::ok(lines),
                    Ok(Err(e)) => Reply::error(e),
                    Err(e) => Reply::error(format!("reading the journal failed: {e}")),
                };
            let _ = reply.send(answer);
        });
    }

    /// Carries an owner's signed push to the node it names by peer id: this one, or a
    /// member, whose answer comes back without holding up this loop.
    fn push(&mut self, push: serde_json::Value, reply: oneshot::Sender<Reply>) {
        let Some(target) = push.get("peer").and_then(|n| n.as_str()) else {
            let _ = reply.send(Reply::error(
                "the push names no peer (made by an older xnodectl? sign it again)",
            ));
            return;
        };
        let Ok(target) = target.parse::<libp2p::PeerId>() else {
            let _ = reply.send(Reply::error(format!("{target:?} is not a peer id")));
            return;
        };
        let bytes = serde_json::to_vec(&push).unwrap_or_default();
        let handle = match self.mesh_handle() {
            Ok(handle) => handle,
            Err(why) => {
                // A push names its target's peer id, and such a node has none in use.
                let _ = reply.send(Reply::error(format!(
                    "{why}, so it takes no pushes: apply the spec here with `xnodectl apply`"
                )));
                return;
            }
        };
        if target == handle.peer_id() {
            let (tx, rx) = oneshot::channel();
            self.check_push("this node's API".into(), bytes, tx);
            tokio::spawn(async move {
                let answer = match rx.await {
                    Ok(Ok(done)) => Reply::ok(done),
                    Ok(Err(why)) => Reply::error(why),
                    Err(_) => Reply::error("the agent dropped the push"),
                };
                let _ = reply.send(answer);
            });
            return;
        }
        tokio::spawn(async move {
            let answer = match handle.push(target, bytes).await {
                Ok(Ok(done)) => Reply::ok(done),
                Ok(Err(why)) => Reply::error(why),
                Err(e) => Reply::error(e.to_string()),
            };
            let _ = reply.send(answer);
        });
    }

    /// A push for this node: checked against its owner and its last push beside the
    /// loop, then applied like any other spec.
    pub(super) fn check_push(
        &mut self,
        from: String,
        bytes: impl AsRef<[u8]> + Send + 'static,
        reply: oneshot::Sender<Result<String, String>>,
    ) {
        let peer = self.mesh_handle().map(|h| h.peer_id().to_string());
        let (current, peer) = match (self.current.clone(), peer) {
            (Some(current), Ok(peer)) => (current, peer),
            (current, _) => {
                let why = if current.is_none() {
                    "this node has no spec yet, so no owner to accept a push from"
                } else {
                    "this node is not in the mesh, so it has no peer id a push can name"
                };
                warn!(from, "push rejected: {why}");
                let _ = reply.send(Err(why.to_owned()));
                return;
            }
        };
        let last_generation = self.state.borrow().last_push;
        self.tasks.spawn(async move {
            let verdict = tokio::task::spawn_blocking(move || {
                let now = SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let receiver = push::Receiver {
                    peer: &peer,
                    current: &current.spec,
                    last_generation,
                    now,
                };
                // The bytes (and their share of the mesh's push budget) go when checked.
                push::accept(bytes.as_ref(), &receiver).map_err(|e| e.to_string())
            })
            .await
            .unwrap_or_else(|e| Err(format!("checking the push failed: {e}")));
            Done::Push(Box::new(CheckedPush {
                from,
                reply,
                verdict,
            }))
        });
    }

    /// Every refusal is logged with its reason and counted.
    pub(super) fn push_checked(&mut self, c: CheckedPush) {
        let count = |outcome| {
            self.metrics
                .pushes
                .get_or_create(&OutcomeLabel { outcome })
                .inc();
        };
        let last = self.state.borrow().last_push;
        let refusal = match &c.verdict {
            Err(why) => Some(why.clone()),
            // Checked against the state of a moment ago: a push accepted meanwhile wins.
            Ok(a) if a.push.generation <= last => Some(format!(
                "generation {} is not above the last push accepted ({last})",
                a.push.generation
            )),
            Ok(_) => self.apply.busy(),
        };
        if let Some(why) = refusal {
            warn!(from = c.from, "push rejected: {why}");
            count("rejected");
            let _ = c.reply.send(Err(why));
            return;
        }
        let Ok(push::Accepted {
            push: envelope,
            spec,
        }) = c.verdict
        else {
            return;
        };
        info!(from = c.from, generation = envelope.generation, hash = %spec.hash, "push accepted; applying it");
        count("accepted");
        let raw = serde_json::to_vec_pretty(&envelope.spec).unwrap_or_default();
        let source = Source::Mesh {
            peer: c.from,
            push_generation: envelope.generation,
        };
        match self.node_job(spec, raw, source, true) {
            Ok(job) => {
                // Answered at once: the apply and its health gate may take longer than
                // a request over the mesh may. Its outcome shows in the node's
                // heartbeats (`xnodectl fleet status`, `xnodectl mesh push --wait`).
                let next = self
                    .state
                    .borrow()
                    .generations
                    .last()
                    .map_or(1, |g| g.number + 1);
                self.run_job(job, None);
                let _ = c.reply.send(Ok(format!(
                    "accepted push generation {}; applying it as generation {next}",
                    envelope.generation
                )));
            }
            Err(why) => {
                warn!("push not applied: {why}");
                let _ = c.reply.send(Err(why));
            }
        }
    }

    pub(super) fn mesh_handle(&self) -> Result<xnode_mesh::node::Handle, String> {
        let Some(mesh) = &self.mesh else {
            return Err("this node runs without the mesh (--no-mesh)".into());
        };
        mesh.handle()
    }
}
