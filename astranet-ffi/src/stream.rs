//! Streams: non-blocking (tier 1) and blocking reads and writes, half-close, close,
//! abort, and conversion into a socket fd (tier 2).

use crate::error::{astranet_error, astranet_result, Failure};
use crate::handles::{self, Obj};
use crate::node::astranet_addr;
use crate::poll::{DriveLinks, ReadySet, Reg, ASTRANET_EVENT_READABLE, ASTRANET_EVENT_WRITABLE};
use crate::{ffi, out};
use astranet::LinkDriver;
use astranet_embed::wait::{self, Wait};
use parking_lot::Mutex;
use std::ffi::c_void;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream (opaque handle): one bidirectional byte stream to another node. Created by
/// `astranet_dial`, `astranet_dial_start` or `astranet_accept`; released by
/// `astranet_stream_close`, `astranet_stream_abort` or `astranet_stream_into_fd`.
///
/// Thread-safety: one reader and one writer at a time (a read and a write may run
/// concurrently in two threads); close, abort, set_userdata and the address functions
/// from any thread at any time. A close from another thread makes a blocked read or
/// write return `ASTRANET_ERR_CLOSED`.
pub struct astranet_stream {
    _private: [u8; 0],
}

/// The wakers of the threads blocked on a handle, woken when it is closed, and the
/// driver of the node's links, run while they wait (see [`DriveLinks`]).
pub(crate) struct Blocker {
    waiting: Mutex<Vec<Waker>>,
    links: Option<Arc<LinkDriver>>,
}

impl Blocker {
    pub(crate) fn new(ready: &ReadySet) -> Blocker {
        Blocker { waiting: Mutex::new(Vec::new()), links: ready.links.clone() }
    }

    /// Wakes every blocked caller (each removes its own waker when it returns).
    pub(crate) fn wake_all(&self) {
        self.waiting.lock().iter().for_each(Waker::wake_by_ref);
    }

    /// Calls `op` with a waker of this thread until it is ready, parking in between
    /// (see [`astranet_embed::wait`]); `ASTRANET_ERR_TIMED_OUT` when `limit` runs out
    /// first. A close of the handle wakes the thread, and `op` then reports it.
    pub(crate) fn wait<T>(
        &self,
        limit: Option<Duration>,
        what: &str,
        mut op: impl FnMut(&Waker) -> Poll<Result<T, Failure>>,
    ) -> Result<T, Failure> {
        let mut registered: Option<Waker> = None;
        let result = wait::block_on(None, Wait::timeout(limit), DriveLinks(self.links.as_deref()), |cx| {
            if registered.is_none() {
                self.waiting.lock().push(cx.waker().clone());
                registered = Some(cx.waker().clone());
            }
            op(cx.waker())
        });
        if let Some(w) = registered {
            self.waiting.lock().retain(|x| !x.will_wake(&w));
        }
        result.map_err(|stopped| stopped.failure(what, limit))?
    }
}

enum Io {
    /// `astranet_dial_start` waits for its name to be announced (on a runtime task).
    Dialing,
    /// `astranet_dial_start`'s DIAL is out: the link answers it, or times it out.
    Opening(astranet::Stream),
    Open(astranet::Stream),
    /// The dial started by `astranet_dial_start` failed (boxed: this rare case would
    /// otherwise make every stream's handle larger).
    Failed(Box<Failure>),
    Closed,
}

pub(crate) struct StreamH {
    io: Mutex<Io>,
    reg: Arc<Reg>,
    read_waker: Waker,
    write_waker: Waker,
    rt: tokio::runtime::Handle,
    blocked: Blocker,
}

fn closed() -> Failure {
    Failure::new(astranet_result::ASTRANET_ERR_CLOSED, "the stream was closed")
}

