//! A link without I/O: everything the protocol says about one connection to a
//! neighbour, as a state machine that bytes, time and stream operations go into and
//! frames to write, timers and events come out of (quinn-proto's `Connection` is the
//! model).
//!
//! ```text
//!            bytes read ──> handle_input ──┐                 ┌──> poll_transmit ──> bytes to write
//!                                          │   ┌─────────┐   │
//!   stream operations ──> open/read/write ─┼──>│  Link   │───┼──> poll_event ──> the node
//!                                          │   └─────────┘   │
//!                 now ──> handle_timeout ──┘                 └──> poll_timeout ──> when to call again
//! ```
//!
//! The driver (the crate's tokio link) owns one `Link` behind a lock, feeds it what
//! the socket and the clock say, and wakes the tasks whose [`Waker`]s come out. Rules
//! that differ between a v1 (Go) peer and a peer of this project are decided once, by
//! the handshake, in a [`Policy`].
//!
//! ```
//! use astranet::proto::link::{Event, Link, LinkConfig};
//! use astranet::proto::{Command, Handshake, Header};
//! use astranet::HostId;
//! use bytes::BytesMut;
//! use std::time::Instant;
//!
//! let now = Instant::now();
//! let mut link = Link::new(HostId(1), LinkConfig::default(), String::new(), now, Default::default());
//! // The peer's HANDSHAKE arrives.
//! let hs = Handshake::default().encode();
//! let mut input = BytesMut::new();
//! Header { cmd: Command::Handshake, dst_host: 0, src_host: 2, dst_port: 0, src_port: 0, len: hs.len() as u32 }
//!     .put(&mut input);
//! input.extend_from_slice(&hs);
//! link.handle_input(now, &mut input, &mut Vec::new()).unwrap();
//! assert!(matches!(link.poll_event(), Some(Event::Up { peer: HostId(2), .. })));
//! ```

mod close;
mod config;
mod deadlines;
mod events;
mod input;
mod output;
mod policy;
mod streams;
mod table;
#[cfg(test)]
mod testing;
mod timers;

pub use close::{CloseReason, LinkTimeout};
pub use config::LinkConfig;
pub use events::Event;
pub use output::Batch;
pub use policy::{Policy, Relay, Unknown};
pub use streams::{DirectWrite, OpenError, StreamError};
pub use table::{StreamId, StreamKey};

use crate::addr::HostId;
use crate::proto::flow::WindowBudget;
use crate::proto::frame::{Command, Decoder, Frame, Header, MAX_PAYLOAD};
use crate::proto::handshake::Handshake;
use crate::proto::relay::Queue;
use crate::stats::Counters;
use hashbrown::HashMap;
use output::Output;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;
use table::StreamTable;
use timers::Timers;

/// Where a link stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the peer's HANDSHAKE.
    Handshaking,
    /// The handshake completed.
    Up {
        /// The neighbour's host id.
        peer: HostId,
        /// The rules its handshake chose.
        policy: Policy,
    },
    /// Closed; nothing more is read, written or accepted.
    Closed(CloseReason),
}

/// What [`Link::poll_transmit`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transmit {
    /// Nothing to write: the writer may sleep until [`Link::take_writer_wakeup`] says
    /// otherwise.
    Idle,
    /// The batch holds bytes to write.
    Write,
    /// The link is closed and everything queued before the close was handed out.
    Exit,
}

/// Streams waiting for room in the write queue, oldest first, each once.
#[derive(Debug, Default)]
struct Waiting {
    order: VecDeque<StreamId>,
    members: hashbrown::HashSet<StreamId>,
}

impl Waiting {
    fn push(&mut self, id: StreamId) {
        if self.members.insert(id) {
            self.order.push_back(id);
        }
    }

    fn pop(&mut self) -> Option<StreamId> {
        while let Some(id) = self.order.pop_front() {
            if self.members.remove(&id) {
                return Some(id);
            }
        }
        None
    }

    fn remove(&mut self, id: StreamId) {
        // Its place in `order` is skipped when it comes up.
        self.members.remove(&id);
    }

