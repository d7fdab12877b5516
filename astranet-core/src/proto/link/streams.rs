//! Operations of the streams on a link, as their handles call them: open, accept,
//! read, write, shut down, release, abort. Each is one short step of the state machine;
//! bytes go straight between the caller's buffer and the link's queues.

use super::table::{Slot, StreamId, StreamKey};
use super::{CloseReason, Link, Phase, Policy};
use crate::proto::flow::{Credit, Tuning, WindowBudget, INITIAL_WINDOW};
use crate::proto::frame::{Command, RstReason, HEADER_LEN, MAX_PAYLOAD};
use crate::proto::recv::Recv;
use crate::proto::stream::{Fault, PeerReading, StreamState};
use bytes::Bytes;
use std::sync::atomic::Ordering;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// Why a stream could not be opened on a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpenError {
    /// The key is in use: try another local port.
    KeyInUse,
    /// The link carries as many streams as it allows.
    Limit(usize),
    /// The link is closed.
    Closed(CloseReason),
}

/// Why a stream operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StreamError {
    /// The link went down.
    LinkClosed(CloseReason),
    /// The dial was refused by the remote node.
    Refused(RstReason),
    /// The peer reset the stream.
    Reset(RstReason),
    /// The stream was aborted here.
    Aborted,
    /// A relay lost its route to the remote host.
    RouteLost,
    /// The application shut the writing half down.
    WriteClosed,
    /// No data moved on the stream for this long (its idle timeout): it was reset.
    IdleTimeout(Duration),
    /// A write waited this long for room (its write timeout); the stream is intact.
    WriteTimeout(Duration),
    /// The dial was not answered within this timeout: it was given up.
    DialTimeout(Duration),
    /// The peer stopped reading: it said so (FIN1), or it is a v1 node that forgot the
    /// stream once its close window was over.
    PeerNotReading(PeerReading),
}

/// Writes a frame (header, payload) straight to the socket without blocking; says how
/// many bytes the socket took (`None`: none). See [`Link::poll_write`].
pub type DirectWrite<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Option<usize>;

/// The queue space a writer woken for space is counted to take. A writer rarely
/// stops at one frame (it writes its whole buffer as far as room and window allow):
/// with one woken per frame's room, 1,000 Go writers sending 8,000 buffers of
/// 128 KiB found the queue full 36,000 times, each costing a thread wake-up and a
/// call; at four frames each, about 11,000 times.
const WAKE_SHARE: usize = 4 * MAX_PAYLOAD;

/// How long an idle writer lets a round of writers woken for space go without writing
/// before it wakes the next (see [`Link::recheck_space_later`]).
const SPACE_RECHECK: Duration = Duration::from_millis(1);

/// Writes up to this size go straight to the socket when nothing is queued and the
/// writer sleeps; larger ones are better pipelined (the stream copies into the queue
/// while the writer task, on another core, is in the kernel with the previous batch).
const MAX_DIRECT: usize = 16 * 1024;

fn register(waker: &mut Option<Waker>, new: &Waker) {
    match waker {
        Some(w) if w.will_wake(new) => {}
        _ => *waker = Some(new.clone()),
    }
}

/// The error of a stream that failed with `fault` (`deadlines` tell the idle timeout
/// of stream `id`).
fn fault_error(fault: Fault, deadlines: &super::deadlines::Deadlines, id: StreamId) -> StreamError {
    match fault {
        Fault::Reset(r) => StreamError::Reset(r),
        Fault::Aborted => StreamError::Aborted,
        Fault::RouteLost => StreamError::RouteLost,
        Fault::TimedOut => StreamError::IdleTimeout(deadlines.idle(id)),
        Fault::DialTimedOut => StreamError::DialTimeout(deadlines.dial_timeout(id)),
    }
}

impl Link {
    fn closed_error(&self) -> Option<StreamError> {
        match &self.phase {
            Phase::Closed(r) => Some(StreamError::LinkClosed(r.clone())),
            _ => None,
        }
    }

