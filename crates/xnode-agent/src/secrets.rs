//! Age credentials, decrypted into a root-only directory on /run's tmpfs for systemd to
//! hand over (`LoadCredential=`). The plaintext is held only there and, briefly, in
//! memory that is wiped after use; errors never carry it.

use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use xnode_secret::NodeKey;
use xnode_spec::unit::secret_name;
use xnode_spec::{Credential, Spec, Workload};

/// The node's key and where its decrypted secrets go.
#[derive(Clone)]
pub struct Secrets {
    key: Arc<Result<NodeKey, String>>,
    dir: PathBuf,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("dir", &self.dir).finish()
    }
}

impl Secrets {
    /// The secrets of the node whose mesh key is in `state_dir`, decrypted into `dir`
    /// (`unit::SECRETS_DIR` on a node). A key that cannot be had fails only the
    /// workloads that carry age credentials, with the reason.
    pub fn new(state_dir: &Path, dir: PathBuf) -> Secrets {
        let key = xnode_mesh::identity::load_or_create(state_dir)
            .map_err(|e| e.to_string())
            .and_then(|k| NodeKey::from_keypair(&k).map_err(|e| e.to_string()));
        Secrets {
            key: Arc::new(key),
            dir,
        }
    }

    /// Decrypts the age credentials of workload `name` and writes each where its unit
    /// loads it from; then removes that workload's older secrets. Either every one is
    /// in place or the workload is left as it was, with why.
    pub async fn stage(&self, name: &str, w: &Workload) -> Result<(), String> {
        let wanted: Vec<(String, String)> = w
            .credentials
            .iter()
            .filter_map(|(id, c)| match c {
                Credential::Age(ciphertext) => Some((id.clone(), ciphertext.clone())),
                Credential::File(_) => None,
            })
            .collect();
        let this = self.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || this.stage_blocking(&name, &wanted))
            .await
            .map_err(|e| format!("decrypting its credentials failed: {e}"))?
    }

    fn stage_blocking(&self, name: &str, wanted: &[(String, String)]) -> Result<(), String> {
        let dir = self.dir.join(name);
        if wanted.is_empty() {
            return remove_dir(&dir);
        }
        let key =
            self.key.as_ref().as_ref().map_err(|e| {
                format!("its age credentials cannot be decrypted: no node key ({e})")
            })?;
        let mut plain = Vec::with_capacity(wanted.len());
        for (id, ciphertext) in wanted {
            let text = key
                .decrypt(ciphertext)
                .map_err(|e| format!("credential {id}: {e}"))?;
            plain.push((secret_name(name, ciphertext).1, text));
        }
        let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io("cannot make", e))?;
        // systemd makes the top directory with the agent's runtime directories' mode.
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| io("cannot restrict", e))?;
        for (file, text) in &plain {
            write_secret(&dir, file, text).map_err(|e| io("cannot write a secret in", e))?;
        }
        let keep: Vec<&str> = plain.iter().map(|(f, _)| f.as_str()).collect();
        for entry in std::fs::read_dir(&dir).map_err(|e| io("cannot read", e))? {
            let entry = entry.map_err(|e| io("cannot read", e))?;
            if !keep.iter().any(|k| entry.file_name() == **k) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Removes the secrets of workloads that `spec` no longer has.
    pub async fn forget_removed(&self, spec: &Spec) {
        let dir = self.dir.clone();
        let names: Vec<String> = spec.workloads.keys().cloned().collect();
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                return;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                if !names.iter().any(|n| name == n.as_str()) {
                    let _ = remove_dir(&entry.path());
                }
            }
        })
        .await;
    }
}

/// Writes one secret, mode 0400, through a temporary file renamed into place, so a
/// unit starting meanwhile reads the old secret or the new one, never a part.
fn write_secret(dir: &Path, file: &str, text: &[u8]) -> std::io::Result<()> {
    let path = dir.join(file);
    let tmp = dir.join(format!(".{file}.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&tmp)?;
    f.write_all(text)?;
    std::fs::rename(&tmp, &path)
}

fn remove_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(format!("cannot remove {}: {e}", dir.display()))
        }
        _ => Ok(()),
    }
}
