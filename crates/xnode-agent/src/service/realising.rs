//! What of the spec in force cannot be realised (its store paths, its secrets), found
//! beside the loop: at start, and again at each reconcile pass while anything is held
//! back, since the fleet's members may hold the paths by now.

use std::collections::BTreeMap;
use std::time::Duration;

use tracing::info;

use super::Done;
use crate::nix::Realise;
use crate::units::Units;

impl<U, N> super::Service<U, N>
where
    U: Units + Send + Sync + 'static,
    N: Realise + Clone + Send + Sync + 'static,
{
    /// A restarted agent must not start what it could not realise before: until this
    /// is known, no converge runs.
    pub(super) fn check_realisable(&mut self) {
        let Some(current) = self.current.clone() else {
            self.not_realised = Some(BTreeMap::new());
            return;
        };
        let (nix, secrets) = self.apply.readiers();
        let placed = self.placed.borrow().clone();
        let handle = self.tasks.spawn(async move {
            let missing = crate::deploy::unrealisable(&nix, &secrets, &current.spec, &placed).await;
            Done::Realised(current.hash, missing)
        });
        self.background.realising = Some(handle.id());
    }

    /// Workloads held back for want of their store paths (or secrets) are tried again
    /// each reconcile pass, beside the loop: the fleet's members may hold the paths by
    /// now.
    pub(super) fn realise_again(&mut self) {
        let held_back = self.not_realised.as_ref().is_some_and(|m| !m.is_empty());
        if held_back && self.background.realising.is_none() && !self.apply.running() {
            self.check_realisable();
        }
    }

    /// What of the spec `hash` names cannot be realised, as found beside the loop.
    pub(super) fn realised(
        &mut self,
        hash: xnode_spec::SpecHash,
        missing: BTreeMap<String, String>,
    ) {
        self.background.realising = None;
        // An apply under way, or one of another spec that ended meanwhile,
        // knows better.
        if self.current.as_ref().is_some_and(|c| c.hash == hash) && !self.apply.running() {
            if let Some(before) = &self.not_realised {
                for name in before.keys().filter(|n| !missing.contains_key(*n)) {
                    info!(workload = %name, "{name}'s store paths are here now");
                }
            }
            self.not_realised = Some(missing);
        } else if self.not_realised.is_none() {
            self.not_realised = Some(BTreeMap::new());
        }
        self.converge.soon(Duration::ZERO);
    }
}
