//! The node spec as typed values, once validated.
//!
//! These types are only built by [`crate::parse`], so holding one means every rule in
//! `validate` held. The serde and schemars attributes describe the JSON form; a test
//! checks that serializing a spec and validating it again gives the same spec, which
//! keeps the schema and the validator saying the same thing.

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::Serialize;

use crate::values::{Capability, Duration, Owner, Percent, Size};

mod lifecycle;
mod secrets;

pub use lifecycle::{Kind, Signal, Stop};
pub use secrets::Credential;

/// The spec versions this build understands.
pub const VERSION: u64 = 1;

/// Everything a node should be: the contract between owners, xnoded and the mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "XnodeOS node spec")]
pub struct Spec {
    /// Spec format version; must be 1.
    pub version: u64,
    /// Who this node is and who may change it.
    pub node: Node,
    /// How this node joins the mesh.
    #[serde(default)]
    pub mesh: Mesh,
    /// What runs, by name. Each becomes the systemd unit `xnode-<name>.service`.
    #[serde(default)]
    pub workloads: BTreeMap<String, Workload>,
}

/// The node's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// A DNS label: letters, digits and '-', at most 63 characters.
    pub name: String,
    /// The key allowed to push new specs to this node over the mesh:
    /// `ed25519:<base64 public key>` or `eth:0x<40 hex digits>`. Without an owner the
    /// node accepts no remote spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    /// Free-form labels that mesh placement constraints match against.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Mesh settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Mesh {
    /// Multiaddrs to listen on; empty means every IPv4 and IPv6 address on `port`.
    #[serde(default)]
    pub listen: Vec<String>,
    /// Multiaddrs of peers to join through, with or without `/p2p/<peer id>`.
    #[serde(default)]
    pub bootstrap: Vec<String>,
    /// Discover peers on the local network with mDNS.
    #[serde(default)]
    pub mdns: bool,
    /// The mesh port: what `listen` defaults to and what the firewall opens.
    #[serde(default = "default_mesh_port")]
    #[schemars(range(min = 1))]
    pub port: u16,
}

/// The port the mesh uses unless the spec names another.
pub const DEFAULT_MESH_PORT: u16 = 7720;

fn default_mesh_port() -> u16 {
    DEFAULT_MESH_PORT
}

impl Default for Mesh {
    fn default() -> Self {
        Mesh {
            listen: Vec::new(),
            bootstrap: Vec::new(),
            mdns: false,
            port: DEFAULT_MESH_PORT,
        }
    }
}

/// One service the node runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// What it is: a `service` that keeps running (the default), a `oneshot` that
    /// runs to completion, or a `timer` that runs it on a schedule.
    #[serde(default, skip_serializing_if = "is_default")]
    pub kind: Kind,
    /// When a `timer` runs, in systemd's calendar syntax: "daily", "Mon..Fri 09:00",
    /// "*-*-* 02:30:00". Only for timers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// Absolute program path, then its arguments. `$VAR` is expanded from the
    /// environment by systemd; write `$$` for a literal `$`.
    pub command: Vec<String>,
    /// Nix store paths realised on the node before the workload starts.
    #[serde(default)]
    pub store_paths: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Absolute paths of files of `NAME=value` lines, read as environment when the
    /// workload starts (`EnvironmentFile=`); a missing file fails the start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment_files: Vec<String>,
    /// Secrets by name, read by the workload from `$CREDENTIALS_DIRECTORY/<name>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub credentials: BTreeMap<String, Credential>,
    /// A directory of its own that outlives restarts, updates and reboots, at
    /// `$STATE_DIRECTORY`. Removing the workload keeps it until `xnodectl state prune`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub state: bool,
    /// Workloads of this node that must be started before this one (`After=`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<String>,
    /// Workloads of this node this one needs: started with it, and stopping it when
    /// they stop (`Requires=`). Name them in `after` too to order the start.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    /// Absolute working directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// System user to run as; without one the workload gets a fresh dynamic user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// System group to run as (with `user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Resource limits; none by default.
    #[serde(default)]
    pub resources: Resources,
    /// When systemd restarts the process.
    #[serde(default)]
    pub restart: Restart,
    /// Command that makes the running process reload its configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reload: Option<Vec<String>>,
    /// Restart when the workload changes (NixOS `restartIfChanged`).
    #[serde(default = "yes")]
    pub restart_if_changed: bool,
    /// Reload instead of restarting when it changes; needs `reload` (NixOS `reloadIfChanged`).
    #[serde(default)]
    pub reload_if_changed: bool,
    /// Stop before the new unit is written and start after, rather than one restart
    /// (NixOS `stopIfChanged`).
    #[serde(default = "yes")]
    pub stop_if_changed: bool,
    /// Values whose change reloads rather than restarts; needs `reload`
    /// (NixOS `reloadTriggers`).
    #[serde(default)]
    pub reload_triggers: Vec<String>,
    /// How it is stopped.
    #[serde(default, skip_serializing_if = "Stop::is_default")]
    pub stop: Stop,
    /// When the workload counts as healthy after an apply.
    #[serde(default)]
    pub health: Health,
    /// Ports it serves, published as mesh services.
    #[serde(default)]
    pub expose: Vec<Expose>,
    /// The systemd sandbox, hardened unless relaxed here.
    #[serde(default)]
    pub sandbox: Sandbox,
    /// Where it runs: this node, or placed on the mesh.
    #[serde(default)]
    pub placement: Placement,
}

