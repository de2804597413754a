//! An Xnode in a container: xnoded installed as the Type=notify service a node runs,
//! with a spec file to watch.

use std::path::Path;

use crate::{Container, LabError, Options};

/// xnoded's flags in the lab: quicker polling for tests, and a free metrics port,
/// since containers share the host's loopback.
pub const TEST_FLAGS: &str = "--file-poll 200 --interval 2 --metrics-address 127.0.0.1:0";

/// xnoded's unit, as a node runs it, with `flags`.
pub fn xnoded_unit(flags: &str) -> String {
    format!(
        "[Unit]\nDescription=XnodeOS agent\n[Service]\nType=notify\nExecStart=/opt/xnode/xnoded {flags}\n\
         Restart=always\nRestartSec=500ms\nWatchdogSec=30\n"
    )
}

/// Boots a container with the binaries in `bin_dir` at /opt/xnode (xnoded, and
/// xnodectl if there), writes `spec` to /etc/xnode/spec.json and starts xnoded. The
/// start returns once xnoded has reported ready, after its first reconcile.
pub fn boot_node(bin_dir: &Path, spec: &[u8]) -> Result<Container, LabError> {
    boot_node_with(bin_dir, spec, TEST_FLAGS)
}

/// [`boot_node`] with xnoded's flags of your choice.
pub fn boot_node_with(bin_dir: &Path, spec: &[u8], flags: &str) -> Result<Container, LabError> {
    let c = Container::boot_with(&Options {
        bind_ro: vec![(bin_dir.to_owned(), "/opt/xnode".into())],
    })?;
    let write = |inside: &str, bytes: &[u8]| {
        let path = c.path(inside);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(LabError::io(format!("cannot create {}", dir.display())))?;
        }
        std::fs::write(&path, bytes).map_err(LabError::io(format!("cannot write {inside}")))
    };
    write("/etc/xnode/spec.json", spec)?;
    write(
        "/etc/systemd/system/xnoded.service",
        xnoded_unit(flags).as_bytes(),
    )?;
    write(
        "/usr/local/bin/xnodectl",
        b"#!/bin/sh\nexec /opt/xnode/xnodectl \"$@\"\n",
    )?;
    c.sh("chmod 755 /usr/local/bin/xnodectl && systemctl daemon-reload && systemctl start xnoded.service")?;
    Ok(c)
}
