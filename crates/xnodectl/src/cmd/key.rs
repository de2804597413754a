//! `xnodectl key generate|show`: owner keys, kept in files that only their user reads.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Serialize;
use xnode_spec::keys::{KeyKind, OwnerKey};

use crate::Outcome;
use crate::cli::{KeyCommand, KeyType, Output};
use crate::cmd;

#[derive(Serialize)]
struct Identity {
    owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    ssh: Option<String>,
}

pub fn run(command: &KeyCommand) -> Result<Outcome> {
    let (key, output) = match command {
        KeyCommand::Generate { file, kind, output } => (generate(file, *kind)?, *output),
        KeyCommand::Show { file, output } => (read(file)?, *output),
    };
    let owner = key.owner();
    let identity = Identity {
        owner: owner.to_string(),
        ssh: owner.openssh_key(),
    };
    match output {
        Output::Json => cmd::print_json(&identity)?,
        Output::Text => cmd::print(&format!("{}\n", identity.owner))?,
    }
    Ok(Outcome::Success)
}

fn generate(file: &Path, kind: KeyType) -> Result<OwnerKey> {
    let kind = match kind {
        KeyType::Ed25519 => KeyKind::Ed25519,
        KeyType::Eth => KeyKind::Eth,
    };
    let key = OwnerKey::generate(kind)?;
    cmd::write_secret(file, "key", &key.to_secret_string())?;
    Ok(key)
}

/// Reads a key file, refusing one that others may read, as ssh does: a key that has
/// leaked is no proof of its owner.
pub fn read(file: &Path) -> Result<OwnerKey> {
    let meta =
        std::fs::metadata(file).with_context(|| format!("cannot open {}", file.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} can be read by others (mode {:o}); make it private: chmod 600 {}",
            file.display(),
            mode & 0o777,
            file.display()
        );
    }
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    OwnerKey::parse(&text).with_context(|| format!("{} holds no owner key", file.display()))
}
