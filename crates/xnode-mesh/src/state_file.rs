//! The node's small files in its state directory: each replaced whole (written beside,
//! then renamed over), so a crash leaves the old one or the new one, never half.

use std::path::Path;

/// Replaces the file at `path` with `value` as JSON.
pub(crate) fn replace<T: serde::Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The node's incarnation for this start: one more than at its last, counted in the
/// state directory. A heartbeat's incarnation must grow from start to start, and the
/// wall clock may step back (the members would then ignore a restarted node as old
/// news). The first count is the clock in milliseconds, which is above every
/// incarnation a node took from its clock before it counted; and never below the
/// clock, so a count that could not be kept still grows while the clock does.
pub(crate) fn next_incarnation(state_dir: &Path, now_ms: u64) -> u64 {
    let path = state_dir.join("incarnation.json");
    let last = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<u64>(&b).ok());
    let next = last.map_or(now_ms, |n| n.saturating_add(1).max(now_ms));
    if let Err(e) = replace(&path, &next) {
        tracing::warn!(
            file = %path.display(),
            "cannot keep the incarnation count; after a restart the members may ignore this node until they forget it: {e}"
        );
    }
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_incarnation_grows_from_start_to_start_whatever_the_clock() {
        let dir = std::env::temp_dir().join(format!("xnode-incarnation-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(next_incarnation(&dir, 1_000), 1_000);
        // The clock stepped back: the count goes on.
        assert_eq!(next_incarnation(&dir, 10), 1_001);
        assert_eq!(next_incarnation(&dir, 20), 1_002);
        // The clock ahead of the count (it could not be written once): the clock.
        assert_eq!(next_incarnation(&dir, 5_000), 5_000);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