impl StreamH {
    fn with(io: Io, ready: &Arc<ReadySet>, rt: &tokio::runtime::Handle, userdata: usize) -> Arc<StreamH> {
        let reg = Reg::new(ready, userdata);
        Arc::new(StreamH {
            io: Mutex::new(io),
            read_waker: reg.waker::<ASTRANET_EVENT_READABLE>(),
            write_waker: reg.waker::<ASTRANET_EVENT_WRITABLE>(),
            reg,
            rt: rt.clone(),
            blocked: Blocker::new(ready),
        })
    }

    pub(crate) fn open(
        s: astranet::Stream,
        ready: &Arc<ReadySet>,
        rt: &tokio::runtime::Handle,
        userdata: usize,
    ) -> Arc<StreamH> {
        Self::with(Io::Open(s), ready, rt, userdata)
    }

    pub(crate) fn dialing(ready: &Arc<ReadySet>, rt: &tokio::runtime::Handle, userdata: usize) -> Arc<StreamH> {
        Self::with(Io::Dialing, ready, rt, userdata)
    }

    /// A stream of `astranet_dial_start` whose DIAL is out (see [`astranet::Node::start_dial`]).
    pub(crate) fn opening(
        s: astranet::Stream,
        ready: &Arc<ReadySet>,
        rt: &tokio::runtime::Handle,
        userdata: usize,
    ) -> Arc<StreamH> {
        let h = Self::with(Io::Opening(s), ready, rt, userdata);
        // Registers the handle as the dial's waker. A dial that ended already (refused
        // at once, a link that closed) woke nobody: its end is reported here.
        if h.settle(&mut h.io.lock()) {
            h.wake_by_ref();
        }
        h
    }

    /// A stream of `astranet_dial_start` that failed at once: reported as when a dial
    /// ends.
    pub(crate) fn failed(
        f: Failure,
        ready: &Arc<ReadySet>,
        rt: &tokio::runtime::Handle,
        userdata: usize,
    ) -> Arc<StreamH> {
        let h = Self::with(Io::Failed(Box::new(f)), ready, rt, userdata);
        h.reg.fire(ASTRANET_EVENT_READABLE | ASTRANET_EVENT_WRITABLE);
        h
    }

    /// Moves an `Opening` stream on once its dial ended: to `Open`, or to `Failed` (the
    /// stream dropped, which gives the dial up); says whether it did. While the dial
    /// waits, the handle itself is the link's waker (see the `Wake` impl), whichever
    /// call asked.
    fn settle(self: &Arc<Self>, io: &mut Io) -> bool {
        let Io::Opening(s) = io else { return false };
        let waker = Waker::from(self.clone());
        let Poll::Ready(r) = s.poll_established(&Context::from_waker(&waker)) else { return false };
        let Io::Opening(s) = std::mem::replace(io, Io::Closed) else { unreachable!("matched above") };
        *io = match r {
            Ok(()) => Io::Open(s),
            Err(e) => Io::Failed(Box::new(Failure::from(e))),
        };
        true
    }

    /// The dial of `astranet_dial_start` finished (on a runtime thread).
    pub(crate) fn dialed(&self, r: Result<astranet::Stream, Failure>) {
        let dropped = {
            let mut io = self.io.lock();
            if !matches!(*io, Io::Dialing) {
                // Closed meanwhile: give the stream up (outside the lock).
                r.ok()
            } else {
                *io = match r {
                    Ok(s) => Io::Open(s),
                    Err(f) => Io::Failed(Box::new(f)),
                };
                None
            }
        };
        drop(dropped);
        self.reg.fire(ASTRANET_EVENT_READABLE | ASTRANET_EVENT_WRITABLE);
        self.blocked.wake_all();
    }

    /// Runs `op` on the open stream; `Pending` while a dial is under way.
    fn on<T>(
        self: &Arc<Self>,
        op: impl FnOnce(Pin<&mut astranet::Stream>) -> Poll<std::io::Result<T>>,
    ) -> Poll<Result<T, Failure>> {
        let mut io = self.io.lock();
        self.settle(&mut io);
        match &mut *io {
            Io::Open(s) => op(Pin::new(s)).map_err(Failure::from),
            Io::Dialing | Io::Opening(_) => Poll::Pending,
            Io::Failed(f) => Poll::Ready(Err((**f).clone())),
            Io::Closed => Poll::Ready(Err(closed())),
        }
    }

