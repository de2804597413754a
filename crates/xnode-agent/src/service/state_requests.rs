//! The API's requests about workloads' state directories: listing them, and pruning a
//! removed workload's, each measured or deleted beside the loop.

use tokio::sync::oneshot;
use xnode_api::node::{Pruned, StateDir};

use super::Reply;
use crate::nix::Realise;
use crate::units::Units;

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// The state directories on the node, each marked with whether the spec in force
    /// still has its workload.
    pub(super) fn state_list(&self, reply: oneshot::Sender<Reply>) {
        let names: Vec<String> = self
            .current
            .as_ref()
            .map(|c| c.spec.workloads.keys().cloned().collect())
            .unwrap_or_default();
        tokio::spawn(async move {
            let root = std::path::Path::new(crate::state_dirs::ROOT);
            let answer =
                match tokio::task::spawn_blocking(move || crate::state_dirs::list(root)).await {
                    Ok(dirs) => Reply::ok(
                        dirs.into_iter()
                            .map(|d| StateDir {
                                in_spec: names.contains(&d.workload),
                                workload: d.workload,
                                path: d.path,
                                bytes: d.bytes,
                            })
                            .collect::<Vec<_>>(),
                    ),
                    Err(e) => Reply::error(format!("measuring state directories failed: {e}")),
                };
            let _ = reply.send(answer);
        });
    }

    /// Deletes a removed workload's state directory: never one the spec in force (or
    /// an apply under way) still has.
    pub(super) fn state_prune(&self, workload: String, reply: oneshot::Sender<Reply>) {
        let target = self.apply.target();
        let in_use = [self.current.as_deref(), target.as_deref()]
            .into_iter()
            .flatten()
            .any(|v| v.spec.workloads.contains_key(&workload));
        if in_use {
            let why = format!(
                "workload {workload} is in the spec; remove it from the spec before pruning its state"
            );
            let _ = reply.send(Reply::error(why));
            return;
        }
        // An apply could bring the workload back while its data goes.
        if let Some(busy) = self.apply.busy() {
            let _ = reply.send(Reply::error(busy));
            return;
        }
        tokio::spawn(async move {
            let root = std::path::Path::new(crate::state_dirs::ROOT);
            let w = workload.clone();
            let answer =
                match tokio::task::spawn_blocking(move || crate::state_dirs::prune(root, &w)).await
                {
                    Ok(Ok(bytes)) => {
                        tracing::info!(
                            workload,
                            bytes,
                            "deleted the state directory of {workload}"
                        );
                        Reply::ok(Pruned { workload, bytes })
                    }
                    Ok(Err(why)) => Reply::error(why),
                    Err(e) => Reply::error(format!("pruning failed: {e}")),
                };
            let _ = reply.send(answer);
        });
    }
}
