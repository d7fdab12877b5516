//! Listeners: accept, non-blocking (tier 1) or blocking with a timeout.

use crate::error::{astranet_error, astranet_result, Failure};
use crate::handles::{self, Obj};
use crate::node::{astranet_addr, NodeH};
use crate::poll::{ReadySet, Reg, ASTRANET_EVENT_ACCEPTABLE};
use crate::stream::{astranet_stream, Blocker, StreamH};
use crate::{ffi, out};
use std::ffi::c_void;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

/// A listener (opaque handle): a bound virtual port. Created by `astranet_bind`,
/// released by `astranet_listener_close`.
///
/// Thread-safety: every function taking a listener may be called from any thread, also
/// concurrently (each accepted stream goes to exactly one caller).
pub struct astranet_listener {
    _private: [u8; 0],
}

pub(crate) struct ListenerH {
    l: astranet::Listener,
    reg: Arc<Reg>,
    waker: Waker,
    ready: Arc<ReadySet>,
    rt: tokio::runtime::Handle,
    blocked: Blocker,
}

impl ListenerH {
    pub(crate) fn new(l: astranet::Listener, n: &NodeH) -> Arc<ListenerH> {
        let reg = Reg::new(&n.ready, 0);
        let waker = reg.waker::<ASTRANET_EVENT_ACCEPTABLE>();
        Arc::new(ListenerH {
            l,
            reg,
            waker,
            ready: n.ready.clone(),
            rt: n.rt.handle().clone(),
            blocked: Blocker::new(&n.ready),
        })
    }

    fn accept_with(&self, waker: &Waker) -> Poll<Result<astranet::Stream, Failure>> {
        let mut cx = Context::from_waker(waker);
        self.l.poll_accept(&mut cx).map_err(Failure::from)
    }

    fn wrap(&self, s: astranet::Stream) -> *mut astranet_stream {
        handles::insert(Obj::Stream(StreamH::open(s, &self.ready, &self.rt, 0))) as *mut astranet_stream
    }
}

fn listener_of(p: *mut astranet_listener) -> Result<Arc<ListenerH>, Failure> {
    handles::get(p as usize, "listener", handles::listener)
}

/// Accepts a stream without waiting (tier 1). On success writes an owned stream handle
/// to `*stream_out` (close it with `astranet_stream_close`). Returns `ASTRANET_AGAIN`
/// when no dial is waiting; the listener's `ASTRANET_EVENT_ACCEPTABLE` event then
/// comes through `astranet_poll` when one arrives.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (NULL `stream_out`), `ASTRANET_ERR_LISTENER_CLOSED`,
/// `ASTRANET_ERR_BAD_HANDLE`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_accept(
    listener: *mut astranet_listener,
    stream_out: *mut *mut astranet_stream,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let stream_out = out(stream_out, "stream_out")?;
        let l = listener_of(listener)?;
        match l.accept_with(&l.waker) {
            Poll::Ready(r) => {
                stream_out.set(l.wrap(r?));
                Ok(astranet_result::ASTRANET_OK)
            }
            Poll::Pending => Ok(astranet_result::ASTRANET_AGAIN),
        }
    })
}

/// Accepts a stream, waiting up to `timeout_ms` (negative: no limit). Returns as
/// `astranet_accept`, with `ASTRANET_ERR_TIMED_OUT` instead of `ASTRANET_AGAIN`, and
/// `ASTRANET_ERR_LISTENER_CLOSED` when the listener is closed (by another thread) while
/// waiting. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_accept_timeout(
    listener: *mut astranet_listener,
    timeout_ms: i32,
    stream_out: *mut *mut astranet_stream,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let stream_out = out(stream_out, "stream_out")?;
        let l = listener_of(listener)?;
        let s = l.blocked.wait(astranet_embed::wait::millis(timeout_ms), "accept", |w| l.accept_with(w))?;
        stream_out.set(l.wrap(s));
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Sets the user data that `astranet_poll` reports with the listener's events.
///
/// Errors: `ASTRANET_ERR_BAD_HANDLE`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_listener_set_userdata(
    listener: *mut astranet_listener,
    userdata: *mut c_void,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        listener_of(listener)?.reg.set_userdata(userdata as usize);
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Writes the listener's address (this node's host id, the bound port) to `*addr_out`.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT`, `ASTRANET_ERR_BAD_HANDLE`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_listener_addr(
    listener: *mut astranet_listener,
    addr_out: *mut astranet_addr,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let o = out(addr_out, "addr_out")?;
        o.set(listener_of(listener)?.l.local_addr().into());
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Unbinds the port and frees the handle: dials waiting in the backlog are refused, an
/// `astranet_accept_timeout` blocked in another thread returns
/// `ASTRANET_ERR_LISTENER_CLOSED`, and the listener's pending events are withdrawn.
/// Streams accepted earlier are not affected. Safe from any thread.
///
/// Returns `ASTRANET_OK`, also for NULL; `ASTRANET_ERR_BAD_HANDLE` for a listener closed
/// already (double close) or a handle of another kind.
#[no_mangle]
pub extern "C" fn astranet_listener_close(listener: *mut astranet_listener) -> astranet_result {
    ffi!(std::ptr::null_mut(), {
        if listener.is_null() {
            return Ok(astranet_result::ASTRANET_OK);
        }
        let l = handles::remove(listener as usize, "listener", handles::listener)?;
        l.reg.kill();
        l.l.close();
        l.blocked.wake_all();
        Ok(astranet_result::ASTRANET_OK)
    })
}
