//! `xnodectl ssh-keys [--user USER] [FILE]`: the owner's SSH key for sshd, so whoever
//! may push specs to a node may also log in to it, with no key to copy by hand. The
//! owner is that of the spec in force, as xnoded publishes it: after a push that
//! rotates the owner, the former owner's key no longer logs in.

use std::path::Path;

use anyhow::{Context as _, Result};
use xnode_spec::Owner;

use crate::Outcome;
use crate::cli::SshKeysArgs;
use crate::cmd;

pub fn run(args: &SshKeysArgs) -> Result<Outcome> {
    if args.user != "root" {
        return Ok(Outcome::Success);
    }
    let owner = match std::fs::read_to_string(&args.owner_file) {
        Ok(text) if text.trim().is_empty() => None,
        Ok(text) => Some(
            Owner::parse(text.trim())
                .map_err(anyhow::Error::msg)
                .with_context(|| format!("{} does not name an owner", args.owner_file.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if !exists(&args.file) {
                return Ok(Outcome::Success);
            }
            let Some((spec, _)) = cmd::load_valid(&args.file)? else {
                return Ok(Outcome::Failure);
            };
            spec.spec.node.owner
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read {}", args.owner_file.display()));
        }
    };
    if let Some(line) = owner.as_ref().and_then(Owner::openssh_key) {
        cmd::print(&format!("{line}\n"))?;
    }
    Ok(Outcome::Success)
}

/// A node that has no spec yet has no owner: sshd is told "no keys", not an error.
fn exists(file: &Path) -> bool {
    file == Path::new("-") || file.try_exists().unwrap_or(true)
}
