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

/// Now on CLOCK_MONOTONIC, in ns: the clock xnoded and the relay share, so a renewal
/// says when it was sent.
pub fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000_000 + u64::try_from(t.tv_nsec).unwrap_or(0)
}

/// A renewal on the wire: when it was sent, in ns of CLOCK_MONOTONIC, little-endian.
pub fn renewal(sent_ns: u64) -> [u8; 8] {
    sent_ns.to_le_bytes()
}

/// The relay's side of the lease: it holds it until [`LEASE`] after the newest
/// renewal was sent, so a renewal that waited in the socket (the relay was slow to
/// read) extends it no further than it would have at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Until when the lease holds, in ns; before the first renewal, how long the
    /// relay waits for it.
    pub until_ns: u64,
    /// Whether systemd has been told the lease is held.
    pub ready: bool,
}

/// What the relay tells systemd after a renewal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Feed {
    /// The first renewal: READY=1.
    pub ready: bool,
    /// The watchdog's new timeout from now: the lease's remaining time, and a little
    /// more, so that the relay's own (precise) end comes first and systemd's is the
    /// backstop for a relay that hangs.
    pub watchdog_usec: u32,
}

/// How much later systemd's watchdog ends the lease than the relay does.
const BACKSTOP_NS: u64 = 50_000_000;

impl Holder {
    /// A relay started at `now_ns`, waiting a lease's length for its first renewal.
    pub fn new(now_ns: u64) -> Holder {
        Holder {
            until_ns: now_ns + LEASE.as_nanos() as u64,
            ready: false,
        }
    }

    /// A datagram read at `now_ns`: what to tell systemd, or nothing for a renewal
    /// too old to extend the lease (or one that is not a renewal).
    pub fn renewed(&mut self, datagram: &[u8], now_ns: u64) -> Option<Feed> {
        let sent = u64::from_le_bytes(datagram.try_into().ok()?);
        let until = sent.checked_add(LEASE.as_nanos() as u64)?;
        // A renewal from the future (never, on one clock) counts from now.
        let until = until.min(now_ns + LEASE.as_nanos() as u64);
        if until <= now_ns || (self.ready && until <= self.until_ns) {
            return None;
        }
        self.until_ns = until;
        let first = !self.ready;
        self.ready = true;
        let usec = (until - now_ns + BACKSTOP_NS) / 1000;
        Some(Feed {
            ready: first,
            watchdog_usec: u32::try_from(usec).unwrap_or(u32::MAX),
        })
    }

    /// How long until the lease ends, from `now_ns`; zero once it has.
    pub fn left(&self, now_ns: u64) -> std::time::Duration {
        std::time::Duration::from_nanos(self.until_ns.saturating_sub(now_ns))
    }
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
        match self.socket.send_to(&renewal(monotonic_ns()), &self.relay) {
            Ok(_) => true,
            Err(e) => e.kind() == ErrorKind::WouldBlock,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn the_lease_runs_from_when_a_renewal_was_sent_not_when_it_was_read() {
        let lease = LEASE.as_nanos() as u64;
        let mut h = Holder::new(1000 * MS);
        assert_eq!(h.left(1000 * MS), LEASE, "waiting for the first renewal");
        // Sent at 1100, read at once: ready, held until 1100 + LEASE.
        let feed = h.renewed(&renewal(1100 * MS), 1100 * MS).unwrap();
        assert!(feed.ready);
        assert_eq!(h.until_ns, 1100 * MS + lease);
        assert_eq!(u64::from(feed.watchdog_usec), (lease + BACKSTOP_NS) / 1000);
        // Sent at 1300, read 400 ms late: the lease is 400 ms shorter, not longer.
        let feed = h.renewed(&renewal(1300 * MS), 1700 * MS).unwrap();
        assert!(!feed.ready);
        assert_eq!(h.until_ns, 1300 * MS + lease);
        assert_eq!(
            u64::from(feed.watchdog_usec),
            (1300 * MS + lease - 1700 * MS + BACKSTOP_NS) / 1000
        );
        // An older one read after a newer one changes nothing; so does one whose
        // lease is over already, and anything that is not a renewal.
        assert_eq!(h.renewed(&renewal(1200 * MS), 1710 * MS), None);
        assert_eq!(h.renewed(&renewal(100 * MS), 1710 * MS), None);
        assert_eq!(h.renewed(b"renew", 1710 * MS), None);
        assert_eq!(h.left(1300 * MS + lease), std::time::Duration::ZERO);
    }
}
