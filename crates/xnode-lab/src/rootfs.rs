//! The cached Debian root filesystem.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

use crate::LabError;

/// Bump when the package set changes, so caches rebuild.
const ROOTFS_NAME: &str = "debian-bookworm-systemd-nix-4";
const PACKAGES: &str = "systemd,dbus,systemd-sysv,nftables";

/// The lab's Nix has no substituters: tests never reach beyond the machine.
const NIX_CONF: &str = "substituters =\nbuild-users-group =\n";

fn check(out: &std::process::Output, what: impl FnOnce() -> String) -> Result<(), LabError> {
    if out.status.success() {
        return Ok(());
    }
    Err(LabError::Command {
        what: what(),
        detail: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr)),
    })
}

/// Where the lab keeps what is slow to make: `XNODE_LAB_CACHE`, or
/// `/var/cache/xnode-lab`. Outside any source tree, so fresh clones reuse it.
pub fn cache_dir() -> PathBuf {
    std::env::var_os("XNODE_LAB_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/xnode-lab"))
}

/// The root filesystem (Debian with systemd, dbus and Nix), built with debootstrap on
/// first use (under a minute) and
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
    check(&out, || format!("debootstrap into {}", building.display()))?;
    // Nix goes in after debootstrap: as an --include its configuration fails.
    let out = Command::new("chroot")
        .arg(&building)
        .args(["sh", "-c", "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nix-bin nix-setup-systemd && apt-get clean"])
        .output()
        .map_err(LabError::io("cannot run chroot"))?;
    check(&out, || "installing Nix in the rootfs".into())?;
    let nix_dir = building.join("etc/nix");
    std::fs::create_dir_all(&nix_dir).map_err(LabError::io("cannot create etc/nix"))?;
    std::fs::write(nix_dir.join("nix.conf"), NIX_CONF)
        .map_err(LabError::io("cannot write nix.conf"))?;
    std::fs::rename(&building, &target)
        .map_err(LabError::io("cannot move the new rootfs into place"))?;
    Ok(target)
}