    fn slot(&mut self, id: StreamId) -> &mut Slot {
        self.streams.get_mut(id).expect("a handle's slot exists")
    }

    /// The key of a stream that has a handle.
    pub fn stream_key(&self, id: StreamId) -> StreamKey {
        self.streams.get(id).expect("a handle's slot exists").key
    }

    /// Client side: creates the stream `key` and sends DIAL.
    pub fn open_stream(&mut self, key: StreamKey, now: Instant) -> Result<StreamId, OpenError> {
        if let Phase::Closed(r) = &self.phase {
            return Err(OpenError::Closed(r.clone()));
        }
        if self.streams.contains(&key) {
            return Err(OpenError::KeyInUse);
        }
        if self.streams.len() >= self.cfg.max_streams {
            return Err(OpenError::Limit(self.cfg.max_streams));
        }
        let state = StreamState::dialing(self.policy().streams_are_v1());
        let id = self.streams.insert(Slot::new(key, state)).expect("key checked free");
        self.push_stream_frame(&key, Command::Dial, &[]);
        self.counters.streams_opened.fetch_add(1, Ordering::Relaxed);
        self.default_timeouts(id, now);
        Ok(id)
    }

    /// Server side: creates the stream of an accepted DIAL and sends SYN. `Err(None)`
    /// when the link is gone or the dial is a duplicate; `Err(Some(reason))` when it
    /// was refused (and the refusal queued).
    pub fn accept_stream(&mut self, key: StreamKey, now: Instant) -> Result<StreamId, Option<RstReason>> {
        if !self.is_open() || self.streams.contains(&key) {
            return Err(None);
        }
        if self.streams.len() >= self.cfg.max_streams {
            self.refuse_dial(&key, RstReason::StreamLimit);
            return Err(Some(RstReason::StreamLimit));
        }
        let state = StreamState::accepted(self.policy().streams_are_v1());
        let id = self.streams.insert(Slot::new(key, state)).expect("key checked free");
        self.push_stream_frame(&key, Command::Syn, &[]);
        self.counters.streams_opened.fetch_add(1, Ordering::Relaxed);
        self.default_timeouts(id, now);
        Ok(id)
    }

    /// Completes when a dialed stream is established (SYN_ACK received). The waker
    /// shares its place with a reader's: wait for one or the other, not both at once.
    pub fn poll_established(&mut self, id: StreamId, waker: &Waker) -> Poll<Result<(), StreamError>> {
        let closed = self.closed_error();
        let slot = self.slot(id);
        // A SYN_ACK late for a dial given up does not make it a connection.
        if slot.state.is_established() && slot.state.fault() != Some(Fault::DialTimedOut) {
            return Poll::Ready(Ok(()));
        }
        if let Some(fault) = slot.state.fault() {
            return Poll::Ready(Err(match fault {
                Fault::Reset(RstReason::Aborted) => StreamError::Reset(RstReason::Aborted),
                Fault::Reset(reason) => StreamError::Refused(reason),
                fault => fault_error(fault, &self.deadlines, id),
            }));
        }
        if let Some(e) = closed {
            return Poll::Ready(Err(e));
        }
        register(&mut slot.read_waker, waker);
        Poll::Pending
    }

    /// Flow-control tuning of a stream, whose reader asks for `min_window` (see
    /// [`Tuning::min_window`]; the link's `min_stream_window` if larger). A window grown
    /// past 64 KiB makes a Go sender send frames that large, which a Go relay cannot
    /// carry: streams through a v1 relay keep the v1 window.
    fn tuning(&self, key: &StreamKey, min_window: u32) -> Tuning {
        let policy = self.policy();
        let through_v1_relay = policy == Policy::V1 && self.peer() != Some(key.remote_host);
        let eager = policy.streams_are_v1();
        let max_window = if through_v1_relay { INITIAL_WINDOW } else { self.cfg.max_stream_window };
        Tuning { max_window, min_window: min_window.max(self.cfg.min_stream_window), eager }
    }

