//! Age credentials, decrypted into a root-only directory on /run's tmpfs for systemd to
//! hand over (`LoadCredential=`). The plaintext is held only there and, briefly, in
//! memory that is wiped after use; errors never carry it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use xnode_secret::NodeKey;
use xnode_spec::unit::secret_name;
use xnode_spec::{Credential, Spec, Workload};

/// The node's key and where its decrypted secrets go.
#[derive(Clone)]
pub struct Secrets {
    key: Arc<Result<NodeKey, String>>,
    dir: PathBuf,
    /// One writer at a time: a start-up check and an apply may stage at once.
    writing: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets").field("dir", &self.dir).finish()
    }
}

/// A workload's age credentials: (credential name, ciphertext).
fn age_credentials(w: &Workload) -> Vec<(String, String)> {
    w.credentials
        .iter()
        .filter_map(|(id, c)| match c {
            Credential::Age(ciphertext) => Some((id.clone(), ciphertext.clone())),
            Credential::File(_) => None,
        })
        .collect()
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
            writing: Arc::new(Mutex::new(())),
        }
    }

    /// Decrypts the age credentials of workload `name` and writes each where its unit
    /// loads it from. Either every one is in place or none is written, with why. Removes
    /// nothing: [`Secrets::tidy`] does, once an apply knows what is in force.
    pub async fn stage(&self, name: &str, w: &Workload) -> Result<(), String> {
        let wanted = age_credentials(w);
        if wanted.is_empty() {
            return Ok(());
        }
        let this = self.clone();
        let name = name.to_owned();
        tokio::task::spawn_blocking(move || this.stage_blocking(&name, &wanted))
            .await
            .map_err(|e| format!("decrypting its credentials failed: {e}"))?
    }

    fn stage_blocking(&self, name: &str, wanted: &[(String, String)]) -> Result<(), String> {
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
        let dir = self.dir.join(name);
        let io = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.display());
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
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
        Ok(())
    }

    /// Deletes the decrypted secrets that the spec in force no longer names, except
    /// those of workloads held back (their running units still load the old ones).
    pub async fn tidy(&self, spec: &Spec, held_back: &BTreeMap<String, String>) {
        let mut keep: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
        for (name, w) in &spec.workloads {
            let files = if held_back.contains_key(name) {
                None
            } else {
                Some(
                    age_credentials(w)
                        .iter()
                        .map(|(_, c)| secret_name(name, c).1)
                        .collect(),
                )
            };
            keep.insert(name.clone(), files);
        }
        let this = self.clone();
        let _ = tokio::task::spawn_blocking(move || this.tidy_blocking(&keep)).await;
    }

    fn tidy_blocking(&self, keep: &BTreeMap<String, Option<BTreeSet<String>>>) {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            match keep.get(&name) {
                None => {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
                Some(None) => {}
                Some(Some(files)) => {
                    let Ok(inner) = std::fs::read_dir(entry.path()) else {
                        continue;
                    };
                    for file in inner.flatten() {
                        if !files.contains(file.file_name().to_string_lossy().as_ref()) {
                            let _ = std::fs::remove_file(file.path());
                        }
                    }
                    if files.is_empty() {
                        let _ = std::fs::remove_dir(entry.path());
                    }
                }
            }
        }
    }
}

/// Writes one secret, mode 0400, through a temporary file renamed into place, so a
/// unit starting meanwhile reads the old secret or the new one, never a part. A
/// temporary file left by a failure is removed.
fn write_secret(dir: &Path, file: &str, text: &[u8]) -> std::io::Result<()> {
    let path = dir.join(file);
    let tmp = dir.join(format!(".{file}.tmp"));
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o400)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
