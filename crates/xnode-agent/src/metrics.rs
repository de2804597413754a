//! Prometheus metrics: what the agent does and how the units fare, served in the
//! OpenMetrics text format on a local address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

/// A unit-state label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    /// systemd's ActiveState.
    pub state: String,
}

/// What became of a push.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `accepted` or `rejected`.
    pub outcome: &'static str,
}

/// A workload label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkloadLabel {
    /// The workload.
    pub workload: String,
}

/// The agent's version.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabel {
    /// As `xnoded --version` says it.
    pub version: &'static str,
}

/// How an apply ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApplyLabel {
    /// `healthy`, `rolled_back`, `unhealthy` (left so, as asked) or `failed` (it could
    /// not be carried out).
    pub outcome: &'static str,
}

/// A rollout phase label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabel {
    /// `none`, `done`, `rolling out` or `halted`.
    pub phase: &'static str,
}

/// The agent's metrics.
#[derive(Debug)]
pub struct Metrics {
    /// 1, labelled with the agent's version.
    pub build_info: Family<VersionLabel, Gauge>,
    /// 1 while the node is as its spec says: the generation in force is healthy, no
    /// apply runs, and the units match it.
    pub converged: Gauge,
    /// Applies, by how they ended.
    pub applies: Family<ApplyLabel, Counter>,
    /// 1 while a workload's unit is up (or on its way up), 0 otherwise.
    pub up: Family<WorkloadLabel, Gauge>,
    /// Reconcile passes.
    pub reconciles: Counter,
    /// How long a pass took.
    pub reconcile_seconds: Histogram,
    /// Workload units by ActiveState, as of the last pass.
    pub units: Family<StateLabel, Gauge>,
    /// Applies that ended unhealthy or failed.
    pub failed_applies: Counter,
    /// Automatic and manual rollbacks.
    pub rollbacks: Counter,
    /// The generation in force.
    pub generation: Gauge,
    /// Signed pushes from the mesh, by outcome.
    pub pushes: Family<OutcomeLabel, Counter>,
    /// Mesh workloads this node took over from a lost member.
    pub failovers: Counter,
    /// From the lost member's last heartbeat to the workload running here.
    pub failover_seconds: Histogram,
    /// The fleet generation this node runs.
    pub fleet_generation: Gauge,
    /// The newest fleet generation it accepted.
    pub fleet_newest: Gauge,
    /// Signed fleet specs, by outcome.
    pub fleet_specs: Family<OutcomeLabel, Counter>,
    /// 1 for the rollout's phase, 0 for the others.
    pub rollout_phase: Family<PhaseLabel, Gauge>,
    /// Members that run the newest fleet generation healthy.
    pub rollout_done: Gauge,
    /// Members taking part in the rollout.
    pub rollout_members: Gauge,
    /// 1 while a probed workload passes its probe, 0 while it fails.
    pub healthy: Family<WorkloadLabel, Gauge>,
    /// Restarts systemd made of each running workload.
    pub restarts: Family<WorkloadLabel, Gauge>,
    /// Memory each running workload uses.
    pub memory: Family<WorkloadLabel, Gauge>,
    /// CPU time each running workload used, in seconds.
    pub cpu: Family<WorkloadLabel, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl Metrics {
    /// Registers the metrics under `xnode_`.
    pub fn register(registry: &mut Registry) -> Arc<Metrics> {
        let m = Metrics {
            build_info: Family::default(),
            converged: Gauge::default(),
            applies: Family::default(),
            up: Family::default(),
            reconciles: Counter::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            units: Family::default(),
            failed_applies: Counter::default(),
            rollbacks: Counter::default(),
            generation: Gauge::default(),
            pushes: Family::default(),
            failovers: Counter::default(),
            failover_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            fleet_generation: Gauge::default(),
            fleet_newest: Gauge::default(),
            fleet_specs: Family::default(),
            rollout_phase: Family::default(),
            rollout_done: Gauge::default(),
            rollout_members: Gauge::default(),
            healthy: Family::default(),
            restarts: Family::default(),
            memory: Family::default(),
            cpu: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("xnode");
        m.build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        r.register("build_info", "The agent's version", m.build_info.clone());
        r.register(
            "converged",
            "1 while the generation in force is healthy, no apply runs and the units match it",
            m.converged.clone(),
        );
        r.register("applies", "Applies, by how they ended", m.applies.clone());
        r.register(
            "workload_up",
            "1 while a workload's unit is up or on its way up",
            m.up.clone(),
        );
        r.register("reconciles", "Reconcile passes", m.reconciles.clone());
        r.register(
            "reconcile_seconds",
            "Duration of a reconcile pass",
            m.reconcile_seconds.clone(),
        );
        r.register("units", "Workload units by ActiveState", m.units.clone());
        r.register(
            "failed_applies",
            "Applies that ended unhealthy or failed",
            m.failed_applies.clone(),
        );
        r.register(
            "rollbacks",
            "Rollbacks to an earlier generation",
            m.rollbacks.clone(),
        );
        r.register(
            "generation",
            "The generation in force",
            m.generation.clone(),
        );
        r.register(
            "pushes",
            "Signed pushes from the mesh, by outcome",
            m.pushes.clone(),
        );
        r.register(
            "failovers",
            "Mesh workloads taken over from a lost member",
            m.failovers.clone(),
        );
        r.register(
            "failover_seconds",
            "From the lost member's last heartbeat to the workload running here",
            m.failover_seconds.clone(),
        );
        r.register(
            "fleet_generation",
            "The fleet generation this node runs",
            m.fleet_generation.clone(),
        );
        r.register(
            "fleet_newest_generation",
            "The newest fleet generation this node accepted",
            m.fleet_newest.clone(),
        );
        r.register(
            "fleet_specs",
            "Signed fleet specs, by outcome",
            m.fleet_specs.clone(),
        );
        r.register(
            "fleet_rollout_phase",
            "1 for the phase the rollout of the newest fleet generation is in",
            m.rollout_phase.clone(),
        );
        r.register(
            "fleet_rollout_done",
            "Members that run the newest fleet generation healthy",
            m.rollout_done.clone(),
        );
        r.register(
            "workload_healthy",
            "1 while a probed workload passes its probe, 0 while it fails",
            m.healthy.clone(),
        );
        r.register(
            "workload_restarts",
            "Restarts systemd made of each running workload",
            m.restarts.clone(),
        );
        r.register(
            "workload_memory_bytes",
            "Memory each running workload uses, as systemd accounts it",
            m.memory.clone(),
        );
        r.register(
            "workload_cpu_seconds",
            "CPU time each running workload used, as systemd accounts it",
            m.cpu.clone(),
        );
        r.register(
            "fleet_rollout_members",
            "Members taking part in the rollout",
            m.rollout_members.clone(),
        );
        Arc::new(m)
    }
}

/// Scrapes served at once; Prometheus makes one at a time.
const MAX_CONNECTIONS: usize = 16;
/// How long a scrape may take from connecting to its last byte.
const DEADLINE: Duration = Duration::from_secs(10);

/// Serves `GET /metrics` until the process ends.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    let scrape = move |stream| {
        let registry = registry.clone();
        async move {
            match tokio::time::timeout(DEADLINE, answer(stream, &registry)).await {
                Ok(Err(e)) => debug!("metrics connection ended: {e}"),
                Err(_) => debug!("metrics connection closed: no scrape within 10 s"),
                Ok(Ok(())) => {}
            }
        }
    };
    crate::accept::serve(
        listener,
        "the metrics port",
        MAX_CONNECTIONS,
        scrape,
        || false,
    )
    .await;
}

/// The type of a metrics page.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric, as Prometheus reads them.
pub fn page(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut body = String::new();
    prometheus_client::encoding::text::encode(&mut body, registry)?;
    Ok(body)
}

/// Binds the metrics address; returns the listener and the address really bound.
pub async fn bind(address: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(address).await?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

async fn answer(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let wanted = head.starts_with(b"GET /metrics ") || head.starts_with(b"GET /metrics?");
    let (status, body) = if wanted {
        ("200 OK", page(registry).map_err(std::io::Error::other)?)
    } else {
        ("404 Not Found", "only /metrics is served here\n".to_owned())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_the_registered_metrics() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry);
        m.reconciles.inc();
        m.units
            .get_or_create(&StateLabel {
                state: "active".into(),
            })
            .set(3);
        let (listener, addr) = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        tokio::spawn(serve(listener, Arc::new(registry)));
        let page = get(addr, "/metrics").await;
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
        assert!(page.contains("xnode_reconciles_total 1"), "{page}");
        assert!(page.contains("xnode_units{state=\"active\"} 3"), "{page}");
        assert!(page.trim_end().ends_with("# EOF"));
        assert!(get(addr, "/").await.starts_with("HTTP/1.1 404"));
    }
}