    fn read(self: &Arc<Self>, buf: &mut [MaybeUninit<u8>], waker: &Waker) -> Poll<Result<usize, Failure>> {
        self.on(|s| {
            let mut rb = ReadBuf::uninit(buf);
            s.poll_read(&mut Context::from_waker(waker), &mut rb).map_ok(|()| rb.filled().len())
        })
    }

    fn read_chunk(self: &Arc<Self>, max: usize, waker: &Waker) -> Poll<Result<bytes::Bytes, Failure>> {
        self.on(|s| s.get_mut().poll_read_chunk(&mut Context::from_waker(waker), max))
    }

    fn write(self: &Arc<Self>, buf: &[u8], waker: &Waker) -> Poll<Result<usize, Failure>> {
        self.on(|s| s.poll_write(&mut Context::from_waker(waker), buf))
    }

    /// Takes the stream out and marks the handle closed; wakes blocked callers.
    fn take(&self) -> Option<astranet::Stream> {
        let old = std::mem::replace(&mut *self.io.lock(), Io::Closed);
        self.reg.kill();
        self.blocked.wake_all();
        match old {
            Io::Open(s) | Io::Opening(s) => Some(s),
            _ => None,
        }
    }
}

/// A handle is the link's waker while its dial is under way (`Io::Opening`): the
/// dial's end is reported with both event bits, as `astranet_dial_start` promises,
/// and wakes the threads blocked on the handle. (The link holds the waker until then:
/// closing the handle, or the link closing, lets it go.)
impl Wake for StreamH {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.reg.fire(ASTRANET_EVENT_READABLE | ASTRANET_EVENT_WRITABLE);
        self.blocked.wake_all();
    }
}

fn stream_of(p: *mut astranet_stream) -> Result<Arc<StreamH>, Failure> {
    handles::get(p as usize, "stream", handles::stream)
}

fn read_buf<'a>(buf: *mut u8, len: usize) -> Result<&'a mut [MaybeUninit<u8>], Failure> {
    if buf.is_null() {
        return if len == 0 { Ok(&mut []) } else { Err(crate::error::null("buf")) };
    }
    // SAFETY: the caller passes `len` writable bytes (documented); they may be uninitialised.
    Ok(unsafe { std::slice::from_raw_parts_mut(buf.cast::<MaybeUninit<u8>>(), len) })
}

fn write_buf<'a>(buf: *const u8, len: usize) -> Result<&'a [u8], Failure> {
    if buf.is_null() {
        return if len == 0 { Ok(&[]) } else { Err(crate::error::null("buf")) };
    }
    // SAFETY: the caller passes `len` readable bytes (documented).
    Ok(unsafe { std::slice::from_raw_parts(buf, len) })
}

/// Reads up to `len` bytes into `buf` without waiting (tier 1). On `ASTRANET_OK` writes
/// the number of bytes read to `*nread`: 0 means end of stream (the peer shut down its
/// writing side; `len` 0 also gives 0). Returns `ASTRANET_AGAIN` when no data is there
/// yet: the stream's `ASTRANET_EVENT_READABLE` comes through `astranet_poll` when some
/// arrives.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (NULL `buf` with `len` > 0, NULL `nread`),
/// `ASTRANET_ERR_RESET` (the peer aborted), `ASTRANET_ERR_ABORTED`,
/// `ASTRANET_ERR_LINK_CLOSED`, the dial's error after a failed `astranet_dial_start`,
/// `ASTRANET_ERR_CLOSED` (closed by another thread during the call),
/// `ASTRANET_ERR_BAD_HANDLE`. Thread-safety: one reader at a time.
#[no_mangle]
pub extern "C" fn astranet_stream_read(
    stream: *mut astranet_stream,
    buf: *mut u8,
    len: usize,
    nread: *mut usize,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let nread = out(nread, "nread")?;
        let s = stream_of(stream)?;
        let buf = read_buf(buf, len)?;
        match s.read(buf, &s.read_waker) {
            Poll::Ready(r) => {
                nread.set(r?);
                Ok(astranet_result::ASTRANET_OK)
            }
            Poll::Pending => Ok(astranet_result::ASTRANET_AGAIN),
        }
    })
}

