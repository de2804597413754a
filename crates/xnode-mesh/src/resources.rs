//! What this node has, as it advertises it: cores, memory and disk, and what is free.

use std::path::Path;

use crate::message::Resources;

/// Measures now. Anything unreadable counts as zero rather than failing a heartbeat.
pub fn measure(state_dir: &Path) -> Resources {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (memory, memory_free) = (kib(&meminfo, "MemTotal:"), kib(&meminfo, "MemAvailable:"));
    let (disk, disk_free) = rustix::fs::statvfs(state_dir)
        .map(|s| (s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize))
        .unwrap_or((0, 0));
    Resources {
        cpus,
        memory,
        memory_free,
        disk,
        disk_free,
    }
}

/// The CPU time the machine has spent busy since it booted, in seconds, all cores
/// together (`/proc/stat`: user, nice, system, irq, softirq, steal); zero when
/// unreadable. Two readings a while apart give the load between them.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    // The kernel counts in USER_HZ, which is 100 on every architecture Linux exports.
    busy_ticks(&stat) as f64 / 100.0
}

/// The busy ticks of `/proc/stat`'s first line.
fn busy_ticks(stat: &str) -> u64 {
    let Some(line) = stat.lines().find_map(|l| l.strip_prefix("cpu ")) else {
        return 0;
    };
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(|t| t.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal
    [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum()
}

/// A `/proc/meminfo` line's value, in bytes.
fn kib(meminfo: &str, key: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |k| k * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_time_counts_all_but_idle_and_waiting() {
        let stat = "cpu  100 2 30 5000 40 5 6 7 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        assert_eq!(busy_ticks(stat), 100 + 2 + 30 + 5 + 6 + 7);
        assert_eq!(busy_ticks("nonsense"), 0);
        assert_eq!(busy_ticks("cpu  x 1"), 1);
        assert!(cpu_seconds() > 0.0);
    }

    #[test]
    fn this_machine_has_something_of_each() {
        let r = measure(Path::new("/"));
        assert!(r.cpus >= 1);
        assert!(r.memory >= r.memory_free && r.memory_free > 0, "{r:?}");
        assert!(r.disk >= r.disk_free && r.disk > 0, "{r:?}");
    }

    #[test]
    fn meminfo_lines_are_read_in_bytes() {
        let text = "MemTotal:       24683264 kB\nMemFree:  1 kB\nMemAvailable:   24231596 kB\n";
        assert_eq!(kib(text, "MemTotal:"), 24_683_264 * 1024);
        assert_eq!(kib(text, "MemAvailable:"), 24_231_596 * 1024);
        assert_eq!(kib(text, "Nope:"), 0);
    }
}
