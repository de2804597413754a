//! The owner of the spec in force, published for `xnodectl ssh-keys` (which sshd runs
//! as nobody, so it cannot read the state directory). It fails closed: a file that
//! cannot be replaced is emptied, so it never goes on naming a former owner.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

use xnode_spec::Owner;

/// Replaces `path` (world-readable) with `owner`, never half-written. If it cannot,
/// it leaves `path` empty (no owner: nobody logs in as root) when it can, and says why.
pub(super) fn publish(path: &Path, owner: Option<&Owner>) -> std::io::Result<()> {
    let text = owner.map(|o| format!("{o}\n")).unwrap_or_default();
    replace(path, text.as_bytes()).inspect_err(|_| {
        // Truncating needs no free space, and an empty file names no owner.
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(path);
    })
}

fn replace(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    // Readable by all whatever the umask (xnoded's is 0077).
    f.set_permissions(std::fs::Permissions::from_mode(0o644))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_owner_is_published_and_a_failure_leaves_no_owner_named() {
        let dir = std::env::temp_dir().join(format!("xnode-owner-file-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("owner");
        let owner = Owner::parse("ed25519:kaeWrQkO8LDUU3c7ytQ+wxvKfy81FaGVfAQXVSGMUeI=").unwrap();
        publish(&path, Some(&owner)).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{owner}\n")
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        // The next cannot be written (something sits at the temporary name that is
        // no file): the former owner is not left named.
        std::fs::create_dir(path.with_extension("tmp")).unwrap();
        std::fs::write(path.with_extension("tmp").join("x"), b"x").unwrap();
        assert!(publish(&path, None).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
