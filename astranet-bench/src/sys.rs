//! Process and machine facts: resident memory for the bytes-per-stream figure, descriptor
//! limits for the raw-TCP stream counts, CPU affinity for the latency runs, the CPU
//! time others use, as a warning that figures may be noisy. Linux only.

use std::io;

/// Resident set size of this process, from /proc/self/statm.
pub fn rss_bytes() -> io::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|field| field.parse().ok())
        .ok_or_else(|| io::Error::other(format!("unexpected /proc/self/statm: {statm:?}")))?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Ok(pages * page.max(1) as u64)
}

/// CPU time counters, to tell how much of the CPUs other processes used meanwhile: a
/// busy neighbour skews every figure, tail latencies most.
pub struct CpuClock {
    /// All jiffies summed over CPUs, and those spent in processes (user, nice, system),
    /// from /proc/stat. Interrupt and softirq time is left out: loopback traffic is
    /// processed there on behalf of this process, and is not charged to it.
    total: u64,
    in_processes: u64,
    /// User and system jiffies of this process, all threads, and of its children it
    /// waited for (/proc/self/stat): a transport measured in a child process (the Go
    /// original, the opens section) is not "other work".
    own: u64,
}

impl CpuClock {
    pub fn now() -> Option<Self> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let cpu: Vec<u64> = stat
            .lines()
            .next()?
            .strip_prefix("cpu ")?
            .split_whitespace()
            .take(8)
            .filter_map(|f| f.parse().ok())
            .collect();
        let own_stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the parenthesised command name start at field 3 (state); utime,
        // stime, cutime and cstime are fields 14 to 17.
        let own: Vec<u64> =
            own_stat.rsplit_once(')')?.1.split_whitespace().skip(11).take(4).filter_map(|f| f.parse().ok()).collect();
        Some(CpuClock { total: cpu.iter().sum(), in_processes: cpu.get(..3)?.iter().sum(), own: own.iter().sum() })
    }

    /// The share of all CPUs that other processes kept busy since `self`; `None` over a
    /// span too short for /proc/stat's ticks (10 ms) to tell, where one tick of
    /// anyone else's work would read as half the machine.
    pub fn others_busy_since(&self) -> Option<f64> {
        self.others_busy_until(&CpuClock::now()?)
    }

    fn others_busy_until(&self, now: &CpuClock) -> Option<f64> {
        /// Ticks of all CPUs together: half a second of a 2-CPU machine.
        const MIN_SPAN: u64 = 100;
        let total = now.total.checked_sub(self.total).filter(|t| *t >= MIN_SPAN)?;
        let in_processes = now.in_processes.saturating_sub(self.in_processes);
        let others = in_processes.saturating_sub(now.own.saturating_sub(self.own));
        Some(others as f64 / total as f64)
    }
}

/// Hands memory freed by earlier sections back to the kernel, so that a baseline taken
/// now is not followed by allocations that reuse freed heap without raising the RSS.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn nofile() -> Option<libc::rlimit> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0).then_some(limit)
}

/// Raises the soft descriptor limit to the hard one, for the raw-TCP stream counts.
pub fn raise_fd_limit() {
    if let Some(limit) = nofile().filter(|l| l.rlim_cur < l.rlim_max) {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit only reads the struct we pass. On failure the old limit stays.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    }
}

/// The soft descriptor limit in force.
pub fn fd_limit() -> u64 {
    nofile().map_or(0, |l| l.rlim_cur)
}

/// Pins the calling thread, and the threads it starts later, to one CPU.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: cpu_set_t is plain data and zeroed is the empty set; pid 0 is this thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::CpuClock;

    #[test]
    fn others_share_is_told_only_over_enough_ticks() {
        let at = |total, in_processes, own| CpuClock { total, in_processes, own };
        let start = at(1_000, 400, 100);
        // Two CPUs for a second: others used 50 of the 200 ticks.
        assert_eq!(start.others_busy_until(&at(1_200, 550, 200)), Some(0.25));
        // One tick of someone else's within a few milliseconds says nothing.
        assert_eq!(start.others_busy_until(&at(1_002, 401, 100)), None);
    }
}
