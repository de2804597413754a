//! Reading the files a user names, with limits, so a wrong path or a huge file gives
//! a sentence rather than an exhausted machine.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Larger than any real spec (10,000 workloads is about 10 MB) and small enough to read
/// into memory safely.
pub const MAX_INPUT: u64 = 64 << 20;

/// Reads a file, or standard input for `-`.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let shown = path.display();
    let read = if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(MAX_INPUT + 1)
            .read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path)
            .with_context(|| format!("cannot open {shown}"))?
            .take(MAX_INPUT + 1)
            .read_to_end(&mut bytes)
    };
    read.with_context(|| format!("cannot read {shown}"))?;
    if bytes.len() as u64 > MAX_INPUT {
        bail!(
            "{shown} is larger than {} MiB; a spec is far smaller",
            MAX_INPUT >> 20
        );
    }
    Ok(bytes)
}

/// The name to print for a path.
pub fn name(path: &Path) -> String {
    if path == Path::new("-") {
        "<stdin>".to_owned()
    } else {
        path.display().to_string()
    }
}
