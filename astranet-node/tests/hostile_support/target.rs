//! The node under attack: `astranet node` serving an echo service, in a child process
//! so that its memory and CPU can be measured apart from the attacker's.

use super::usage::{self, Usage};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_astranet");

/// The echo service every target serves.
pub const ECHO: &str = "echo";

/// A running node, killed on drop.
pub struct Target {
    child: Child,
    /// Where it accepts links.
    pub addr: SocketAddr,
    /// The virtual port of [`ECHO`].
    pub echo_port: u32,
    /// Its log (stderr), line by line.
    log: Arc<Mutex<Vec<String>>>,
}

impl Target {
    /// Starts `astranet node --listen 127.0.0.1:0 --serve-echo echo` with `flags`.
    pub fn start(flags: &[&str]) -> Target {
        let mut cmd = Command::new(BIN);
        cmd.args(["node", "--listen", "127.0.0.1:0", "--serve-echo", ECHO])
            .args(flags)
            .env("RUST_LOG", "astranet=warn")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: prctl is async-signal-safe. The node dies with the thread that
        // started it, even when a test is aborted before its drop runs.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = cmd.spawn().expect("astranet starts");
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut addr, mut echo_port) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(20);
        while addr.is_none() || echo_port.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines.recv_timeout(left).unwrap_or_else(|_| panic!("the node did not start: {:?}", log));
            if let Some(a) = line.strip_prefix("listening ") {
                addr = Some(a.trim().parse().unwrap());
            } else if let Some(at) = line.strip_prefix(&format!("serving {ECHO} at ")) {
                echo_port = Some(at.trim().rsplit(':').next().unwrap().parse().unwrap());
            }
        }
        Target { child, addr: addr.unwrap(), echo_port: echo_port.unwrap(), log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn usage(&self) -> Usage {
        usage::read(self.pid())
    }

    pub fn reset_peak(&self) {
        usage::reset_peak(self.pid())
    }

    /// Log lines that contain `needle`.
    pub fn logged(&self, needle: &str) -> usize {
        self.log.lock().unwrap().iter().filter(|l| l.contains(needle)).count()
    }

    /// Its log so far, for failure messages.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// Panics (with the log) if the node is no longer running: a crash or a panic.
    pub fn assert_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("the node exited ({status}); its log: {:#?}", self.log.lock().unwrap());
        }
    }

    /// Waits until the node has been idle for a while, then measures its CPU over
    /// `span`: what it spends with nobody asking anything of it.
    pub fn quiet_cpu(&self, span: Duration) -> Duration {
        std::thread::sleep(Duration::from_millis(500));
        usage::idle_cpu(self.pid(), span)
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
