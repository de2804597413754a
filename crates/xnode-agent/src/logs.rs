//! A workload's recent log lines, read from the journal through libsystemd (not by
//! running journalctl and parsing its text).

use serde::Serialize;

/// One journal entry.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Microseconds since the Unix epoch.
    pub time_us: u64,
    /// syslog priority (0 emergency … 7 debug), when the entry has one.
    pub priority: Option<u8>,
    /// The message.
    pub message: String,
}

/// Most lines one request returns.
pub const MAX_LINES: usize = 10_000;

/// The last `lines` entries of `unit`, oldest first. Blocking: call it from
/// `spawn_blocking`.
pub fn tail(unit: &str, lines: usize) -> Result<Vec<LogLine>, String> {
    let fail = |e: systemd::Error| format!("cannot read the journal: {e}");
    let mut journal = systemd::journal::OpenOptions::default()
        .system(true)
        .local_only(true)
        .open()
        .map_err(fail)?;
    journal.match_add("_SYSTEMD_UNIT", unit).map_err(fail)?;
    journal.seek_tail().map_err(fail)?;
    let mut out = Vec::new();
    while out.len() < lines.min(MAX_LINES) {
        let Some(record) = journal.previous_entry().map_err(fail)? else {
            break;
        };
        let time_us = journal
            .timestamp()
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_micros() as u64);
        out.push(LogLine {
            time_us,
            priority: record.get("PRIORITY").and_then(|p| p.parse().ok()),
            message: record.get("MESSAGE").cloned().unwrap_or_default(),
        });
    }
    out.reverse();
    Ok(out)
}
