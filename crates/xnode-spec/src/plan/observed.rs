//! Units as observed on a node: what the plan is made against.

use std::collections::BTreeSet;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::model::RestartPolicy;

/// A unit's `ActiveState`, as systemd reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum ActiveState {
    Active,
    Reloading,
    Inactive,
    Failed,
    Activating,
    Deactivating,
    Maintenance,
    Refreshing,
}

impl ActiveState {
    /// Whether the unit is up or on its way up; anything else needs a start.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            ActiveState::Active
                | ActiveState::Reloading
                | ActiveState::Activating
                | ActiveState::Refreshing
        )
    }
}

impl fmt::Display for ActiveState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = serde_json::to_value(self).ok();
        f.write_str(s.as_ref().and_then(|v| v.as_str()).unwrap_or("unknown"))
    }
}

/// One unit as observed on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ObservedUnit {
    /// Full unit name, e.g. `xnode-web.service`.
    pub name: String,
    /// Its `ActiveState`.
    pub active_state: ActiveState,
    /// The text of its unit file; absent when systemd knows the unit but no file backs it
    /// (a transient unit, or a file deleted while it ran).
    #[serde(default)]
    pub file: Option<String>,
    /// Its `SubState`, e.g. `running`, or `exited` for a workload that finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_state: Option<String>,
    /// For a failed unit, systemd's `Result`: why it failed (`exit-code`, `signal`,
    /// `start-limit-hit`, …). The restart policy decides from it whether to start the
    /// unit again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// For a failed unit: it failed as it was being stopped (by hand, by the agent, or
    /// by a unit it is bound to), not while it ran. It was stopped, not finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopped: bool,
}

impl ObservedUnit {
    /// A unit in `state` with `file`, with nothing more known.
    pub fn new(name: impl Into<String>, state: ActiveState, file: Option<String>) -> Self {
        ObservedUnit {
            name: name.into(),
            active_state: state,
            file,
            sub_state: None,
            result: None,
            stopped: false,
        }
    }

    /// Whether its process ended by itself and its restart policy leaves it so: a clean
    /// exit (the unit stays `active (exited)`), or a failure that systemd was not told
    /// to restart. A unit stopped by hand (even one that failed on the way down), or
    /// that systemd gave up restarting (`start-limit-hit`), is not done: the agent
    /// starts it again.
    pub fn finished(&self, policy: RestartPolicy) -> bool {
        match self.active_state {
            ActiveState::Active => self.sub_state.as_deref() == Some("exited"),
            ActiveState::Failed if self.stopped => false,
            ActiveState::Failed => {
                let result = self.result.as_deref().unwrap_or("exit-code");
                result != "start-limit-hit" && !policy.restarts_after(result)
            }
            _ => false,
        }
    }
}

/// The observed units of a node: what `xnodectl plan --observed` reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    /// Units whose names start with `xnode-`; others are ignored.
    pub units: Vec<ObservedUnit>,
}

/// Observed state that cannot be planned against.
#[derive(Debug, thiserror::Error)]
pub enum ObservedError {
    /// Not the expected JSON.
    #[error("the observed state is not valid: {0}")]
    Json(#[from] serde_json::Error),
    /// The same unit listed twice.
    #[error("the observed state lists unit {0} more than once")]
    Duplicate(String),
}

impl Observed {
    /// Parses and checks observed state.
    pub fn from_json(bytes: &[u8]) -> Result<Observed, ObservedError> {
        let observed: Observed = serde_json::from_slice(bytes)?;
        let mut seen = BTreeSet::new();
        for u in &observed.units {
            if !seen.insert(u.name.as_str()) {
                return Err(ObservedError::Duplicate(u.name.clone()));
            }
        }
        Ok(observed)
    }
}
