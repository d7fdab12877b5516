//! Tier 1 of pollability: one level-triggered readiness fd per node.
//!
//! Each stream and listener has a registration ([`Reg`]) and two wakers made from it
//! (read side, write side). Non-blocking calls that return `ASTRANET_AGAIN` leave these
//! wakers with the core; when the core wakes one, the event bit is recorded in the
//! registration and the registration is queued in its node's [`ReadySet`]. The node's
//! eventfd is readable exactly while that queue is not empty (it is written when the
//! queue becomes non-empty and read when `astranet_poll` empties it, both under the
//! queue's lock), except during an `astranet_poll`, whose events those are, and for
//! good once the node is freed. No task, thread or fd per stream.

use crate::error::{astranet_error, astranet_result, Failure};
use crate::handles;
use crate::{ffi, out};
use astranet::{Drive, LinkDriver};
use astranet_embed::wait::Interrupt;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::ffi::c_void;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::{RawWaker, RawWakerVTable, Waker};

/// Event bit: a read (`astranet_stream_read`) will not return `ASTRANET_AGAIN` (data,
/// end of stream or an error is there).
pub const ASTRANET_EVENT_READABLE: u32 = 1;
/// Event bit: a write (`astranet_stream_write`) will not return `ASTRANET_AGAIN`
/// (window space, or an error), or a dial started with `astranet_dial_start` finished.
pub const ASTRANET_EVENT_WRITABLE: u32 = 2;
/// Event bit: `astranet_accept` on the listener will not return `ASTRANET_AGAIN`.
pub const ASTRANET_EVENT_ACCEPTABLE: u32 = 4;

/// One readiness event: the user data of the stream or listener
/// (`astranet_stream_set_userdata`, `astranet_listener_set_userdata`) and the
/// `ASTRANET_EVENT_*` bits that became ready.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct astranet_event {
    /// The user data of the handle the event is for.
    pub userdata: *mut c_void,
    /// `ASTRANET_EVENT_*` bits.
    pub events: u32,
}

/// The queue of registrations with pending events, the node's eventfd, and the driver
/// of its links when `astranet_poll` reads (and writes) them (`read_links_in_poll`).
pub(crate) struct ReadySet {
    fd: i32,
    pending: Mutex<Pending>,
    pub(crate) links: Option<Arc<LinkDriver>>,
}

/// What the queue's lock guards.
struct Pending {
    regs: VecDeque<Arc<Reg>>,
    /// The eventfd holds 1 (it is readable).
    signalled: bool,
    /// `astranet_poll` calls between their start and their drain. While one runs, a
    /// registration queued by its own link reads (or by any thread) needs no eventfd
    /// write: the drain that ends it takes the registration, or signals what it left.
    /// Without this, every message read in `astranet_poll` wrote the eventfd and read
    /// it back, and the write woke the embedder's event loop once more for nothing.
    polls: u32,
    /// The node was freed: the eventfd stays readable, so that `astranet_poll_wait`
    /// calls blocked in other threads wake up (and find the node gone).
    closed: bool,
}

impl Pending {
    /// Makes the eventfd's state match the queue's (readable exactly while it is not
    /// empty, or for good once the node is freed), with a syscall only where they
    /// differ.
    fn sync(&mut self, fd: i32) {
        if self.signalled != (self.closed || !self.regs.is_empty()) {
            let mut v: u64 = 1;
            // SAFETY: 8 bytes to or from our non-blocking eventfd. Its counter stays
            // at 0 or 1: it is written only when `signalled` is false, and the read
            // resets it to 0.
            unsafe {
                if self.signalled {
                    libc::read(fd, (&mut v as *mut u64).cast(), 8);
                } else {
                    libc::write(fd, (&v as *const u64).cast(), 8);
                }
            }
            self.signalled = !self.signalled;
        }
    }

    /// An `astranet_poll` ended: the eventfd signals what it left, if anything.
    fn end_poll(&mut self, fd: i32) {
        self.polls -= 1;
        self.sync(fd);
    }
}

