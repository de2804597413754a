//! What a member says in its heartbeats about how it is doing: its place in the fleet
//! spec's rollout, and a small summary of its health, so any member can show the
//! whole fleet. Bounded field by field, as every message is, and optional, so a
//! member of an older release is simply shown without one.

pub use xnode_api::fleet::{NodeHealth, Progress, Report};

/// The longest text in a report: an agent version, or an apply's outcome.
const MAX_TEXT: usize = 64;

/// Whether every field of a report is within its bounds.
pub(crate) fn check(report: &Report) -> Result<(), String> {
    let n = &report.node;
    for (name, text) in [
        ("spec", &n.spec),
        ("last_apply", &n.last_apply),
        ("version", &n.version),
    ] {
        if text.len() > MAX_TEXT || text.chars().any(char::is_control) {
            return Err(format!("{name}: at most {MAX_TEXT} printable characters"));
        }
    }
    let f = &report.fleet;
    if f.running > f.newest {
        return Err(format!(
            "fleet: runs generation {} above its newest, {}",
            f.running, f.newest
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_are_bounded() {
        let mut r = Report::default();
        assert!(check(&r).is_ok());
        r.node.version = "x".repeat(65);
        assert!(check(&r).unwrap_err().contains("version"));
        r.node.version = "0.1\n".into();
        assert!(check(&r).is_err());
        r.node.version = "0.1.0".into();
        r.fleet.running = 3;
        assert!(check(&r).unwrap_err().contains("above its newest"));
    }
}
