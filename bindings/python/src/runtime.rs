//! The one tokio runtime of the extension, fork detection, blocking waits that release
//! the GIL and stay interruptible, and the error mapping onto Python's exceptions.

use pyo3::exceptions::{PyBlockingIOError, PyOSError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
/// The process that started the runtime: a forked child has the parent's objects but
/// not its runtime threads.
static RUNTIME_PID: OnceLock<u32> = OnceLock::new();
static EXITING: AtomicBool = AtomicBool::new(false);

/// Threads between "done waiting" and "holding the GIL again" (see [`gil_gate`]).
static RETURNING: AtomicUsize = AtomicUsize::new(0);

/// Called by an `atexit` hook of the package, with the GIL: the interpreter is about to
/// finalize. A thread that then blocks to take the GIL back would be ended by CPython
/// with `pthread_exit`, whose forced unwind cannot cross Rust frames (the process
/// aborts with "FATAL: exception not rethrown"). So from now on no thread of ours
/// starts taking the GIL (blocked calls sleep until the process exits, asyncio results
/// are dropped), and those already on their way get it before finalization starts:
/// this releases the GIL until they have (at most 2 s).
pub fn set_exiting(py: Python<'_>) {
    EXITING.store(true, Ordering::SeqCst);
    py.detach(|| {
        let deadline = Instant::now() + Duration::from_secs(2);
        while RETURNING.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    });
}

/// Asks to take the GIL from a thread that does not hold it: false when the
/// interpreter is exiting (then the caller must not take it). On true the caller must
/// call [`gil_gate_passed`] once it holds the GIL.
pub fn gil_gate() -> bool {
    RETURNING.fetch_add(1, Ordering::SeqCst);
    if EXITING.load(Ordering::SeqCst) {
        RETURNING.fetch_sub(1, Ordering::SeqCst);
        return false;
    }
    true
}

/// The GIL was taken after [`gil_gate`].
pub fn gil_gate_passed() {
    RETURNING.fetch_sub(1, Ordering::SeqCst);
}

/// Never returns: for threads that must not touch Python any more.
pub fn sleep_forever() -> ! {
    loop {
        std::thread::park();
    }
}

/// True on the process's main thread, the one Python runs signal handlers on.
fn on_main_thread() -> bool {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain system calls without arguments.
        unsafe { libc::gettid() == libc::getpid() }
    }
    #[cfg(target_os = "macos")]
    {
        extern "C" {
            fn pthread_main_np() -> libc::c_int;
        }
        // SAFETY: no arguments, no state.
        unsafe { pthread_main_np() == 1 }
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        true
    }
}

/// How often a blocked call wakes up to run Python's signal handlers (Ctrl-C).
const SIGNAL_TICK: Duration = Duration::from_millis(50);

/// True in a child created by `fork()` after the runtime started in the parent (a
/// process that imported the package but never did I/O with it forks safely).
pub fn forked() -> bool {
    RUNTIME_PID.get().is_some_and(|&pid| pid != std::process::id())
}

/// Every entry point calls this first.
pub fn check_fork() -> PyResult<()> {
    if forked() {
        return Err(PyRuntimeError::new_err(
            "astranet cannot be used in a forked child: the runtime's threads do not survive \
             fork(); use astranet in the parent only, or start child processes with the \
             multiprocessing 'spawn' or 'forkserver' method and create new nodes there",
        ));
    }
    Ok(())
}

/// The runtime, started on first use. `ASTRANET_WORKER_THREADS` sets its worker count
/// (default: one per CPU).
pub fn rt() -> &'static Runtime {
    RUNTIME.get_or_init(|| {
        let _ = RUNTIME_PID.set(std::process::id());
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.enable_all().thread_name("astranet-rt");
        if let Some(n) = std::env::var("ASTRANET_WORKER_THREADS").ok().and_then(|v| v.parse::<usize>().ok()) {
            b.worker_threads(n.max(1));
        }
        b.build().unwrap_or_else(|e| {
            // Nothing sensible can go on without threads; say so plainly.
            eprintln!("astranet: cannot start the runtime: {e}");
            std::process::abort()
        })
    })
}

/// How long a blocking call may wait.
#[derive(Clone, Copy, Debug)]
pub enum Wait {
    /// Until done (socket timeout `None`).
    Forever,
    /// Not at all (socket timeout `0.0`): a call that would block raises `BlockingIOError`.
    NonBlocking,
    /// Until this instant, then `TimeoutError`.
    Until(Instant),
}

impl Wait {
    /// From a socket-style timeout in seconds.
    pub fn from_timeout(t: Option<f64>) -> Wait {
        match t {
            None => Wait::Forever,
            Some(s) if s <= 0.0 => Wait::NonBlocking,
            Some(s) => Wait::Until(Instant::now() + Duration::from_secs_f64(s)),
        }
    }
}

/// Why a wait ended without the future's output.
pub enum Stopped {
    WouldBlock,
    TimedOut,
    Signal(PyErr),
}

impl From<Stopped> for PyErr {
    fn from(s: Stopped) -> PyErr {
        match s {
            Stopped::WouldBlock => PyBlockingIOError::new_err((libc::EAGAIN, "Resource temporarily unavailable")),
            Stopped::TimedOut => PyTimeoutError::new_err("timed out"),
            Stopped::Signal(e) => e,
        }
    }
}

struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Drives `fut` on the calling thread with the GIL released. The thread sleeps until the
/// future's waker (or a 50 ms tick) wakes it; at each tick it briefly takes the GIL to
/// run Python's signal handlers, so Ctrl-C raises `KeyboardInterrupt` in the caller.
/// The future must not need a runtime thread itself (spawn such work and wait on its
/// `JoinHandle`): this is never `block_on` and never runs on a runtime thread.
pub fn wait<F>(py: Python<'_>, how: Wait, fut: F) -> Result<F::Output, Stopped>
where
    F: Future + Send,
    F::Output: Send,
{
    // Fast path: already ready, no need to release the GIL.
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut fut = Box::pin(fut);
    {
        let _rt = rt().enter();
        if let Poll::Ready(out) = fut.as_mut().poll(&mut Context::from_waker(&waker)) {
            return Ok(out);
        }
    }
    if let Wait::NonBlocking = how {
        return Err(Stopped::WouldBlock);
    }
    let res = py.detach(move || {
        let res = wait_detached(how, fut);
        if !gil_gate() {
            // Taking the GIL back now could end this thread with pthread_exit.
            sleep_forever();
        }
        res
    });
    gil_gate_passed();
    res
}

fn wait_detached<F: Future>(how: Wait, mut fut: Pin<Box<F>>) -> Result<F::Output, Stopped> {
    {
        let _rt = rt().enter();
        let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut next_tick = Instant::now() + SIGNAL_TICK;
        loop {
            let now = Instant::now();
            if now >= next_tick && on_main_thread() {
                // Python runs signal handlers on the main thread only; other threads
                // never take the GIL while they wait.
                Python::attach(|py| py.check_signals()).map_err(Stopped::Signal)?;
                next_tick = now + SIGNAL_TICK;
            }
            let wake_at = match how {
                Wait::Until(deadline) => {
                    if now >= deadline {
                        // One last look: the deadline may have passed while it got ready.
                        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                            return Ok(out);
                        }
                        return Err(Stopped::TimedOut);
                    }
                    deadline.min(next_tick)
                }
                _ => next_tick,
            };
            std::thread::park_timeout(wake_at.saturating_duration_since(now));
            if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
                return Ok(out);
            }
        }
    }
}

/// Waits for a task spawned on the runtime; aborts it if the wait stops early.
pub fn wait_spawned<T: Send + 'static>(
    py: Python<'_>,
    how: Wait,
    fut: impl Future<Output = T> + Send + 'static,
) -> PyResult<T> {
    let handle = rt().spawn(fut);
    let abort = handle.abort_handle();
    let joined = wait(py, how, async move {
        let mut handle = pin!(handle);
        std::future::poll_fn(|cx| handle.as_mut().poll(cx)).await
    });
    match joined {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(PyRuntimeError::new_err(format!("astranet: background task failed: {e}"))),
        Err(stopped) => {
            abort.abort();
            Err(stopped.into())
        }
    }
}

/// The errno that matches an [`io::ErrorKind`], so that `OSError(errno, msg)` picks
/// Python's own subclass (`ConnectionRefusedError`, `TimeoutError`, …).
fn errno_of(kind: io::ErrorKind) -> i32 {
    use io::ErrorKind as K;
    match kind {
        K::ConnectionRefused => libc::ECONNREFUSED,
        K::TimedOut => libc::ETIMEDOUT,
        K::ConnectionReset => libc::ECONNRESET,
        K::BrokenPipe => libc::EPIPE,
        K::ConnectionAborted => libc::ECONNABORTED,
        K::NotConnected => libc::ENOTCONN,
        K::HostUnreachable => libc::EHOSTUNREACH,
        K::AddrInUse => libc::EADDRINUSE,
        K::AddrNotAvailable => libc::EADDRNOTAVAIL,
        K::InvalidData => libc::EPROTO,
        K::InvalidInput => libc::EINVAL,
        K::WouldBlock => libc::EAGAIN,
        K::PermissionDenied => libc::EACCES,
        K::NotFound => libc::ENOENT,
        _ => libc::EIO,
    }
}

/// A library error as the matching Python exception.
pub fn err(e: astranet::Error) -> PyErr {
    match e {
        astranet::Error::InvalidTarget { .. } => PyValueError::new_err(e.to_string()),
        astranet::Error::Io(e) => io_err(e),
        e => PyOSError::new_err((errno_of(e.kind()), e.to_string())),
    }
}

/// An I/O error (from a stream, or a socket) as the matching Python exception.
pub fn io_err(e: io::Error) -> PyErr {
    if let Some(code) = e.raw_os_error() {
        let msg = io::Error::from_raw_os_error(code).to_string();
        let msg = msg.split(" (os error").next().unwrap_or(&msg).to_string();
        return PyOSError::new_err((code, msg));
    }
    let kind = e.kind();
    let msg = match e.into_inner() {
        Some(inner) => inner.to_string(),
        None => kind.to_string(),
    };
    PyOSError::new_err((errno_of(kind), msg))
}

/// A Python float of seconds as a duration, refusing what is not a positive number.
pub fn seconds(name: &str, s: f64) -> PyResult<Duration> {
    if !s.is_finite() || s <= 0.0 || s > 1e9 {
        return Err(PyValueError::new_err(format!("{name} must be a positive number of seconds, got {s}")));
    }
    Ok(Duration::from_secs_f64(s))
}

/// Checks a socket-style timeout: `None`, or a number >= 0.
pub fn check_timeout(t: Option<f64>) -> PyResult<Option<f64>> {
    match t {
        Some(s) if s.is_nan() || s < 0.0 => Err(PyValueError::new_err("Timeout value out of range")),
        Some(s) if s > 1e9 => Err(PyValueError::new_err("Timeout value out of range")),
        other => Ok(other),
    }
}