impl ReadySet {
    /// `drive`: what `astranet_poll` does for the links, if anything (see
    /// [`ReadySet::node_fd`]).
    pub(crate) fn new(drive: Option<Drive>) -> Result<Arc<ReadySet>, Failure> {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        // Owns the fd from here: an error below closes it.
        let pending = Pending { regs: VecDeque::new(), signalled: false, polls: 0, closed: false };
        let mut ready = ReadySet { fd, pending: Mutex::new(pending), links: None };
        if let Some(drive) = drive {
            let links = LinkDriver::new(drive)?;
            links.watch(fd)?;
            ready.links = Some(links);
        }
        Ok(Arc::new(ready))
    }

    /// The node fd: the eventfd, or the epoll fd of the link driver that watches it too.
    pub(crate) fn node_fd(&self) -> i32 {
        self.links.as_ref().map_or(self.fd, |l| l.fd())
    }

    /// The node was freed: wakes whoever waits for its fd, for good.
    pub(crate) fn close(&self) {
        let mut p = self.pending.lock();
        p.closed = true;
        p.sync(self.fd);
    }

    fn push(&self, reg: Arc<Reg>) {
        let mut p = self.pending.lock();
        p.regs.push_back(reg);
        if p.polls == 0 {
            p.sync(self.fd);
        }
    }

    /// Starts an `astranet_poll`: until the [`PollCall`] it returns drains,
    /// registrations are queued without an eventfd write.
    fn begin(&self) -> PollCall<'_> {
        self.pending.lock().polls += 1;
        PollCall { ready: self, drained: false }
    }
}

/// An `astranet_poll` in progress (see [`ReadySet::begin`]).
struct PollCall<'a> {
    ready: &'a ReadySet,
    drained: bool,
}

impl PollCall<'_> {
    /// Ends the call with its events: up to `events.len()`; returns how many.
    fn drain(mut self, events: &mut [astranet_event]) -> usize {
        self.drained = true;
        let mut p = self.ready.pending.lock();
        let n = take_events(&mut p.regs, events);
        p.end_poll(self.ready.fd);
        n
    }
}

impl Drop for PollCall<'_> {
    /// A call that did not get to its drain (a panic) leaves the fd as it should be.
    fn drop(&mut self) {
        if !self.drained {
            self.ready.pending.lock().end_poll(self.ready.fd);
        }
    }
}

/// Moves up to `events.len()` events of `regs` out; returns how many.
fn take_events(regs: &mut VecDeque<Arc<Reg>>, events: &mut [astranet_event]) -> usize {
    let mut n = 0;
    let mut again = Vec::new();
    while n < events.len() {
        let Some(reg) = regs.pop_front() else { break };
        let bits = reg.pending.swap(0, Ordering::AcqRel);
        reg.queued.store(false, Ordering::Release);
        // A wake between the swap and the store did not queue it: do it here, after
        // this call's events (a handle appears at most once per call).
        if reg.pending.load(Ordering::Acquire) != 0 && !reg.queued.swap(true, Ordering::AcqRel) {
            again.push(reg.clone());
        }
        if bits == 0 || reg.dead.load(Ordering::Acquire) {
            continue;
        }
        events[n] = astranet_event { userdata: reg.userdata.load(Ordering::Acquire) as *mut c_void, events: bits };
        n += 1;
    }
    regs.extend(again);
    n
}

impl Drop for ReadySet {
    fn drop(&mut self) {
        self.pending.get_mut().regs.clear();
        // SAFETY: our fd, closed once.
        unsafe { libc::close(self.fd) };
    }
}

/// What a blocking call checks while it waits: with `read_links_in_poll`, it drives the
/// node's links every millisecond, since no other thread need be polling.
pub(crate) struct DriveLinks<'a>(pub Option<&'a LinkDriver>);

impl Interrupt for DriveLinks<'_> {
    type Error = std::convert::Infallible;

    fn tick(&self) -> Option<std::time::Duration> {
        self.0.map(|_| std::time::Duration::from_millis(1))
    }

    fn check(&mut self) -> Result<(), Self::Error> {
        if let Some(links) = self.0 {
            links.run();
        }
        Ok(())
    }
}

/// The readiness registration of one stream or listener.
pub(crate) struct Reg {
    /// Weak: the queue holds registrations, so a strong reference would be a cycle.
    /// Once the node is gone, wakes are dropped.
    ready: Weak<ReadySet>,
    userdata: AtomicUsize,
    pending: AtomicU32,
    queued: AtomicBool,
    /// Set when the handle is closed: its events are withdrawn.
    dead: AtomicBool,
}

