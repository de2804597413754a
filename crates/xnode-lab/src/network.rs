//! Separate hosts on one machine: a network namespace per host, all on one bridge in a
//! namespace of its own, with addresses from 10.213.0.0/24 that exist inside these
//! namespaces only and have no route out. A host's link can be cut and healed, which
//! partitions it away from the rest as a pulled cable would: no reset, only silence.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::LabError;

/// The namespaces and links; all deleted on drop.
pub struct Network {
    hub: String,
    hosts: Vec<String>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Result<(), LabError> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(LabError::io("cannot run ip"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            what: format!("ip {}", args.join(" ")),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

impl Network {
    /// `n` hosts on one bridge, host `i` at [`Network::address`]`(i)`.
    pub fn new(n: usize) -> Result<Network, LabError> {
        let tag = format!(
            "xl{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let hub = format!("{tag}-hub");
        ip(&["netns", "add", &hub])?;
        // From here on, drop cleans up whatever was made.
        let mut net = Network {
            hub,
            hosts: Vec::new(),
        };
        let hub = net.hub.clone();
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", "br0", "up"])?;
        for i in 0..n {
            let host = format!("{tag}-h{i}");
            ip(&["netns", "add", &host])?;
            net.hosts.push(host.clone());
            let port = format!("h{i}");
            ip(&[
                "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns",
                &host,
            ])?;
            ip(&["-n", &hub, "link", "set", &port, "master", "br0", "up"])?;
            ip(&["-n", &host, "link", "set", "lo", "up"])?;
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("{}/24", net.address(i)),
                "dev",
                "eth0",
            ])?;
            ip(&["-n", &host, "link", "set", "eth0", "up"])?;
        }
        Ok(net)
    }

    /// Host `i`'s namespace, for [`crate::Options::netns`].
    pub fn namespace(&self, i: usize) -> &str {
        &self.hosts[i]
    }

    /// Host `i`'s address.
    pub fn address(&self, i: usize) -> String {
        format!("10.213.0.{}", i + 1)
    }

    /// Cuts host `i` off from all the others.
    pub fn cut(&self, i: usize) -> Result<(), LabError> {
        ip(&["-n", &self.hub, "link", "set", &format!("h{i}"), "down"])
    }

    /// Puts host `i` back.
    pub fn heal(&self, i: usize) -> Result<(), LabError> {
        ip(&["-n", &self.hub, "link", "set", &format!("h{i}"), "up"])
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in self.hosts.iter().chain([&self.hub]) {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}
