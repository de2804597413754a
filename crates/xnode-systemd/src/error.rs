//! What can go wrong between the agent and systemd.

use std::path::PathBuf;

/// Errors of this crate; each says what was being done and to what.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No connection to systemd's bus.
    #[error("cannot reach systemd on {bus}: {source}")]
    Unreachable {
        /// The bus that was tried.
        bus: String,
        /// Why.
        source: zbus::Error,
    },
    /// systemd answered a call with an error.
    #[error("systemd refused {call}: {source}")]
    Call {
        /// The call, e.g. `StartUnit(xnode-web.service)`.
        call: String,
        /// systemd's answer.
        source: zbus::Error,
    },
    /// A unit file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A unit file could not be written or removed; nothing was changed.
    #[error("cannot write {}: {source}; nothing was changed", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file the plan would overwrite or remove is not the agent's.
    #[error("{} is not managed by xnoded (no {} line for {workload}); refusing to touch it, nothing was changed", path.display(), xnode_spec::unit::MARKER)]
    NotOwned {
        /// The file.
        path: PathBuf,
        /// The workload whose unit it would have been.
        workload: String,
    },
    /// Another unit file of the same name takes precedence over the agent's directory.
    #[error("{} would be loaded instead of xnoded's unit for workload {workload}; remove it to let xnoded manage that workload, nothing was changed", path.display())]
    Shadowed {
        /// The file systemd would load.
        path: PathBuf,
        /// The workload.
        workload: String,
    },
}

impl Error {
    pub(crate) fn call(call: impl Into<String>) -> impl FnOnce(zbus::Error) -> Error {
        let call = call.into();
        move |source| Error::Call { call, source }
    }
}