/// Received bytes lent without a copy (`astranet_stream_read_chunk`); the caller
/// frees it with `astranet_chunk_free`.
pub struct astranet_chunk {
    _private: [u8; 0],
}

/// Reads like `astranet_stream_read`, without copying: up to `max` bytes of what
/// arrived, as they lie in the buffer the link read them into. On `ASTRANET_OK` with
/// `*len` > 0, `*data` points at the bytes and `*chunk` owns them: they stay valid and
/// unchanged until `astranet_chunk_free(*chunk)`, also after the stream is closed. On
/// `ASTRANET_OK` with `*len` 0, the stream ended (or `max` was 0) and `*chunk` is NULL.
/// For passing received bytes on (to a file, another socket) without a buffer of
/// one's own. A chunk pins memory of its link: free it soon.
///
/// Returns `ASTRANET_AGAIN` and errors as `astranet_stream_read` (NULL `chunk`, `data`
/// or `len` is `ASTRANET_ERR_INVALID_ARGUMENT`). Thread-safety: one reader at a time;
/// chunks may be freed from any thread.
#[no_mangle]
pub extern "C" fn astranet_stream_read_chunk(
    stream: *mut astranet_stream,
    max: usize,
    chunk: *mut *mut astranet_chunk,
    data: *mut *const u8,
    len: *mut usize,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let (chunk, data, len) = (out(chunk, "chunk")?, out(data, "data")?, out(len, "len")?);
        let s = stream_of(stream)?;
        match s.read_chunk(max, &s.read_waker) {
            Poll::Ready(r) => {
                let bytes = r?;
                let (ptr, n) = (bytes.as_ptr(), bytes.len());
                let handle = if n == 0 {
                    std::ptr::null_mut()
                } else {
                    handles::insert(Obj::Chunk(Arc::new(bytes))) as *mut astranet_chunk
                };
                chunk.set(handle);
                data.set(if n == 0 { std::ptr::null() } else { ptr });
                len.set(n);
                Ok(astranet_result::ASTRANET_OK)
            }
            Poll::Pending => Ok(astranet_result::ASTRANET_AGAIN),
        }
    })
}

/// Frees a chunk of `astranet_stream_read_chunk`; its bytes must no longer be used.
///
/// Returns `ASTRANET_OK`, also for NULL (nothing to do); `ASTRANET_ERR_BAD_HANDLE` for a
/// chunk freed already or a handle of another kind. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_chunk_free(chunk: *mut astranet_chunk) -> astranet_result {
    ffi!(std::ptr::null_mut(), {
        if chunk.is_null() {
            return Ok(astranet_result::ASTRANET_OK);
        }
        drop(handles::remove(chunk as usize, "chunk", handles::chunk)?);
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Writes up to `len` bytes from `buf` without waiting (tier 1). On `ASTRANET_OK` writes
/// the number of bytes taken (1 to `len`, or 0 when `len` is 0; they will be delivered
/// even if the stream is closed right after) to `*nwritten`. Returns `ASTRANET_AGAIN` when the peer's window
/// or the link's queue is full: `ASTRANET_EVENT_WRITABLE` comes when there is room.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT`, `ASTRANET_ERR_BROKEN_PIPE` (after
/// `astranet_stream_shutdown`, or the peer stopped reading), `ASTRANET_ERR_RESET`,
/// `ASTRANET_ERR_ABORTED`, `ASTRANET_ERR_LINK_CLOSED`, the dial's error after a failed
/// `astranet_dial_start`, `ASTRANET_ERR_CLOSED`, `ASTRANET_ERR_BAD_HANDLE`.
/// Thread-safety: one writer at a time.
#[no_mangle]
pub extern "C" fn astranet_stream_write(
    stream: *mut astranet_stream,
    buf: *const u8,
    len: usize,
    nwritten: *mut usize,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let nwritten = out(nwritten, "nwritten")?;
        let s = stream_of(stream)?;
        let buf = write_buf(buf, len)?;
        match s.write(buf, &s.write_waker) {
            Poll::Ready(r) => {
                nwritten.set(r?);
                Ok(astranet_result::ASTRANET_OK)
            }
            Poll::Pending => Ok(astranet_result::ASTRANET_AGAIN),
        }
    })
}

