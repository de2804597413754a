//! A mesh of real nodes: `n` containers, each in its own network namespace on one
//! bridge, each running xnoded under systemd, with ways to kill, restart and cut off a
//! node and to see where a unit runs.

use std::path::Path;

use crate::runs::{Run, runs};
use crate::{Container, LabError, Network, node};

/// The mesh port every node listens on (each has its own address).
pub const MESH_PORT: u16 = 7720;

/// The nodes, and their network. Nodes go first on drop, then the namespaces.
pub struct Cluster {
    /// The nodes, in order.
    pub nodes: Vec<Container>,
    /// Their network.
    pub net: Network,
}

impl Cluster {
    /// Boots `n` nodes; node `i` gets the spec `spec(i, &network)`.
    pub fn boot(
        bin_dir: &Path,
        n: usize,
        flags: &str,
        spec: impl Fn(usize, &Network) -> Vec<u8>,
    ) -> Result<Cluster, LabError> {
        let net = Network::new(n)?;
        // One after another: a container dies with the thread that booted it.
        let nodes = (0..n)
            .map(|i| node::boot_node_in(bin_dir, &spec(i, &net), flags, Some(net.namespace(i))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Cluster { nodes, net })
    }

    /// Node `i`'s mesh address, as a multiaddr.
    pub fn mesh_address(net: &Network, i: usize) -> String {
        format!("/ip4/{}/tcp/{MESH_PORT}", net.address(i))
    }

    /// Whether `unit` is up on each node.
    pub fn active(&self, unit: &str) -> Vec<bool> {
        self.nodes
            .iter()
            .map(|c| {
                c.exec(&["systemctl", "is-active", "--quiet", unit])
                    .is_ok_and(|o| o.status.success())
            })
            .collect()
    }

    /// The nodes `unit` is up on.
    pub fn running(&self, unit: &str) -> Vec<usize> {
        let active = self.active(unit);
        (0..self.nodes.len()).filter(|i| active[*i]).collect()
    }

    /// A node dies: `units` stop, then its xnoded gets SIGKILL and stays down. Returns
    /// when systemd saw xnoded die, in µs of the monotonic clock.
    pub fn kill(&self, i: usize, units: &[&str]) -> Result<u64, LabError> {
        // The units first, so nothing the test does can run a unit twice; the agent
        // dies within its settle delay, before it could start them again.
        let script = format!(
            "for u in {units}; do systemctl stop $u 2>/dev/null; done; \
             kill -9 $(systemctl show --value -p MainPID xnoded.service) \
             && systemctl stop xnoded.service \
             && systemctl show --value -p ExecMainExitTimestampMonotonic xnoded.service",
            units = units.join(" ")
        );
        let out = self.nodes[i].sh(&script)?;
        out.trim().parse().map_err(|_| LabError::Command {
            what: "reading when xnoded died".into(),
            detail: out,
        })
    }

    /// Starts node `i`'s xnoded again; returns when it started, in µs of the monotonic
    /// clock.
    pub fn restart(&self, i: usize) -> Result<u64, LabError> {
        let out = self.nodes[i].sh("systemctl start xnoded.service \
             && systemctl show --value -p ExecMainStartTimestampMonotonic xnoded.service")?;
        out.trim().parse().map_err(|_| LabError::Command {
            what: "reading when xnoded started".into(),
            detail: out,
        })
    }

    /// Every node's runs of `unit`, from the journals.
    pub fn runs(&self, unit: &str) -> Result<Vec<Vec<Run>>, LabError> {
        self.nodes.iter().map(|c| runs(c, unit)).collect()
    }
}
