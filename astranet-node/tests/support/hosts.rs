//! Separate hosts on one machine: a network namespace each, wired with veth pairs (or
//! impaired links, see [`super::impair`]), each running `astranet` processes.
//!
//! Everything is removed on drop, also when the test panics: the processes are killed
//! and the namespaces deleted. Names carry the pid so parallel tests and leftovers of
//! a killed run do not collide.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const NODE: &str = env!("CARGO_BIN_EXE_astranet");

/// A process started on one of the hosts.
struct Proc {
    child: Child,
    /// Kept open so that the process never writes into a closed pipe.
    _stdout: Option<BufReader<ChildStdout>>,
    host_id: Option<String>,
}

pub struct Hosts {
    pub prefix: String,
    names: Vec<String>,
    procs: Vec<Proc>,
}

/// Runs a command, failing with its stderr.
pub fn sh(args: &[&str]) -> Result<(), String> {
    let out = Command::new(args[0]).args(&args[1..]).output().map_err(|e| format!("{}: {e}", args[0]))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl Hosts {
    /// One namespace per name in `hosts`, with loopback up; or why not here.
    pub fn new(test: &str, hosts: &[&str]) -> Result<Hosts, String> {
        let prefix = format!("an{}{}", std::process::id() % 100_000, test);
        let mut all = Hosts { prefix, names: Vec::new(), procs: Vec::new() };
        for h in hosts {
            sh(&["ip", "netns", "add", &all.ns(h)])?;
            all.names.push(h.to_string());
            all.exec(h, &["ip", "link", "set", "lo", "up"])?;
        }
        Ok(all)
    }

    /// The namespace of host `h`.
    pub fn ns(&self, h: &str) -> String {
        format!("{}{}", self.prefix, h)
    }

    pub fn exec(&self, h: &str, cmd: &[&str]) -> Result<(), String> {
        let ns = self.ns(h);
        let mut args = vec!["ip", "netns", "exec", ns.as_str()];
        args.extend_from_slice(cmd);
        sh(&args)
    }

    /// Makes `name` resolve to `ips` on host `h` (`ip netns exec` mounts
    /// /etc/netns/<ns>/hosts over /etc/hosts). Rewritten in place, so running
    /// processes see changes.
    pub fn hosts_file(&self, h: &str, name: &str, ips: &[&str]) -> Result<(), String> {
        let dir = format!("/etc/netns/{}", self.ns(h));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{dir}: {e}"))?;
        let lines: String = ips.iter().map(|ip| format!("{ip} {name}\n")).collect();
        std::fs::write(format!("{dir}/hosts"), format!("127.0.0.1 localhost\n{lines}")).map_err(|e| e.to_string())
    }

    /// A veth pair between `x` (`net`.2) and `y` (`net`.1) on `net`.0/24.
    pub fn wire(&self, x: &str, y: &str, net: &str) -> Result<(), String> {
        let (vx, vy) = (format!("{}{x}{y}", self.prefix), format!("{}{y}{x}", self.prefix));
        sh(&[
            "ip",
            "link",
            "add",
            &vx,
            "netns",
            &self.ns(x),
            "type",
            "veth",
            "peer",
            "name",
            &vy,
            "netns",
            &self.ns(y),
        ])?;
        self.address(x, &vx, &format!("{net}.2"))?;
        self.address(y, &vy, &format!("{net}.1"))
    }

    /// Gives interface `dev` of host `h` the address `ip`/24 and brings it up.
    pub fn address(&self, h: &str, dev: &str, ip: &str) -> Result<(), String> {
        self.exec(h, &["ip", "addr", "add", &format!("{ip}/24"), "dev", dev])?;
        self.exec(h, &["ip", "link", "set", dev, "up"])
    }

    /// Starts a long-running node on host `h` (with `--keepalive 1` unless `args`
    /// sets it); returns its index for [`Hosts::kill`] and [`Hosts::pid`].
    pub fn spawn(&mut self, h: &str, args: &[&str]) -> usize {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns(h), NODE, "node"]).args(args);
        if !args.contains(&"--keepalive") {
            cmd.args(["--keepalive", "1"]);
        }
        if std::env::var_os("ASTRANET_TEST_LOGS").is_none() {
            cmd.stderr(Stdio::null());
        }
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("astranet node starts");
        // The node's first line says its host id.
        let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
        let mut line = String::new();
        let host_id =
            stdout.read_line(&mut line).ok().and_then(|_| line.trim().strip_prefix("host ").map(String::from));
        self.procs.push(Proc { child, _stdout: Some(stdout), host_id });
        self.procs.len() - 1
    }

    /// Starts any long-running program on host `h`.
    pub fn spawn_program(&mut self, h: &str, argv: &[&str]) -> usize {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(h)])
            .args(argv)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the program starts");
        self.procs.push(Proc { child, _stdout: None, host_id: None });
        self.procs.len() - 1
    }

    /// Runs `astranet probe` on host `h`, killed after 30 s.
    pub fn run(&self, h: &str, args: &[&str]) -> Output {
        self.run_for(h, 30, args)
    }

    /// Runs `astranet probe` on host `h`, killed after `secs` seconds.
    pub fn run_for(&self, h: &str, secs: u64, args: &[&str]) -> Output {
        probe_command(&self.ns(h), secs, args).output().expect("astranet probe runs")
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self, i: usize) {
        let _ = self.procs[i].child.kill();
        let _ = self.procs[i].child.wait();
    }

    /// SIGKILL without waiting (from a thread that shares the hosts); the process is
    /// reaped on drop.
    pub fn kill_now(&self, i: usize) {
        // SAFETY: a signal to a child of ours that has not been reaped yet.
        unsafe { libc::kill(self.pid(i) as libc::pid_t, libc::SIGKILL) };
    }

    /// The pid of process `i`: `ip netns exec` execs the program, so it is the node's.
    pub fn pid(&self, i: usize) -> u32 {
        self.procs[i].child.id()
    }

    /// The host id node `i` printed when it started.
    pub fn host_id(&self, i: usize) -> &str {
        self.procs[i].host_id.as_deref().unwrap_or("")
    }
}

/// `timeout SECS ip netns exec NS astranet probe ARGS`: a probe that cannot outlive
/// its test.
pub fn probe_command(ns: &str, secs: u64, args: &[&str]) -> Command {
    let mut cmd = Command::new("timeout");
    cmd.args(["-s", "KILL", &secs.to_string(), "ip", "netns", "exec", ns, NODE, "probe"]).args(args);
    cmd
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for p in &mut self.procs {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
        for h in &self.names {
            let _ = sh(&["ip", "netns", "del", &self.ns(h)]);
            let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.ns(h)));
        }
    }
}

/// The hosts, or `None` after printing why the test is skipped.
pub fn setup(test: &str, hosts: &[&str]) -> Option<Hosts> {
    match Hosts::new(test, hosts) {
        Ok(h) => Some(h),
        Err(why) => {
            eprintln!("SKIPPED {test}: network namespaces unavailable here ({why})");
            None
        }
    }
}

/// The standard output of a run that must have succeeded.
pub fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Retries a probe until it succeeds (the mesh needs a moment to converge).
pub fn eventually(hosts: &Hosts, h: &str, args: &[&str]) -> String {
    let started = Instant::now();
    loop {
        let out = hosts.run(h, args);
        if out.status.success() || started.elapsed() > Duration::from_secs(20) {
            return ok(&out);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
