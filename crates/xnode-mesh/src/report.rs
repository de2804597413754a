//! What a member says in its heartbeats about how it is doing: its place in the fleet
//! spec's rollout, and a small summary of its health, so any member can show the
//! whole fleet. Bounded field by field, as every message is, and optional, so a
//! member of an older release is simply shown without one.

use serde::{Deserialize, Serialize};

/// The longest text in a report: an agent version, or an apply's outcome.
const MAX_TEXT: usize = 64;

/// A member's report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// Where it stands in the fleet spec's rollout.
    #[serde(default)]
    pub fleet: Progress,
    /// How the node itself is doing.
    #[serde(default)]
    pub node: NodeHealth,
}

/// A member's place in the rollout of the fleet spec.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// The newest fleet generation it accepted (0: none).
    #[serde(default)]
    pub newest: u64,
    /// The fleet generation it runs (0: none).
    #[serde(default)]
    pub running: u64,
    /// How long it has been healthy on `running`, in ms, as of the heartbeat; absent
    /// while it moves to it, or when it did not pass its health gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_ms: Option<u64>,
    /// The highest generation it knows failed its health gate somewhere.
    #[serde(default)]
    pub failed: u64,
    /// The highest generation it saw every member run healthy.
    #[serde(default)]
    pub stable: u64,
    /// It cannot run `newest`: its node spec defines a workload of the same name, or
    /// the two together break a rule.
    #[serde(default)]
    pub conflict: bool,
}

/// A member's health in brief.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeHealth {
    /// Its generation in force (0: none yet).
    #[serde(default)]
    pub generation: u64,
    /// The first 16 hex digits of its node spec's hash.
    #[serde(default)]
    pub spec: String,
    /// Whether its units are as its spec wants them.
    #[serde(default)]
    pub converged: bool,
    /// How many of its workloads failed.
    #[serde(default)]
    pub failed: u32,
    /// Its last apply (not a rollback's): the generation it made.
    #[serde(default)]
    pub applied: u64,
    /// How that apply ended: `healthy`, `unhealthy`, `rolled-back`, `applying`.
    #[serde(default)]
    pub last_apply: String,
    /// Its xnoded's version.
    #[serde(default)]
    pub version: String,
}

impl Report {
    /// Whether every field is within its bounds.
    pub(crate) fn check(&self) -> Result<(), String> {
        let n = &self.node;
        for (name, text) in [
            ("spec", &n.spec),
            ("last_apply", &n.last_apply),
            ("version", &n.version),
        ] {
            if text.len() > MAX_TEXT || text.chars().any(char::is_control) {
                return Err(format!("{name}: at most {MAX_TEXT} printable characters"));
            }
        }
        let f = &self.fleet;
        if f.running > f.newest {
            return Err(format!(
                "fleet: runs generation {} above its newest, {}",
                f.running, f.newest
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_bounded() {
        let mut r = Report::default();
        assert!(r.check().is_ok());
        r.node.version = "x".repeat(65);
        assert!(r.check().unwrap_err().contains("version"));
        r.node.version = "0.1\n".into();
        assert!(r.check().is_err());
        r.node.version = "0.1.0".into();
        r.fleet.running = 3;
        assert!(r.check().unwrap_err().contains("above its newest"));
    }
}