fn yes() -> bool {
    true
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

/// cgroup limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU quota as a percentage of one core, e.g. "50%" or "200%".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Percent>,
    /// Memory ceiling: bytes, or a size such as "512M" or "2G" (powers of 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Size>,
    /// Most tasks (processes and threads) at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 4_194_304))]
    pub tasks: Option<u32>,
}

/// Restart behaviour, as systemd's `Restart=` and `RestartSec=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Restart {
    /// When to restart.
    #[serde(default)]
    pub policy: RestartPolicy,
    /// Pause before a restart.
    #[serde(default = "default_restart_delay")]
    pub delay: Duration,
}

/// systemd's own default (100ms) turns a crash loop into a hot loop.
pub const DEFAULT_RESTART_DELAY: Duration = Duration::from_millis(1000);

fn default_restart_delay() -> Duration {
    DEFAULT_RESTART_DELAY
}

impl Default for Restart {
    fn default() -> Self {
        Restart {
            policy: RestartPolicy::default(),
            delay: DEFAULT_RESTART_DELAY,
        }
    }
}

/// systemd's `Restart=` values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum RestartPolicy {
    No,
    Always,
    #[default]
    OnFailure,
    OnAbnormal,
    OnAbort,
    OnWatchdog,
    OnSuccess,
}

impl RestartPolicy {
    /// Every policy with its spelling in the spec and in the unit file.
    pub const ALL: [(&'static str, RestartPolicy); 7] = [
        ("no", RestartPolicy::No),
        ("always", RestartPolicy::Always),
        ("on-failure", RestartPolicy::OnFailure),
        ("on-abnormal", RestartPolicy::OnAbnormal),
        ("on-abort", RestartPolicy::OnAbort),
        ("on-watchdog", RestartPolicy::OnWatchdog),
        ("on-success", RestartPolicy::OnSuccess),
    ];

    /// The spelling systemd and the spec share.
    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, p)| *p == self)
            .map_or("on-failure", |(s, _)| s)
    }

    /// Whether systemd starts a service again after a clean exit under this policy.
    /// When it does not, the unit is rendered with `RemainAfterExit=yes`, so a clean
    /// exit leaves it `active (exited)`: systemd keeps the record, and the agent sees
    /// a workload that finished, not one that was stopped.
    pub fn restarts_on_clean_exit(self) -> bool {
        matches!(self, RestartPolicy::Always | RestartPolicy::OnSuccess)
    }

    /// Whether systemd starts a service again after it ended with `result` (its
    /// `Result` property, e.g. `exit-code`), as systemd.service(5) tabulates it. A
    /// result this build does not know counts as a failure.
    pub fn restarts_after(self, result: &str) -> bool {
        let clean = result == "success";
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always => result != "exec-condition",
            RestartPolicy::OnSuccess => clean,
            RestartPolicy::OnFailure => !clean && result != "exec-condition",
            RestartPolicy::OnAbnormal => {
                !matches!(result, "success" | "exit-code" | "exec-condition")
            }
            RestartPolicy::OnWatchdog => result == "watchdog",
            RestartPolicy::OnAbort => matches!(result, "signal" | "core-dump"),
        }
    }
}

/// Health: the unit must be active, and pass its probe if it has one, within `timeout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// How long after an apply the workload has to become healthy.
    #[serde(default = "default_health_timeout")]
    pub timeout: Duration,
    /// Healthy when this HTTP request answers 2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpProbe>,
    /// Healthy when this TCP port accepts a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpProbe>,
}

/// Time to become healthy after an apply unless the spec says otherwise.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_millis(30_000);

fn default_health_timeout() -> Duration {
    DEFAULT_HEALTH_TIMEOUT
}

impl Default for Health {
    fn default() -> Self {
        Health {
            timeout: DEFAULT_HEALTH_TIMEOUT,
            http: None,
            tcp: None,
        }
    }
}

/// An HTTP GET on 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpProbe {
    /// Port on 127.0.0.1.
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Request path, starting with '/'.
    #[serde(default = "HttpProbe::default_path")]
    pub path: String,
    /// How long one probe may take.
    #[serde(default = "default_probe_timeout")]
    pub timeout: Duration,
}

impl HttpProbe {
    fn default_path() -> String {
        "/".to_owned()
    }
}

