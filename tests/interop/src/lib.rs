//! The harness of the interop suites: the original Go astranet package runs as a real
//! process (`gopeer/`, built against `../shared/peers/astranet-go`), driven over its
//! stdin/stdout, next to nodes of this project running in the test process.
//!
//! Every Go process is killed when its [`GoPeer`] is dropped (and exits by itself when
//! the test process goes away, since its stdin closes).

use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

pub mod servers;

/// Fails the test instead of hanging it.
pub async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(Duration::from_secs(secs), f).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {secs} s"),
    }
}

/// Logs with `RUST_LOG` when set.
pub fn trace() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// The gopeer binary: `$ASTRANET_GOPEER` when set, else built once (`go build`, cached by
/// Go) into `target/interop/gopeer`.
pub fn gopeer_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(path) = std::env::var_os("ASTRANET_GOPEER") {
            return PathBuf::from(path);
        }
        let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let out = crate_dir.join("../../target/interop/gopeer");
        let status = std::process::Command::new("go")
            .args(["build", "-o"])
            .arg(&out)
            .arg(".")
            .current_dir(crate_dir.join("gopeer"))
            .status()
            .expect("the Go toolchain (`go`) is needed to build the Go peer");
        assert!(status.success(), "building gopeer failed");
        out
    })
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A node of the original Go package in its own process.
pub struct GoPeer {
    child: Child,
    stdin: ChildStdin,
    pending: Pending,
    events: mpsc::UnboundedReceiver<Value>,
    next_id: AtomicU64,
    /// The Go node's host id, 16 hex digits.
    pub host: astranet::HostId,
    /// Where it accepts links (`-listen` / `-tap-listen`), if it does.
    pub addr: Option<std::net::SocketAddr>,
}

impl GoPeer {
    /// Starts a Go node with gopeer's flags (`-role`, `-env`, `-listen`, `-tap-listen`,
    /// `-join`, `-attach`) and waits until it is ready.
    pub async fn start(args: &[&str]) -> GoPeer {
        let mut child = Command::new(gopeer_binary())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("starting gopeer");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let pending: Pending = Arc::default();
        let (tx, mut events) = mpsc::unbounded_channel();
        let answers = pending.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(v) = serde_json::from_str::<Value>(&line) else { continue };
                match v.get("id").and_then(Value::as_u64) {
                    Some(id) => {
                        if let Some(reply) = answers.lock().unwrap().remove(&id) {
                            let _ = reply.send(v);
                        }
                    }
                    None => {
                        let _ = tx.send(v);
                    }
                }
            }
        });
        let mut addr = None;
        let host = within(20, "gopeer start", async {
            loop {
                let ev = events.recv().await.expect("gopeer exited before it was ready");
                match ev["event"].as_str() {
                    Some("listening") => addr = ev["addr"].as_str().and_then(|a| a.parse().ok()),
                    Some("ready") => return ev["host"].as_str().unwrap().parse().unwrap(),
                    _ => panic!("gopeer failed to start: {ev}"),
                }
            }
        })
        .await;
        GoPeer { child, stdin, pending, events, next_id: AtomicU64::new(1), host, addr }
    }

    /// Runs one command (see gopeer's verbs); `Err` carries the Go side's error and
    /// whatever else it answered.
    pub async fn cmd(&mut self, line: &str) -> Result<Value, Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.stdin.write_all(format!("{id} {line}\n").as_bytes()).await.expect("gopeer stdin");
        self.stdin.flush().await.unwrap();
        let v = rx.await.expect("gopeer exited before answering");
        if v["ok"].as_bool() == Some(true) {
            Ok(v)
        } else {
            Err(v)
        }
    }

    /// [`GoPeer::cmd`] that must succeed.
    pub async fn ok(&mut self, line: &str) -> Value {
        match self.cmd(line).await {
            Ok(v) => v,
            Err(v) => panic!("gopeer `{line}` failed: {v}"),
        }
    }

    /// Starts a command and returns a handle to its answer, so that the test can act
    /// while the Go side works.
    pub async fn start_cmd(&mut self, line: &str) -> oneshot::Receiver<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().unwrap().insert(id, tx);
        self.stdin.write_all(format!("{id} {line}\n").as_bytes()).await.expect("gopeer stdin");
        self.stdin.flush().await.unwrap();
        rx
    }

    /// Service names the Go node knows, with the host id of each instance.
    pub async fn services(&mut self) -> Vec<(String, astranet::HostId)> {
        let v = self.ok("services").await;
        v["services"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|s| (s["name"].as_str().unwrap().to_string(), s["host"].as_str().unwrap().parse().unwrap()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until the Go node knows `name` (at most `secs`).
    pub async fn wait_service(&mut self, name: &str, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !self.services().await.iter().any(|(n, _)| n == name) {
            assert!(tokio::time::Instant::now() < deadline, "the Go node never learned {name}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the process (SIGKILL) and reaps it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }

    /// Unread events (lines without an id).
    pub fn events(&mut self) -> &mut mpsc::UnboundedReceiver<Value> {
        &mut self.events
    }
}

/// The deterministic bytes both ends of a transfer compute from a seed (gopeer's
/// `pattern`): xorshift64 words, little-endian.
pub struct Pattern {
    state: u64,
    word: [u8; 8],
    used: usize,
}

impl Pattern {
    pub fn new(seed: u64) -> Pattern {
        Pattern { state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1, word: [0; 8], used: 8 }
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            if self.used == 8 {
                let mut x = self.state;
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                self.state = x;
                self.word = x.to_le_bytes();
                self.used = 0;
            }
            *b = self.word[self.used];
            self.used += 1;
        }
    }

    /// The first `size` bytes for `seed`.
    pub fn bytes(seed: u64, size: usize) -> Vec<u8> {
        let mut v = vec![0; size];
        Pattern::new(seed).fill(&mut v);
        v
    }

    /// SHA-256 of the first `size` bytes for `seed`.
    pub fn sha256(seed: u64, size: u64) -> [u8; 32] {
        let mut p = Pattern::new(seed);
        let mut h = Sha256::new();
        let mut chunk = vec![0; 64 * 1024];
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            p.fill(&mut chunk[..n]);
            h.update(&chunk[..n]);
            left -= n as u64;
        }
        h.finalize().into()
    }
}

/// Writes `size` pattern bytes to `w`.
pub async fn write_pattern(w: &mut (impl AsyncWriteExt + Unpin), seed: u64, size: u64) -> std::io::Result<()> {
    let mut p = Pattern::new(seed);
    let mut chunk = vec![0; 64 * 1024];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        p.fill(&mut chunk[..n]);
        w.write_all(&chunk[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

/// Reads `r` to EOF: (bytes, SHA-256).
pub async fn read_digest(r: &mut (impl AsyncReadExt + Unpin)) -> std::io::Result<(u64, [u8; 32])> {
    let mut h = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    let mut n = 0u64;
    loop {
        let got = r.read(&mut buf).await?;
        if got == 0 {
            return Ok((n, h.finalize().into()));
        }
        h.update(&buf[..got]);
        n += got as u64;
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}
