//! The extension's use of the shared embedding layer (`astranet-embed`): the runtime,
//! fork detection, blocking waits that release the GIL and stay interruptible, and the
//! error codes mapped onto Python's exceptions.

use astranet_embed::code::astranet_result as R;
use astranet_embed::wait::{self, Interrupt, NoInterrupt, Stopped};
use astranet_embed::Failure;
use pyo3::exceptions::{PyBlockingIOError, PyOSError, PyRuntimeError, PyTimeoutError, PyValueError};
use pyo3::prelude::*;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tokio::runtime::Handle;

pub use astranet_embed::wait::Wait;

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

/// Calls [`gil_gate_passed`] when dropped: at the end of the scope that holds the GIL,
/// however it ends.
pub struct GatePassed;

impl Drop for GatePassed {
    fn drop(&mut self) {
        gil_gate_passed();
    }
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

/// How often a blocked call on the main thread wakes up to run Python's signal
/// handlers (Ctrl-C).
const SIGNAL_TICK: Duration = Duration::from_millis(50);

/// True in a child created by `fork()` after the runtime started in the parent (a
/// process that imported the package but never did I/O with it forks safely).
pub fn forked() -> bool {
    astranet_embed::runtime::forked()
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

/// The process-wide runtime, started on first use. `ASTRANET_WORKER_THREADS` sets its
/// worker count (default: one per CPU).
pub fn rt() -> &'static Handle {
    static HANDLE: OnceLock<Handle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        astranet_embed::runtime::Runtime::shared_handle().unwrap_or_else(|e| {
            // Nothing sensible can go on without threads; say so plainly.
            eprintln!("astranet: cannot start the runtime: {e}");
            std::process::abort()
        })
    })
}

/// A socket-style timeout in seconds as a [`Wait`]: `None` forever, `0.0` not at all.
pub fn wait_of(t: Option<f64>) -> Wait {
    match t {
        None => Wait::Forever,
        Some(s) if s <= 0.0 => Wait::NonBlocking,
        Some(s) => Wait::timeout(Some(Duration::from_secs_f64(s))),
    }
}

/// Python's signal handlers, run while the main thread waits.
struct Signals;

impl Interrupt for Signals {
    type Error = PyErr;
    fn tick(&self) -> Option<Duration> {
        // Python runs handlers on the main thread only; other threads never take the
        // GIL while they wait.
        on_main_thread().then_some(SIGNAL_TICK)
    }
    fn check(&mut self) -> PyResult<()> {
        Python::attach(|py| py.check_signals())
    }
}

/// Why a wait ended, as the exception a socket would raise.
fn stopped(s: Stopped<PyErr>) -> PyErr {
    match s {
        Stopped::WouldBlock => PyBlockingIOError::new_err((libc::EAGAIN, "Resource temporarily unavailable")),
        Stopped::TimedOut => PyTimeoutError::new_err("timed out"),
        Stopped::Interrupted(e) => e,
        Stopped::InsideRuntime => PyRuntimeError::new_err("astranet: a blocking call from a runtime thread"),
        Stopped::Panicked(m) => PyRuntimeError::new_err(format!("astranet: background task failed: {m}")),
        Stopped::RuntimeGone => PyRuntimeError::new_err("astranet: the runtime shut down"),
    }
}

/// Drives `fut` on the calling thread: first once with the GIL held (most calls are
/// ready at once), then, if it has to wait, with the GIL released, waking every 50 ms
/// on the main thread to run Python's signal handlers (so Ctrl-C raises
/// `KeyboardInterrupt`). See [`astranet_embed::wait`].
pub fn wait<F>(py: Python<'_>, how: Wait, fut: F) -> PyResult<F::Output>
where
    F: Future + Send,
    F::Output: Send,
{
    let mut fut = Box::pin(fut);
    match wait::block_on(Some(rt()), Wait::NonBlocking, NoInterrupt, |cx| fut.as_mut().poll(cx)) {
        Ok(out) => return Ok(out),
        Err(Stopped::WouldBlock) if how != Wait::NonBlocking => {}
        Err(s) => return Err(stopped(s.widen())),
    }
    let res = py.detach(move || {
        let res = wait::block_on(Some(rt()), how, Signals, |cx| fut.as_mut().poll(cx));
        if !gil_gate() {
            // Taking the GIL back now could end this thread with pthread_exit.
            sleep_forever();
        }
        res
    });
    gil_gate_passed();
    res.map_err(stopped)
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
        Err(e) => {
            abort.abort();
            Err(e)
        }
    }
}

/// A failure as the matching Python exception: `ValueError` for bad arguments,
/// otherwise `OSError(errno, message)`, which Python turns into its own subclass
/// (`ConnectionRefusedError`, `TimeoutError`, `FileNotFoundError`, …).
pub fn failure(f: Failure) -> PyErr {
    match f.code {
        R::ASTRANET_ERR_INVALID_ARGUMENT | R::ASTRANET_ERR_INVALID_TARGET => PyValueError::new_err(f.message),
        R::ASTRANET_ERR_FORKED | R::ASTRANET_ERR_PANIC => PyRuntimeError::new_err(f.message),
        // As Python's own sockets report an address that does not resolve.
        R::ASTRANET_ERR_RESOLVE => Python::attach(|py| gaierror(py, f.message)),
        _ => PyOSError::new_err((f.errno(), f.message)),
    }
}

/// `socket.gaierror(EAI_NONAME, message)`.
fn gaierror(py: Python<'_>, message: String) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let socket = py.import("socket")?;
        let code = socket.getattr("EAI_NONAME")?;
        Ok(PyErr::from_value(socket.getattr("gaierror")?.call1((code, message.clone()))?))
    })();
    made.unwrap_or_else(|_| PyOSError::new_err(message))
}

/// A library error as the matching Python exception.
pub fn err(e: astranet::Error) -> PyErr {
    failure(e.into())
}

/// An I/O error (from a stream, or a socket) as the matching Python exception.
pub fn io_err(e: io::Error) -> PyErr {
    failure(e.into())
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
