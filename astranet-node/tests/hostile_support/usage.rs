//! A process's memory and CPU time, from /proc.

use std::fmt;
use std::time::Duration;

/// What a process uses at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Resident set (VmRSS), in bytes.
    pub rss: u64,
    /// The most resident since the last [`reset_peak`] (VmHWM), in bytes.
    pub peak: u64,
    /// User plus system CPU time so far.
    pub cpu: Duration,
}

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rss {:.1} MiB (peak {:.1} MiB), cpu {:?}", mib(self.rss), mib(self.peak), self.cpu)
    }
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1 << 20) as f64
}

pub fn read(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the node is running");
    let kib = |key: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key} in status"));
        line[key.len()..].trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
    };
    Usage { rss: kib("VmRSS:"), peak: kib("VmHWM:"), cpu: cpu(pid) }
}

/// utime + stime of /proc/PID/stat (fields 14 and 15, counted after the command
/// name, which may hold spaces).
fn cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the node is running");
    let after_name = &stat[stat.rfind(')').expect("stat names the command") + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system constant.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// Starts VmHWM over from the current resident set, so that the next [`read`] gives
/// the peak of what happened in between.
pub fn reset_peak(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("clear_refs takes 5 (reset the peak)");
}

/// CPU the process uses over `span` while nothing is asked of it.
pub fn idle_cpu(pid: u32, span: Duration) -> Duration {
    let start = cpu(pid);
    std::thread::sleep(span);
    cpu(pid) - start
}
