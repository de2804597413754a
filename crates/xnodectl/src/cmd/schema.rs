//! `xnodectl schema`

use anyhow::Result;

use crate::Outcome;
use crate::cmd;

pub fn run() -> Result<Outcome> {
    cmd::print_json(&xnode_spec::schema())?;
    Ok(Outcome::Success)
}
