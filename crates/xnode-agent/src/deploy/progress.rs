//! What an apply is told and tells while it runs: where placement puts mesh workloads,
//! and how far it is, which the loop reads for `status` and for what converge may do
//! meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;
use xnode_spec::Validated;

use crate::gate::Gated;

pub use xnode_api::node::Phase;

/// How far an apply is, for `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The generation being applied, once recorded.
    pub generation: Option<u64>,
    /// What it does now.
    pub phase: Phase,
    /// Each workload the health gate waits on.
    pub workloads: BTreeMap<String, Gated>,
    /// The workloads it leaves as they are, their store paths missing: what converges
    /// meanwhile leaves them too.
    #[serde(skip)]
    pub held_back: BTreeMap<String, String>,
    /// The spec a rollback puts back, once it is known: what the node is heading for
    /// from then on, so what converges meanwhile follows it.
    #[serde(skip)]
    pub putting_back: Option<Arc<Validated>>,
}

/// What an apply is told and tells while it runs.
pub struct Context {
    /// Where placement puts mesh workloads: the apply plans with what it says at the
    /// start, and the gate follows it.
    pub placed: watch::Receiver<BTreeSet<String>>,
    /// How far the apply is.
    pub progress: watch::Sender<Progress>,
}

impl Context {
    pub(super) fn phase(&self, phase: Phase) {
        self.progress.send_modify(|p| p.phase = phase);
    }
}
