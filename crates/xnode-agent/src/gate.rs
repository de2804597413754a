//! The health gate: after an apply, every changed workload must be up and pass its
//! probe within its health timeout, or the apply counts as unhealthy.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;
use xnode_spec::Spec;
use xnode_spec::unit::unit_name;
use xnode_systemd::UnitStatus;

use crate::health;
use crate::units::Units;

/// How often the gate looks again.
pub const POLL: Duration = Duration::from_millis(250);

/// How long a workload must stay up, probe passing, to count as healthy: a program
/// that starts and dies a moment later is not healthy. Never longer than the
/// workload's own health timeout.
pub const STABLE: Duration = Duration::from_secs(2);

/// What one look at a unit says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Look {
    /// Running: now for the probe.
    Up,
    /// Not yet: starting, or restarting after a crash.
    NotYet(String),
    /// Failed for good: no point waiting.
    Down(String),
}

/// Judges one status. Pure, so the rules are table-tested.
pub fn look(s: &UnitStatus) -> Look {
    let exit = || match s.exit_code {
        Some("exited") => format!("exit status {}", s.exit_status),
        Some(how) => format!("{how} by signal {}", s.exit_status),
        None => s.result.clone(),
    };
    match (s.active_state.as_str(), s.sub_state.as_str()) {
        ("active", "running" | "exited") | ("reloading", _) => Look::Up,
        ("failed", _) => Look::Down(format!("failed ({})", exit())),
        ("activating", "auto-restart") => {
            Look::NotYet(format!("restarting after a crash ({})", exit()))
        }
        (active, sub) => Look::NotYet(format!("{active} ({sub})")),
    }
}

/// Waits until every named workload of `spec` is healthy, each within its own health
/// timeout. Returns the ones that were not, with why.
pub async fn wait_healthy<U: Units>(
    units: &U,
    spec: &Spec,
    workloads: &[String],
) -> BTreeMap<String, String> {
    let checks = workloads.iter().filter_map(|name| {
        let w = spec.workloads.get(name)?;
        let timeout = Duration::from_millis(w.health.timeout.as_millis());
        let deadline = Instant::now() + timeout;
        let stable = STABLE.min(timeout / 2);
        let unit = unit_name(name);
        Some(async move {
            let mut up_since: Option<Instant> = None;
            loop {
                let up = match units.status(&unit).await.map(|s| look(&s)) {
                    Ok(Look::Up) => health::probe(&w.health)
                        .await
                        .map_err(|e| format!("running, but its probe fails: {e}")),
                    Ok(Look::Down(why)) => return Some((name.clone(), why)),
                    Ok(Look::NotYet(why)) => Err(why),
                    Err(e) => Err(e.to_string()),
                };
                let why = match up {
                    Ok(()) => {
                        let since = *up_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= stable {
                            return None;
                        }
                        format!("up for less than {} ms", stable.as_millis())
                    }
                    Err(why) => {
                        up_since = None;
                        why
                    }
                };
                if Instant::now() + POLL > deadline {
                    return Some((
                        name.clone(),
                        format!("not healthy within {}: {why}", w.health.timeout),
                    ));
                }
                tokio::time::sleep(POLL).await;
            }
        })
    });
    join_all(checks).await.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(active: &str, sub: &str, code: Option<&'static str>, n: i32) -> UnitStatus {
        UnitStatus {
            name: "xnode-w.service".into(),
            active_state: active.into(),
            sub_state: sub.into(),
            result: if n == 0 {
                "success".into()
            } else {
                "exit-code".into()
            },
            exit_code: code,
            exit_status: n,
        }
    }

    #[test]
    fn looks() {
        let cases = [
            (status("active", "running", None, 0), Look::Up),
            (status("active", "exited", Some("exited"), 0), Look::Up),
            (status("reloading", "reload", None, 0), Look::Up),
            (
                status("failed", "failed", Some("exited"), 1),
                Look::Down("failed (exit status 1)".into()),
            ),
            (
                status("failed", "failed", Some("killed"), 9),
                Look::Down("failed (killed by signal 9)".into()),
            ),
            (
                status("activating", "auto-restart", Some("exited"), 3),
                Look::NotYet("restarting after a crash (exit status 3)".into()),
            ),
            (
                status("activating", "start", None, 0),
                Look::NotYet("activating (start)".into()),
            ),
            (
                status("inactive", "dead", None, 0),
                Look::NotYet("inactive (dead)".into()),
            ),
        ];
        for (s, want) in cases {
            assert_eq!(look(&s), want, "{s:?}");
        }
    }
}
