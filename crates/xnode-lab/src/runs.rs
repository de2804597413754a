//! When a unit ran, read from a container's journal. systemd logs a unit's start and
//! end with fixed message ids and the monotonic clock, which containers share with the
//! host, so runs on different hosts compare to the microsecond — exactly, where polling
//! could miss a short overlap.

use crate::{Container, LabError};

/// "Started …": the start job finished. Also "… was skipped because of an unmet
/// condition check", which is no run: systemd made no invocation for it, and the entry
/// carries the unit's last invocation id (empty if it never ran).
const STARTED: &str = "39f53479d3a045ac8e11786248231fbf";
/// "Stopped …", "… failed", "… deactivated successfully": it is down.
const ENDED: [&str; 3] = [
    "9d1aaa27d60140bd96365438aad20286",
    "be02cf6855d2428ba40df7e9d022f03d",
    "7ad2d189f7e94e70a38c781354912448",
];

/// One run of a unit, in µs of the monotonic clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Up from.
    pub from_us: u64,
    /// Down at; `None` while it still runs.
    pub to_us: Option<u64>,
}

/// Every run of `unit` in the container's journal.
pub fn runs(c: &Container, unit: &str) -> Result<Vec<Run>, LabError> {
    let out = c.exec(&["journalctl", "-u", unit, "-o", "json", "--no-pager"])?;
    Ok(parse(&String::from_utf8_lossy(&out.stdout)))
}

/// Runs from `journalctl -o json` lines.
pub fn parse(journal: &str) -> Vec<Run> {
    let mut runs: Vec<Run> = Vec::new();
    let mut last_invocation = String::new();
    for line in journal.lines() {
        let Ok(entry) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let id = entry["MESSAGE_ID"].as_str().unwrap_or_default();
        let Some(at) = entry["__MONOTONIC_TIMESTAMP"]
            .as_str()
            .and_then(|t| t.parse().ok())
        else {
            continue;
        };
        let open = runs.last_mut().filter(|r| r.to_us.is_none());
        let invocation = entry["INVOCATION_ID"].as_str();
        let skipped = invocation.is_some_and(|i| i.is_empty() || i == last_invocation);
        if id == STARTED && !skipped && open.is_none() {
            last_invocation = invocation.unwrap_or_default().to_owned();
            runs.push(Run {
                from_us: at,
                to_us: None,
            });
        } else if ENDED.contains(&id)
            && let Some(run) = open
        {
            run.to_us = Some(at);
        }
    }
    runs
}

/// The first instant at which more than `limit` hosts ran the unit at once, given
/// each host's runs.
pub fn first_overlap(hosts: &[Vec<Run>], limit: usize) -> Option<u64> {
    let mut edges: Vec<(u64, i32)> = hosts
        .iter()
        .flatten()
        .flat_map(|r| [(r.from_us, 1), (r.to_us.unwrap_or(u64::MAX), -1)])
        .collect();
    // At one instant, ends before starts: a handover at the same µs is no overlap.
    edges.sort();
    let mut up = 0i64;
    for (at, d) in edges {
        up += i64::from(d);
        if up > limit as i64 {
            return Some(at);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, at: u64, invocation: &str) -> String {
        format!(
            r#"{{"MESSAGE_ID":"{id}","__MONOTONIC_TIMESTAMP":"{at}","INVOCATION_ID":"{invocation}"}}"#
        )
    }

    #[test]
    fn runs_come_from_starts_and_ends() {
        let journal = [
            // Skipped (unmet condition) before it ever ran: no invocation.
            entry(STARTED, 50, ""),
            entry(STARTED, 100, "a"),
            r#"{"MESSAGE":"a line of the workload's own"}"#.into(),
            entry(ENDED[2], 200, "a"),
            entry(ENDED[0], 201, "a"),
            // Skipped after it ran: the last invocation's id again.
            entry(STARTED, 250, "a"),
            entry(STARTED, 300, "b"),
        ]
        .join("\n");
        assert_eq!(
            parse(&journal),
            [
                Run {
                    from_us: 100,
                    to_us: Some(200)
                },
                Run {
                    from_us: 300,
                    to_us: None
                }
            ]
        );
    }

    #[test]
    fn overlaps_are_found_to_the_microsecond() {
        let run = |from_us, to_us| Run { from_us, to_us };
        let handover = [vec![run(0, Some(100))], vec![run(100, None)]];
        assert_eq!(first_overlap(&handover, 1), None);
        let overlap = [vec![run(0, Some(101))], vec![run(100, None)]];
        assert_eq!(first_overlap(&overlap, 1), Some(100));
        let three = [
            vec![run(0, None)],
            vec![run(10, None)],
            vec![run(20, Some(30)), run(40, None)],
        ];
        assert_eq!(first_overlap(&three, 3), None);
        assert_eq!(first_overlap(&three, 2), Some(20));
    }
}
