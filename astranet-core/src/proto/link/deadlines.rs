//! Timeouts the application sets on a stream: an idle timeout (the stream is reset when
//! no data moved either way for that long) and a write timeout (a write that waits that
//! long for the peer's window or the link's queue fails with a timeout; the stream stays
//! usable, as after a deadline of Go's `net.Conn`). Both are off by default and cost
//! nothing until set: they live beside the stream table, for the streams that have one,
//! with one queue of deadlines that is checked lazily (activity only moves a time stamp).
//!
//! And the deadline of a dial: a Go node never refuses a dial (to a port nobody listens
//! on, or with its backlog full), so the dialer gives up at its deadline. The link's
//! timer does that, so that a dial needs no timer (nor task) of its own.

use super::table::{StreamId, StreamKey, StreamTable};
use super::{Link, StreamError};
use hashbrown::HashMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::task::Waker;
use std::time::{Duration, Instant};

/// A stream's timeouts and the times they count from.
#[derive(Debug)]
struct Timeouts {
    key: StreamKey,
    idle: Option<Duration>,
    last_active: Instant,
    write: Option<Duration>,
    /// Since when a write waits (it returned `Pending`).
    write_waiting: Option<Instant>,
    /// The write timeout expired: the next write fails (once).
    write_expired: bool,
    /// The deadline queued for this stream (others queued for it are stale).
    queued: Option<Instant>,
    /// The idle timeout expired and the stream was reset.
    timed_out: bool,
}

impl Timeouts {
    fn new(key: StreamKey, now: Instant) -> Timeouts {
        Timeouts {
            key,
            idle: None,
            last_active: now,
            write: None,
            write_waiting: None,
            write_expired: false,
            queued: None,
            timed_out: false,
        }
    }

    fn due(&self) -> Option<Instant> {
        let idle = self.idle.filter(|_| !self.timed_out).map(|d| self.last_active + d);
        let write = self.write.zip(self.write_waiting).map(|(d, since)| since + d);
        match (idle, write) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// When a dial is given up, and the timeout to name in its error.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct DialDeadline {
    at: Instant,
    id: StreamId,
    timeout: Duration,
    /// The slot may be reused by another dial once this one ended.
    local_port: u32,
}

/// Dials queued beyond twice those under way before the queue is pruned.
const PRUNE_SLACK: usize = 64;

/// The timeouts of a link's streams.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    streams: HashMap<StreamId, Timeouts>,
    queue: BinaryHeap<Reverse<(Instant, StreamId)>>,
    /// Dials with a deadline, earliest first. One that ended stays queued (cheaper
    /// than finding it on every SYN_ACK) until its deadline, when it is skipped, or
    /// until the queue reaches `prune_at` and drops every dial that ended.
    dials: BinaryHeap<Reverse<DialDeadline>>,
    /// Twice the dials left by the last pruning, plus [`PRUNE_SLACK`]: the queue holds
    /// at most about twice the dials under way, and pruning costs O(1) per dial.
    prune_at: usize,
    /// The timeout of each dial that ran out, to name it in the stream's errors.
    dials_timed_out: HashMap<StreamId, Duration>,
    /// A deadline earlier than all queued before was queued: the driver's timer must
    /// look again (see [`Link::take_timer_wakeup`]).
    rearmed: bool,
}

impl Deadlines {
    /// Makes [`Link::take_timer_wakeup`] say yes: a timer outside the queue was set.
    pub(super) fn rearm(&mut self) {
        self.rearmed = true;
    }

    fn entry(&mut self, id: StreamId, key: StreamKey, now: Instant) -> &mut Timeouts {
        let t = self.streams.entry(id).or_insert_with(|| Timeouts::new(key, now));
        if t.key != key {
            // The slot was reused by another stream; the deadline queued stays valid.
            *t = Timeouts { queued: t.queued, ..Timeouts::new(key, now) };
        }
        t
    }