    /// Reads up to `max` bytes, handing them to `put`: `Ready(Ok(0))` is the end of the
    /// stream (or `max` 0). Credit for what was read is queued for the peer; a reader
    /// that asks for a window of `min_window` bytes (0: none) gets it with the credit,
    /// within the link's limits (see [`Tuning::min_window`]).
    pub fn poll_read(
        &mut self,
        id: StreamId,
        waker: &Waker,
        max: usize,
        min_window: u32,
        put: impl FnMut(&[u8]),
        now: Instant,
    ) -> Poll<Result<usize, StreamError>> {
        self.poll_take(id, waker, max, min_window, now, |recv, now_us, tuning, budget| {
            recv.read(max, put, now_us, tuning, budget)
        })
    }

    /// Reads up to `max` bytes of the next payload as they are, without copying: an
    /// empty chunk is the end of the stream (or `max` 0). Credit and `min_window` as
    /// for [`Link::poll_read`].
    pub fn poll_read_chunk(
        &mut self,
        id: StreamId,
        waker: &Waker,
        max: usize,
        min_window: u32,
        now: Instant,
    ) -> Poll<Result<Bytes, StreamError>> {
        let mut chunk = Bytes::new();
        let taken = self.poll_take(id, waker, max, min_window, now, |recv, now_us, tuning, budget| {
            let (bytes, credit) = recv.read_chunk(max, now_us, tuning, budget);
            let n = bytes.len();
            chunk = bytes;
            (n, credit)
        });
        taken.map_ok(|_| chunk)
    }

    /// What reads share: `take` consumes from the stream's received bytes if there are
    /// any (and the credit it returns is queued), else the end of the stream, its
    /// error, or `Pending` with `waker` registered.
    fn poll_take(
        &mut self,
        id: StreamId,
        waker: &Waker,
        max: usize,
        min_window: u32,
        now: Instant,
        take: impl FnOnce(&mut Recv, &dyn Fn() -> u32, Tuning, &mut WindowBudget) -> (usize, Credit),
    ) -> Poll<Result<usize, StreamError>> {
        let key = self.stream_key(id);
        let tuning = self.tuning(&key, min_window);
        let epoch = self.timers.epoch;
        let open = self.is_open();
        let Link { streams, budget, buffered, .. } = self;
        let slot = streams.get_mut(id).expect("a handle's slot exists");
        if !slot.state.recv.is_empty() {
            let before = slot.state.recv.charge();
            let now_us = || now.saturating_duration_since(epoch).as_micros() as u32;
            let (n, credit) = take(&mut slot.state.recv, &now_us, tuning, budget);
            *buffered -= before - slot.state.recv.charge();
            // A peer that finished writing needs no credit.
            if !slot.state.peer_done_writing() && open {
                if let Some(w) = credit.window {
                    self.push_stream_frame(&key, Command::WndSize, &w.to_be_bytes());
                }
                if let Some(r) = credit.rewind {
                    self.push_stream_frame(&key, Command::Rewind, &r.to_be_bytes());
                }
            }
            self.deadlines.touch(id, now);
            return Poll::Ready(Ok(n));
        }
        if let Some(fault) = slot.state.fault() {
            return Poll::Ready(Err(fault_error(fault, &self.deadlines, id)));
        }
        if slot.state.peer_done_writing() || slot.state.read_closed() || max == 0 {
            return Poll::Ready(Ok(0));
        }
        register(&mut slot.read_waker, waker);
        match self.closed_error() {
            Some(e) => Poll::Ready(Err(e)),
            None => Poll::Pending,
        }
    }

