//! The lease on this node's mesh workloads, which systemd enforces whatever state the
//! agent is in (frozen, killed, stuck in a slow call, restarting).
//!
//! Every mesh-placed unit is bound (`BindsTo=`) to the lease unit. Its process, the
//! relay `xnode-lease`, feeds systemd's watchdog once for each renewal the agent's loop
//! sends it over a datagram socket, and the loop renews only while the node is quorate
//! and has heard a majority lately (`xnode_mesh::fencing`). When renewals stop, the
//! relay exits and systemd stops the lease and every unit bound to it; if the relay
//! itself hangs, its watchdog does the same. The timing argument is in docs/mesh.md.

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use xnode_mesh::fencing::LEASE;
pub use xnode_spec::unit::LEASE_UNIT as UNIT;

/// Where the relay listens for renewals: its own runtime directory (root only), gone
/// when the lease is.
pub const SOCKET: &str = "/run/xnoded-lease/renew.sock";

/// The relay's file name, installed beside `xnoded`.
pub const RELAY: &str = "xnode-lease";

/// The lease unit, running `relay`. Confined as far as a process that only reads a
/// socket and notifies systemd can be.
pub fn unit_file(relay: &Path) -> String {
    let mut u = String::from(
        "# Written by xnoded: the lease on this node's mesh workloads (see docs/mesh.md).\n\
         [Unit]\n\
         Description=xnoded's lease on this node's mesh workloads\n\
         StartLimitIntervalSec=0\n\
         \n\
         [Service]\n\
         Type=notify\n\
         NotifyAccess=main\n",
    );
    u.push_str(&format!("ExecStart={} {SOCKET}\n", relay.display()));
    u.push_str(&format!("WatchdogSec={}ms\n", LEASE.as_millis()));
    for line in [
        "WatchdogSignal=SIGKILL",
        "TimeoutStartSec=5s",
        "Restart=no",
        "RuntimeDirectory=xnoded-lease",
        "RuntimeDirectoryMode=0700",
        "UMask=0077",
        "PrivateNetwork=yes",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "RestrictAddressFamilies=AF_UNIX",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "MemoryDenyWriteExecute=yes",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
    ] {
        u.push_str(line);
        u.push('\n');
    }
    u
}

/// The relay beside the running agent's own binary.
pub fn relay_path() -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(exe.with_file_name(RELAY))
}

/// The agent's end: one datagram per renewal, never blocking.
#[derive(Debug)]
pub struct Renewer {
    socket: UnixDatagram,
    relay: PathBuf,
}

impl Renewer {
    /// A sender to the relay at `relay` (the relay need not be there yet).
    pub fn new(relay: impl Into<PathBuf>) -> std::io::Result<Renewer> {
        let socket = UnixDatagram::unbound()?;
        socket.set_nonblocking(true)?;
        Ok(Renewer {
            socket,
            relay: relay.into(),
        })
    }

    /// Renews the lease if a relay holds it. `false` when none listens (no mesh workload
    /// has pulled the lease in yet, or it ran out); a full queue counts as renewed,
    /// since renewals already wait there.
    pub fn renew(&self) -> bool {
        match self.socket.send_to(b"r", &self.relay) {
            Ok(_) => true,
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        }
    }
}
