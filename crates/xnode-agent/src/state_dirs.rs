//! Workloads' state directories (`state: true`): found, measured and, only when the
//! owner asks, deleted. systemd keeps a state directory when its unit goes, so
//! removing a workload never deletes its data; `xnodectl state prune` does.

use std::path::{Path, PathBuf};

use serde::Serialize;
use xnode_spec::unit::state_directory;

/// Where systemd keeps state directories.
pub const ROOT: &str = "/var/lib";

/// One workload's state directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StateDir {
    /// The workload it belongs to.
    pub workload: String,
    /// Where its data is.
    pub path: String,
    /// The size of its files, in bytes.
    pub bytes: u64,
}

/// The places one workload's state directory can be: its own under `root` (a set
/// user's, or the symlink systemd makes for a dynamic user) and the dynamic user's
/// real one under `root/private`.
fn places(root: &Path, workload: &str) -> [PathBuf; 2] {
    let name = state_directory(workload);
    [root.join("private").join(&name), root.join(&name)]
}

/// Every workload state directory under `root`, measured. Blocking: run it off the
/// loop.
pub fn list(root: &Path) -> Vec<StateDir> {
    let mut names = std::collections::BTreeSet::new();
    for dir in [root.join("private"), root.to_owned()] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if let Some(w) = name.to_str().and_then(|n| n.strip_prefix("xnode-"))
                && xnode_spec::rules::workload_name(w).is_ok()
            {
                names.insert(w.to_owned());
            }
        }
    }
    names
        .into_iter()
        .filter_map(|w| {
            let path = places(root, &w)
                .into_iter()
                .find(|p| p.symlink_metadata().is_ok_and(|m| m.is_dir()))?;
            Some(StateDir {
                bytes: size(&path),
                path: path.display().to_string(),
                workload: w,
            })
        })
        .collect()
}

/// The bytes of the files under `dir`, symlinks not followed.
fn size(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Deletes the state directory of `workload`, which the spec in force must not have.
/// Returns the bytes it held. Blocking: run it off the loop.
pub fn prune(root: &Path, workload: &str) -> Result<u64, String> {
    xnode_spec::rules::workload_name(workload)?;
    let found: Vec<PathBuf> = places(root, workload)
        .into_iter()
        .filter(|p| p.symlink_metadata().is_ok())
        .collect();
    if found.is_empty() {
        return Err(format!("workload {workload} has no state directory here"));
    }
    let mut bytes = 0;
    for path in found {
        let meta = path.symlink_metadata().map_err(|e| e.to_string())?;
        let removed = if meta.is_dir() {
            bytes += size(&path);
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {}
            // The symlink systemd keeps beside a dynamic user's directory, in a /var/lib
            // xnoded may not write: left dangling, it is replaced at the next start.
            Err(e) if meta.is_symlink() && e.raw_os_error() == Some(libc::EROFS) => {}
            Err(e) if e.raw_os_error() == Some(libc::EROFS) => {
                return Err(format!(
                    "cannot remove {}: xnoded may delete only dynamic users' state \
                     (under {ROOT}/private); delete it by hand",
                    path.display()
                ));
            }
            Err(e) => return Err(format!("cannot remove {}: {e}", path.display())),
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_measures_and_prunes_dynamic_and_fixed_users_directories() {
        let root = std::env::temp_dir().join(format!("xnode-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        // A dynamic user's: the real directory under private/, a symlink beside it.
        std::fs::create_dir_all(root.join("private/xnode-db/sub")).unwrap();
        std::fs::write(root.join("private/xnode-db/sub/data"), [0u8; 1000]).unwrap();
        std::os::unix::fs::symlink("private/xnode-db", root.join("xnode-db")).unwrap();
        // A set user's, and something that is not a workload's.
        std::fs::create_dir_all(root.join("xnode-web")).unwrap();
        std::fs::write(root.join("xnode-web/f"), [0u8; 10]).unwrap();
        std::fs::create_dir_all(root.join("other")).unwrap();
        let found = list(&root);
        let summary: Vec<_> = found
            .iter()
            .map(|d| (d.workload.as_str(), d.bytes))
            .collect();
        assert_eq!(summary, [("db", 1000), ("web", 10)]);
        assert!(found[0].path.ends_with("private/xnode-db"));

        assert_eq!(prune(&root, "db"), Ok(1000));
        assert!(!root.join("xnode-db").exists() && !root.join("private/xnode-db").exists());
        assert!(
            prune(&root, "db")
                .unwrap_err()
                .contains("no state directory")
        );
        assert!(prune(&root, "../other").is_err());
        assert!(root.join("other").exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