    fn is_empty(&self) -> bool {
        self.members.is_empty()
    }
}

/// The protocol state of one link. See the [module documentation](self).
#[derive(Debug)]
pub struct Link {
    local: HostId,
    cfg: LinkConfig,
    phase: Phase,
    decoder: Decoder,
    streams: StreamTable,
    /// Streams whose writers wait for space in the data queue, oldest first.
    waiting_space: Waiting,
    /// Growth of receive windows granted so far, and the limit.
    budget: WindowBudget,
    /// Received data not yet read, all streams together (their `Recv::charge`).
    buffered: usize,
    /// Copy every DATA payload out of the input buffer (see [`Link::copy_payloads`]).
    copy_payloads: bool,
    out: Output,
    timers: Timers,
    /// Idle and write timeouts of the streams that have them.
    deadlines: deadlines::Deadlines,
    /// Windows (WND_SIZE) that frames relayed to the peer granted it: the peer may send
    /// DATA that large on those streams (a Go sender fills its whole window), keyed as
    /// that DATA will arrive: (src host, src port, dst host, dst port).
    relay_grants: HashMap<(HostId, u32, HostId, u32), u32>,
    events: VecDeque<Event>,
    counters: Arc<Counters>,
    /// The peer's host id as its certificate names it (see [`Link::authenticate`]).
    authenticated: Option<HostId>,
}

impl Link {
    /// A link that starts now: our HANDSHAKE (with `raddr`, the peer's address as seen
    /// from here) is queued at once.
    pub fn new(local: HostId, cfg: LinkConfig, raddr: String, now: Instant, counters: Arc<Counters>) -> Link {
        let mut link = Link {
            local,
            budget: WindowBudget { used: 0, limit: cfg.window_budget },
            cfg,
            phase: Phase::Handshaking,
            // The driver keeps room in its read buffers (and counts them).
            decoder: Decoder::new(MAX_PAYLOAD as u32).reserving(false),
            streams: StreamTable::default(),
            waiting_space: Waiting::default(),
            buffered: 0,
            copy_payloads: false,
            out: Output::default(),
            timers: Timers::new(now),
            deadlines: Default::default(),
            relay_grants: HashMap::new(),
            events: VecDeque::new(),
            counters,
            authenticated: None,
        };
        let payload = Handshake::ours(raddr).encode();
        let h = Header {
            cmd: Command::Handshake,
            dst_host: 0,
            src_host: local.0,
            dst_port: 0,
            src_port: 0,
            len: payload.len() as u32,
        };
        link.out.push(h, &payload);
        link
    }

    /// The transport under the link authenticated the peer as `peer` (a TLS
    /// certificate): its HANDSHAKE must carry that host id, or the link is closed.
    pub fn authenticate(&mut self, peer: HostId) {
        self.authenticated = Some(peer);
    }

    /// The host id the transport authenticated, if it did.
    pub fn authenticated(&self) -> Option<HostId> {
        self.authenticated
    }

    /// This node's host id.
    pub fn local(&self) -> HostId {
        self.local
    }

    /// Where the link stands.
    pub fn phase(&self) -> &Phase {
        &self.phase
    }

    /// The neighbour's host id, once the handshake completed.
    pub fn peer(&self) -> Option<HostId> {
        match self.phase {
            Phase::Up { peer, .. } => Some(peer),
            _ => None,
        }
    }

    /// The rules of the link. Before the handshake, and after a close, those of v1 (the
    /// safe choice: nothing is sent that a Go node would not know).
    pub fn policy(&self) -> Policy {
        match self.phase {
            Phase::Up { policy, .. } => policy,
            _ => Policy::V1,
        }
    }

