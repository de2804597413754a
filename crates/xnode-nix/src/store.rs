//! The node's own Nix store, read through Nix's own tools: `nix path-info` for what a
//! narinfo says, `nix-store --dump` for the NAR. Nix writes the NAR, so its bytes are
//! exactly what the NAR hash was taken over.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix_derivation::{NixHash, StoreDir, StorePath};
use nix_narinfo::{Compression, NarInfo, NixSignature};
use serde::Deserialize;
use tokio::process::{Child, Command};

use crate::wire::HashPart;

/// Reading the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Nix could not be run, or the store directory read.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Nix said something this release cannot read.
    #[error("cannot read what Nix says of {path}: {why}")]
    Unreadable {
        /// The path.
        path: String,
        /// Why.
        why: String,
    },
}

/// The node's store at `/nix/store` (or another directory, for tests of the lookup).
#[derive(Debug, Clone)]
pub struct LocalStore {
    dir: PathBuf,
}

impl Default for LocalStore {
    fn default() -> LocalStore {
        LocalStore {
            dir: PathBuf::from("/nix/store"),
        }
    }
}

/// What `nix path-info --json --sigs` says of one path (Nix 2.8's array and the later
/// releases' object both carry these fields).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PathInfo {
    #[serde(default = "valid")]
    valid: bool,
    nar_hash: String,
    nar_size: u64,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    deriver: Option<String>,
    #[serde(default)]
    signatures: Vec<String>,
}

fn valid() -> bool {
    true
}

impl LocalStore {
    /// A store kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> LocalStore {
        LocalStore { dir: dir.into() }
    }

    /// The entry of the store directory whose name starts with `hash`, if there is one
    /// (it may not be a valid path yet: Nix says).
    pub async fn path_of(&self, hash: &HashPart) -> Result<Option<String>, StoreError> {
        let dir = self.dir.clone();
        let prefix = format!("{hash}-");
        tokio::task::spawn_blocking(move || find_entry(&dir, &prefix))
            .await
            .map_err(|e| StoreError::Io {
                what: "look in the store",
                source: std::io::Error::other(e),
            })?
    }

    /// The narinfo of the valid path with this hash part, if the store holds one: its
    /// references, NAR hash and size, deriver and signatures, uncompressed, with its
    /// NAR at `nar/<hash>.nar`. No content address is given: a path travels on a
    /// trusted signature or not at all.
    pub async fn narinfo(&self, hash: &HashPart) -> Result<Option<NarInfo>, StoreError> {
        let Some(path) = self.path_of(hash).await? else {
            return Ok(None);
        };
        let out = Command::new("nix")
            .args(["--extra-experimental-features", "nix-command", "path-info"])
            .args(["--json", "--sigs"])
            .arg(&path)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|source| StoreError::Io {
                what: "run nix path-info (is Nix installed?)",
                source,
            })?;
        if !out.status.success() {
            // Not a valid path (being built, say, or a leftover): not ours to give.
            return Ok(None);
        }
        let info = parse_path_info(&path, &out.stdout)?;
        if !info.valid {
            return Ok(None);
        }
        narinfo_of(&path, hash, info).map(Some)
    }

    /// Nix writing the path's NAR to the child's stdout.
    pub fn dump(&self, path: &str) -> Result<Child, StoreError> {
        Command::new("nix-store")
            .arg("--dump")
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| StoreError::Io {
                what: "run nix-store --dump",
                source,
            })
    }

    /// Whether every one of `paths` is valid here (and so its whole closure).
    pub async fn holds(&self, paths: &[String]) -> bool {
        if paths.is_empty() {
            return true;
        }
        Command::new("nix-store")
            .arg("--check-validity")
            .args(paths)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await
            .is_ok_and(|s| s.success())
    }
}

fn find_entry(dir: &Path, prefix: &str) -> Result<Option<String>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|source| StoreError::Io {
        what: "read the store directory",
        source,
    })?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(prefix) && !name.ends_with(".lock") && !name.ends_with(".chroot") {
            return Ok(Some(dir.join(name).to_string_lossy().into_owned()));
        }
    }
    Ok(None)
}

fn parse_path_info(path: &str, json: &[u8]) -> Result<PathInfo, StoreError> {
    let unreadable = |why: String| StoreError::Unreadable {
        path: path.to_owned(),
        why,
    };
    let value: serde_json::Value =
        serde_json::from_slice(json).map_err(|e| unreadable(e.to_string()))?;
    // Nix 2.8 gives an array of objects with a "path"; later releases an object keyed
    // by path.
    let one = match value {
        serde_json::Value::Array(items) => items
            .into_iter()
            .find(|i| i.get("path").and_then(|p| p.as_str()) == Some(path)),
        serde_json::Value::Object(mut by_path) => by_path.remove(path),
        _ => None,
    }
    .ok_or_else(|| unreadable("no entry for it".into()))?;
    if one.is_null() {
        return Ok(PathInfo {
            valid: false,
            nar_hash: String::new(),
            nar_size: 0,
            references: Vec::new(),
            deriver: None,
            signatures: Vec::new(),
        });
    }
    serde_json::from_value(one).map_err(|e| unreadable(e.to_string()))
}