    /// Writes up to `data.len()` bytes as the peer's window and the link's write queue
    /// allow; `Pending` (waker registered) when neither has room. When nothing is
    /// queued and the writer sleeps, a small write is offered to `direct`, which writes
    /// the frame (header, payload) straight to the socket without blocking and says how
    /// many bytes it took (`None`: none, the frame is queued instead).
    pub fn poll_write(
        &mut self,
        id: StreamId,
        waker: &Waker,
        data: &[u8],
        direct: Option<DirectWrite<'_>>,
        now: Instant,
    ) -> Poll<Result<usize, StreamError>> {
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if let Some(e) = self.closed_error() {
            return Poll::Ready(Err(e));
        }
        if let Err(e) = self.check_write_timeout(id) {
            return Poll::Ready(Err(e));
        }
        let queued = self.out.data.len();
        let limit = self.cfg.write_queue;
        let Link { streams, waiting_space, .. } = self;
        let slot = streams.get_mut(id).expect("a handle's slot exists");
        if let Some(fault) = slot.state.fault() {
            return Poll::Ready(Err(fault_error(fault, &self.deadlines, id)));
        }
        if slot.state.write_closed() {
            return Poll::Ready(Err(StreamError::WriteClosed));
        }
        if slot.state.peer_done_reading() {
            return Poll::Ready(Err(StreamError::PeerNotReading(slot.state.peer_reading())));
        }
        let credit = slot.state.write_credit() as usize;
        if credit == 0 || queued >= limit {
            register(&mut slot.write_waker, waker);
            if credit > 0 {
                waiting_space.push(id);
            }
            self.write_waits(id, true, now);
            return Poll::Pending;
        }
        let n = data.len().min(credit).min((limit - queued).max(MAX_PAYLOAD));
        slot.state.send.on_send(n as u32);
        let key = slot.key;
        self.write_waits(id, false, now);
        let payload = &data[..n];
        if let Some(direct) = direct.filter(|_| n <= MAX_DIRECT && self.writer_is_idle()) {
            let mut header = [0u8; HEADER_LEN];
            self.stream_header(&key, Command::Data, n).put(&mut &mut header[..]);
            if let Some(written) = direct(&header, payload) {
                self.on_written(now, written);
                if written < HEADER_LEN + n {
                    let (h, p) = (written.min(HEADER_LEN), written.saturating_sub(HEADER_LEN));
                    self.out.partial.extend_from_slice(&header[h..]);
                    self.out.partial.extend_from_slice(&payload[p..]);
                }
                return Poll::Ready(Ok(n));
            }
        }
        for chunk in payload.chunks(MAX_PAYLOAD) {
            self.push_stream_frame(&key, Command::Data, chunk);
        }
        Poll::Ready(Ok(n))
    }

    /// Whether a stream may write straight to the socket: nothing is queued (so nothing
    /// can be overtaken) and the writer sleeps (so nothing is being written).
    fn writer_is_idle(&self) -> bool {
        self.out.writer_idle && !self.out.has_output()
    }

    /// Half-close: FIN2 after everything written so far. Fails like a write would on a
    /// reset stream or a lost link.
    pub fn shutdown_write(&mut self, id: StreamId) -> Result<(), StreamError> {
        if let Some(e) = self.closed_error() {
            return Err(e);
        }
        let slot = self.slot(id);
        if let Some(fault) = slot.state.fault() {
            return Err(fault_error(fault, &self.deadlines, id));
        }
        let key = slot.key;
        if slot.state.shutdown_write() {
            self.push_stream_frame(&key, Command::Fin2, &[]);
        }
        Ok(())
    }

    /// The handle is gone: finish the stream gracefully (FIN2 after what was written,
    /// FIN1 since nobody reads any more), or give up a dial still in progress.
    pub fn release(&mut self, id: StreamId, now: Instant) {
        self.finish(id, false, now);
    }

    /// Abort: RST (or the v1 close); unread and unsent data is dropped.
    pub fn abort(&mut self, id: StreamId, now: Instant) {
        self.finish(id, true, now);
    }

