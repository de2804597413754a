//! Units of the agent's own that are not workloads (the lease): written whole, and
//! systemd told, only when their text changes.

use std::path::Path;

use crate::files::temp_name;
use crate::{Error, Systemd};

impl Systemd {
    /// Puts `text` in the agent's unit directory as unit `name` and reloads systemd,
    /// unless the file already holds it. Returns whether it changed. A running unit
    /// is left running: the new text takes effect at its next start.
    pub async fn install(&self, name: &str, text: &str) -> Result<bool, Error> {
        let target = self.unit_dir().join(name);
        match tokio::fs::read_to_string(&target).await {
            Ok(current) if current == text => return Ok(false),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(Error::Read {
                    path: target,
                    source,
                });
            }
        }
        write_replacing(&target, text).await?;
        self.mutated(1);
        self.manager.reload().await.map_err(Error::call("Reload"))?;
        self.mutated(1);
        Ok(true)
    }
}

/// Writes beside the target and renames over it, so systemd never reads half a file.
async fn write_replacing(target: &Path, text: &str) -> Result<(), Error> {
    let temp = temp_name(target);
    let written = async {
        tokio::fs::write(&temp, text).await?;
        tokio::fs::rename(&temp, target).await
    };
    if let Err(source) = written.await {
        let _ = tokio::fs::remove_file(&temp).await;
        return Err(Error::Write {
            path: target.to_owned(),
            source,
        });
    }
    Ok(())
}