/// Reads like `astranet_stream_read` but waits up to `timeout_ms` (negative: no limit)
/// for data, end of stream or an error. `ASTRANET_ERR_TIMED_OUT` when the time ran out
/// (nothing was read); `ASTRANET_ERR_CLOSED` when another thread closed the stream
/// meanwhile. Do not mix with non-blocking reads of the same stream running at the same
/// time. Thread-safety: one reader at a time.
#[no_mangle]
pub extern "C" fn astranet_stream_read_timeout(
    stream: *mut astranet_stream,
    buf: *mut u8,
    len: usize,
    timeout_ms: i32,
    nread: *mut usize,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let nread = out(nread, "nread")?;
        let s = stream_of(stream)?;
        let buf = read_buf(buf, len)?;
        let n = s.blocked.wait(astranet_embed::wait::millis(timeout_ms), "read", |w| s.read(&mut *buf, w))?;
        nread.set(n);
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Writes all `len` bytes of `buf`, waiting up to `timeout_ms` in total (negative: no
/// limit) for window space. Unlike other out-parameters, `*nwritten` (optional, may be
/// NULL) is written on every return: the bytes taken before an error or the timeout.
/// Errors as `astranet_stream_write`, plus `ASTRANET_ERR_TIMED_OUT`. Thread-safety: one
/// writer at a time.
#[no_mangle]
pub extern "C" fn astranet_stream_write_all(
    stream: *mut astranet_stream,
    buf: *const u8,
    len: usize,
    timeout_ms: i32,
    nwritten: *mut usize,
    err: *mut *mut astranet_error,
) -> astranet_result {
    let mut done = 0usize;
    let done_ref = &mut done;
    let code = ffi!(err, {
        let s = stream_of(stream)?;
        let buf = write_buf(buf, len)?;
        let deadline = astranet_embed::wait::millis(timeout_ms).map(|t| Instant::now() + t);
        while *done_ref < buf.len() {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let n = s.blocked.wait(left, "write", |w| s.write(&buf[*done_ref..], w))?;
            *done_ref += n;
        }
        Ok(astranet_result::ASTRANET_OK)
    });
    if !nwritten.is_null() {
        // SAFETY: a non-NULL out-parameter (documented).
        unsafe { nwritten.write(done) };
    }
    code
}

/// Half-closes the stream: the peer reads end of stream once everything written so far
/// has arrived; this side can still read. Does not free the handle.
///
/// Errors: `ASTRANET_ERR_RESET`, `ASTRANET_ERR_ABORTED`, `ASTRANET_ERR_LINK_CLOSED`,
/// `ASTRANET_ERR_CLOSED`, `ASTRANET_ERR_BAD_HANDLE`; `ASTRANET_AGAIN` while a dial of
/// `astranet_dial_start` is under way. Thread-safety: the writer's thread.
#[no_mangle]
pub extern "C" fn astranet_stream_shutdown(
    stream: *mut astranet_stream,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let s = stream_of(stream)?;
        // Shutting down never waits: the waker is not kept.
        let w = s.write_waker.clone();
        match s.on(|st| st.poll_shutdown(&mut Context::from_waker(&w))) {
            Poll::Ready(r) => {
                r?;
                Ok(astranet_result::ASTRANET_OK)
            }
            Poll::Pending => Ok(astranet_result::ASTRANET_AGAIN),
        }
    })
}

