//! A workload's recent log lines, read from the journal through libsystemd (not by
//! running journalctl and parsing its text).

use xnode_api::node::LogLine;

/// Most lines one request returns.
pub const MAX_LINES: usize = 10_000;

fn fail(e: systemd::Error) -> String {
    format!("cannot read the journal: {e}")
}

/// The journal, narrowed to `unit`'s entries.
fn open(unit: &str) -> Result<systemd::journal::Journal, String> {
    let mut journal = systemd::journal::OpenOptions::default()
        .system(true)
        .local_only(true)
        .open()
        .map_err(fail)?;
    journal.match_add("_SYSTEMD_UNIT", unit).map_err(fail)?;
    Ok(journal)
}

/// The entry the journal is at.
fn line(journal: &systemd::journal::Journal, record: &systemd::journal::JournalRecord) -> LogLine {
    let time_us = journal
        .timestamp()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_micros() as u64);
    LogLine {
        time_us,
        priority: record.get("PRIORITY").and_then(|p| p.parse().ok()),
        message: record.get("MESSAGE").cloned().unwrap_or_default(),
    }
}

/// The last `lines` entries of the journal, oldest first, and the cursor of the
/// newest (where following goes on from).
fn last(
    journal: &mut systemd::journal::Journal,
    lines: usize,
) -> Result<(Vec<LogLine>, Option<String>), String> {
    journal.seek_tail().map_err(fail)?;
    let mut out = Vec::new();
    let mut newest = None;
    while out.len() < lines.min(MAX_LINES) {
        let Some(record) = journal.previous_entry().map_err(fail)? else {
            break;
        };
        if newest.is_none() {
            newest = journal.cursor().ok();
        }
        out.push(line(journal, &record));
    }
    out.reverse();
    Ok((out, newest))
}

/// The last `lines` entries of `unit`, oldest first. Blocking: call it from
/// `spawn_blocking`.
pub fn tail(unit: &str, lines: usize) -> Result<Vec<LogLine>, String> {
    let mut journal = open(unit)?;
    last(&mut journal, lines).map(|(lines, _)| lines)
}

/// The last `lines` entries of `unit`, then every new one as it is written, sent to
/// `out` until it is closed. Blocking: run it with `spawn_blocking`; it notices a
/// closed `out` within a second.
pub fn follow(
    unit: &str,
    lines: usize,
    out: &tokio::sync::mpsc::Sender<LogLine>,
) -> Result<(), String> {
    let mut journal = open(unit)?;
    let (backlog, newest) = last(&mut journal, lines)?;
    for l in backlog {
        if out.blocking_send(l).is_err() {
            return Ok(());
        }
    }
    // On from the newest entry shown (skipping it), or from the end.
    match newest {
        Some(cursor) => {
            journal
                .seek(systemd::journal::JournalSeek::Cursor { cursor })
                .map_err(fail)?;
            journal.next_entry().map_err(fail)?;
        }
        None => {
            journal.seek_tail().map_err(fail)?;
            journal.previous_entry().map_err(fail)?;
        }
    }
    while !out.is_closed() {
        match journal.next_entry().map_err(fail)? {
            Some(record) => {
                if out.blocking_send(line(&journal, &record)).is_err() {
                    return Ok(());
                }
            }
            None => {
                journal
                    .wait(Some(std::time::Duration::from_secs(1)))
                    .map_err(fail)?;
            }
        }
    }
    Ok(())
}
