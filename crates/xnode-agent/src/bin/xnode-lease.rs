//! `xnode-lease SOCKET`: the process of xnoded's lease unit. It tells systemd it is
//! ready at the first renewal and feeds its watchdog at each one after; when no
//! renewal comes for the lease's length it exits, and systemd stops every mesh
//! workload bound to it. Deliberately small: std and sd_notify only, no async runtime.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::ExitCode;

use xnode_mesh::fencing::LEASE;

fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: xnode-lease SOCKET (run by xnoded's lease unit)");
        return ExitCode::from(2);
    };
    match run(&path) {
        Ok(()) => ExitCode::SUCCESS,
        Err(why) => {
            eprintln!("{why}");
            ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> Result<(), String> {
    let fail = |what: &str, e: std::io::Error| format!("{what} {}: {e}", path.display());
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(fail("cannot remove the stale", e));
        }
        _ => {}
    }
    let socket = UnixDatagram::bind(path).map_err(|e| fail("cannot listen on", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail("cannot restrict", e))?;
    socket
        .set_read_timeout(Some(LEASE))
        .map_err(|e| fail("cannot set a timeout on", e))?;
    let mut buf = [0u8; 64];
    let mut ready = false;
    loop {
        match socket.recv(&mut buf) {
            Ok(_) => {
                let mut states = vec![sd_notify::NotifyState::Watchdog];
                if !ready {
                    states.push(sd_notify::NotifyState::Ready);
                    ready = true;
                }
                // Outside systemd (NOTIFY_SOCKET unset) this does nothing.
                let _ = sd_notify::notify(&states);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!(
                    "the lease ran out: no renewal from xnoded for {} ms{}",
                    LEASE.as_millis(),
                    if ready { "" } else { " after the start" }
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fail("cannot read", e)),
        }
    }
}
