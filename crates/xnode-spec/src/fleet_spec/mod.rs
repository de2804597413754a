//! The fleet spec: the mesh workloads of a whole fleet, signed once by its owner and
//! carried by the members to each other, with the policy each one's changes roll out
//! under. A node runs it together with its own node spec ([`merge`]).
//!
//! ```
//! let fleet = xnode_spec::fleet_spec::parse(br#"{"version": 1, "workloads": {"web": {
//!     "command": ["/bin/sleep", "infinity"], "placement": {"mesh": {"replicas": 2}},
//!     "rollout": {"max_parallel": 2}}}}"#).unwrap();
//! assert_eq!(fleet.spec.rollout().max_parallel, 2);
//! assert_eq!(fleet.spec.rollout().canary, 1);
//! ```

pub mod signed;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;

use crate::model::Workload;
use crate::values::Duration;
use crate::{Invalid, SpecHash, hash_value};

/// The fleet spec versions this build understands.
pub const VERSION: u64 = 1;

/// What every member of a fleet runs on the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "XnodeOS fleet spec")]
pub struct FleetSpec {
    /// Fleet spec format version; must be 1.
    pub version: u64,
    /// The fleet's mesh workloads, by name: each has a node spec workload's fields, with
    /// `placement` on the mesh, and its rollout policy.
    #[serde(default)]
    pub workloads: BTreeMap<String, FleetWorkload>,
}

/// One mesh workload of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FleetWorkload {
    /// What it is: the same fields as in a node spec.
    #[serde(flatten)]
    pub workload: Workload,
    /// How a change to it reaches the members.
    #[serde(default)]
    pub rollout: Rollout,
}

/// How a new generation reaches the members, as Nomad's `update` block says it: a few
/// canaries first, then `max_parallel` at a time, each batch healthy for
/// `min_healthy_time` before the next moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// How many members move at once after the canaries.
    #[schemars(range(min = 1, max = 1024))]
    pub max_parallel: u32,
    /// How many members move first, alone; 0 for none.
    #[schemars(range(min = 0, max = 1024))]
    pub canary: u32,
    /// How long a member must be healthy on the new generation before the next move.
    pub min_healthy_time: Duration,
    /// Whether a failed rollout takes every member back to the last generation that was
    /// healthy everywhere.
    pub auto_revert: bool,
}

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            max_parallel: 1,
            canary: 1,
            min_healthy_time: Duration::from_millis(10_000),
            auto_revert: true,
        }
    }
}

impl FleetSpec {
    /// The policy a generation rolls out under: the most careful of its workloads'
    /// (most canaries, fewest at once, longest wait, revert if any asks). A node applies
    /// a generation as one step, gated as one, so one policy rules it; taking it from
    /// the generation alone makes every member compute the same.
    pub fn rollout(&self) -> Rollout {
        let mut policies = self.workloads.values().map(|w| w.rollout);
        let Some(first) = policies.next() else {
            return Rollout::default();
        };
        policies.fold(first, |a, b| Rollout {
            max_parallel: a.max_parallel.min(b.max_parallel),
            canary: a.canary.max(b.canary),
            min_healthy_time: a.min_healthy_time.max(b.min_healthy_time),
            auto_revert: a.auto_revert || b.auto_revert,
        })
    }

    /// Its workloads as they go into a node spec.
    fn node_workloads(&self) -> impl Iterator<Item = (&String, Value)> {
        self.workloads.iter().map(|(name, w)| {
            // Serializing plain data with string keys cannot fail.
            (name, serde_json::to_value(&w.workload).unwrap_or_default())
        })
    }
}

/// A fleet spec that passed validation, with the hash of its canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedFleet {
    /// The spec.
    pub spec: FleetSpec,
    /// Its content hash.
    pub hash: SpecHash,
}

/// Parses and validates a fleet spec document. Never panics, whatever the input.
pub fn parse(bytes: &[u8]) -> Result<ValidatedFleet, Invalid> {
    let value: Value = crate::json::from_slice(bytes).map_err(|e| {
        Invalid::whole_document(format!(
            "is not a fleet spec, which is a JSON object such as {{\"version\": 1, \
             \"workloads\": {{}}}}: {e}"
        ))
    })?;
    parse_value(&value)
}

/// Validates an already parsed fleet spec.
pub fn parse_value(value: &Value) -> Result<ValidatedFleet, Invalid> {
    let spec = crate::validate::fleet_spec(value).map_err(|problems| Invalid { problems })?;
    Ok(ValidatedFleet {
        spec,
        hash: hash_value(value),
    })
}

/// The JSON Schema of the fleet spec.
pub fn schema() -> Value {
    let schema = schemars::SchemaGenerator::default().into_root_schema_for::<FleetSpec>();
    schema.to_value()
}

/// Why a node spec and a fleet spec cannot run together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    /// Both define these workloads.
    #[error(
        "both the node spec and the fleet spec define {}: remove it from one of them",
        names.join(", ")
    )]
    Names {
        /// The workloads both define.
        names: Vec<String>,
    },
    /// Together they break a rule neither breaks alone (a port both expose, say).
    #[error("the node spec and the fleet spec together are not valid: {0}")]
    Invalid(Invalid),
}

/// The node spec `node` (a valid one, as JSON) with `fleet`'s workloads added: what the
/// node runs, as JSON and validated. A name both define is a conflict, never an
/// override: which copy would win is a choice only its owner can make.
pub fn merge(node: &Value, fleet: &FleetSpec) -> Result<(Value, crate::Validated), Conflict> {
    let mut merged = node.clone();
    let Some(root) = merged.as_object_mut() else {
        return Err(Conflict::Invalid(Invalid::whole_document(
            "the node spec is not an object",
        )));
    };
    if fleet.workloads.is_empty() {
        let v = crate::parse_value(&merged).map_err(Conflict::Invalid)?;
        return Ok((merged, v));
    }
    let workloads = root
        .entry("workloads")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(workloads) = workloads.as_object_mut() else {
        return Err(Conflict::Invalid(Invalid::whole_document(
            "the node spec's workloads are not an object",
        )));
    };
    let names: Vec<String> = fleet
        .workloads
        .keys()
        .filter(|name| workloads.contains_key(*name))
        .cloned()
        .collect();
    if !names.is_empty() {
        return Err(Conflict::Names { names });
    }
    for (name, w) in fleet.node_workloads() {
        workloads.insert(name.clone(), w);
    }
    let v = crate::parse_value(&merged).map_err(Conflict::Invalid)?;
    Ok((merged, v))
}

/// The node spec `merged` was made from by [`merge`] with `fleet`: the workloads the
/// fleet spec brought taken out again.
pub fn node_part(merged: &Value, fleet: Option<&FleetSpec>) -> Value {
    let mut node = merged.clone();
    if let (Some(fleet), Some(workloads)) = (
        fleet,
        node.get_mut("workloads").and_then(Value::as_object_mut),
    ) {
        workloads.retain(|name, _| !fleet.workloads.contains_key(name));
    }
    node
}

#[cfg(test)]
mod tests;