    /// Queues the stream's deadline if it is earlier than the one queued.
    fn arm(&mut self, id: StreamId) {
        let Some(t) = self.streams.get_mut(&id) else { return };
        if let Some(due) = t.due() {
            if t.queued.is_none_or(|q| due < q) {
                t.queued = Some(due);
                self.rearmed |= self.next().is_none_or(|next| due < next);
                self.queue.push(Reverse((due, id)));
            }
        }
    }

    /// The earliest deadline queued.
    pub fn next(&self) -> Option<Instant> {
        let stream = self.queue.peek().map(|Reverse((at, _))| *at);
        let dial = self.dials.peek().map(|Reverse(d)| d.at);
        match (stream, dial) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The stream `id`'s timeouts, if it set any. Every read and write asks: without
    /// a single timeout on the link, the answer costs no hashing.
    fn get_mut(&mut self, id: StreamId) -> Option<&mut Timeouts> {
        if self.streams.is_empty() {
            return None;
        }
        self.streams.get_mut(&id)
    }

    /// Data moved on stream `id`.
    pub fn touch(&mut self, id: StreamId, now: Instant) {
        if let Some(t) = self.get_mut(id) {
            t.last_active = now;
        }
    }

    /// The idle timeout of stream `id` (zero when it has none).
    pub fn idle(&self, id: StreamId) -> Duration {
        self.streams.get(&id).and_then(|t| t.idle).unwrap_or_default()
    }

    /// Dial deadlines queued, those of dials that ended included.
    #[cfg(test)]
    pub fn dials_queued(&self) -> usize {
        self.dials.len()
    }

    /// The timeout of stream `id`'s dial, if it ran out (zero otherwise).
    pub fn dial_timeout(&self, id: StreamId) -> Duration {
        self.dials_timed_out.get(&id).copied().unwrap_or_default()
    }

    /// The stream is forgotten.
    pub fn remove(&mut self, id: StreamId) {
        if !self.streams.is_empty() {
            self.streams.remove(&id);
        }
        if !self.dials_timed_out.is_empty() {
            self.dials_timed_out.remove(&id);
        }
    }

    /// Forgets every deadline (the link closed). The timeouts of dials that ran out
    /// stay, to name them in errors (their streams' handles may remain).
    pub fn clear(&mut self) {
        self.streams.clear();
        self.queue.clear();
        self.dials.clear();
    }
}

/// Whether the dial `d` names still waits for its answer (its slot may have been
/// freed, or reused by another stream).
fn dial_waits(streams: &StreamTable, d: &DialDeadline) -> bool {
    streams.get(d.id).is_some_and(|s| s.key.local_port == d.local_port && s.state.is_dialing())
}

/// What a deadline that passed does.
enum Expired {
    Idle,
    Write,
}

impl Link {
    /// Resets stream `id` when no data moved on it either way for `timeout` (`None`:
    /// never, the default). Counts from now.
    pub fn set_idle_timeout(&mut self, id: StreamId, timeout: Option<Duration>, now: Instant) {
        let key = self.stream_key(id);
        let t = self.deadlines.entry(id, key, now);
        t.idle = timeout;
        t.last_active = now;
        self.deadlines.arm(id);
    }

    /// A new stream gets the link's default idle timeout, if there is one.
    pub(super) fn default_timeouts(&mut self, id: StreamId, now: Instant) {
        if let Some(idle) = self.cfg.stream_idle_timeout {
            self.set_idle_timeout(id, Some(idle), now);
        }
    }

    /// Fails a write of stream `id` that waited `timeout` for room (`None`: writes wait
    /// as long as it takes, the default).
    pub fn set_write_timeout(&mut self, id: StreamId, timeout: Option<Duration>, now: Instant) {
        let key = self.stream_key(id);
        let t = self.deadlines.entry(id, key, now);
        t.write = timeout;
        t.write_expired = false;
        self.deadlines.arm(id);
    }