    fn finish(&mut self, id: StreamId, abort: bool, now: Instant) {
        if !self.is_open() {
            self.free(id);
            return;
        }
        let policy = self.policy();
        let slot = self.slot(id);
        slot.read_waker = None;
        slot.write_waker = None;
        slot.state.release_handle();
        let before = slot.state.recv.charge();
        let key = slot.key;
        let was_dialing = slot.state.is_dialing();
        // A timeout sent RST already (to a peer of this project: not a v1 one).
        let reset_before = slot.state.reset_sent() && !slot.state.is_v1();
        // Once our ACK went out, the server counts the stream as open.
        let peer_has_stream = !was_dialing || slot.state.ack_sent();
        let mut frames: &[Command] = &[];
        let (mut fin2, mut fin1) = (false, false);
        if abort || was_dialing {
            if slot.state.abort() {
                frames = policy.abort_frames(peer_has_stream);
            }
        } else {
            fin2 = slot.state.shutdown_write();
            fin1 = slot.state.shutdown_read();
        }
        // After RST a peer of this project sends nothing that needs the slot: late
        // frames for an unknown stream are dropped, a late SYN is refused. So a reset
        // stream (an abandoned dial above all) gives back its place in the stream limit
        // at once. A v1 peer is told by FINs, and the slot lingers to answer its SYN.
        let forget_now =
            slot.state.peer_gone() || ((reset_before || frames.contains(&Command::Rst)) && !slot.state.is_v1());
        self.buffered -= before - slot.state.recv.charge();
        self.push_abort(&key, frames, was_dialing);
        if fin2 {
            self.push_stream_frame(&key, Command::Fin2, &[]);
        }
        if fin1 {
            self.push_stream_frame(&key, Command::Fin1, &[]);
        }
        if forget_now {
            self.free(id);
        } else {
            self.linger(id, key, now);
        }
    }

    /// The dial of stream `id` ran out of time: it is given up at once, as when its
    /// handle is released (RST ahead of the next DIALs; a v1 peer is told nothing), and
    /// its calls fail with the timeout. The handle stays the application's.
    pub(super) fn dial_timed_out(&mut self, id: StreamId, wakers: &mut Vec<Waker>) {
        let policy = self.policy();
        let slot = self.slot(id);
        slot.take_wakers(wakers);
        let key = slot.key;
        let peer_has_stream = slot.state.ack_sent();
        if slot.state.dial_timed_out() && self.is_open() {
            self.push_abort(&key, policy.abort_frames(peer_has_stream), true);
        }
    }

    /// Queues the abort `frames` (RST, or FIN2 + FIN1 to a v1 peer) of stream `key`.
    /// A dial given up has no data queued: its RST goes with the DIALs, so that a DIAL
    /// queued next (a retry) cannot overtake it and find the listener's backlog still
    /// holding the one given up.
    fn push_abort(&mut self, key: &StreamKey, frames: &[Command], dialing: bool) {
        for &cmd in frames {
            let payload: &[u8] = if cmd == Command::Rst { &[RstReason::Aborted as u8] } else { &[] };
            if dialing && cmd == Command::Rst {
                let h = self.stream_header(key, cmd, payload.len());
                self.out.push_ahead_of_data(h, payload);
            } else {
                self.push_stream_frame(key, cmd, payload);
            }
        }
    }

    /// The stream's idle timeout expired: it is reset (RST, or FIN2 + FIN1 to a v1
    /// peer) and its reads and writes fail; the handle stays the application's.
    pub(super) fn time_out(&mut self, id: StreamId, wakers: &mut Vec<Waker>) {
        let policy = self.policy();
        let slot = self.slot(id);
        let before = slot.state.recv.charge();
        let peer_has_stream = !slot.state.is_dialing() || slot.state.ack_sent();
        let send = slot.state.time_out();
        let key = slot.key;
        slot.take_wakers(wakers);
        self.buffered -= before - slot.state.recv.charge();
        if send {
            self.push_abort(&key, policy.abort_frames(peer_has_stream), false);
        }
    }

    /// Forgets a stream, giving back its window budget and receive charge.
    pub(super) fn free(&mut self, id: StreamId) {
        let slot = self.streams.remove(id);
        // The id may be reused: it must not stay waiting.
        self.waiting_space.remove(id);
        self.deadlines.remove(id);
        self.budget.used = self.budget.used.saturating_sub(slot.state.recv.window.extra());
        self.buffered -= slot.state.recv.charge();
        self.counters.streams_closed.fetch_add(1, Ordering::Relaxed);
    }