impl Reg {
    pub(crate) fn new(ready: &Arc<ReadySet>, userdata: usize) -> Arc<Reg> {
        Arc::new(Reg {
            ready: Arc::downgrade(ready),
            userdata: AtomicUsize::new(userdata),
            pending: AtomicU32::new(0),
            queued: AtomicBool::new(false),
            dead: AtomicBool::new(false),
        })
    }

    pub(crate) fn set_userdata(&self, u: usize) {
        self.userdata.store(u, Ordering::Release);
    }

    pub(crate) fn kill(&self) {
        self.dead.store(true, Ordering::Release);
    }

    pub(crate) fn fire(self: &Arc<Self>, bits: u32) {
        if self.dead.load(Ordering::Acquire) {
            return;
        }
        self.pending.fetch_or(bits, Ordering::AcqRel);
        if !self.queued.swap(true, Ordering::AcqRel) {
            if let Some(ready) = self.ready.upgrade() {
                ready.push(self.clone());
            }
        }
    }

    /// A waker that records the event bits `BITS` for this registration. It is the
    /// registration's `Arc` itself (its vtable says which bits): a stream's two wakers
    /// cost no allocation of their own, which with millions of streams is memory.
    pub(crate) fn waker<const BITS: u32>(self: &Arc<Self>) -> Waker {
        let data = Arc::into_raw(self.clone()).cast::<()>();
        // SAFETY: `data` is a strong reference to a `Reg` from `Arc::into_raw`, which
        // is what every function of the vtable takes it for.
        unsafe { Waker::from_raw(RawWaker::new(data, RegWaker::<BITS>::vtable())) }
    }
}

/// The vtable of the wakers of [`Reg::waker`]: the data pointer is an `Arc<Reg>`
/// turned into a raw pointer, and each waker owns one strong reference.
struct RegWaker<const BITS: u32>;

/// One static per kind of waker: a promoted constant could have one copy per codegen
/// unit, and `Waker::will_wake` compares vtable addresses.
static READABLE_VTABLE: RawWakerVTable = RegWaker::<ASTRANET_EVENT_READABLE>::VTABLE;
static WRITABLE_VTABLE: RawWakerVTable = RegWaker::<ASTRANET_EVENT_WRITABLE>::VTABLE;
static ACCEPTABLE_VTABLE: RawWakerVTable = RegWaker::<ASTRANET_EVENT_ACCEPTABLE>::VTABLE;

impl<const BITS: u32> RegWaker<BITS> {
    const VTABLE: RawWakerVTable = RawWakerVTable::new(Self::clone, Self::wake, Self::wake_by_ref, Self::drop);

    fn vtable() -> &'static RawWakerVTable {
        const { assert!(matches!(BITS, ASTRANET_EVENT_READABLE | ASTRANET_EVENT_WRITABLE | ASTRANET_EVENT_ACCEPTABLE)) };
        match BITS {
            ASTRANET_EVENT_READABLE => &READABLE_VTABLE,
            ASTRANET_EVENT_WRITABLE => &WRITABLE_VTABLE,
            _ => &ACCEPTABLE_VTABLE,
        }
    }

    unsafe fn clone(data: *const ()) -> RawWaker {
        // SAFETY (here and below): `data` came from `Arc::into_raw` of an `Arc<Reg>`,
        // and the waker owns a strong reference, so the `Reg` is alive.
        unsafe { Arc::increment_strong_count(data.cast::<Reg>()) };
        RawWaker::new(data, Self::vtable())
    }

    unsafe fn wake(data: *const ()) {
        // SAFETY: as in `clone`; this consumes the waker's reference.
        let reg = unsafe { Arc::from_raw(data.cast::<Reg>()) };
        reg.fire(BITS);
    }

    unsafe fn wake_by_ref(data: *const ()) {
        // SAFETY: as in `clone`; this borrows the waker's reference (not dropped).
        let reg = ManuallyDrop::new(unsafe { Arc::from_raw(data.cast::<Reg>()) });
        reg.fire(BITS);
    }

    unsafe fn drop(data: *const ()) {
        // SAFETY: as in `clone`; this gives the waker's reference back.
        drop(unsafe { Arc::from_raw(data.cast::<Reg>()) });
    }
}

