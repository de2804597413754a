//! How a workload runs and ends: its kind, and how it is stopped.

use schemars::JsonSchema;
use serde::Serialize;

use crate::values::Duration;

/// What a workload is, which decides what "healthy" means for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Keeps running: healthy while it runs and passes its probe.
    #[default]
    Service,
    /// Runs to completion: healthy once it exited 0 within `health.timeout`. It runs
    /// again only when its definition changes.
    Oneshot,
    /// Runs to completion on its `schedule`, as a systemd timer starting a oneshot:
    /// healthy while the timer is active.
    Timer,
}

impl Kind {
    /// The spelling in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Oneshot => "oneshot",
            Kind::Timer => "timer",
        }
    }

    /// Whether its process runs to completion rather than staying up.
    pub fn runs_to_completion(self) -> bool {
        matches!(self, Kind::Oneshot | Kind::Timer)
    }
}

/// How systemd stops the workload (`TimeoutStopSec=`, `KillSignal=`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stop {
    /// How long the process has after its stop signal before it is killed; systemd's
    /// default (90 s) unless set. A mesh workload's is at most the fencing margin's
    /// share, 400 ms, which is also its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// The signal that asks it to stop; SIGTERM unless set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
}

impl Stop {
    /// Whether nothing is set, so the field is left out when a spec is written back.
    pub fn is_default(&self) -> bool {
        self == &Stop::default()
    }
}

/// A signal a process may be asked to stop with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
#[allow(missing_docs)]
pub enum Signal {
    SIGTERM,
    SIGINT,
    SIGQUIT,
    SIGHUP,
    SIGUSR1,
    SIGUSR2,
    SIGWINCH,
    SIGKILL,
}

impl Signal {
    /// Every signal with its spelling in the spec and in the unit file.
    pub const ALL: [(&'static str, Signal); 8] = [
        ("SIGTERM", Signal::SIGTERM),
        ("SIGINT", Signal::SIGINT),
        ("SIGQUIT", Signal::SIGQUIT),
        ("SIGHUP", Signal::SIGHUP),
        ("SIGUSR1", Signal::SIGUSR1),
        ("SIGUSR2", Signal::SIGUSR2),
        ("SIGWINCH", Signal::SIGWINCH),
        ("SIGKILL", Signal::SIGKILL),
    ];

    /// The spelling systemd and the spec share.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("SIGTERM", |(name, _)| name)
    }
}
