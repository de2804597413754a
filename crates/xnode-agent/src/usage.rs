//! What systemd accounts for each running workload (restarts, memory, CPU time),
//! sampled beside the loop, so that `status` and the metrics read a recent sample
//! rather than asking systemd for every workload on every request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use tokio::sync::watch;
use xnode_api::node::Usage;
use xnode_spec::unit::workload_of;

use crate::metrics::{Metrics, WorkloadLabel};
use crate::units::Units;

/// How often the running workloads are sampled.
pub const EVERY: Duration = Duration::from_secs(10);

/// Reads at once.
const AT_ONCE: usize = 8;

/// Usages every running workload service every [`EVERY`] into `out`, by workload.
/// Ends when nothing reads `out` any more.
pub async fn run<U: Units + Send + Sync + 'static>(
    units: Arc<U>,
    metrics: Arc<Metrics>,
    out: watch::Sender<BTreeMap<String, Usage>>,
) {
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !out.is_closed() {
        tick.tick().await;
        let Ok(states) = units.states().await else {
            continue;
        };
        let running: Vec<String> = states
            .into_iter()
            .filter(|(name, active, _)| {
                name.ends_with(".service") && workload_of(name).is_some() && active == "active"
            })
            .map(|(name, ..)| name)
            .collect();
        let samples: BTreeMap<String, Usage> = futures_util::stream::iter(running)
            .map(|unit| {
                let units = units.clone();
                async move {
                    let usage = units.usage(&unit).await.ok()?;
                    let workload = workload_of(&unit)?.to_owned();
                    Some((
                        workload,
                        Usage {
                            restarts: usage.restarts,
                            memory_bytes: usage.memory_bytes,
                            cpu_ns: usage.cpu_ns,
                        },
                    ))
                }
            })
            .buffer_unordered(AT_ONCE)
            .filter_map(std::future::ready)
            .collect()
            .await;
        metrics.restarts.clear();
        metrics.memory.clear();
        metrics.cpu.clear();
        for (workload, s) in &samples {
            let label = WorkloadLabel {
                workload: workload.clone(),
            };
            metrics
                .restarts
                .get_or_create(&label)
                .set(i64::from(s.restarts));
            if let Some(bytes) = s.memory_bytes {
                metrics
                    .memory
                    .get_or_create(&label)
                    .set(i64::try_from(bytes).unwrap_or(i64::MAX));
            }
            if let Some(ns) = s.cpu_ns {
                metrics.cpu.get_or_create(&label).set(ns as f64 / 1e9);
            }
        }
        out.send_replace(samples);
    }
}
