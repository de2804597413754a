//! `xnodectl wait` and `xnodectl status --watch`: xnoded's status looked at again and
//! again, until the node converged or for as long as the user watches.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow};
use xnode_api::node::{History, Status};
use xnode_api::{ClientError, Generation, Outcome as Ended, Request};

use crate::Outcome;
use crate::cli::{Output, StatusArgs, WaitArgs};
use crate::cmd;

/// How often `wait` looks.
const EVERY: Duration = Duration::from_millis(500);

/// How long one look may take.
const LOOK: Duration = Duration::from_secs(30);

/// What a look at the node says of the wait.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Converged, on this generation.
    Converged(u64),
    /// The generation waited for was rolled back or left unhealthy: why.
    Failed(String),
    /// Not yet: what the node is doing.
    Waiting(String),
}

/// Judges `status`, waiting for `want` (or any generation); `record` is the record of
/// generation `want` when it is known (from the status or the history).
fn verdict(status: &Status, want: Option<u64>, record: Option<&Generation>) -> Verdict {
    let current = status.generation.as_ref();
    if let Some(applying) = &status.applying {
        return Verdict::Waiting(super::progress::line(applying));
    }
    let failed = |g: &Generation| match &g.outcome {
        Ended::RolledBack { reason } => Some(format!(
            "generation {} was unhealthy and was rolled back: {reason}",
            g.number
        )),
        Ended::Unhealthy { reason } => {
            Some(format!("generation {} is unhealthy: {reason}", g.number))
        }
        Ended::Applying | Ended::Healthy => None,
    };
    if let Some(why) = record.and_then(failed) {
        return Verdict::Failed(why);
    }
    let number = current.map_or(0, |g| g.number);
    if let Some(n) = want
        && number < n
    {
        return Verdict::Waiting(format!(
            "generation {n} is not in force yet (generation {number} is)"
        ));
    }
    // The generation in force (the one waited for, or a later one) left unhealthy.
    if let Some(why) = current.and_then(failed) {
        return Verdict::Failed(why);
    }
    if status.converged {
        return Verdict::Converged(number);
    }
    let why = status
        .last_error
        .as_deref()
        .unwrap_or("its units do not match the spec yet");
    Verdict::Waiting(format!("generation {number} is not converged: {why}"))
}

/// The record of generation `n`: from the status when it is the one in force, else
/// from the history (once a later one is in force and no apply runs).
fn record(socket: &std::path::Path, status: &Status, n: u64) -> Result<Option<Generation>> {
    match &status.generation {
        Some(g) if g.number == n => Ok(Some(g.clone())),
        Some(g) if g.number > n && status.applying.is_none() => {
            let history: History = xnode_api::call(socket, Request::History, LOOK)?;
            Ok(history.generations.into_iter().find(|g| g.number == n))
        }
        _ => Ok(None),
    }
}

/// `xnodectl wait`.
pub fn run(args: &WaitArgs) -> Result<Outcome> {
    let socket = &args.agent.socket;
    let text = matches!(args.agent.output, Output::Text);
    let start = Instant::now();
    let deadline = start
        .checked_add(Duration::from_secs(args.timeout))
        .unwrap_or(start + Duration::from_secs(100 * 365 * 24 * 3600));
    let mut said = String::new();
    loop {
        // xnoded may be restarting: a look that cannot reach it is waited out like the
        // rest; any other failure (a refusal, say) ends the wait.
        let look: Result<Status> = match xnode_api::call(socket, Request::Status, LOOK) {
            Err(e @ (ClientError::Connect { .. } | ClientError::Io(_))) => Err(e.into()),
            Err(e) => return Err(e.into()),
            Ok(status) => Ok(status),
        };
        let look = look.and_then(|status| {
            let known = match args.generation {
                Some(n) => record(socket, &status, n)?,
                None => None,
            };
            Ok((status, known))
        });
        let judged = match &look {
            Ok((status, known)) => verdict(status, args.generation, known.as_ref()),
            Err(e) => Verdict::Waiting(format!("cannot ask xnoded: {e:#}")),
        };
        let status = look.map(|(status, _)| status).unwrap_or_default();
        // The end of the wait: a sentence, or the status it ended on.
        let end = |sentence: String| match text {
            true => cmd::print(&format!("{sentence}\n")),
            false => cmd::print_json(&status),
        };
        match judged {
            Verdict::Converged(n) => {
                end(format!("The node converged on generation {n}."))?;
                return Ok(Outcome::Success);
            }
            Verdict::Failed(why) => {
                end(why)?;
                return Ok(Outcome::Failure);
            }
            Verdict::Waiting(line) => {
                if Instant::now() >= deadline {
                    return Err(anyhow!(
                        "the node did not converge within {} s: {line}",
                        args.timeout
                    ));
                }
                if text && line != said {
                    cmd::print(&format!("{line}\n"))?;
                    said = line;
                }
            }
        }
        std::thread::sleep(EVERY);
    }
}

