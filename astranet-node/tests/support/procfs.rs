//! What a process holds, from /proc: to find leaks across faults.

use std::fmt;

/// Threads, open descriptors and memory of one process.
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub threads: u64,
    pub fds: u64,
    pub rss_kib: u64,
    /// Peak resident set (VmHWM).
    pub peak_rss_kib: u64,
}

impl Usage {
    /// The usage of process `pid`, or `None` when it is gone.
    pub fn of(pid: u32) -> Option<Usage> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
        Some(Usage { threads: field("Threads:"), fds, rss_kib: field("VmRSS:"), peak_rss_kib: field("VmHWM:") })
    }
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "threads {} fds {} rss {} KiB peak {} KiB", self.threads, self.fds, self.rss_kib, self.peak_rss_kib)
    }
}

/// The name of process `pid` (its `comm`).
pub fn comm(pid: u32) -> Option<String> {
    Some(std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?.trim().to_string())
}
