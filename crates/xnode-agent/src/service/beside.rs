//! The tasks that run beside the loop all the time, each reading the spec in force and
//! where mesh workloads are placed, and reporting through a watch the loop reads:
//! continuous health (`liveness`), usage samples (`usage`), the back-off of failing
//! replicas (`backoff`), and the firewall set (`firewall`, which reports nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::watch;
use xnode_api::node::Usage;
use xnode_spec::Validated;

use crate::backoff;
use crate::firewall::{self, NftSet};
use crate::liveness::{self, Liveness};
use crate::metrics::Metrics;
use crate::units::Units;
use crate::usage;

/// Where the tasks report, until they start.
struct Outs {
    live: watch::Sender<BTreeMap<String, Liveness>>,
    usage: watch::Sender<BTreeMap<String, Usage>>,
    withdrawn: watch::Sender<BTreeSet<String>>,
}

/// The loop's side of the tasks.
pub(super) struct Beside {
    /// The spec in force, for them all.
    pub spec: watch::Sender<Option<Arc<Validated>>>,
    /// What the probes find.
    pub live: watch::Receiver<BTreeMap<String, Liveness>>,
    /// What systemd accounts for each running workload.
    pub usage: watch::Receiver<BTreeMap<String, Usage>>,
    /// Mesh workloads withdrawn from this node for failing here.
    pub withdrawn: watch::Receiver<BTreeSet<String>>,
    outs: Option<Outs>,
}

impl Beside {
    pub fn new() -> Beside {
        let (live_out, live) = watch::channel(BTreeMap::new());
        let (usage_out, usage) = watch::channel(BTreeMap::new());
        let (withdrawn_out, withdrawn) = watch::channel(BTreeSet::new());
        Beside {
            spec: watch::channel(None).0,
            live,
            usage,
            withdrawn,
            outs: Some(Outs {
                live: live_out,
                usage: usage_out,
                withdrawn: withdrawn_out,
            }),
        }
    }

    /// Starts the tasks (once).
    pub fn start<U: Units + Send + Sync + 'static>(
        &mut self,
        units: &Arc<U>,
        metrics: &Arc<Metrics>,
        placed: &watch::Sender<BTreeSet<String>>,
        firewall: Option<NftSet>,
    ) {
        let Some(outs) = self.outs.take() else {
            return;
        };
        tokio::spawn(liveness::run(
            self.spec.subscribe(),
            placed.subscribe(),
            outs.live,
        ));
        tokio::spawn(usage::run(units.clone(), metrics.clone(), outs.usage));
        tokio::spawn(backoff::run(
            units.clone(),
            self.spec.subscribe(),
            placed.subscribe(),
            outs.withdrawn,
        ));
        if let Some(set) = firewall {
            tokio::spawn(firewall::run(
                set,
                self.spec.subscribe(),
                placed.subscribe(),
            ));
        }
    }
}
