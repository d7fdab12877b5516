//! `astranet.Stream`: a virtual connection used like `socket.socket`.

use crate::buffer::Buffer;
use crate::ready::StreamWaker;
use crate::runtime::{check_fork, check_timeout, forked, io_err, rt, wait, wait_of, Wait};
use astranet_embed::pump::Pump;
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyTuple};
use std::cell::RefCell;
use std::future::poll_fn;
use std::io;
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

thread_local! {
    /// Where `_recv_ready` reads before copying into the bytes object it returns.
    static READ_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

enum State {
    /// Served by the Rust core directly.
    Native(astranet::Stream),
    /// Moved to the fd tier by `use_socketpair()`: served by this real socket; the
    /// pump aborts the stream on `abort()`.
    Fd(Py<PyAny>, Pump),
    Closed,
}

/// One bidirectional byte stream between two nodes, used like a connected
/// ``socket.socket``: ``recv``, ``recv_into``, ``send``, ``sendall``, ``shutdown``,
/// ``close``, ``settimeout``/``gettimeout``, ``setblocking``, ``makefile``,
/// ``getsockname``/``getpeername`` and the context manager work as on a socket.
///
/// Addresses are virtual: ``(host_id, port)`` tuples of ints. Streams come from
/// ``Node.dial`` and ``Listener.accept``; they cannot be created directly.
///
/// A stream has no file descriptor of its own. ``use_socketpair()`` and ``to_socket()``
/// move it to the *fd tier*: a socketpair whose other end a task of the extension pumps
/// to and from the stream. It costs two file descriptors and one extra copy per byte:
/// use it for code that needs a real descriptor (``selectors``, asyncio transports),
/// not for a million streams. ``fileno()`` only reports the descriptor.
#[pyclass(module = "astranet", frozen, weakref)]
pub struct Stream {
    state: Mutex<State>,
    timeout: Mutex<Option<f64>>,
    read_shut: std::sync::atomic::AtomicBool,
    /// The threads blocked reading ([`READ`]) and writing ([`WRITE`]). The core keeps
    /// one waker per direction, the last one registered: with two threads waiting on
    /// one direction it wakes one of them, and `close` from another thread wakes none.
    /// So each waiting thread is also listed here, and whatever ends a wait (its
    /// result, `close`, `abort`, `shutdown`) wakes the others, which poll again.
    waiters: [Mutex<Vec<Waker>>; 2],
    /// Files of `makefile` not closed yet: as with a socket, `close` closes the stream
    /// once the last of them is closed (`close_pending` until then).
    io_refs: std::sync::atomic::AtomicUsize,
    close_pending: std::sync::atomic::AtomicBool,
    /// The `Node` the stream came from: a stream in use keeps it (and its links) from
    /// being collected and closed, as a Go stream keeps its node.
    _node: Py<PyAny>,
    local: (u64, u32),
    peer: (u64, u32),
}

/// Index of [`Stream::waiters`].
const READ: usize = 0;
/// Index of [`Stream::waiters`].
const WRITE: usize = 1;

/// The wakers one blocking call registered (one per wait of [`wait`]).
#[derive(Default)]
struct Own(Mutex<Vec<Waker>>);

fn closed_err() -> PyErr {
    PyOSError::new_err((libc::EBADF, "Bad file descriptor (the stream is closed)"))
}

fn no_flags(flags: i32) -> PyResult<()> {
    if flags != 0 {
        return Err(PyValueError::new_err("astranet streams support no flags (flags must be 0)"));
    }
    Ok(())
}

impl Stream {
    /// A stream of `node` (the Python `Node` object, kept alive by the stream).
    pub fn new(s: astranet::Stream, node: Py<PyAny>) -> Stream {
        let (l, p) = (s.local_addr(), s.peer_addr());
        Stream {
            state: Mutex::new(State::Native(s)),
            timeout: Mutex::new(None),
            read_shut: Default::default(),
            waiters: Default::default(),
            io_refs: Default::default(),
            close_pending: Default::default(),
            _node: node,
            local: (l.host.0, l.port.0),
            peer: (p.host.0, p.port.0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A poll of direction `dir` is pending: lists its waker (and notes it in `own`).
    /// Called with the state's lock still held from that poll.
    fn park(&self, dir: usize, own: &Own, cx: &Context<'_>) {
        let waker = cx.waker();
        let mut listed = self.waiters[dir].lock().unwrap_or_else(|p| p.into_inner());
        if !listed.iter().any(|w| w.will_wake(waker)) {
            listed.push(waker.clone());
            own.0.lock().unwrap_or_else(|p| p.into_inner()).push(waker.clone());
        }
    }

    /// A blocking call of direction `dir` ended: withdraws its wakers and wakes the
    /// other waiting threads (see [`Stream::waiters`]).
    fn end_wait(&self, dir: usize, own: Own) {
        let own = own.0.into_inner().unwrap_or_else(|p| p.into_inner());
        let others = {
            let mut listed = self.waiters[dir].lock().unwrap_or_else(|p| p.into_inner());
            if listed.is_empty() {
                return;
            }
            listed.retain(|w| !own.iter().any(|o| o.will_wake(w)));
            std::mem::take(&mut *listed)
        };
        others.into_iter().for_each(Waker::wake);
    }

    /// Fails (EBADF) once the stream is closed, as a closed socket's calls do.
    fn open(&self) -> PyResult<()> {
        match *self.lock() {
            State::Closed => Err(closed_err()),
            _ => Ok(()),
        }
    }

    /// Wakes every blocked call, to find the stream closed or shut down.
    fn wake_all(&self) {
        self.end_wait(READ, Own::default());
        self.end_wait(WRITE, Own::default());
    }

    /// Closes now (see `close`).
    fn close_now(&self, py: Python<'_>) -> PyResult<()> {
        if forked() {
            return Ok(());
        }
        let old = {
            let mut st = self.lock();
            std::mem::replace(&mut *st, State::Closed)
        };
        match old {
            State::Fd(sock, _) => {
                sock.bind(py).call_method0("close")?;
            }
            State::Native(s) => {
                let _rt = rt().enter();
                drop(s);
            }
            State::Closed => {}
        }
        // Calls blocked in other threads fail with EBADF, as on a socket.
        self.wake_all();
        Ok(())
    }

    fn wait_mode(&self) -> Wait {
        wait_of(*self.timeout.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The socket of the fd tier, if the stream was moved there; fails when closed.
    fn fd_socket(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match &*self.lock() {
            State::Native(_) => Ok(None),
            State::Fd(sock, _) => Ok(Some(sock.clone_ref(py))),
            State::Closed => Err(closed_err()),
        }
    }

    /// Reads into `buf` (raw memory that stays valid for the call).
    fn read_raw(&self, py: Python<'_>, ptr: usize, len: usize) -> PyResult<usize> {
        if len == 0 {
            return Ok(0);
        }
        let how = self.wait_mode();
        let own = Own::default();
        let res = wait(
            py,
            how,
            poll_fn(|cx| {
                if self.read_shut.load(std::sync::atomic::Ordering::Relaxed) {
                    return Poll::Ready(Ok(0));
                }
                // SAFETY: the caller holds the buffer (bytes it owns or a Python buffer
                // export) for the whole call; only this closure writes to it.
                let buf = unsafe { std::slice::from_raw_parts_mut(ptr as *mut u8, len) };
                let mut rb = ReadBuf::new(buf);
                let mut st = self.lock();
                let polled = match &mut *st {
                    State::Native(s) => match Pin::new(s).poll_read(cx, &mut rb) {
                        Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
                        Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                        Poll::Pending => Poll::Pending,
                    },
                    _ => Poll::Ready(Err(io::Error::from_raw_os_error(libc::EBADF))),
                };
                if polled.is_pending() {
                    self.park(READ, &own, cx); // under the state's lock: see poll_write
                }
                drop(st);
                polled
            }),
        );
        self.end_wait(READ, own);
        res?.map_err(io_err)
    }

    /// Writes some of `data`; returns how much.
    fn write_raw(&self, py: Python<'_>, how: Wait, ptr: usize, len: usize) -> PyResult<usize> {
        let own = Own::default();
        let res = wait(
            py,
            how,
            poll_fn(|cx| {
                // SAFETY: as in `read_raw`; the memory is only read.
                let buf = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
                self.poll_write(cx, &own, buf)
            }),
        );
        self.end_wait(WRITE, own);
        res?.map_err(io_err)
    }

    /// Writes some of `buf` on the native stream; lists the waker when it must wait.
    fn poll_write(&self, cx: &mut Context<'_>, own: &Own, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut st = self.lock();
        let polled = match &mut *st {
            State::Native(s) => Pin::new(s).poll_write(cx, buf),
            _ => Poll::Ready(Err(io::Error::from_raw_os_error(libc::EBADF))),
        };
        if polled.is_pending() {
            // Under the state's lock, as the poll: a wait that ends meanwhile (and
            // wakes the listed) cannot fall between this poll and its listing.
            self.park(WRITE, own, cx);
        }
        drop(st);
        polled
    }

    /// Takes the core stream out (for the fd tier), leaving `Closed`.
    fn take_native(&self) -> Option<astranet::Stream> {
        let mut st = self.lock();
        match std::mem::replace(&mut *st, State::Closed) {
            State::Native(s) => Some(s),
            other => {
                *st = other;
                None
            }
        }
    }
}

#[pymethods]
impl Stream {
    /// Receives up to ``bufsize`` bytes; ``b""`` once the peer has finished sending.
    /// Blocks (with the GIL released, interruptible by Ctrl-C) according to the
    /// timeout: ``TimeoutError`` when it expires, ``BlockingIOError`` in non-blocking
    /// mode. ``ConnectionResetError`` when the peer aborted the stream.
    #[pyo3(signature = (bufsize, flags = 0, /))]
    fn recv<'py>(&self, py: Python<'py>, bufsize: isize, flags: i32) -> PyResult<Bound<'py, PyAny>> {
        check_fork()?;
        no_flags(flags)?;
        if bufsize < 0 {
            return Err(PyValueError::new_err("negative buffersize in recv"));
        }
        if let Some(sock) = self.fd_socket(py)? {
            return sock.bind(py).call_method1("recv", (bufsize,));
        }
        let mut buf = vec![0u8; (bufsize as usize).min(16 << 20)];
        let n = self.read_raw(py, buf.as_mut_ptr() as usize, buf.len())?;
        Ok(PyBytes::new(py, &buf[..n]).into_any())
    }

    /// Receives up to ``nbytes`` bytes (default: the buffer's size) into a writable
    /// buffer without copying through a ``bytes`` object; returns how many were
    /// received (0 at end of stream).
    #[pyo3(signature = (buffer, nbytes = 0, flags = 0, /))]
    fn recv_into(&self, py: Python<'_>, buffer: &Bound<'_, PyAny>, nbytes: isize, flags: i32) -> PyResult<usize> {
        check_fork()?;
        no_flags(flags)?;
        if nbytes < 0 {
            return Err(PyValueError::new_err("negative buffersize in recv_into"));
        }
        if let Some(sock) = self.fd_socket(py)? {
            return sock.bind(py).call_method1("recv_into", (buffer, nbytes))?.extract();
        }
        let buf = Buffer::get(buffer, true)?;
        let size = buf.len();
        let len = if nbytes == 0 { size } else { nbytes as usize };
        if len > size {
            return Err(PyValueError::new_err("buffer too small for requested bytes"));
        }
        self.read_raw(py, buf.ptr(), len)
    }

    /// Sends some of ``data`` (any bytes-like object) and returns how many bytes were
    /// taken; blocks only while the peer's window is full.
    /// ``BrokenPipeError`` once the stream was shut down for writing or the peer closed.
    #[pyo3(signature = (data, flags = 0, /))]
    fn send(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: i32) -> PyResult<usize> {
        check_fork()?;
        no_flags(flags)?;
        if let Some(sock) = self.fd_socket(py)? {
            return sock.bind(py).call_method1("send", (data,))?.extract();
        }
        let buf = Buffer::get(data, false)?;
        if buf.len() == 0 {
            return Ok(0);
        }
        let how = self.wait_mode();
        self.write_raw(py, how, buf.ptr(), buf.len())
    }

    /// Sends all of ``data``. The timeout bounds the whole call; on an error an
    /// unknown part of the data may have been sent.
    #[pyo3(signature = (data, flags = 0, /))]
    fn sendall(&self, py: Python<'_>, data: &Bound<'_, PyAny>, flags: i32) -> PyResult<()> {
        check_fork()?;
        no_flags(flags)?;
        if let Some(sock) = self.fd_socket(py)? {
            sock.bind(py).call_method1("sendall", (data,))?;
            return Ok(());
        }
        let buf = Buffer::get(data, false)?;
        let (ptr, len) = (buf.ptr(), buf.len());
        let how = self.wait_mode();
        let own = Own::default();
        let res = wait(py, how, async {
            // SAFETY: `buf` (the buffer export) outlives this call.
            let data = unsafe { std::slice::from_raw_parts(ptr as *const u8, len) };
            let mut sent = 0;
            while sent < len {
                let n = poll_fn(|cx| self.poll_write(cx, &own, &data[sent..])).await?;
                if n == 0 {
                    return Err(io::Error::from(io::ErrorKind::WriteZero));
                }
                sent += n;
            }
            Ok::<(), io::Error>(())
        });
        self.end_wait(WRITE, own);
        drop(buf);
        res?.map_err(io_err)
    }

    /// (internal, for event loops) Receives up to ``max`` bytes without blocking:
    /// ``b""`` at end of stream, ``None`` if nothing is there yet — then ``waker``
    /// fires (its ``_Notifier`` queues its token) once something is.
    #[pyo3(signature = (max, waker, /))]
    fn _recv_ready<'py>(
        &self,
        py: Python<'py>,
        max: usize,
        waker: &Bound<'py, StreamWaker>,
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        READ_BUF.with_borrow_mut(|buf| {
            buf.resize(max.clamp(1, 1 << 20), 0);
            let mut rb = ReadBuf::new(buf);
            let polled = {
                let mut st = self.lock();
                match &mut *st {
                    State::Native(s) => Pin::new(s).poll_read(&mut Context::from_waker(&waker.get().0), &mut rb),
                    _ => return Err(closed_err()),
                }
            };
            match polled {
                Poll::Ready(Ok(())) => Ok(Some(PyBytes::new(py, rb.filled()))),
                Poll::Ready(Err(e)) => Err(io_err(e)),
                Poll::Pending => Ok(None),
            }
        })
    }

    /// (internal, for event loops) Sends what fits of ``data`` without blocking and
    /// returns how much; ``0`` when nothing fits — then ``waker`` fires once
    /// something does.
    #[pyo3(signature = (data, waker, /))]
    fn _send_ready(&self, data: &Bound<'_, PyAny>, waker: &Bound<'_, StreamWaker>) -> PyResult<usize> {
        let buf = Buffer::get(data, false)?;
        if buf.len() == 0 {
            return Ok(0);
        }
        // SAFETY: `buf` (the buffer export) outlives this call, and is only read.
        let bytes = unsafe { std::slice::from_raw_parts(buf.ptr() as *const u8, buf.len()) };
        let polled = {
            let mut st = self.lock();
            match &mut *st {
                State::Native(s) => Pin::new(s).poll_write(&mut Context::from_waker(&waker.get().0), bytes),
                _ => return Err(closed_err()),
            }
        };
        match polled {
            Poll::Ready(Ok(n)) => Ok(n),
            Poll::Ready(Err(e)) => Err(io_err(e)),
            Poll::Pending => Ok(0),
        }
    }

    /// Shuts down one or both halves: ``socket.SHUT_WR`` (or ``SHUT_RDWR``) sends end
    /// of stream to the peer, which reads ``b""`` while this side can go on reading;
    /// ``SHUT_RD`` makes further receives return ``b""``.
    #[pyo3(signature = (how, /))]
    fn shutdown(&self, py: Python<'_>, how: i32) -> PyResult<()> {
        check_fork()?;
        if !(0..=2).contains(&how) {
            // As socket.shutdown: the system's EINVAL.
            return Err(PyOSError::new_err((
                libc::EINVAL,
                "Invalid argument (how must be SHUT_RD, SHUT_WR or SHUT_RDWR)",
            )));
        }
        if let Some(sock) = self.fd_socket(py)? {
            sock.bind(py).call_method1("shutdown", (how,))?;
            return Ok(());
        }
        if how == libc::SHUT_RD || how == libc::SHUT_RDWR {
            self.read_shut.store(true, std::sync::atomic::Ordering::Relaxed);
            // A read blocked in another thread returns b"", as on a socket.
            self.end_wait(READ, Own::default());
        }
        if how == libc::SHUT_WR || how == libc::SHUT_RDWR {
            let mut st = self.lock();
            match &mut *st {
                State::Native(s) => {
                    // The core's shutdown is immediate; a waker is never stored.
                    struct Noop;
                    impl std::task::Wake for Noop {
                        fn wake(self: std::sync::Arc<Self>) {}
                    }
                    let waker = std::task::Waker::from(std::sync::Arc::new(Noop));
                    match Pin::new(s).poll_shutdown(&mut std::task::Context::from_waker(&waker)) {
                        Poll::Ready(r) => r.map_err(io_err)?,
                        Poll::Pending => {}
                    }
                }
                _ => return Err(closed_err()),
            }
        }
        Ok(())
    }

    /// Closes the stream gracefully: everything sent is still delivered, then the
    /// peer reads end of stream. Idempotent. As with a socket, files made by
    /// ``makefile`` keep the stream open until they are closed too.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        use std::sync::atomic::Ordering::SeqCst;
        self.close_pending.store(true, SeqCst);
        if self.io_refs.load(SeqCst) > 0 {
            return Ok(());
        }
        self.close_now(py)
    }

    /// (internal, for ``makefile``) A file of the stream was made.
    fn _io_ref(&self) {
        self.io_refs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    /// (internal, for ``makefile``) A file of the stream was closed: the stream closes
    /// too if ``close`` was called and it was the last.
    fn _io_unref(&self, py: Python<'_>) -> PyResult<()> {
        use std::sync::atomic::Ordering::SeqCst;
        if self.io_refs.fetch_sub(1, SeqCst) == 1 && self.close_pending.load(SeqCst) {
            self.close_now(py)?;
        }
        Ok(())
    }

    /// Resets the stream: unsent and unread data is dropped and the peer's reads and
    /// writes fail with ``ConnectionResetError``. The stream is closed afterwards.
    fn abort(&self, py: Python<'_>) -> PyResult<()> {
        check_fork()?;
        let old = {
            let mut st = self.lock();
            std::mem::replace(&mut *st, State::Closed)
        };
        match old {
            State::Native(s) => {
                let _rt = rt().enter();
                s.abort();
            }
            State::Fd(sock, pump) => {
                pump.abort();
                sock.bind(py).call_method0("close")?;
            }
            State::Closed => {}
        }
        self.wake_all();
        Ok(())
    }

    /// True once the stream was closed (``close``, ``abort``, or ``to_socket``).
    #[getter]
    fn closed(&self) -> bool {
        self.close_pending.load(std::sync::atomic::Ordering::SeqCst) || matches!(*self.lock(), State::Closed)
    }

    /// Sets the timeout of blocking calls in seconds: ``None`` blocks forever (the
    /// default), ``0.0`` makes the stream non-blocking (``BlockingIOError``), a
    /// positive number raises ``TimeoutError`` when it expires.
    #[pyo3(signature = (value, /))]
    fn settimeout(&self, py: Python<'_>, value: Option<f64>) -> PyResult<()> {
        let value = check_timeout(value)?;
        self.open()?;
        *self.timeout.lock().unwrap_or_else(|p| p.into_inner()) = value;
        if let State::Fd(sock, _) = &*self.lock() {
            sock.bind(py).call_method1("settimeout", (value,))?;
        }
        Ok(())
    }

    /// Resets the stream when no data moved on it either way for ``seconds``, counted
    /// from now (``None``: never). Its calls then raise ``TimeoutError``, the peer's
    /// ``ConnectionResetError``. A stream starts with the node's
    /// ``stream_idle_timeout`` (none by default). Set it before ``use_socketpair()``:
    /// the socketpair's pump then owns the stream.
    #[pyo3(signature = (seconds, /))]
    fn set_idle_timeout(&self, py: Python<'_>, seconds: Option<f64>) -> PyResult<()> {
        let timeout = seconds.map(|s| crate::runtime::seconds("idle timeout", s)).transpose()?;
        match &*self.lock() {
            State::Native(s) => {
                s.set_idle_timeout(timeout);
                Ok(())
            }
            State::Fd(..) => Err(unsupported(
                py,
                "the stream is served by its socketpair: set the idle timeout before use_socketpair()",
            )),
            State::Closed => Err(closed_err()),
        }
    }

    /// The timeout in seconds, or ``None`` when blocking calls wait forever.
    fn gettimeout(&self) -> Option<f64> {
        *self.timeout.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// ``setblocking(True)`` is ``settimeout(None)``, ``setblocking(False)`` is
    /// ``settimeout(0.0)``.
    #[pyo3(signature = (flag, /))]
    fn setblocking(&self, py: Python<'_>, flag: &Bound<'_, PyAny>) -> PyResult<()> {
        // Any object, by its truth (as socket.setblocking: setblocking(0) is common).
        self.settimeout(py, if flag.is_truthy()? { None } else { Some(0.0) })
    }

    /// False when the stream is non-blocking (timeout ``0.0``).
    fn getblocking(&self) -> bool {
        self.gettimeout() != Some(0.0)
    }

    /// This end's virtual address ``(host_id, port)``.
    fn getsockname(&self) -> PyResult<(u64, u32)> {
        self.open()?;
        Ok(self.local)
    }

    /// The other end's virtual address ``(host_id, port)``.
    fn getpeername(&self) -> PyResult<(u64, u32)> {
        self.open()?;
        Ok(self.peer)
    }

    /// The stream's file descriptor once ``use_socketpair()`` gave it one; -1 once
    /// closed. A stream without one raises ``io.UnsupportedOperation``, as in-memory
    /// ``io`` objects do: this never changes the stream.
    fn fileno(&self, py: Python<'_>) -> PyResult<i64> {
        match &*self.lock() {
            State::Fd(sock, _) => sock.bind(py).call_method0("fileno")?.extract(),
            State::Closed => Ok(-1),
            State::Native(_) => Err(unsupported(
                py,
                "this stream has no file descriptor: call use_socketpair() to serve it through one",
            )),
        }
    }

    /// Moves the stream to the fd tier and returns its descriptor, for
    /// ``select``/``selectors``/event loops: a socketpair whose other end the extension
    /// pumps (two descriptors and one extra copy per byte). The Stream's methods keep
    /// working and go through that socket from then on; ``fileno()`` returns it. Calling
    /// it again returns the same descriptor.
    fn use_socketpair(&self, py: Python<'_>) -> PyResult<i64> {
        check_fork()?;
        if let Some(s) = self.take_native() {
            let (sock, pump) = to_fd_tier(py, s)?;
            let t = self.gettimeout();
            sock.bind(py).call_method1("settimeout", (t,))?;
            *self.lock() = State::Fd(sock, pump);
        }
        match &*self.lock() {
            State::Fd(sock, _) => sock.bind(py).call_method0("fileno")?.extract(),
            _ => Err(closed_err()),
        }
    }

    /// Detaches the stream into a real ``socket.socket`` (an ``AF_UNIX`` socketpair end
    /// pumped to and from the stream by the extension): usable with ``selectors``,
    /// ``asyncio.open_connection(sock=...)`` and anything that needs a descriptor.
    /// End of stream and half-close pass through; this Stream is closed afterwards.
    /// Costs two descriptors and one extra copy per byte.
    fn to_socket(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        check_fork()?;
        let sock = match self.take_native() {
            Some(s) => to_fd_tier(py, s)?.0,
            None => {
                let mut st = self.lock();
                match std::mem::replace(&mut *st, State::Closed) {
                    State::Fd(sock, _) => sock,
                    _ => return Err(closed_err()),
                }
            }
        };
        if let Some(t) = self.gettimeout() {
            sock.bind(py).call_method1("settimeout", (t,))?;
        }
        Ok(sock)
    }

    /// A file object reading and/or writing the stream, as ``socket.makefile``: mode
    /// ``"r"``, ``"w"``, ``"rw"`` with ``"b"`` for binary; text mode takes
    /// ``encoding``, ``errors`` and ``newline``. Closing the file does not close the
    /// stream; as with a socket, the stream's ``close()`` takes effect once its files
    /// are closed too.
    #[pyo3(signature = (mode = "r", buffering = None, *, encoding = None, errors = None, newline = None))]
    fn makefile<'py>(
        slf: &Bound<'py, Self>,
        mode: &str,
        buffering: Option<isize>,
        encoding: Option<&str>,
        errors: Option<&str>,
        newline: Option<&str>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let kw = PyDict::new(py);
        kw.set_item("encoding", encoding)?;
        kw.set_item("errors", errors)?;
        kw.set_item("newline", newline)?;
        py.import("astranet._io")?.getattr("makefile")?.call((slf, mode, buffering), Some(&kw))
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, PyTuple>) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(&self) -> String {
        let state = match &*self.lock() {
            State::Native(_) => "",
            State::Fd(..) => " fd-tier",
            State::Closed => " closed",
        };
        format!(
            "<astranet.Stream{state} local={:016x}:{} peer={:016x}:{}>",
            self.local.0, self.local.1, self.peer.0, self.peer.1
        )
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let open = !matches!(*self.state.get_mut().unwrap_or_else(|p| p.into_inner()), State::Closed);
        if open && !forked() {
            crate::unclosed::warn(&self.__repr__());
        }
        let st = std::mem::replace(self.state.get_mut().unwrap_or_else(|p| p.into_inner()), State::Closed);
        if forked() {
            // The parent's runtime does not exist here: touch nothing.
            std::mem::forget(st);
            return;
        }
        let _rt = rt().enter();
        drop(st);
    }
}

/// `io.UnsupportedOperation(message)`.
fn unsupported(py: Python<'_>, message: &str) -> PyErr {
    match py.import("io").and_then(|io| io.getattr("UnsupportedOperation")) {
        Ok(cls) => PyErr::from_type(cls.cast_into().expect("io.UnsupportedOperation is a type"), message.to_string()),
        Err(e) => e,
    }
}

/// Moves a stream onto a socketpair pumped by a runtime task (see
/// [`astranet_embed::pump`] for what passes through); returns the Python end.
fn to_fd_tier(py: Python<'_>, stream: astranet::Stream) -> PyResult<(Py<PyAny>, Pump)> {
    use std::os::fd::{AsRawFd, IntoRawFd};
    // Made before the stream is handed over: running out of descriptors loses nothing.
    let pair = astranet_embed::pump::socketpair(rt()).map_err(io_err)?;
    let kw = PyDict::new(py);
    let (fd, pump) = pair.pump(stream);
    kw.set_item("fileno", fd.as_raw_fd())?;
    let sock = match py.import("socket")?.getattr("socket")?.call((), Some(&kw)) {
        Ok(s) => s,
        Err(e) => {
            pump.abort();
            return Err(e);
        }
    };
    // The socket object owns the descriptor now.
    let _ = fd.into_raw_fd();
    Ok((sock.unbind(), pump))
}

pub fn wrap(py: Python<'_>, s: astranet::Stream, node: Py<PyAny>) -> PyResult<Py<Stream>> {
    Py::new(py, Stream::new(s, node))
}