fn narinfo_of(path: &str, hash: &HashPart, info: PathInfo) -> Result<NarInfo, StoreError> {
    let unreadable = |why: String| StoreError::Unreadable {
        path: path.to_owned(),
        why,
    };
    let store_path = |p: &str| {
        StorePath::from_absolute_path(p.as_bytes()).map_err(|e| unreadable(format!("{p}: {e}")))
    };
    let nar_hash = NixHash::parse(&info.nar_hash).map_err(|e| unreadable(e.to_string()))?;
    let references = info
        .references
        .iter()
        .map(|r| store_path(r))
        .collect::<Result<Vec<_>, _>>()?;
    let deriver = info.deriver.as_deref().map(store_path).transpose()?;
    // A signature Nix keeps but this release cannot read is left out, not fatal.
    let signatures = info
        .signatures
        .iter()
        .filter_map(|s| NixSignature::parse(s).ok());
    NarInfo::builder_in(
        StoreDir::default(),
        store_path(path)?,
        nar_url(hash),
        nar_hash,
        info.nar_size,
    )
    .compression(Compression::None)
    .references(references)
    .deriver(deriver)
    .signatures(signatures)
    .build()
    .map_err(|e| unreadable(e.to_string()))
}

/// Where a holder's narinfo puts the NAR.
pub fn nar_url(hash: &HashPart) -> String {
    format!("nar/{hash}.nar")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/nix/store/3xa9msjahh3yldycg70v09sr9hbswcma-nixt.txt";
    const DEP: &str = "/nix/store/8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-dep";

    fn hash() -> HashPart {
        HashPart::of_path(PATH).unwrap()
    }

    #[test]
    fn nix_2_8_path_info_becomes_an_uncompressed_signed_narinfo_without_a_content_address() {
        let json = format!(
            r#"[{{"path":"{PATH}","narHash":"sha256-EFUdrtf6Rn0LWIJufrmg8q99aT3jGfLvd1//zaJEufY=","narSize":120,"references":["{DEP}"],"ca":"fixed:r:sha256:1xmr8jicvzszfzpz46g37mlpvbzjl2wpwvl2b05psipssyp1sm8h","registrationTime":1795961280,"signatures":["test:hV4Lsv/tQT+EG0hpCg4/SA3yzOHio78idF8MxbGBWAEb1yEi0dVZ/DalFSEAqkNbW/EtG3HPEt7pk2X+502YBA=="]}}]"#
        );
        let info = parse_path_info(PATH, json.as_bytes()).unwrap();
        let narinfo = narinfo_of(PATH, &hash(), info).unwrap();
        let text = String::from_utf8(narinfo.to_canonical_bytes()).unwrap();
        assert!(text.contains(&format!("StorePath: {PATH}\n")), "{text}");
        assert!(text.contains("URL: nar/3xa9msjahh3yldycg70v09sr9hbswcma.nar\n"));
        assert!(text.contains("Compression: none\n"));
        assert!(text.contains("NarSize: 120\n"));
        assert!(text.contains("References: 8r6i3khnvzqcqp5xnzbvzr5kk4qpa7h6-dep\n"));
        assert!(text.contains("Sig: test:hV4L"));
        assert!(!text.contains("CA:"), "{text}");
        // Nix signs the fingerprint with the NAR hash in base32.
        assert!(
            narinfo
                .fingerprint(&StoreDir::default())
                .starts_with(&format!("1;{PATH};sha256:1"))
        );
    }

    #[test]
    fn later_releases_path_info_is_read_too_and_an_invalid_path_is_none() {
        let json = format!(
            r#"{{"{PATH}":{{"narHash":"sha256-EFUdrtf6Rn0LWIJufrmg8q99aT3jGfLvd1//zaJEufY=","narSize":120,"references":[],"signatures":[]}}}}"#
        );
        let info = parse_path_info(PATH, json.as_bytes()).unwrap();
        assert!(info.valid);
        assert!(narinfo_of(PATH, &hash(), info).is_ok());
        let gone = format!(r#"{{"{PATH}":null}}"#);
        assert!(!parse_path_info(PATH, gone.as_bytes()).unwrap().valid);
        let invalid = format!(r#"[{{"path":"{PATH}","valid":false,"narHash":"","narSize":0}}]"#);
        assert!(!parse_path_info(PATH, invalid.as_bytes()).unwrap().valid);
        assert!(parse_path_info(PATH, b"[]").is_err());
        assert!(parse_path_info(PATH, b"nonsense").is_err());
    }

    #[test]
    fn a_path_is_found_by_its_hash_part_and_lock_files_are_not_paths() {
        let dir = std::env::temp_dir().join(format!("xnode-nix-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let h = hash();
        std::fs::write(dir.join(format!("{h}-x.lock")), "").unwrap();
        assert_eq!(find_entry(&dir, &format!("{h}-")).unwrap(), None);
        std::fs::write(dir.join(format!("{h}-x")), "").unwrap();
        assert_eq!(
            find_entry(&dir, &format!("{h}-")).unwrap(),
            Some(dir.join(format!("{h}-x")).to_string_lossy().into_owned())
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
