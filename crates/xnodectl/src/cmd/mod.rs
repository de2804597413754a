//! One module per subcommand, and what they share: loading a spec, printing problems,
//! writing to standard output.

pub mod apply;
pub mod docs;
pub mod events;
pub mod fleet;
pub mod fleet_spec;
pub mod hash;
pub mod history;
pub mod key;
pub mod logs;
pub mod mesh;
pub mod plan;
pub mod progress;
pub mod schema;
pub mod secret;
pub mod ssh_keys;
pub mod state;
pub mod status;
pub mod validate;
pub mod wait;

use std::io::Write;
use std::path::Path;

use anyhow::{Context as _, Result};
use xnode_spec::{Invalid, Validated};

use crate::input;

/// Reads and validates a spec file. The outer error is about reaching the file; the
/// inner one is about its content.
pub fn load(path: &Path) -> Result<Result<Validated, Invalid>> {
    Ok(xnode_spec::parse(&input::read(path)?))
}

/// Reads and validates a spec file for a command that needs a valid one: its problems
/// are reported and `None` returned when it is not. Gives the bytes too, read once (a
/// spec on standard input cannot be read twice).
pub fn load_valid(path: &Path) -> Result<Option<(Validated, Vec<u8>)>> {
    let bytes = input::read(path)?;
    match xnode_spec::parse(&bytes) {
        Ok(v) => Ok(Some((v, bytes))),
        Err(invalid) => {
            report(path, &invalid);
            Ok(None)
        }
    }
}

/// Prints a spec's problems to standard error, one per line, path first.
pub fn report(path: &Path, invalid: &Invalid) {
    let n = invalid.problems.len();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{}: {n} problem{}:",
        input::name(path),
        if n == 1 { "" } else { "s" }
    );
    for p in &invalid.problems {
        let _ = writeln!(err, "{p}");
    }
}

/// Writes to standard output; a closed pipe (`xnodectl schema | head`) surfaces as an
/// error that `main` treats as a quiet end.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// Prints each item of a stream of Server-Sent Events at `path` (`text` for people,
/// or a JSON line each) until the user stops it; a closed pipe (`| head`) ends it
/// quietly. xnoded never ends a stream by itself, so its end is an error.
pub fn print_stream<T: serde::de::DeserializeOwned + serde::Serialize>(
    agent: &crate::cli::AgentArgs,
    path: &str,
    text: impl Fn(&T) -> String,
) -> Result<crate::Outcome> {
    let mut failed = None;
    let stopped = xnode_api::follow(&agent.socket, path, |item: T| {
        let shown = match agent.output {
            crate::cli::Output::Json => serde_json::to_string(&item)
                .map(|l| l + "\n")
                .map_err(Into::into),
            crate::cli::Output::Text => Ok(text(&item) + "\n"),
        };
        match shown.and_then(|s| print(&s)) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match (failed, stopped) {
        (Some(e), _) => Err(e),
        (None, true) => Ok(crate::Outcome::Success),
        (None, false) => Err(anyhow::anyhow!("xnoded ended the stream (did it restart?)")),
    }
}

/// Pretty JSON with a final newline.
pub fn print_json(value: &impl serde::Serialize) -> Result<()> {
    print(&(serde_json::to_string_pretty(value)? + "\n"))
}

/// One request to xnoded, its reply as `T`. Health checks can take minutes, so the
/// timeout is generous.
pub fn call<T: serde::de::DeserializeOwned>(
    socket: &Path,
    request: xnode_api::Request,
) -> Result<T> {
    Ok(xnode_api::call(
        socket,
        request,
        std::time::Duration::from_secs(3600),
    )?)
}

/// Writes a secret to a new file, mode 0600 from the start; an existing file is never
/// overwritten (it may be the only copy of a key).
pub fn write_secret(file: &Path, what: &str, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .with_context(|| {
            format!(
                "cannot create {} (an existing {what} is never overwritten)",
                file.display()
            )
        })?;
    writeln!(f, "{text}")
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", file.display()))
}

/// The generation to sign with (by default the time in milliseconds, which grows by
/// itself) and the timestamp, in seconds; a generation no node would take is refused
/// here, before anything is signed.
pub fn signing_time(generation: Option<u64>, what: &str) -> Result<(u64, u64)> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?;
    let generation = generation.unwrap_or(now.as_millis() as u64);
    let limit = xnode_spec::push::generation_limit(now.as_secs());
    if generation > limit {
        anyhow::bail!(
            "generation {generation} is beyond {limit} (the time in milliseconds, {} s ahead); no node takes it, because it would lock out every later {what}",
            xnode_spec::push::WINDOW_SECS
        );
    }
    Ok((generation, now.as_secs()))
}
