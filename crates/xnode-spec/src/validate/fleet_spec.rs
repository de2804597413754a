//! The fleet spec: mesh workloads with their rollout policy, validated with the same
//! rules as a node spec's workloads.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::parts::{MAX_REPLICAS, duration};
use super::workload::read_workloads;
use super::{field, required};
use crate::fleet_spec::{FleetSpec, FleetWorkload, Rollout, VERSION};
use crate::model::Placement;
use crate::path::Path;
use crate::read::Checker;
use crate::values::Duration;

const FIELDS: &[&str] = &["version", "workloads"];
const ROLLOUT_FIELDS: &[&str] = &["max_parallel", "canary", "min_healthy_time", "auto_revert"];

/// The longest `min_healthy_time`: a rollout of a thousand members still ends in a day.
const MAX_HEALTHY_TIME: Duration = Duration::from_millis(3_600_000);

/// Validates a whole fleet spec; `Err` holds every problem in document order.
pub(crate) fn fleet_spec(v: &Value) -> Result<FleetSpec, Vec<crate::Problem>> {
    let mut c = Checker::default();
    let spec = read(&mut c, v);
    match spec {
        Some(spec) if c.problems.is_empty() => Ok(spec),
        _ => Err(c.problems),
    }
}

fn read(c: &mut Checker, v: &Value) -> Option<FleetSpec> {
    let root = Path::ROOT;
    let map = c.object(v, &root, FIELDS)?;
    let version = required(c, map, &root, "version", "add \"version\": 1", |c, v, p| {
        let n = c.integer(v, p, 0, u64::MAX)?;
        c.check(
            p,
            (n == VERSION).then_some(n).ok_or_else(|| {
                format!("version {n} is not supported (this build reads version {VERSION})")
            }),
        )
    });
    let workloads = field(
        c,
        map,
        &root,
        "workloads",
        BTreeMap::new,
        read_fleet_workloads,
    );
    Some(FleetSpec {
        version: version?,
        workloads: workloads?,
    })
}

/// Each workload is a node spec's workload (read by the same code, so the rules cannot
/// drift apart) plus its `rollout`, and must be placed on the mesh.
fn read_fleet_workloads(
    c: &mut Checker,
    v: &Value,
    path: &Path<'_>,
) -> Option<BTreeMap<String, FleetWorkload>> {
    let map = c.map(v, path)?;
    let mut plain = Map::new();
    let mut rollouts = BTreeMap::new();
    for (name, w) in map {
        let mut w = w.clone();
        if let Value::Object(fields) = &mut w
            && let Some(r) = fields.remove("rollout")
        {
            rollouts.insert(name.clone(), r);
        }
        plain.insert(name.clone(), w);
    }
    let workloads = read_workloads(c, &Value::Object(plain), path)?;
    let mut out = BTreeMap::new();
    let mut ok = true;
    for (name, workload) in workloads {
        let p = path.key(&name);
        if matches!(workload.placement, Placement::Local) {
            c.report(
                &p.key("placement"),
                "a fleet spec's workloads run on the mesh: add \"placement\": {\"mesh\": \
                 {\"replicas\": N}} (a workload for one node belongs in that node's spec)",
            );
            ok = false;
        }
        let rollout = match rollouts.get(&name) {
            Some(r) => read_rollout(c, r, &p.key("rollout")),
            None => Some(Rollout::default()),
        };
        match rollout {
            Some(rollout) => {
                out.insert(name, FleetWorkload { workload, rollout });
            }
            None => ok = false,
        }
    }
    ok.then_some(out)
}

fn read_rollout(c: &mut Checker, v: &Value, path: &Path<'_>) -> Option<Rollout> {
    let map = c.object(v, path, ROLLOUT_FIELDS)?;
    let d = Rollout::default();
    let max_parallel = field(
        c,
        map,
        path,
        "max_parallel",
        || d.max_parallel,
        |c, v, p| u32::try_from(c.integer(v, p, 1, MAX_REPLICAS)?).ok(),
    );
    let canary = field(
        c,
        map,
        path,
        "canary",
        || d.canary,
        |c, v, p| u32::try_from(c.integer(v, p, 0, MAX_REPLICAS)?).ok(),
    );
    let min_healthy_time = field(
        c,
        map,
        path,
        "min_healthy_time",
        || d.min_healthy_time,
        |c, v, p| duration(c, v, p, Duration::from_millis(0), MAX_HEALTHY_TIME),
    );
    let auto_revert = field(
        c,
        map,
        path,
        "auto_revert",
        || d.auto_revert,
        |c, v, p| c.bool(v, p),
    );
    Some(Rollout {
        max_parallel: max_parallel?,
        canary: canary?,
        min_healthy_time: min_healthy_time?,
        auto_revert: auto_revert?,
    })
}
