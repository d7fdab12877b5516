//! The tokio runtimes behind the C API, and fork detection.
//!
//! A node runs on the process-wide runtime (started on first use, one worker per CPU)
//! unless its configuration asks for its own runtime with a given number of worker
//! threads, which is shut down (in the background) when the node is freed. C threads
//! never run inside a runtime: blocking calls wait on a parked thread or a channel,
//! never with `block_on`.

use crate::error::{astranet_result, Failure};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};
use std::time::Duration;
use tokio::runtime::{Builder, Handle, Runtime};

static FORKED: AtomicBool = AtomicBool::new(false);
static ATFORK: Once = Once::new();

extern "C" fn in_child() {
    FORKED.store(true, Ordering::SeqCst);
}

/// True in a child forked after a runtime was started: its worker threads did not
/// survive the fork, and locks may be held by threads that no longer exist.
pub(crate) fn forked() -> bool {
    FORKED.load(Ordering::Relaxed)
}

fn watch_fork() {
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
}

fn build(workers: usize) -> Result<Runtime, Failure> {
    watch_fork();
    let mut b = Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    b.thread_name("astranet").enable_all().build().map_err(Failure::from)
}

fn shared() -> Result<&'static Runtime, Failure> {
    static SHARED: OnceLock<Runtime> = OnceLock::new();
    if let Some(rt) = SHARED.get() {
        return Ok(rt);
    }
    let workers = std::env::var("ASTRANET_WORKER_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let rt = build(workers)?;
    // A racing thread may have won; its runtime is used and ours dropped (we are on a C
    // thread, where dropping a runtime is allowed).
    Ok(SHARED.get_or_init(|| rt))
}

/// The runtime a node runs on.
pub(crate) struct Rt {
    handle: Handle,
    own: Option<Runtime>,
}

impl Rt {
    /// `workers` 0: the shared runtime; otherwise a runtime of its own.
    pub(crate) fn new(workers: u32) -> Result<Rt, Failure> {
        if workers == 0 {
            Ok(Rt { handle: shared()?.handle().clone(), own: None })
        } else {
            let rt = build(workers as usize)?;
            Ok(Rt { handle: rt.handle().clone(), own: Some(rt) })
        }
    }

    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `fut` on the runtime and waits for its output on this (non-runtime) thread.
    pub(crate) fn run<F>(&self, fut: F) -> Result<F::Output, Failure>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        run_on(&self.handle, fut)
    }
}

pub(crate) fn run_on<F>(handle: &Handle, fut: F) -> Result<F::Output, Failure>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    if Handle::try_current().is_ok() {
        return Err(Failure::new(
            astranet_result::ASTRANET_ERR_INVALID_ARGUMENT,
            "a blocking astranet call was made from inside an async runtime thread",
        ));
    }
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().map_err(|_| Failure::new(astranet_result::ASTRANET_ERR_NODE_CLOSED, "the node's runtime shut down"))
}

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.own.take() {
            rt.shutdown_background();
        }
    }
}

/// A C timeout in milliseconds: negative means none.
pub(crate) fn timeout(ms: i32) -> Option<Duration> {
    u64::try_from(ms).ok().map(Duration::from_millis)
}