/// `xnodectl status --watch`: on a terminal the screen is drawn again every
/// `--every` seconds; otherwise the status is printed again when it changes.
pub fn watch(args: &StatusArgs, show: impl Fn(&Status) -> String) -> Result<Outcome> {
    use std::io::IsTerminal as _;
    let terminal = std::io::stdout().is_terminal();
    let mut shown = String::new();
    loop {
        let page = match xnode_api::call::<Status>(&args.agent.socket, Request::Status, LOOK) {
            Ok(status) => match args.agent.output {
                Output::Json => serde_json::to_string(&status)? + "\n",
                Output::Text => show(&status),
            },
            // xnoded restarting, say: said on standard error, and looked at again.
            Err(e) => {
                eprintln!("cannot ask xnoded: {e}");
                std::thread::sleep(Duration::from_secs(args.every.max(1)));
                continue;
            }
        };
        if terminal {
            // Home, clear, then the page.
            cmd::print(&format!("\x1b[H\x1b[2J{page}"))?;
        } else if page != shown {
            cmd::print(&format!("{page}\n"))?;
        }
        shown = page;
        std::thread::sleep(Duration::from_secs(args.every.max(1)));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn generation(n: u64, outcome: Value) -> Value {
        json!({"number": n, "hash": "sha256:00", "source": {"kind": "api"},
               "accepted_at": 0, "outcome": outcome})
    }

    #[test]
    fn verdicts() {
        let healthy = json!({"state": "healthy"});
        let rolled = json!({"state": "rolled_back", "reason": "web: not healthy within 30s"});
        let unhealthy = json!({"state": "unhealthy", "reason": "web failed"});
        let status = |g: Value, converged: bool, applying: Value| json!({"generation": g, "converged": converged, "applying": applying});
        let record = |v: Value| serde_json::from_value::<Generation>(v).unwrap();
        let applying = json!({"generation": 4, "phase": "gating",
                              "workloads": {"web": {"state": "waiting", "why": "starting"}, "db": {"state": "healthy"}}});
        let rows: Vec<(Value, Option<u64>, Option<Generation>, Verdict)> = vec![
            (
                status(generation(3, healthy.clone()), true, Value::Null),
                None,
                None,
                Verdict::Converged(3),
            ),
            (
                status(generation(3, healthy.clone()), false, applying),
                Some(4),
                None,
                Verdict::Waiting("applying generation 4 (gating): web waiting".into()),
            ),
            (
                status(generation(3, healthy.clone()), true, Value::Null),
                Some(4),
                None,
                Verdict::Waiting("generation 4 is not in force yet (generation 3 is)".into()),
            ),
            // 4 was rolled back: 5, the rollback, is in force and converged.
            (
                status(generation(5, healthy.clone()), true, Value::Null),
                Some(4),
                Some(record(generation(4, rolled))),
                Verdict::Failed(
                    "generation 4 was unhealthy and was rolled back: web: not healthy within 30s"
                        .into(),
                ),
            ),
            (
                status(generation(5, healthy.clone()), true, Value::Null),
                Some(4),
                Some(record(generation(4, healthy.clone()))),
                Verdict::Converged(5),
            ),
            (
                status(generation(4, unhealthy.clone()), false, Value::Null),
                None,
                None,
                Verdict::Failed("generation 4 is unhealthy: web failed".into()),
            ),
            // 4 was healthy, but 5 came after it and was left unhealthy.
            (
                status(generation(5, unhealthy.clone()), false, Value::Null),
                Some(4),
                Some(record(generation(4, healthy.clone()))),
                Verdict::Failed("generation 5 is unhealthy: web failed".into()),
            ),
            (
                status(generation(4, healthy), false, Value::Null),
                None,
                None,
                Verdict::Waiting(
                    "generation 4 is not converged: its units do not match the spec yet".into(),
                ),
            ),
            (
                json!({"generation": null, "converged": false, "applying": null,
                       "last_error": "cannot reach systemd"}),
                None,
                None,
                Verdict::Waiting("generation 0 is not converged: cannot reach systemd".into()),
            ),
        ];
        for (i, (status, want, record, expected)) in rows.into_iter().enumerate() {
            let status: Status = serde_json::from_value(status).unwrap();
            assert_eq!(verdict(&status, want, record.as_ref()), expected, "row {i}");
        }
    }
}