/// A TCP connect to 127.0.0.1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TcpProbe {
    /// Port on 127.0.0.1.
    #[schemars(range(min = 1))]
    pub port: u16,
    /// How long one probe may take.
    #[serde(default = "default_probe_timeout")]
    pub timeout: Duration,
}

/// Time one probe may take unless the spec says otherwise.
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(2000);

fn default_probe_timeout() -> Duration {
    DEFAULT_PROBE_TIMEOUT
}

/// A port the workload serves, under a service name the mesh resolves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Expose {
    /// Service name: a DNS label, unique on the node.
    pub service: String,
    /// Port, unique on the node.
    #[schemars(range(min = 1))]
    pub port: u16,
    /// Transport.
    #[serde(default)]
    pub protocol: Protocol,
}

/// Transport of an exposed port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
}

/// The sandbox: every part is on unless named in `relax`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Sandbox {
    /// Hardening parts to turn off for this workload.
    #[serde(default)]
    pub relax: BTreeSet<Relax>,
    /// Absolute paths the workload may write despite the read-only system.
    #[serde(default)]
    pub writable_paths: Vec<String>,
    /// Linux capabilities granted (bounding and ambient), e.g. "CAP_NET_BIND_SERVICE".
    #[serde(default)]
    pub capabilities: BTreeSet<Capability>,
}

/// A named part of the hardened sandbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum Relax {
    NoNewPrivileges,
    ProtectSystem,
    ProtectHome,
    PrivateTmp,
    PrivateDevices,
    ProtectKernel,
    ProtectControlGroups,
    ProtectClock,
    ProtectHostname,
    ProtectProc,
    RestrictSuidSgid,
    RestrictRealtime,
    RestrictNamespaces,
    RestrictAddressFamilies,
    LockPersonality,
    MemoryDenyWriteExecute,
    SystemCallFilter,
    Capabilities,
    Root,
    AgentApi,
    SystemBus,
}

impl Relax {
    /// Every part with its spelling in the spec.
    pub const ALL: [(&'static str, Relax); 21] = [
        ("no-new-privileges", Relax::NoNewPrivileges),
        ("protect-system", Relax::ProtectSystem),
        ("protect-home", Relax::ProtectHome),
        ("private-tmp", Relax::PrivateTmp),
        ("private-devices", Relax::PrivateDevices),
        ("protect-kernel", Relax::ProtectKernel),
        ("protect-control-groups", Relax::ProtectControlGroups),
        ("protect-clock", Relax::ProtectClock),
        ("protect-hostname", Relax::ProtectHostname),
        ("protect-proc", Relax::ProtectProc),
        ("restrict-suid-sgid", Relax::RestrictSuidSgid),
        ("restrict-realtime", Relax::RestrictRealtime),
        ("restrict-namespaces", Relax::RestrictNamespaces),
        ("restrict-address-families", Relax::RestrictAddressFamilies),
        ("lock-personality", Relax::LockPersonality),
        ("memory-deny-write-execute", Relax::MemoryDenyWriteExecute),
        ("system-call-filter", Relax::SystemCallFilter),
        ("capabilities", Relax::Capabilities),
        ("root", Relax::Root),
        ("agent-api", Relax::AgentApi),
        ("system-bus", Relax::SystemBus),
    ];
}

/// Where a workload runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// On this node.
    #[default]
    Local,
    /// On the live mesh members that match, chosen by the mesh.
    Mesh(MeshPlacement),
}

/// Mesh placement of a workload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MeshPlacement {
    /// How many nodes run it at once.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1024))]
    pub replicas: u32,
    /// Node labels a member must carry to run it.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn one() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    use super::RestartPolicy::{self, *};

    /// systemd.service(5), "Table 2. Exit causes and the effect of the Restart=
    /// settings", read by `Result`.
    #[test]
    fn restarts_follow_systemds_table() {
        let results = [
            "success",
            "exit-code",
            "signal",
            "core-dump",
            "timeout",
            "watchdog",
        ];
        let table: [(RestartPolicy, [bool; 6]); 7] = [
            (No, [false, false, false, false, false, false]),
            (Always, [true, true, true, true, true, true]),
            (OnSuccess, [true, false, false, false, false, false]),
            (OnFailure, [false, true, true, true, true, true]),
            (OnAbnormal, [false, false, true, true, true, true]),
            (OnAbort, [false, false, true, true, false, false]),
            (OnWatchdog, [false, false, false, false, false, true]),
        ];
        for (policy, row) in table {
            for (result, want) in results.iter().zip(row) {
                assert_eq!(
                    policy.restarts_after(result),
                    want,
                    "{policy:?} after {result}"
                );
            }
            assert_eq!(policy.restarts_on_clean_exit(), row[0], "{policy:?}");
        }
        assert!(
            OnFailure.restarts_after("oom-kill"),
            "an unknown failure is a failure"
        );
        assert!(!Always.restarts_after("exec-condition"));
    }
}
