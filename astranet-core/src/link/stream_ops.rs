//! Operations of one stream handle on its link's table: open, accept, read, write,
//! shut down, abort, release. Each is one short critical section; bytes are copied
//! straight between the caller's buffer and the link's queues.

use super::table::{Key, Slot};
use super::{Link, LinkState};
use crate::addr::{Addr, HostId};
use crate::error::Error;
use crate::proto::{Command, Fault, RstReason, StreamState, HEADER_LEN, MAX_PAYLOAD};
use std::io::{self, IoSlice};
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use tokio::io::ReadBuf;

/// Why a new stream could not be created on a link.
pub(crate) enum OpenError {
    /// The 4-tuple is in use: try another local port.
    KeyInUse,
    Failed(Error),
}

fn register(waker: &mut Option<std::task::Waker>, cx: &Context<'_>) {
    match waker {
        Some(w) if w.will_wake(cx.waker()) => {}
        _ => *waker = Some(cx.waker().clone()),
    }
}

impl Link {
    fn closed_error(&self, st: &LinkState) -> Option<Error> {
        st.closed.as_ref().map(|r| self.error_for(r))
    }

    fn fault_error(&self, fault: Fault, remote_host: u64) -> Error {
        match fault {
            Fault::Reset(r) => Error::Reset(r),
            Fault::Aborted => Error::Aborted,
            Fault::RouteLost => Error::LinkClosed {
                peer: HostId(remote_host).to_string(),
                reason: format!("the relay {} lost its route to the host", self.peer_name()),
            },
        }
    }

