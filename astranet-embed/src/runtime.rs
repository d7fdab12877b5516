//! The tokio runtime behind a front, and the fork guard.
//!
//! Nodes run on the process-wide runtime (started on first use, one worker per CPU or
//! `$ASTRANET_WORKER_THREADS`) unless they ask for a runtime of their own with a given
//! number of workers, shut down in the background when dropped. Threads of the host
//! language never run inside a runtime: they wait with [`crate::wait`].
//!
//! A process that forks after a runtime started leaves the child without the runtime's
//! threads (and maybe with locks held by threads that no longer exist): [`forked`] is
//! true there and every front refuses to run (`ASTRANET_ERR_FORKED`).

use crate::code::Failure;
use crate::wait::{self, Interrupt, Stopped, Wait};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Once, OnceLock};
use tokio::runtime::Handle;

static STARTED: AtomicBool = AtomicBool::new(false);
static FORKED: AtomicBool = AtomicBool::new(false);
static ATFORK: Once = Once::new();

extern "C" fn in_child() {
    if STARTED.load(Ordering::SeqCst) {
        FORKED.store(true, Ordering::SeqCst);
    }
}

/// True in a child forked after a runtime was started. A process that loaded the
/// library but never started a runtime forks safely.
pub fn forked() -> bool {
    FORKED.load(Ordering::Relaxed)
}

/// `Err(ASTRANET_ERR_FORKED)` in such a child: every entry point calls it first.
pub fn check_fork() -> Result<(), Failure> {
    if forked() {
        Err(Failure::forked())
    } else {
        Ok(())
    }
}

/// Worker threads a runtime may have. More is a mistake (a unit mixed up, a typo), and
/// starting them could take the machine's thread limit with it.
pub const MAX_WORKER_THREADS: usize = 1024;

/// `what`: where the number came from, for the error.
fn build(workers: usize, what: &str) -> Result<tokio::runtime::Runtime, Failure> {
    if workers > MAX_WORKER_THREADS {
        return Err(Failure::invalid(format!("{what} is {workers}, at most {MAX_WORKER_THREADS}")));
    }
    ATFORK.call_once(|| {
        // SAFETY: registers a handler that only touches atomics (async-signal-safe).
        unsafe { libc::pthread_atfork(None, None, Some(in_child)) };
    });
    let mut b = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        b.worker_threads(workers);
    }
    let rt = b.thread_name("astranet").enable_all().build()?;
    STARTED.store(true, Ordering::SeqCst);
    Ok(rt)
}

fn shared() -> Result<&'static tokio::runtime::Runtime, Failure> {
    static SHARED: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = SHARED.get() {
        return Ok(rt);
    }
    let workers = std::env::var("ASTRANET_WORKER_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let rt = build(workers, "$ASTRANET_WORKER_THREADS")?;
    // A racing thread may have won: its runtime is used and ours dropped (on a thread
    // of the host language, where dropping a runtime is allowed).
    Ok(SHARED.get_or_init(|| rt))
}

/// The runtime a node runs on: the shared one or its own.
pub struct Runtime {
    handle: Handle,
    own: Option<tokio::runtime::Runtime>,
}

impl Runtime {
    /// `workers` 0: the process-wide runtime; otherwise a runtime of its own with that
    /// many worker threads.
    pub fn new(workers: u32) -> Result<Runtime, Failure> {
        check_fork()?;
        if workers == 0 {
            Ok(Runtime { handle: shared()?.handle().clone(), own: None })
        } else {
            let rt = build(workers as usize, "worker_threads")?;
            Ok(Runtime { handle: rt.handle().clone(), own: Some(rt) })
        }
    }

    /// The process-wide runtime's handle, starting it if needed.
    pub fn shared_handle() -> Result<Handle, Failure> {
        check_fork()?;
        Ok(shared()?.handle().clone())
    }

    /// The handle to spawn on.
    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `fut` as a task of the runtime and waits for its output on this thread (see
    /// [`wait::spawned`]).
    pub fn run<F, I>(&self, how: Wait, interrupt: I, fut: F) -> Result<F::Output, Stopped<I::Error>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
        I: Interrupt,
    {
        wait::spawned(&self.handle, how, interrupt, fut)
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.own.take() {
            // Never blocks, also when dropped from a runtime thread.
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::astranet_result;

    #[test]
    fn too_many_worker_threads_are_refused_before_any_starts() {
        let Err(e) = Runtime::new(MAX_WORKER_THREADS as u32 + 1) else { panic!("a runtime of 1025 threads") };
        assert_eq!(e.code, astranet_result::ASTRANET_ERR_INVALID_ARGUMENT);
        assert_eq!(e.message, "worker_threads is 1025, at most 1024");
        assert!(Runtime::new(2).is_ok());
    }
}
