//! `xnode-lease SOCKET`: the process of xnoded's lease unit. It tells systemd it is
//! ready at the first renewal; after each one it holds the lease until a lease's
//! length after that renewal was sent, and sets systemd's watchdog to end a little
//! later. When the lease ends it exits, and systemd stops every mesh workload bound
//! to it. Deliberately small: std and sd_notify, no async runtime.

use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use xnode_agent::lease::{Holder, monotonic_ns};

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

fn run(path: &Path) -> Result<(), String> {
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
    let mut holder = Holder::new(monotonic_ns());
    let mut buf = [0u8; 64];
    loop {
        let left = holder.left(monotonic_ns());
        if left.is_zero() {
            return Err(format!(
                "the lease ran out: no renewal from xnoded in time{}",
                if holder.ready { "" } else { " after the start" }
            ));
        }
        socket
            .set_read_timeout(Some(left))
            .map_err(|e| fail("cannot set a timeout on", e))?;
        match socket.recv(&mut buf) {
            Ok(n) => {
                if let Some(feed) = holder.renewed(&buf[..n], monotonic_ns()) {
                    let mut states = vec![
                        sd_notify::NotifyState::WatchdogUsec(feed.watchdog_usec),
                        sd_notify::NotifyState::Watchdog,
                    ];
                    if feed.ready {
                        states.push(sd_notify::NotifyState::Ready);
                    }
                    // Outside systemd (NOTIFY_SOCKET unset) this does nothing.
                    let _ = sd_notify::notify(&states);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(fail("cannot read", e)),
        }
    }
}