    /// Wakes writers waiting for queue space, oldest first, as many as can fill `room`
    /// at [`WAKE_SHARE`] each (one already woken otherwise counts for nothing).
    pub(super) fn wake_waiting_space(&mut self, mut room: usize, wakers: &mut Vec<Waker>) {
        while room > 0 {
            let Some(id) = self.waiting_space.pop() else { break };
            if let Some(waker) = self.streams.get_mut(id).and_then(|slot| slot.write_waker.take()) {
                wakers.push(waker);
                room = room.saturating_sub(WAKE_SHARE);
            }
        }
    }

    /// The writer idles while writers still wait for space: a round woken for the
    /// empty queue may not write at all (an application need not act on readiness),
    /// and then nothing else would wake the next one. [`Link::handle_timeout`] does,
    /// [`SPACE_RECHECK`] after the last write, and every [`SPACE_RECHECK`] while it
    /// stays so.
    pub(super) fn recheck_space_later(&mut self) {
        if !self.waiting_space.is_empty() && self.timers.space_recheck.is_none() {
            self.timers.space_recheck = Some(self.timers.last_tx + SPACE_RECHECK);
            self.deadlines.rearm();
        }
    }

    /// The check [`Link::recheck_space_later`] arranged, due at `now`.
    pub(super) fn recheck_space(&mut self, now: Instant, wakers: &mut Vec<Waker>) {
        if self.timers.space_recheck.is_some_and(|at| now >= at) {
            self.timers.space_recheck = None;
            // A busy writer wakes the next round after each batch.
            if self.writer_is_idle() {
                self.wake_waiting_space(self.cfg.write_queue, wakers);
                if !self.waiting_space.is_empty() {
                    self.timers.space_recheck = Some(now + SPACE_RECHECK);
                }
            }
        }
    }