/// Resets the stream when no data moved on it either way for `timeout_ms`, counted from
/// now (negative: never). Its reads and writes then fail with `ASTRANET_ERR_TIMED_OUT`,
/// the peer's with `ASTRANET_ERR_RESET`. A stream starts with the node's
/// `stream_idle_timeout_ms` (none by default). Reads and writes are bounded by the
/// timeouts of `astranet_stream_read_timeout` and `astranet_stream_write_all`.
///
/// Errors: `ASTRANET_ERR_CLOSED`, `ASTRANET_ERR_BAD_HANDLE`; `ASTRANET_AGAIN` while a
/// dial of `astranet_dial_start` is under way. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_stream_set_idle_timeout(
    stream: *mut astranet_stream,
    timeout_ms: i32,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let s = stream_of(stream)?;
        let timeout = astranet_embed::wait::millis(timeout_ms);
        let set = |st: Pin<&mut astranet::Stream>| {
            st.set_idle_timeout(timeout);
            Poll::Ready(Ok(()))
        };
        match s.on(set) {
            Poll::Ready(r) => {
                r?;
                Ok(astranet_result::ASTRANET_OK)
            }
            Poll::Pending => Ok(astranet_result::ASTRANET_AGAIN),
        }
    })
}

/// Closes the stream gracefully and frees the handle: everything written is still
/// delivered, then the peer reads end of stream (and its writes fail). A read or write
/// blocked in another thread returns `ASTRANET_ERR_CLOSED`; pending events of the stream
/// are withdrawn. Closing a stream whose dial is under way gives the dial up.
///
/// Returns `ASTRANET_OK`, also for NULL; `ASTRANET_ERR_BAD_HANDLE` for a stream closed
/// already (double close) or a handle of another kind. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_stream_close(stream: *mut astranet_stream) -> astranet_result {
    ffi!(std::ptr::null_mut(), {
        if stream.is_null() {
            return Ok(astranet_result::ASTRANET_OK);
        }
        let s = handles::remove(stream as usize, "stream", handles::stream)?;
        drop(s.take());
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Resets the stream and frees the handle: unsent and unread data is dropped and the
/// peer's reads and writes fail with `ASTRANET_ERR_RESET`. Otherwise as
/// `astranet_stream_close` (NULL is accepted, a second call is `ASTRANET_ERR_BAD_HANDLE`).
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_stream_abort(stream: *mut astranet_stream) -> astranet_result {
    ffi!(std::ptr::null_mut(), {
        if stream.is_null() {
            return Ok(astranet_result::ASTRANET_OK);
        }
        let s = handles::remove(stream as usize, "stream", handles::stream)?;
        if let Some(st) = s.take() {
            st.abort();
        }
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Sets the user data that `astranet_poll` reports with the stream's events.
///
/// Errors: `ASTRANET_ERR_BAD_HANDLE`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_stream_set_userdata(
    stream: *mut astranet_stream,
    userdata: *mut c_void,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        stream_of(stream)?.reg.set_userdata(userdata as usize);
        Ok(astranet_result::ASTRANET_OK)
    })
}

fn addr_of(
    stream: *mut astranet_stream,
    addr_out: *mut astranet_addr,
    f: fn(&astranet::Stream) -> astranet::Addr,
) -> Result<astranet_result, Failure> {
    let o = out(addr_out, "addr_out")?;
    let s = stream_of(stream)?;
    let mut io = s.io.lock();
    s.settle(&mut io);
    let a = match &*io {
        Io::Open(st) => f(st),
        Io::Dialing | Io::Opening(_) => return Ok(astranet_result::ASTRANET_AGAIN),
        Io::Failed(e) => return Err((**e).clone()),
        Io::Closed => return Err(closed()),
    };
    o.set(a.into());
    Ok(astranet_result::ASTRANET_OK)
}

/// Writes this end's virtual address (this node's host id, the local port) to
/// `*addr_out`. Errors: `ASTRANET_ERR_INVALID_ARGUMENT`, `ASTRANET_ERR_BAD_HANDLE`,
/// `ASTRANET_ERR_CLOSED`, a failed dial's error; `ASTRANET_AGAIN` while a dial is under
/// way. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_stream_local_addr(
    stream: *mut astranet_stream,
    addr_out: *mut astranet_addr,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, { addr_of(stream, addr_out, astranet::Stream::local_addr) })
}

