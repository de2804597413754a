//! The node's mesh identity: an ed25519 key kept in the state directory, so a node
//! keeps its peer id across restarts and its peers know it when it comes back.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use libp2p::identity::Keypair;

/// The key file's name in the state directory.
pub const KEY_FILE: &str = "mesh.key";

/// Why the identity could not be had.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Reading or writing the key file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no key this node can use.
    #[error("{}: not an ed25519 mesh key ({why}); move it away to make a new identity", path.display())]
    Corrupt {
        /// The key file.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

/// The key in `state_dir`, made (and written atomically, mode 0600) on first use.
pub fn load_or_create(state_dir: &Path) -> Result<Keypair, IdentityError> {
    let path = state_dir.join(KEY_FILE);
    let io = |source| IdentityError::Io {
        path: path.clone(),
        source,
    };
    match std::fs::read(&path) {
        Ok(bytes) => {
            let key =
                Keypair::from_protobuf_encoding(&bytes).map_err(|e| IdentityError::Corrupt {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
            if key.key_type() != libp2p::identity::KeyType::Ed25519 {
                return Err(IdentityError::Corrupt {
                    path,
                    why: format!("a {} key", key.key_type()),
                });
            }
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .map_err(|e| IdentityError::Corrupt {
                    path: path.clone(),
                    why: e.to_string(),
                })?;
            std::fs::create_dir_all(state_dir).map_err(io)?;
            // A file or symlink already at the temporary name (left by a crash, or
            // planted) is removed, not written through: the key goes only into a file
            // made here, with mode 0600 from its first byte.
            let tmp = state_dir.join(format!(".{KEY_FILE}.tmp"));
            match std::fs::remove_file(&tmp) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io)?;
            f.write_all(&bytes)
                .and_then(|()| f.sync_all())
                .map_err(io)?;
            std::fs::rename(&tmp, &path).map_err(io)?;
            std::fs::File::open(state_dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
            Ok(key)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_survives_a_restart_and_a_bad_file_is_named() {
        let dir = std::env::temp_dir().join(format!("xnode-mesh-id-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let first = load_or_create(&dir).unwrap();
        let again = load_or_create(&dir).unwrap();
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());
        std::fs::write(dir.join(KEY_FILE), b"garbage").unwrap();
        let err = load_or_create(&dir).unwrap_err().to_string();
        assert!(err.contains("not an ed25519 mesh key"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_planted_temporary_file_or_symlink_never_receives_the_key() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("xnode-mesh-plant-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let tmp = dir.join(format!(".{KEY_FILE}.tmp"));
        let elsewhere = dir.join("attacker-readable");
        std::fs::write(&elsewhere, b"").unwrap();
        std::fs::set_permissions(&elsewhere, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &tmp).unwrap();
        load_or_create(&dir).unwrap();
        assert_eq!(
            std::fs::read(&elsewhere).unwrap(),
            b"",
            "written through the link"
        );
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // A planted world-readable file: replaced, not reused with its mode.
        std::fs::remove_file(dir.join(KEY_FILE)).unwrap();
        std::fs::write(&tmp, b"").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666)).unwrap();
        load_or_create(&dir).unwrap();
        let mode = std::fs::metadata(dir.join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