    /// How long a v1 peer's close window lasts as this side counts it: the peer's
    /// window started when it closed, before its FIN2 got here, and what we write takes
    /// a while to reach it, so stop a little early.
    pub(super) fn close_window(&self) -> Duration {
        const MARGIN: Duration = Duration::from_millis(200);
        let rtt = Duration::from_micros(self.timers.rtt_us as u64);
        crate::proto::V1_CLOSE_WINDOW.saturating_sub(MARGIN + 2 * rtt)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{linked, pump};
    use super::super::{Batch, Event, LinkConfig, StreamKey, Transmit};
    use super::{StreamError, MAX_PAYLOAD, SPACE_RECHECK};
    use crate::addr::HostId;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::task::{Poll, Wake, Waker};
    use std::time::{Duration, Instant};

    #[derive(Default)]
    struct Flag(AtomicBool);

    impl Wake for Flag {
        fn wake(self: Arc<Self>) {
            self.0.store(true, Ordering::Release);
        }
    }

    impl Flag {
        fn woken(&self) -> bool {
            self.0.load(Ordering::Acquire)
        }
    }

    /// Writers waiting for space are woken a round at a time (as many as the queue
    /// holds at WAKE_SHARE each, here one), not all at once; a round that does not
    /// write still lets the next one go, after SPACE_RECHECK.
    #[test]
    fn waiting_writers_are_woken_a_round_at_a_time_and_none_is_forgotten() {
        let t0 = Instant::now();
        let cfg = LinkConfig { write_queue: MAX_PAYLOAD, ..LinkConfig::default() };
        let (mut a, mut b) = linked(cfg, t0);
        let mut ids = Vec::new();
        for port in 10..14 {
            let key = StreamKey { local_port: port, remote_port: 80, remote_host: HostId(2) };
            ids.push(a.open_stream(key, t0).unwrap());
        }
        // Back and forth until the four dials are established.
        for _ in 0..2 {
            pump(&mut a, &mut b, t0);
            while let Some(e) = b.poll_event() {
                if let Event::Dial(k) = e {
                    b.accept_stream(k, t0).unwrap();
                }
            }
            pump(&mut b, &mut a, t0);
        }
        assert!(ids.iter().all(|&id| a.poll_established(id, Waker::noop()).is_ready()));
        // The first fills the queue; the other three wait for space.
        let data = vec![7u8; MAX_PAYLOAD];
        let flags: Vec<Arc<Flag>> = ids.iter().map(|_| Arc::default()).collect();
        let poll =
            |a: &mut super::Link, i: usize| a.poll_write(ids[i], &Waker::from(flags[i].clone()), &data, None, t0);
        let first = poll(&mut a, 0);
        assert!(matches!(first, Poll::Ready(Ok(n)) if n == MAX_PAYLOAD), "{first:?}");
        for i in 1..4 {
            assert!(poll(&mut a, i).is_pending());
        }
        let (mut batch, mut wakers) = (Batch::default(), Vec::new());
        let mut transmit = |a: &mut super::Link, batch: &mut Batch| {
            let t = a.poll_transmit(batch, &mut wakers);
            wakers.drain(..).for_each(Waker::wake);
            batch.clear();
            t
        };
        // Taking the queue wakes one round: one writer.
        assert_eq!(transmit(&mut a, &mut batch), Transmit::Write);
        a.on_written(t0, MAX_PAYLOAD);
        let woken = || flags.iter().map(|f| f.woken()).collect::<Vec<_>>();
        assert_eq!(woken(), [false, true, false, false]);
        // The writer idles (the woken one did not write): the next round only.
        assert_eq!(transmit(&mut a, &mut batch), Transmit::Idle);
        assert_eq!(woken(), [false, true, true, false]);
        // Nobody writes: the last waiter is woken once SPACE_RECHECK has passed.
        let due = a.poll_timeout().unwrap();
        assert!(due <= t0 + SPACE_RECHECK, "recheck due at {:?}", due - t0);
        let mut wakers = Vec::new();
        a.handle_timeout(due, &mut wakers);
        wakers.into_iter().for_each(Waker::wake);
        assert_eq!(woken(), [false, true, true, true]);
    }

    /// A dial given up and a retry queued before the writer ran: the peer hears of the
    /// first one's end before the second arrives (else a backlog of one refuses it).
    #[test]
    fn a_given_up_dial_is_cancelled_before_the_next_dial_arrives() {
        let t0 = Instant::now();
        let (mut a, mut b) = linked(LinkConfig::default(), t0);
        let key = |port| StreamKey { local_port: port, remote_port: 80, remote_host: HostId(2) };
        let first = a.open_stream(key(10), t0).unwrap();
        pump(&mut a, &mut b, t0);
        a.release(first, t0);
        a.open_stream(key(11), t0).unwrap();
        pump(&mut a, &mut b, t0);
        let events: Vec<_> = std::iter::from_fn(|| b.poll_event())
            .filter_map(|e| match e {
                Event::Dial(k) => Some(("dial", k.remote_port)),
                Event::CancelDial(k) => Some(("cancel", k.remote_port)),
                _ => None,
            })
            .collect();
        assert_eq!(events, [("dial", 10), ("cancel", 10), ("dial", 11)]);
    }

    /// The link's timer ends a dial nobody answered (as a Go peer never does): its
    /// waiter is woken, it fails with the timeout, and releasing it tells the peer. A
    /// dial answered in time is left alone, also when its slot is reused.
    #[test]
    fn a_dial_unanswered_at_its_deadline_times_out() {
        let t0 = Instant::now();
        let (mut a, mut b) = linked(LinkConfig::default(), t0);
        let key = |port| StreamKey { local_port: port, remote_port: 80, remote_host: HostId(2) };
        let timeout = Duration::from_millis(300);
        let unanswered = a.open_stream(key(10), t0).unwrap();
        a.set_dial_deadline(unanswered, t0 + timeout, timeout);
        assert!(a.take_timer_wakeup(), "an earlier deadline wakes the timer");
        let flag = Arc::new(Flag::default());
        assert!(a.poll_established(unanswered, &Waker::from(flag.clone())).is_pending());
        pump(&mut a, &mut b, t0);
        let dial = |b: &mut super::Link| {
            std::iter::from_fn(|| b.poll_event()).find_map(|e| match e {
                Event::Dial(k) => Some(k),
                _ => None,
            })
        };
        assert_eq!(dial(&mut b).map(|k| k.remote_port), Some(10));

        // Not yet due: nothing happens.
        let mut wakers = Vec::new();
        assert_eq!(a.poll_timeout().map(|due| due <= t0 + timeout), Some(true));
        a.handle_timeout(t0 + timeout / 2, &mut wakers);
        assert!(wakers.is_empty());
        a.handle_timeout(t0 + timeout, &mut wakers);
        wakers.into_iter().for_each(Waker::wake);
        assert!(flag.woken());
        let err = a.poll_established(unanswered, Waker::noop());
        assert_eq!(err, Poll::Ready(Err(StreamError::DialTimeout(timeout))));
        let read = a.poll_read(unanswered, Waker::noop(), 10, 0, |_| {}, t0 + timeout);
        assert_eq!(read, Poll::Ready(Err(StreamError::DialTimeout(timeout))));
        // The peer hears at once that the dial was given up, and only once.
        let cancels = |a: &mut super::Link, b: &mut super::Link| {
            pump(a, b, t0 + timeout);
            std::iter::from_fn(|| b.poll_event()).filter(|e| matches!(e, Event::CancelDial(_))).count()
        };
        assert_eq!(cancels(&mut a, &mut b), 1);
        a.release(unanswered, t0 + timeout);
        assert_eq!(cancels(&mut a, &mut b), 0);

        // A dial answered in time, in the slot the first one left, is not ended by the
        // first one's deadline (still queued) nor by its own.
        let answered = a.open_stream(key(11), t0).unwrap();
        a.set_dial_deadline(answered, t0 + timeout, timeout);
        pump(&mut a, &mut b, t0);
        let second = dial(&mut b).expect("the second DIAL arrives");
        let id = b.accept_stream(second, t0).unwrap();
        for _ in 0..3 {
            pump(&mut b, &mut a, t0);
            pump(&mut a, &mut b, t0);
        }
        assert_eq!(a.poll_established(answered, Waker::noop()), Poll::Ready(Ok(())));
        assert!(b.poll_established(id, Waker::noop()).is_ready());
        a.handle_timeout(t0 + 2 * timeout, &mut Vec::new());
        let write = a.poll_write(answered, Waker::noop(), b"still open", None, t0 + 2 * timeout);
        assert_eq!(write, Poll::Ready(Ok(10)));
    }

    /// The queue of dial deadlines keeps about twice the dials under way, however many
    /// dials were answered before their deadline.
    #[test]
    fn answered_dials_do_not_pile_up_in_the_deadline_queue() {
        let t0 = Instant::now();
        let (mut a, mut b) = linked(LinkConfig::default(), t0);
        let timeout = Duration::from_secs(30);
        for port in 0..2_000 {
            let key = StreamKey { local_port: port, remote_port: 80, remote_host: HostId(2) };
            let id = a.open_stream(key, t0).unwrap();
            a.set_dial_deadline(id, t0 + timeout, timeout);
            pump(&mut a, &mut b, t0);
            let dial = std::iter::from_fn(|| b.poll_event()).find_map(|e| match e {
                Event::Dial(k) => Some(k),
                _ => None,
            });
            let accepted = b.accept_stream(dial.expect("the DIAL arrives"), t0).unwrap();
            for _ in 0..2 {
                pump(&mut b, &mut a, t0);
                pump(&mut a, &mut b, t0);
            }
            assert_eq!(a.poll_established(id, Waker::noop()), Poll::Ready(Ok(())));
            a.release(id, t0);
            b.release(accepted, t0);
            pump(&mut a, &mut b, t0);
            pump(&mut b, &mut a, t0);
        }
        assert!(a.deadlines.dials_queued() <= 2 + 64, "{} deadlines queued", a.deadlines.dials_queued());
    }
}