/// Writes the other end's virtual address to `*addr_out`. Returns as
/// `astranet_stream_local_addr`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_stream_peer_addr(
    stream: *mut astranet_stream,
    addr_out: *mut astranet_addr,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, { addr_of(stream, addr_out, astranet::Stream::peer_addr) })
}

/// Tier 2: turns the stream into a real socket. Writes to `*fd_out` one end of a
/// `socketpair(AF_UNIX, SOCK_STREAM)` (blocking, close-on-exec, owned by the caller who
/// closes it with `close`); the library pumps bytes between the other end and the
/// stream on its runtime, so plain `read`/`write`/`poll`, Go's `net.FileConn` or
/// Python's `socket.socket(fileno=...)` work on it. `shutdown(fd, SHUT_WR)` half-closes
/// the stream; end of stream reads as end of file; `close(fd)` after reading everything
/// closes the stream gracefully, with data still unread it aborts the stream (as TCP
/// sends RST); a reset or a lost link reads as end of file (writes then fail with
/// `EPIPE`). The library's own writes never raise `SIGPIPE`; the caller's `write` to
/// the fd does as on any socket (use `send` with `MSG_NOSIGNAL`, or ignore the signal).
/// The same rules hold for Python's
/// `Stream.to_socket()`.
///
/// Cost: two fds, a pump task, 16 KiB to 512 KiB of buffers (they grow with the
/// traffic) and two more copies per byte (through
/// the kernel): opt-in, for a handful of streams, not for a million (use tier 1 for
/// those). The pump runs on the node's runtime: freeing the node ends it (the fd then
/// reads end of file).
///
/// The handle is consumed on success (it becomes invalid, like after
/// `astranet_stream_close`). Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (NULL `fd_out`),
/// `ASTRANET_AGAIN` (a dial of `astranet_dial_start` is still under way; the handle stays
/// valid), `ASTRANET_ERR_IO` (no fds left), `ASTRANET_ERR_CLOSED`,
/// `ASTRANET_ERR_BAD_HANDLE`, a failed dial's error. Thread-safety: any thread, while no
/// read or write of the stream runs.
#[no_mangle]
pub extern "C" fn astranet_stream_into_fd(
    stream: *mut astranet_stream,
    fd_out: *mut i32,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let fd_out = out(fd_out, "fd_out")?;
        let s = stream_of(stream)?;
        let pair = astranet_embed::pump::socketpair(&s.rt)?;
        let st = {
            let mut io = s.io.lock();
            s.settle(&mut io);
            match &*io {
                Io::Open(_) => {}
                Io::Dialing | Io::Opening(_) => return Ok(astranet_result::ASTRANET_AGAIN),
                Io::Failed(e) => return Err((**e).clone()),
                Io::Closed => return Err(closed()),
            }
            match std::mem::replace(&mut *io, Io::Closed) {
                Io::Open(st) => st,
                _ => unreachable!("checked above"),
            }
        };
        s.reg.kill();
        s.blocked.wake_all();
        // A concurrent close may have removed it already: either way it is gone.
        let _ = handles::remove(stream as usize, "stream", handles::stream);
        let (fd, _pump) = pair.pump(st);
        use std::os::fd::IntoRawFd;
        fd_out.set(fd.into_raw_fd());
        Ok(astranet_result::ASTRANET_OK)
    })
}
