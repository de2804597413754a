//! The cached Debian root filesystem.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

use crate::LabError;

/// Bump when the package set changes, so caches rebuild.
const ROOTFS_NAME: &str = "debian-bookworm-systemd-1";
const PACKAGES: &str = "systemd,dbus,systemd-sysv";

/// Where the lab keeps what is slow to make: `XNODE_LAB_CACHE`, or
/// `/var/cache/xnode-lab`. Outside any source tree, so fresh clones reuse it.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XNODE_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/xnode-lab"))
}

/// The root filesystem, built with debootstrap on first use (about half a minute) and
/// reused after. Safe to call from many tests at once: one builds, the others wait.
pub fn rootfs() -> Result<PathBuf, LabError> {
    crate::check_host()?;
    let dir = cache_dir();
    let target = dir.join(ROOTFS_NAME);
    if target.join("usr/lib/systemd/systemd").exists() {
        return Ok(target);
    }
    std::fs::create_dir_all(&dir)
        .map_err(LabError::io(format!("cannot create {}", dir.display())))?;
    let lock =
        File::create(dir.join(".lock")).map_err(LabError::io("cannot create the cache lock"))?;
    lock.lock().map_err(LabError::io("cannot lock the cache"))?;
    if target.join("usr/lib/systemd/systemd").exists() {
        return Ok(target);
    }
    // Build beside the target and rename, so a half-built tree is never taken for a
    // cache.
    let building = dir.join(format!("{ROOTFS_NAME}.building"));
    if building.exists() {
        std::fs::remove_dir_all(&building)
            .map_err(LabError::io("cannot clear a half-built rootfs"))?;
    }
    let mirror =
        std::env::var("XNODE_LAB_MIRROR").unwrap_or_else(|_| "http://deb.debian.org/debian".into());
    let out = Command::new("debootstrap")
        .args([
            "--variant=minbase",
            &format!("--include={PACKAGES}"),
            "bookworm",
        ])
        .arg(&building)
        .arg(&mirror)
        .output()
        .map_err(LabError::io("cannot run debootstrap"))?;
    if !out.status.success() {
        return Err(LabError::Command {
            what: format!("debootstrap into {}", building.display()),
            detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
        });
    }
    std::fs::rename(&building, &target)
        .map_err(LabError::io("cannot move the new rootfs into place"))?;
    Ok(target)
}
