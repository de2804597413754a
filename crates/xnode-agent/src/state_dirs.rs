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

/// Whether `path` is a directory a workload's user made: systemd gives a state
/// directory to the workload's user, never root, so a root-owned `xnode-*` directory
/// (xnoded's own state, a seed) is never taken for one.
fn workload_dir(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    path.symlink_metadata()
        .is_ok_and(|m| m.is_dir() && m.uid() != 0)
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
            let path = places(root, &w).into_iter().find(|p| workload_dir(p))?;
            Some(StateDir {
                bytes: size(&path),
                path: path.display().to_string(),
                workload: w,
            })
        })
        .collect()
}

/// How long a measure stands for `status`: large state directories take time to walk,
/// and status is asked for every second by `--watch`.
const MEASURED_FOR: std::time::Duration = std::time::Duration::from_secs(10);

/// [`list`] of [`ROOT`], measured at most once per [`MEASURED_FOR`]. Blocking.
pub fn list_recent() -> Vec<StateDir> {
    use std::sync::Mutex;
    use std::time::Instant;
    static LAST: Mutex<Option<(Instant, Vec<StateDir>)>> = Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    match &*last {
        Some((at, dirs)) if at.elapsed() < MEASURED_FOR => dirs.clone(),
        _ => {
            let dirs = list(Path::new(ROOT));
            *last = Some((Instant::now(), dirs.clone()));
            dirs
        }
    }
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
    if !found.iter().any(|p| workload_dir(p)) {
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
        let owned_by_a_user = |p: &Path| std::os::unix::fs::chown(p, Some(61184), None).unwrap();
        // A dynamic user's: the real directory under private/, a symlink beside it.
        std::fs::create_dir_all(root.join("private/xnode-db/sub")).unwrap();
        std::fs::write(root.join("private/xnode-db/sub/data"), [0u8; 1000]).unwrap();
        owned_by_a_user(&root.join("private/xnode-db"));
        std::os::unix::fs::symlink("private/xnode-db", root.join("xnode-db")).unwrap();
        // A set user's, and what is not a workload's: another name, and root's own.
        std::fs::create_dir_all(root.join("xnode-web")).unwrap();
        std::fs::write(root.join("xnode-web/f"), [0u8; 10]).unwrap();
        owned_by_a_user(&root.join("xnode-web"));
        std::fs::create_dir_all(root.join("other")).unwrap();
        std::fs::create_dir_all(root.join("xnode-seed")).unwrap();
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
        assert!(
            prune(&root, "seed")
                .unwrap_err()
                .contains("no state directory")
        );
        assert!(root.join("other").exists() && root.join("xnode-seed").exists());
        let _ = std::fs::remove_dir_all(&root);
    }
}
