//! A mesh of real nodes: `n` containers, each in its own network namespace on one
//! bridge, each running xnoded under systemd, with ways to kill, restart and cut off a
//! node and to see where a unit runs.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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
    /// Boots `n` nodes, each admitted to the lab owner's fleet with a join key; node
    /// `i` gets the spec `spec(i, &network)`.
    pub fn boot(
        bin_dir: &Path,
        n: usize,
        flags: &str,
        spec: impl Fn(usize, &Network) -> Vec<u8>,
    ) -> Result<Cluster, LabError> {
        let flags = format!("{flags} {}", crate::fleet::JOIN_FLAG);
        Cluster::boot_each(bin_dir, n, |_| flags.clone(), spec)
    }

    /// [`Cluster::boot`] with xnoded's flags node by node (a join key among them, or
    /// none).
    pub fn boot_each(
        bin_dir: &Path,
        n: usize,
        flags: impl Fn(usize) -> String,
        spec: impl Fn(usize, &Network) -> Vec<u8>,
    ) -> Result<Cluster, LabError> {
        let net = Network::new(n)?;
        // One after another: a container dies with the thread that booted it.
        let nodes = (0..n)
            .map(|i| node::boot_node_in(bin_dir, &spec(i, &net), &flags(i), Some(net.namespace(i))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Cluster { nodes, net })
    }

    /// Node `i`'s mesh address, as a multiaddr.
    pub fn mesh_address(net: &Network, i: usize) -> String {
        format!("/ip4/{}/tcp/{MESH_PORT}", net.address(i))
    }

    /// The spec of node `i` of `n`: called `n{i}`, owned by the lab's owner, joining
    /// through all the others, running `workloads`.
    pub fn spec(n: usize, i: usize, net: &Network, workloads: &Value) -> Vec<u8> {
        Cluster::spec_of(n, i, net, &crate::fleet::owner(), workloads)
    }

    /// [`Cluster::spec`], owned by `owner`.
    pub fn spec_of(
        n: usize,
        i: usize,
        net: &Network,
        owner: &xnode_spec::keys::OwnerKey,
        workloads: &Value,
    ) -> Vec<u8> {
        let bootstrap: Vec<String> = (0..n)
            .filter(|j| *j != i)
            .map(|j| Cluster::mesh_address(net, j))
            .collect();
        let spec = json!({
            "version": 1,
            "node": {"name": format!("n{i}"), "owner": owner.owner().to_string()},
            "mesh": {"listen": [Cluster::mesh_address(net, i)], "bootstrap": bootstrap},
            "workloads": workloads,
        });
        serde_json::to_vec(&spec).unwrap_or_default()
    }

    /// Node `i`'s `status.mesh.placement`, or null.
    pub fn placement(&self, i: usize) -> Value {
        node::api(&self.nodes[i], xnode_api::Request::Status)
            .map(|s| s["mesh"]["placement"].clone())
            .unwrap_or(Value::Null)
    }

    /// Whether the `live` nodes are quorate, past the hold-down and agree on the owners
    /// of `workloads`, which run where the owners say and nowhere else.
    pub fn settled(&self, live: &[usize], workloads: &[&str]) -> bool {
        let views: Vec<Value> = live.iter().map(|i| self.placement(*i)).collect();
        let agreed = views.iter().all(|p| {
            p["quorate"] == true
                && p["settled_secs"].as_f64().unwrap_or(0.0)
                    >= p["hold_down_secs"].as_f64().unwrap_or(f64::MAX)
                && workloads
                    .iter()
                    .all(|w| owners(p, w) == owners(&views[0], w))
        });
        agreed
            && workloads.iter().all(|w| {
                let running: Vec<String> = self
                    .running(&format!("xnode-{w}.service"))
                    .iter()
                    .map(|i| format!("n{i}"))
                    .collect();
                owners(&views[0], w) == running
            })
    }

    /// Waits until [`Cluster::settled`]; says what it saw if that never comes.
    pub fn wait_settled(
        &self,
        live: &[usize],
        workloads: &[&str],
        timeout: Duration,
    ) -> Result<Duration, String> {
        wait_until(timeout, || self.settled(live, workloads)).map_err(|_| {
            let views: Vec<String> = live
                .iter()
                .map(|i| format!("n{i}: {}", self.placement(*i)))
                .collect();
            format!("not settled after {timeout:?}:\n{}", views.join("\n"))
        })
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

    /// After `owner` was lost at `at` (µs of the monotonic clock): the node `unit`
    /// starts on instead, and how many seconds after `at` it started there, from its
    /// journal; or `None` if none runs it within `timeout`.
    pub fn heir(
        &self,
        owner: usize,
        unit: &str,
        at: u64,
        timeout: Duration,
    ) -> Option<(usize, f64)> {
        let mut found = None;
        // Up, and its start in the journal (which may come a moment later).
        wait_until(timeout, || {
            let heir = self.running(unit).into_iter().find(|i| *i != owner);
            found = heir.and_then(|heir| {
                let runs = runs(&self.nodes[heir], unit).ok()?;
                let started = runs.iter().map(|r| r.from_us).filter(|t| *t > at).min()?;
                Some((heir, (started - at) as f64 / 1e6))
            });
            found.is_some()
        })
        .ok()?;
        found
    }

    /// Waits until every node sees every other alive.
    pub fn wait_alive(&self, timeout: Duration) -> Result<(), String> {
        let others = self.nodes.len() as u64 - 1;
        for c in &self.nodes {
            node::wait_status(c, "the others alive", timeout, |s| {
                s["mesh"]["alive"].as_u64() >= Some(others)
            })?;
        }
        Ok(())
    }

    /// Sends xnoded on node `i` a signal, its units left alone: `STOP` freezes it,
    /// `CONT` thaws it, `KILL` kills it (and systemd starts it again). Returns when it
    /// was sent, in µs of the monotonic clock.
    pub fn signal_agent(&self, i: usize, signal: &str) -> Result<u64, LabError> {
        let at = monotonic_us();
        self.nodes[i].sh(&format!(
            "kill -{signal} $(systemctl show --value -p MainPID xnoded.service)"
        ))?;
        Ok(at)
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

/// A workload's owners in a placement view, sorted by name.
fn owners(placement: &Value, workload: &str) -> Vec<String> {
    let mut list: Vec<String> = placement["workloads"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["name"] == workload))
        .and_then(|w| w["owners"].as_array())
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_str().map(str::to_owned))
        .collect();
    list.sort();
    list
}

/// Polls `done` until it holds; how long that took, or `Err` after `timeout`.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> Result<Duration, Duration> {
    let started = Instant::now();
    while !done() {
        if started.elapsed() > timeout {
            return Err(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(started.elapsed())
}

/// Now on the monotonic clock that the containers' journals share with the host, in
/// µs.
pub fn monotonic_us() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into the value it is given.
    #[allow(unsafe_code)]
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t);
    }
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0) / 1000
}
