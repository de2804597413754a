//! `xnodectl secret encrypt`

use anyhow::{Context as _, Result};
use zeroize::Zeroizing;

use crate::Outcome;
use crate::cli::SecretCommand;
use crate::{cmd, input};

pub fn run(command: &SecretCommand) -> Result<Outcome> {
    let SecretCommand::Encrypt { to, json, file } = command;
    // Every recipient is checked before the secret is read.
    let recipients = to
        .iter()
        .map(|peer| xnode_secret::peer_public_key(peer))
        .collect::<Result<Vec<_>, _>>()?;
    let secret = Zeroizing::new(input::read(file)?);
    let armored = xnode_secret::encrypt(&recipients, &secret)
        .with_context(|| format!("cannot encrypt {}", input::name(file)))?;
    if *json {
        cmd::print(&(serde_json::to_string(&armored)? + "\n"))?;
    } else {
        cmd::print(&armored)?;
    }
    Ok(Outcome::Success)
}
