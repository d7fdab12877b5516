//! The well-behaved client: an in-process node on its own link that dials the echo
//! service over and over while an attack runs, timing each round.

use super::target::ECHO;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Pause between two rounds.
const EVERY: Duration = Duration::from_millis(100);

/// How the rounds went.
#[derive(Debug, Default)]
pub struct Rounds {
    pub ok: usize,
    pub failed: Vec<String>,
    pub slowest: Duration,
}

pub struct GoodClient {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Rounds>>,
}

impl GoodClient {
    /// Joins the node at `addr` and returns once a first echo came back.
    pub fn start(addr: SocketAddr) -> GoodClient {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready, warm) = std::sync::mpsc::channel();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            rt.block_on(async move {
                let node = astranet::Node::builder().dial_timeout(Duration::from_secs(5)).build();
                node.join(addr).await.expect("the good client joins");
                round(&node).await.expect("the first echo");
                let _ = ready.send(());
                let mut rounds = Rounds::default();
                while !flag.load(Ordering::Relaxed) {
                    let start = Instant::now();
                    match round(&node).await {
                        Ok(()) => rounds.ok += 1,
                        Err(e) => rounds.failed.push(e),
                    }
                    rounds.slowest = rounds.slowest.max(start.elapsed());
                    tokio::time::sleep(EVERY).await;
                }
                node.close();
                rounds
            })
        });
        warm.recv_timeout(Duration::from_secs(20)).expect("the good client's first echo within 20 s");
        GoodClient { stop, thread: Some(thread) }
    }

    /// Stops the rounds and says how they went.
    pub fn finish(mut self) -> Rounds {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().expect("the good client's thread")
    }
}

impl Drop for GoodClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Dials the echo service on a new stream and checks one echo, within 5 s.
async fn round(node: &astranet::Node) -> Result<(), String> {
    let exchange = async {
        let mut s = node.dial(ECHO).await.map_err(|e| format!("dial: {e}"))?;
        s.write_all(b"hi").await.map_err(|e| format!("write: {e}"))?;
        let mut back = [0u8; 2];
        s.read_exact(&mut back).await.map_err(|e| format!("read: {e}"))?;
        if &back != b"hi" {
            return Err(format!("echo {back:?}"));
        }
        Ok(())
    };
    tokio::time::timeout(Duration::from_secs(5), exchange).await.map_err(|_| "no echo within 5 s".to_string())?
}