    /// Client side: creates the stream and sends DIAL.
    pub(crate) fn open_stream(&self, key: Key) -> Result<u32, OpenError> {
        let mut st = self.state.lock();
        if let Some(e) = self.closed_error(&st) {
            return Err(OpenError::Failed(e));
        }
        if st.table.contains(&key) {
            return Err(OpenError::KeyInUse);
        }
        let max = self.config.limits.max_streams_per_link;
        if st.table.len() >= max {
            return Err(OpenError::Failed(Error::LimitExceeded(format!(
                "{max} streams on the link to {}",
                self.peer_name()
            ))));
        }
        let id = st.table.insert(Slot::new(key, StreamState::dialing(self.is_v1()))).expect("key checked free");
        self.push_stream_frame(&mut st, &key, Command::Dial, &[]);
        self.kick(&mut st);
        self.counters.streams_opened.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Server side: creates the stream of an accepted DIAL and sends SYN. `None` if the
    /// link is gone or the dial is a duplicate.
    pub(crate) fn accept_stream(&self, key: Key) -> Option<u32> {
        let mut st = self.state.lock();
        if st.closed.is_some() || st.table.contains(&key) {
            return None;
        }
        if st.table.len() >= self.config.limits.max_streams_per_link {
            self.push_reset(&mut st, &key, RstReason::StreamLimit, false);
            self.kick(&mut st);
            return None;
        }
        let id = st.table.insert(Slot::new(key, StreamState::accepted(self.is_v1()))).expect("key checked free");
        self.push_stream_frame(&mut st, &key, Command::Syn, &[]);
        self.kick(&mut st);
        self.counters.streams_opened.fetch_add(1, Ordering::Relaxed);
        Some(id)
    }

    /// Completes when a dialed stream is established (SYN_ACK received).
    pub(crate) fn poll_established(&self, id: u32, cx: &Context<'_>) -> Poll<Result<(), Error>> {
        let mut st = self.state.lock();
        let closed = self.closed_error(&st);
        let slot = st.table.get_mut(id).expect("a handle's slot exists");
        if slot.state.is_established() {
            return Poll::Ready(Ok(()));
        }
        if let Some(fault) = slot.state.fault() {
            let addr = Addr::new(HostId(slot.key.remote_host), slot.key.remote_port);
            return Poll::Ready(Err(match fault {
                Fault::Reset(RstReason::Aborted) => Error::Reset(RstReason::Aborted),
                Fault::Reset(reason) => Error::Refused { addr, reason },
                Fault::Aborted => Error::Aborted,
                Fault::RouteLost => self.fault_error(fault, slot.key.remote_host),
            }));
        }
        if let Some(e) = closed {
            return Poll::Ready(Err(e));
        }
        register(&mut slot.read_waker, cx);
        Poll::Pending
    }

    pub(crate) fn poll_read(&self, id: u32, cx: &Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut st = self.state.lock();
        let LinkState { table, budget, .. } = &mut *st;
        let slot = table.get_mut(id).expect("a handle's slot exists");
        // A window grown past 64 KiB makes a Go sender send frames that large, which a Go
        // relay cannot carry: streams through a v1 relay keep the v1 window.
        let through_v1_relay = self.is_v1() && self.peer.get().is_some_and(|p| p.host.0 != slot.key.remote_host);
        let tuning = if through_v1_relay { self.fixed_window() } else { self.tuning() };
        if !slot.queue.is_empty() {
            let charged = slot.charge();
            let n = slot.queue.pop_into(buf.remaining(), |chunk| buf.put_slice(chunk));
            let key = slot.key;
            let peer_writing = !slot.state.peer_done_writing();
            let credit = slot.state.recv.on_consume(n as u32, || self.now_us() as u32, tuning, budget);
            let released = charged - slot.charge();
            st.buffered -= released;
            if peer_writing && st.closed.is_none() {
                if let Some(w) = credit.window {
                    self.push_stream_frame(&mut st, &key, Command::WndSize, &w.to_be_bytes());
                }
                if let Some(r) = credit.rewind {
                    self.push_stream_frame(&mut st, &key, Command::Rewind, &r.to_be_bytes());
                }
                self.kick(&mut st);
            }
            return Poll::Ready(Ok(()));
        }
        if let Some(fault) = slot.state.fault() {
            return Poll::Ready(Err(self.fault_error(fault, slot.key.remote_host).into()));
        }
        if slot.state.peer_done_writing() || slot.state.read_closed() || buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        register(&mut slot.read_waker, cx);
        if let Some(e) = self.closed_error(&st) {
            return Poll::Ready(Err(e.into()));
        }
        Poll::Pending
    }

    pub(crate) fn poll_write(&self, id: u32, cx: &Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let mut st = self.state.lock();
        if let Some(e) = self.closed_error(&st) {
            return Poll::Ready(Err(e.into()));
        }
        let queued = st.data.len();
        let limit = self.config.limits.link_write_queue;
        let LinkState { table, waiting_space, .. } = &mut *st;
        let slot = table.get_mut(id).expect("a handle's slot exists");
        if let Some(fault) = slot.state.fault() {
            return Poll::Ready(Err(self.fault_error(fault, slot.key.remote_host).into()));
        }
        if slot.state.write_closed() {
            return Poll::Ready(Err(Error::BrokenPipe.into()));
        }
        if slot.state.peer_forgot() {
            return Poll::Ready(Err(
                Error::PeerClosed("it closed the stream and forgot it (v1 close window over)").into()
            ));
        }
        if slot.state.peer_done_reading() {
            return Poll::Ready(Err(Error::PeerClosed("it closed its reading half (FIN1)").into()));
        }
        let credit = slot.state.write_credit() as usize;
        if credit == 0 {
            register(&mut slot.write_waker, cx);
            return Poll::Pending;
        }
        if queued >= limit {
            register(&mut slot.write_waker, cx);
            if !slot.waiting_space {
                slot.waiting_space = true;
                waiting_space.push_back(id);
            }
            return Poll::Pending;
        }
        let n = buf.len().min(credit).min((limit - queued).max(MAX_PAYLOAD));
        slot.state.send.on_send(n as u32);
        let key = slot.key;
        if !self.write_direct(&mut st, &key, &buf[..n]) {
            for chunk in buf[..n].chunks(MAX_PAYLOAD) {
                self.push_stream_frame(&mut st, &key, Command::Data, chunk);
            }
            self.kick(&mut st);
        }
        Poll::Ready(Ok(n))
    }

    /// Writes a small `payload` as one DATA frame straight to the socket when nothing is
    /// queued and the writer sleeps: no copy, no task switch. What the socket does not take
    /// goes to `partial`, which the writer sends before anything else. Returns false,
    /// having written nothing, when the frames must be queued instead.
    fn write_direct(&self, st: &mut LinkState, key: &Key, payload: &[u8]) -> bool {
        // Larger writes are better pipelined: the stream copies into the queue while the
        // writer task, on another core, is in the kernel with the previous batch.
        const MAX_DIRECT: usize = 16 * 1024;
        if payload.len() > MAX_DIRECT
            || !st.writer_idle
            || !st.partial.is_empty()
            || !st.ctrl.is_empty()
            || !st.data.is_empty()
        {
            return false;
        }
        let Some(tcp) = st.direct.clone() else { return false };
        let mut header = [0u8; HEADER_LEN];
        self.stream_header(key, Command::Data, payload.len()).put(&mut &mut header[..]);
        let Ok(written) = tcp.try_write_vectored(&[IoSlice::new(&header), IoSlice::new(payload)]) else {
            // Would block, or failed: the writer will wait for the socket or report it.
            return false;
        };
        self.wrote(written as u64);
        if written < HEADER_LEN + payload.len() {
            let (h, p) = (written.min(HEADER_LEN), written.saturating_sub(HEADER_LEN));
            st.partial.extend_from_slice(&header[h..]);
            st.partial.extend_from_slice(&payload[p..]);
            self.kick(st);
        }
        true
    }

    /// Half-close: FIN2 after everything written so far. Fails like a write would on a
    /// reset stream or a lost link.
    pub(crate) fn shutdown_write(&self, id: u32) -> io::Result<()> {
        let mut st = self.state.lock();
        if let Some(e) = self.closed_error(&st) {
            return Err(e.into());
        }
        let slot = st.table.get_mut(id).expect("a handle's slot exists");
        if let Some(fault) = slot.state.fault() {
            return Err(self.fault_error(fault, slot.key.remote_host).into());
        }
        let key = slot.key;
        if slot.state.shutdown_write() {
            self.push_stream_frame(&mut st, &key, Command::Fin2, &[]);
            self.kick(&mut st);
        }
        Ok(())
    }

    /// The handle is gone: finish the stream gracefully (FIN2 after queued data, FIN1
    /// since nobody reads any more), or give up a dial still in progress.
    pub(crate) fn release(&self, id: u32) {
        self.finish(id, false);
    }

    /// Abort: RST (FIN2 + FIN1 to a v1 peer); unread and unsent data is dropped.
    pub(crate) fn abort(&self, id: u32) {
        self.finish(id, true);
    }

    fn finish(&self, id: u32, abort: bool) {
        let mut st = self.state.lock();
        if st.closed.is_some() {
            st.free(id, &self.counters);
            return;
        }
        let linger_ms = u64::try_from(self.config.linger.as_millis()).unwrap_or(u64::MAX);
        let linger_until = self.coarse_ms().saturating_add(linger_ms);
        let slot = st.table.get_mut(id).expect("a handle's slot exists");
        slot.has_handle = false;
        let charged = slot.charge();
        slot.queue.clear();
        slot.read_waker = None;
        slot.write_waker = None;
        let key = slot.key;
        let mut frames: [Option<Command>; 2] = [None, None];
        let mut reset = None;
        let was_dialing = slot.state.is_dialing();
        // Once our ACK went out, the server counts the stream as open.
        let peer_opened = !was_dialing || slot.state.ack_sent();
        if abort || was_dialing {
            if slot.state.abort() {
                reset = Some(peer_opened);
            }
        } else {
            if slot.state.shutdown_write() {
                frames[0] = Some(Command::Fin2);
            }
            if slot.state.shutdown_read() {
                frames[1] = Some(Command::Fin1);
            }
        }
        let peer_gone = slot.state.peer_gone();
        st.buffered -= charged - slot.charge();
        if let Some(established) = reset {
            self.push_reset(&mut st, &key, RstReason::Aborted, established);
        }
        for cmd in frames.into_iter().flatten() {
            self.push_stream_frame(&mut st, &key, cmd, &[]);
        }
        if peer_gone {
            st.free(id, &self.counters);
        } else {
            st.linger.push_back((id, linger_until));
        }
        self.kick(&mut st);
    }

    /// (local port, remote host, remote port) of a stream.
    pub(crate) fn key_of(&self, id: u32) -> Key {
        self.state.lock().table.get(id).expect("a handle's slot exists").key
    }
}