    /// A write of stream `id` is about to run: fails it if its timeout expired.
    pub(super) fn check_write_timeout(&mut self, id: StreamId) -> Result<(), StreamError> {
        match self.deadlines.get_mut(id) {
            Some(t) if t.write_expired => {
                t.write_expired = false;
                Err(StreamError::WriteTimeout(t.write.unwrap_or_default()))
            }
            _ => Ok(()),
        }
    }

    /// Ends the dial of stream `id` if it is not answered by `at`: its calls then fail
    /// with [`StreamError::DialTimeout`] naming `timeout`, and releasing the handle
    /// gives the dial up (the peer is told, as of any dial given up).
    pub fn set_dial_deadline(&mut self, id: StreamId, at: Instant, timeout: Duration) {
        let local_port = self.stream_key(id).local_port;
        let d = &mut self.deadlines;
        if d.dials.len() >= d.prune_at {
            let streams = &self.streams;
            d.dials.retain(|Reverse(d)| dial_waits(streams, d));
            d.prune_at = 2 * d.dials.len() + PRUNE_SLACK;
        }
        d.rearmed |= d.next().is_none_or(|next| at < next);
        d.dials.push(Reverse(DialDeadline { at, id, timeout, local_port }));
    }

    /// Gives up the dials whose deadline passed at `now` and that are still waiting.
    fn handle_dial_deadlines(&mut self, now: Instant, wakers: &mut Vec<Waker>) {
        while self.deadlines.dials.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(d)) = self.deadlines.dials.pop() else { break };
            if dial_waits(&self.streams, &d) {
                self.deadlines.dials_timed_out.insert(d.id, d.timeout);
                self.dial_timed_out(d.id, wakers);
            }
        }
    }

    /// Whether a timer earlier than the driver's timer knew of was set since the last
    /// call: the driver then recomputes [`Link::poll_timeout`].
    pub fn take_timer_wakeup(&mut self) -> bool {
        std::mem::take(&mut self.deadlines.rearmed)
    }

    /// A write of stream `id` waits (`waiting`) or went through.
    pub(super) fn write_waits(&mut self, id: StreamId, waiting: bool, now: Instant) {
        let Some(t) = self.deadlines.get_mut(id) else { return };
        if !waiting {
            t.write_waiting = None;
            t.last_active = now;
        } else if t.write.is_some() && t.write_waiting.is_none() {
            t.write_waiting = Some(now);
            self.deadlines.arm(id);
        }
    }

    /// Acts on the stream deadlines that passed at `now`.
    pub(super) fn handle_stream_deadlines(&mut self, now: Instant, wakers: &mut Vec<Waker>) {
        self.handle_dial_deadlines(now, wakers);
        while let Some(&Reverse((at, id))) = self.deadlines.queue.peek() {
            if at > now {
                break;
            }
            self.deadlines.queue.pop();
            let Some(t) = self.deadlines.streams.get_mut(&id) else { continue };
            if t.queued != Some(at) {
                continue;
            }
            t.queued = None;
            let expired = match (t.idle.filter(|_| !t.timed_out), t.write.zip(t.write_waiting)) {
                (Some(idle), _) if now >= t.last_active + idle => Some(Expired::Idle),
                (_, Some((write, since))) if now >= since + write => Some(Expired::Write),
                _ => None,
            };
            match expired {
                Some(Expired::Idle) => {
                    // The entry stays, without deadlines, to name the timeout in errors.
                    (t.timed_out, t.write) = (true, None);
                    self.time_out(id, wakers);
                }
                Some(Expired::Write) => {
                    (t.write_expired, t.write_waiting) = (true, None);
                    let slot = self.streams.get_mut(id).expect("a stream with timeouts has a slot");
                    wakers.extend(slot.write_waker.take());
                    self.deadlines.arm(id);
                }
                None => self.deadlines.arm(id),
            }
        }
    }
}
