//! What an apply is told and tells while it runs: where placement puts mesh workloads,
//! and how far it is, which the loop reads for `status` and for what converge may do
//! meanwhile.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::watch;
use xnode_spec::Validated;

use crate::gate::Gated;

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

/// The steps of an apply.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Recording the generation and realising its store paths.
    #[default]
    Preparing,
    /// Carrying out the plan on systemd.
    Applying,
    /// Waiting for the changed workloads to be healthy.
    Gating,
    /// Putting the last good generation back.
    RollingBack,
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
