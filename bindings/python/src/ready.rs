//! Readiness for event loops: how asyncio drives native streams without a descriptor
//! per stream.
//!
//! A `_Notifier` owns one eventfd, which the loop watches with `loop.add_reader`. A
//! stream operation that would block registers a `_Waker` (a token chosen by Python)
//! with the core; when the core wakes it, the token is queued and the eventfd is made
//! readable (only on the first token of a batch). The loop's callback then takes every
//! queued token at once with `drain()`, and retries the operations they name. So a
//! million streams cost one descriptor, and a burst of wake-ups costs one system call.

use crate::runtime::io_err;
use pyo3::prelude::*;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

struct Queue {
    fd: OwnedFd,
    ready: Mutex<Vec<u64>>,
}

impl Queue {
    fn push(&self, token: u64) {
        let first = {
            let mut ready = self.ready.lock().unwrap_or_else(|p| p.into_inner());
            ready.push(token);
            ready.len() == 1
        };
        if first {
            let one: u64 = 1;
            // EAGAIN (the counter is full) still leaves the fd readable: nothing lost.
            // SAFETY: writes 8 bytes from a live u64 to a descriptor this queue owns.
            unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }
}

/// One eventfd and the tokens woken since the last ``drain()``.
#[pyclass(module = "astranet._astranet", name = "_Notifier", frozen)]
pub struct Notifier {
    queue: Arc<Queue>,
}

#[pymethods]
impl Notifier {
    #[new]
    fn new() -> PyResult<Notifier> {
        // SAFETY: plain system call; the descriptor is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io_err(io::Error::last_os_error()));
        }
        // SAFETY: `fd` is a new descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Notifier { queue: Arc::new(Queue { fd, ready: Mutex::new(Vec::new()) }) })
    }

    /// The eventfd to watch for readability.
    fn fileno(&self) -> i32 {
        self.queue.fd.as_raw_fd()
    }

    /// The tokens woken since the last call (a token may appear more than once).
    fn drain(&self) -> Vec<u64> {
        // The counter first: a token queued after this read makes the fd readable
        // again, so none is left waiting without a signal.
        let mut count: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from a descriptor this queue owns.
        unsafe { libc::read(self.queue.fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
        std::mem::take(&mut *self.queue.ready.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// A waker that queues `token`; made once per stream and direction, and reused.
    fn waker(&self, token: u64) -> StreamWaker {
        StreamWaker(Waker::from(Arc::new(Token { queue: self.queue.clone(), token })))
    }
}

struct Token {
    queue: Arc<Queue>,
    token: u64,
}

impl Wake for Token {
    fn wake(self: Arc<Self>) {
        self.queue.push(self.token);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.queue.push(self.token);
    }
}

/// What a stream's non-blocking operation registers when it cannot go on.
#[pyclass(module = "astranet._astranet", name = "_Waker", frozen)]
pub struct StreamWaker(pub Waker);