    /// Why the link closed, if it did.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        match &self.phase {
            Phase::Closed(r) => Some(r),
            _ => None,
        }
    }

    /// Streams in the table: open, opening, or closed and lingering.
    pub fn stream_count(&self) -> usize {
        self.streams.len()
    }

    /// The smoothed round trip measured with PING/PONG (zero until measured).
    pub fn rtt(&self) -> std::time::Duration {
        std::time::Duration::from_micros(self.timers.rtt_us as u64)
    }

    /// The next event for the node.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Wakes the writer (returns true, once) when it sleeps and something waits to be
    /// written. The driver calls it after every operation and notifies its writer.
    pub fn take_writer_wakeup(&mut self) -> bool {
        if self.out.writer_idle && self.out.has_output() {
            self.out.writer_idle = false;
            return true;
        }
        false
    }

    /// Bytes waiting to be written.
    pub fn queued(&self) -> usize {
        self.out.queued()
    }

    /// Hands everything queued to the writer in one swap of buffers (the batch must be
    /// empty), and picks the streams waiting for queue space to wake.
    pub fn poll_transmit(&mut self, batch: &mut Batch, wakers: &mut Vec<Waker>) -> Transmit {
        debug_assert!(batch.is_empty());
        if !matches!(self.phase, Phase::Closed(_)) {
            // At least one at a time, however small the write queue was configured.
            self.out.flush_announcements((self.cfg.write_queue / 2).max(1));
        }
        let out = &mut self.out;
        if out.partial.is_empty() && out.ctrl.is_empty() && out.data.is_empty() {
            if matches!(self.phase, Phase::Closed(_)) {
                return Transmit::Exit;
            }
            // The queue is empty: wake the next round of writers waiting for space.
            // Not all of them: a thousand woken for a queue that a dozen fill would
            // find it full again and wait anew, each costing its thread a wake-up.
            self.wake_waiting_space(self.cfg.write_queue, wakers);
            self.out.writer_idle = true;
            self.recheck_space_later();
            return Transmit::Idle;
        }
        std::mem::swap(&mut out.partial, &mut batch.partial);
        std::mem::swap(&mut out.ctrl, &mut batch.ctrl);
        std::mem::swap(&mut out.data, &mut batch.data);
        out.relayed = 0;
        out.taken_total = out.queued_total;
        // The data queue is empty again: wake as many waiting writers as can fill it.
        self.wake_waiting_space(self.cfg.write_queue, wakers);
        Transmit::Write
    }

    /// `bytes` reached the socket (a batch, or a stream's direct write) at `now`.
    pub fn on_written(&mut self, now: Instant, bytes: usize) {
        self.timers.last_tx = now;
        self.counters.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
        self.start_lingering(now);
    }

    /// Closes the link: every stream on it fails (after its buffered data is read),
    /// streams without a handle are forgotten, and [`Event::Closed`] goes to the node.
    /// What was queued before a local close is still handed to the writer; after any
    /// other close nothing more is written. Idempotent.
    pub fn close(&mut self, reason: CloseReason, wakers: &mut Vec<Waker>) {
        if matches!(self.phase, Phase::Closed(_)) {
            return;
        }
        // In hex, as host ids print everywhere else ("-": before the handshake).
        let peer = self.peer().map_or_else(|| "-".to_string(), |h| h.to_string());
        match &reason {
            CloseReason::Local | CloseReason::PeerClosed => tracing::debug!(%peer, %reason, "link closed"),
            _ => tracing::warn!(%peer, %reason, "link closed"),
        }
        for (_, slot) in self.streams.iter_mut() {
            slot.take_wakers(wakers);
        }
        let orphans = self.streams.retain_handled();
        self.counters.streams_closed.fetch_add(orphans as u64, Ordering::Relaxed);
        self.timers.clear_streams();
        self.deadlines.clear();
        self.relay_grants.clear();
        self.out.announcements = Default::default();
        if reason != CloseReason::Local {
            self.out.partial.clear();
            self.out.ctrl.clear();
            self.out.data.clear();
            self.out.relayed = 0;
        }
        self.out.writer_idle = false;
        self.phase = Phase::Closed(reason.clone());
        self.events.push_back(Event::Closed(reason));
    }

    /// Whether DATA payloads are copied out of the buffers given to
    /// [`Link::handle_input`] rather than kept as slices of them. A slice keeps its
    /// whole buffer alive until it is read: the I/O layer turns copying on while the
    /// buffers held that way reach its bound.
    pub fn copy_payloads(&mut self, on: bool) {
        self.copy_payloads = on;
    }

    /// Received payload bytes not yet read, all streams together (with a small
    /// per-payload overhead: what `max_link_buffer` counts).
    pub fn unread(&self) -> usize {
        self.buffered
    }

    /// Queues a link-level or routed frame of the node's own (FOLLOW, DISCOVER).
    pub fn queue_frame(&mut self, h: Header, payload: &[u8]) {
        if self.is_open() && self.policy().can_send(h.cmd) {
            self.out.push(h, payload);
        }
    }

    /// Queues SERVICE / NO_SERVICE of `name` at `addr`. Announcements wait until the
    /// data queue has room, and a later change to the same (name, instance) replaces
    /// one still waiting.
    pub fn announce(&mut self, cmd: Command, name: &str, addr: crate::addr::Addr) {
        debug_assert!(matches!(cmd, Command::Service | Command::NoService));
        if self.is_open() {
            self.out.announcements.queue(cmd, name, addr);
        }
    }

    /// Queues a frame this node relays for another host (the node chose this link as
    /// the way to its destination), in the form this link's policy allows. Returns
    /// false when it was dropped (link closed, or no form the peer knows). `queue` is
    /// what the relay table said of it.
    pub fn forward(&mut self, frame: &Frame, queue: Queue) -> bool {
        if !self.is_open() {
            return false;
        }
        let h = frame.header;
        match self.policy().relay(h.cmd) {
            Relay::AsIs => {
                if h.cmd == Command::WndSize {
                    // The peer may now send DATA that large on this stream.
                    let key = (HostId(h.dst_host), h.dst_port, HostId(h.src_host), h.src_port);
                    self.relay_grants.insert(key, frame.u32_payload());
                }
                self.out.push_relayed(h, &frame.payload, queue == Queue::WithDials);
            }
            Relay::As(cmds) => {
                for &cmd in cmds {
                    self.out.push_relayed(Header { cmd, len: 0, ..h }, &[], false);
                }
            }
            Relay::Drop => return false,
        }
        true
    }

    /// Tells the peer (RESET) that this node lost its route to `lost`, behind what was
    /// already relayed from it. `to` is the host that hears it (the peer itself, or a
    /// host it relays for).
    pub fn reset_host(&mut self, lost: HostId, to: HostId) {
        if self.is_open() {
            let h = Header { cmd: Command::Reset, dst_host: to.0, src_host: lost.0, dst_port: 0, src_port: 0, len: 0 };
            self.out.push_behind_data(h, &[]);
        }
    }

    /// Refuses a DIAL (`key` as seen from here) the way this link's policy says.
    pub fn refuse_dial(&mut self, key: &StreamKey, reason: crate::proto::RstReason) {
        self.refuse_dial_as(self.local, key, reason);
    }

    /// Refuses a DIAL in the name of host `as_host` (a relay answers for the host it
    /// will not relay to).
    pub fn refuse_dial_as(&mut self, as_host: HostId, key: &StreamKey, reason: crate::proto::RstReason) {
        if !self.is_open() {
            return;
        }
        if let Some((cmd, byte)) = self.policy().refusal(reason) {
            let h = Header { src_host: as_host.0, ..self.stream_header(key, cmd, 1) };
            self.out.push(h, &[byte]);
        }
    }

    fn is_open(&self) -> bool {
        !matches!(self.phase, Phase::Closed(_))
    }

    /// The header of a frame of stream `key`.
    fn stream_header(&self, key: &StreamKey, cmd: Command, len: usize) -> Header {
        debug_assert!(self.policy().can_send(cmd));
        Header {
            cmd,
            dst_host: key.remote_host.0,
            src_host: self.local.0,
            dst_port: key.remote_port,
            src_port: key.local_port,
            len: len as u32,
        }
    }

    fn push_stream_frame(&mut self, key: &StreamKey, cmd: Command, payload: &[u8]) {
        let h = self.stream_header(key, cmd, payload.len());
        self.out.push(h, payload);
    }
}
