//! Real test hosts: Debian containers booted with systemd-nspawn, systemd as PID 1,
//! a real system bus and a real Nix store, for tests that must run against the real thing.
//!
//! The root filesystem is built once with debootstrap and cached outside the source
//! tree; every container boots it with `--volatile=overlay`, so containers share the
//! cache read-only and never see each other's writes. A container is torn down when
//! its [`Container`] is dropped, and also when the process that booted it dies,
//! however it dies.

pub mod browser;
pub mod cluster;
mod container;
pub mod fleet;
mod network;
pub mod nix;
pub mod node;
mod rootfs;
pub mod runs;

pub use cluster::Cluster;
pub use container::{Container, Options};
pub use network::Network;
pub use rootfs::{cache_dir, rootfs};

/// What can go wrong setting up a test host.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab needs root (nspawn, nsenter) and its tools.
    #[error("{0}")]
    Unavailable(String),
    /// A command the lab runs failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What was being done.
        what: String,
        /// Its exit status and output.
        detail: String,
    },
    /// The container did not come up in time.
    #[error("container {name} did not boot: {detail}")]
    Boot {
        /// The machine name.
        name: String,
        /// What was seen.
        detail: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
}

impl LabError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> LabError {
        let context = context.into();
        move |source| LabError::Io { context, source }
    }
}

/// Checks that this process can run containers: root, and the tools installed.
pub fn check_host() -> Result<(), LabError> {
    if effective_uid() != 0 {
        return Err(LabError::Unavailable(
            "the lab boots containers and must run as root (sudo)".into(),
        ));
    }
    for tool in ["systemd-nspawn", "debootstrap", "nsenter"] {
        let found = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
            .unwrap_or(false);
        if !found {
            return Err(LabError::Unavailable(format!(
                "{tool} is not installed; run ./scripts/setup (it installs systemd-container and debootstrap)"
            )));
        }
    }
    Ok(())
}

/// The effective uid, read from /proc so no unsafe code is needed.
fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2))
                .and_then(|u| u.parse().ok())
        })
        .unwrap_or(u32::MAX)
}