/// Takes pending events without waiting: writes up to `capacity` of them to `events`
/// and their number to `*count` (0 when none is pending). Each stream or listener
/// appears at most once per call, with all its ready bits.
///
/// Events are edge-like: a registration gets an event only after a non-blocking call on
/// it returned `ASTRANET_AGAIN` (or after `astranet_dial_start`); then, after the event,
/// call it until it returns `ASTRANET_AGAIN` again. The node fd stays readable while
/// any event is pending, so a level-triggered `epoll` loop that calls `astranet_poll`
/// with a full buffer until it returns fewer than `capacity` events never misses one.
/// Events of a handle closed before the call are withdrawn; a call may then return 0.
/// With `read_links_in_poll`, it first reads (and with 2 writes) the node's links as
/// far as they go without blocking.
///
/// Returns `ASTRANET_OK`; `ASTRANET_ERR_INVALID_ARGUMENT` when `events` (with a non-zero
/// `capacity`) or `count` is NULL; `ASTRANET_ERR_BAD_HANDLE` for a node that is not
/// live. Thread-safety: any thread; concurrent calls share the events out.
#[no_mangle]
pub extern "C" fn astranet_poll(
    node: *mut crate::node::astranet_node,
    events: *mut astranet_event,
    capacity: usize,
    count: *mut usize,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let count = out(count, "count")?;
        let node = handles::get(node as usize, "node", handles::node)?;
        if capacity > 0 && events.is_null() {
            return Err(crate::error::null("events"));
        }
        let slice: &mut [astranet_event] = if capacity == 0 {
            &mut []
        } else {
            // SAFETY: the caller passes room for `capacity` events (documented). Every
            // element written is fully initialised; none is read.
            unsafe { std::slice::from_raw_parts_mut(events, capacity) }
        };
        let poll = node.ready.begin();
        if let Some(links) = &node.ready.links {
            links.run();
        }
        count.set(poll.drain(slice));
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// `astranet_poll` that first waits up to `timeout_ms` (negative: no limit) for an
/// event, with `poll(2)` on the node fd. For simple programs that have no event loop
/// of their own. Returns `ASTRANET_OK` with `*count` 0 when the time ran out.
/// `ASTRANET_ERR_BAD_HANDLE` once the node is freed, also in a call that was waiting
/// when another thread freed it. Errors as `astranet_poll`, checked before waiting
/// (`capacity` must be at least 1 here), plus `ASTRANET_ERR_IO` if `poll(2)` fails (not
/// EINTR, which is retried). Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_poll_wait(
    node: *mut crate::node::astranet_node,
    events: *mut astranet_event,
    capacity: usize,
    timeout_ms: i32,
    count: *mut usize,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        if count.is_null() {
            return Err(crate::error::null("count"));
        }
        if capacity == 0 {
            return Err(Failure::invalid("capacity is 0: no event could be returned"));
        }
        if events.is_null() {
            return Err(crate::error::null("events"));
        }
        let n = handles::get(node as usize, "node", handles::node)?;
        let deadline = astranet_embed::wait::millis(timeout_ms).map(|t| std::time::Instant::now() + t);
        loop {
            let wait = match deadline {
                None => -1,
                Some(d) => {
                    d.saturating_duration_since(std::time::Instant::now()).as_millis().min(i32::MAX as u128) as i32
                }
            };
            let mut pfd = libc::pollfd { fd: n.ready.node_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut pfd, 1, wait) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e.into());
            }
            if r == 0 {
                out(count, "count")?.set(0);
                return Ok(astranet_result::ASTRANET_OK);
            }
            let code = astranet_poll(node, events, capacity, count, err);
            // SAFETY: count is not NULL (checked above) and was written on success.
            if code != astranet_result::ASTRANET_OK || unsafe { *count } > 0 || wait == 0 {
                return Ok(code);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: i32) -> bool {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, 0) == 1 }
    }

    fn drain(ready: &ReadySet, cap: usize) -> Vec<(usize, u32)> {
        let mut ev = vec![astranet_event { userdata: std::ptr::null_mut(), events: 0 }; cap];
        let n = ready.begin().drain(&mut ev);
        ev[..n].iter().map(|e| (e.userdata as usize, e.events)).collect()
    }

    #[test]
    fn fd_is_readable_exactly_while_events_are_pending() {
        let ready = ReadySet::new(None).unwrap();
        let (a, b) = (Reg::new(&ready, 1), Reg::new(&ready, 2));
        assert!(!readable(ready.node_fd()));
        a.waker::<ASTRANET_EVENT_READABLE>().wake_by_ref();
        a.waker::<ASTRANET_EVENT_WRITABLE>().wake();
        b.fire(ASTRANET_EVENT_ACCEPTABLE);
        assert!(readable(ready.node_fd()));
        // One event per registration with all its bits; a partial drain stays readable.
        assert_eq!(drain(&ready, 1), vec![(1, ASTRANET_EVENT_READABLE | ASTRANET_EVENT_WRITABLE)]);
        assert!(readable(ready.node_fd()));
        assert_eq!(drain(&ready, 8), vec![(2, ASTRANET_EVENT_ACCEPTABLE)]);
        assert!(!readable(ready.node_fd()));
        assert!(drain(&ready, 8).is_empty());
    }

    #[test]
    fn wakes_during_a_poll_are_left_to_its_drain() {
        let ready = ReadySet::new(None).unwrap();
        let (a, b) = (Reg::new(&ready, 1), Reg::new(&ready, 2));
        let poll = ready.begin();
        a.fire(ASTRANET_EVENT_READABLE);
        b.fire(ASTRANET_EVENT_WRITABLE);
        assert!(!readable(ready.node_fd()), "no eventfd write while the poll runs");
        let mut ev = [astranet_event { userdata: std::ptr::null_mut(), events: 0 }; 1];
        assert_eq!(poll.drain(&mut ev), 1);
        assert!(readable(ready.node_fd()), "what the drain left is signalled");
        assert_eq!(drain(&ready, 8), vec![(2, ASTRANET_EVENT_WRITABLE)]);
        assert!(!readable(ready.node_fd()));
        // A poll that never drains (a panic) leaves the fd as the queue says.
        let poll = ready.begin();
        a.fire(ASTRANET_EVENT_READABLE);
        drop(poll);
        assert!(readable(ready.node_fd()));
        assert_eq!(drain(&ready, 8), vec![(1, ASTRANET_EVENT_READABLE)]);
        // With no poll running, a wake writes the eventfd at once.
        b.fire(ASTRANET_EVENT_WRITABLE);
        assert!(readable(ready.node_fd()));
    }

    #[test]
    fn wakers_share_the_registration_and_count_its_references() {
        let ready = ReadySet::new(None).unwrap();
        let a = Reg::new(&ready, 7);
        let read = a.waker::<ASTRANET_EVENT_READABLE>();
        let write = a.waker::<ASTRANET_EVENT_WRITABLE>();
        assert_eq!(Arc::strong_count(&a), 3);
        let copy = read.clone();
        assert!(copy.will_wake(&read));
        assert!(!write.will_wake(&read), "one registration, two kinds of waker");
        assert_eq!(Arc::strong_count(&a), 4);
        copy.wake(); // consumes its reference
        assert_eq!(Arc::strong_count(&a), 4, "the queued event holds one");
        write.wake_by_ref();
        assert_eq!(drain(&ready, 8), vec![(7, ASTRANET_EVENT_READABLE | ASTRANET_EVENT_WRITABLE)]);
        assert_eq!(Arc::strong_count(&a), 3);
        drop((read, write));
        assert_eq!(Arc::strong_count(&a), 1);
    }

    #[test]
    fn a_killed_registration_reports_nothing() {
        let ready = ReadySet::new(None).unwrap();
        let a = Reg::new(&ready, 1);
        a.fire(ASTRANET_EVENT_READABLE);
        a.kill();
        a.fire(ASTRANET_EVENT_WRITABLE);
        assert!(drain(&ready, 8).is_empty());
        assert!(!readable(ready.node_fd()));
    }

    #[test]
    fn wakes_after_the_node_is_gone_are_dropped() {
        let ready = ReadySet::new(None).unwrap();
        let a = Reg::new(&ready, 1);
        drop(ready);
        a.fire(ASTRANET_EVENT_READABLE);
    }
}
