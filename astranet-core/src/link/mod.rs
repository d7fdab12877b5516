//! A link: one ordered byte pipe (usually a TCP connection) to a neighbour node,
//! carrying the frames of any number of streams.
//!
//! Each link runs three tasks and no more, whatever its stream count: a reader that
//! parses many frames per read and dispatches them under one lock acquisition, a writer
//! that drains the queued frames (priority frames first) with as few writes as possible,
//! and a keep-alive task (PING, silence detection, handshake timeout, expiry of closed
//! streams). Streams are records in the link's [`table::StreamTable`].

mod keepalive;
mod reader;
pub(crate) mod sink;
pub(crate) mod stream_ops;
pub(crate) mod table;
mod writer;

use crate::addr::HostId;
use crate::config::Config;
use crate::error::Error;
use crate::node::NodeShared;
use crate::proto::{Command, Handshake, Header, RstReason, Tuning, WindowBudget};
use crate::stats::Counters;
use bytes::{BufMut, BytesMut};
use parking_lot::Mutex;
use sink::Sink;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;
use table::{Key, StreamTable};
use tokio::io::AsyncRead;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;

/// What the handshake told us about the neighbour.
#[derive(Clone, Debug)]
pub(crate) struct PeerInfo {
    pub host: HostId,
    /// The peer speaks only v1: no extension frames may be sent to it.
    pub v1: bool,
}

/// Why a link went down.
#[derive(Clone, Debug)]
pub(crate) enum CloseReason {
    /// This node closed it.
    Local,
    /// The peer closed the connection.
    PeerClosed,
    Io(String),
    Protocol(String),
    Timeout(String),
    Limit(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::PeerClosed => f.write_str("connection closed by peer"),
            CloseReason::Io(e) => write!(f, "i/o error: {e}"),
            CloseReason::Protocol(e) => write!(f, "protocol violation: {e}"),
            CloseReason::Timeout(e) => write!(f, "{e}"),
            CloseReason::Limit(e) => write!(f, "limit exceeded: {e}"),
        }
    }
}

/// Life cycle of a link, observable by `attach`/`join`.
#[derive(Clone, Debug)]
pub(crate) enum Phase {
    Handshaking,
    Up(HostId),
    Closed(CloseReason),
}

/// Everything behind the link lock.
pub(crate) struct LinkState {
    pub table: StreamTable,
    /// The rest of a frame a stream began writing directly to the socket: goes first.
    pub partial: BytesMut,
    /// The socket, for direct writes while the writer is idle (TCP links only).
    pub direct: Option<Arc<OwnedWriteHalf>>,
    /// Priority frames waiting for the writer.
    pub ctrl: BytesMut,
    /// Data (and non-priority) frames waiting for the writer.
    pub data: BytesMut,
    /// The writer sleeps until notified.
    pub writer_idle: bool,
    /// Slots whose writers wait for space in `data`, oldest first.
    pub waiting_space: VecDeque<u32>,
    /// Closed streams kept to absorb frames in flight: (slot, expiry in link ms).
    pub linger: VecDeque<(u32, u64)>,
    /// Streams whose v1 peer closed, until it forgets them: (slot, stream, link ms
    /// when its close window ends), in order of expiry.
    pub close_windows: VecDeque<(u32, Key, u64)>,
    pub budget: WindowBudget,
    /// Received data not yet read, all streams together, as charged by
    /// [`table::Slot::charge`].
    pub buffered: usize,
    pub closed: Option<CloseReason>,
}

pub(crate) struct Link {
    pub id: u64,
    pub node: Weak<NodeShared>,
    pub local_host: u64,
    pub config: Arc<Config>,
    pub remote_addr: Option<SocketAddr>,
    pub peer: OnceLock<PeerInfo>,
    pub state: Mutex<LinkState>,
    pub wake_writer: Notify,
    /// Notified whenever the writer takes the queued frames (see [`Link::wait_drained`]).
    pub drained: Notify,
    pub phase: watch::Sender<Phase>,
    pub counters: Arc<Counters>,
    epoch: Instant,
    /// Updated by the keep-alive task on every tick (see [`Link::coarse_ms`]).
    coarse_ms: AtomicU64,
    pub last_rx_ms: AtomicU64,
    pub last_tx_ms: AtomicU64,
    /// Smoothed round-trip time from PING/PONG, µs (0 until measured).
    pub rtt_us: AtomicU32,
    /// When the outstanding PING was sent (link µs + 1), 0 if none.
    pub ping_sent_us: AtomicU64,
    /// DIALs of this link waiting in listener backlogs (count against the stream limit).
    pub pending_dials: AtomicUsize,
    tasks: Mutex<Vec<AbortHandle>>,
}

/// Shortest auto-tuning horizon: below this, timer and scheduling noise dominates.
const TUNING_FLOOR_US: u32 = 2_000;

impl Link {
    /// Starts a link over `reader`/`writer`: queues our HANDSHAKE and spawns the tasks.
    pub(crate) fn spawn<R>(node: &Arc<NodeShared>, reader: R, sink: Sink, remote_addr: Option<SocketAddr>) -> Arc<Link>
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let config = node.config.clone();
        let link = Arc::new(Link {
            id: node.next_link_id(),
            node: Arc::downgrade(node),
            local_host: node.host_id().0,
            remote_addr,
            peer: OnceLock::new(),
            state: Mutex::new(LinkState {
                table: StreamTable::default(),
                partial: BytesMut::new(),
                direct: sink.direct(),
                ctrl: BytesMut::with_capacity(4096),
                data: BytesMut::new(),
                writer_idle: false,
                waiting_space: VecDeque::new(),
                linger: VecDeque::new(),
                close_windows: VecDeque::new(),
                budget: WindowBudget { used: 0, limit: config.windows.link_window_budget },
                buffered: 0,
                closed: None,
            }),
            config,
            wake_writer: Notify::new(),
            drained: Notify::new(),
            phase: watch::Sender::new(Phase::Handshaking),
            counters: node.counters.clone(),
            epoch: Instant::now(),
            coarse_ms: AtomicU64::new(0),
            last_rx_ms: AtomicU64::new(0),
            last_tx_ms: AtomicU64::new(0),
            rtt_us: AtomicU32::new(0),
            ping_sent_us: AtomicU64::new(0),
            pending_dials: AtomicUsize::new(0),
            tasks: Mutex::new(Vec::new()),
        });
        {
            let raddr = remote_addr.map(|a| a.to_string()).unwrap_or_default();
            let payload = Handshake::ours(raddr).encode();
            let mut st = link.state.lock();
            let h = Header {
                cmd: Command::Handshake,
                dst_host: 0,
                src_host: link.local_host,
                dst_port: 0,
                src_port: 0,
                len: payload.len() as u32,
            };
            st.push(h, &payload);
        }
        if !node.register_link(&link) {
            // The node is closing: the link never starts (its I/O halves drop here).
            link.state.lock().closed = Some(CloseReason::Local);
            link.phase.send_replace(Phase::Closed(CloseReason::Local));
            return link;
        }
        let tasks = [
            tokio::spawn(writer::run(link.clone(), sink)).abort_handle(),
            tokio::spawn(reader::run(link.clone(), reader)).abort_handle(),
            tokio::spawn(keepalive::run(link.clone())).abort_handle(),
        ];
        link.tasks.lock().extend(tasks.iter().cloned());
        if link.state.lock().closed.is_some() {
            // Closed before the handles were stored: nothing aborted the reader.
            for task in &tasks[1..] {
                task.abort();
            }
        }
        link
    }

    /// Waits until the handshake completed; returns the peer's host id.
    pub(crate) async fn wait_up(&self) -> Result<HostId, Error> {
        let mut rx = self.phase.subscribe();
        let phase = rx.wait_for(|p| !matches!(p, Phase::Handshaking)).await.map(|p| p.clone());
        match phase {
            Ok(Phase::Up(host)) => Ok(host),
            Ok(Phase::Closed(reason)) => Err(self.error_for(&reason)),
            _ => Err(Error::NodeClosed),
        }
    }

    /// Waits until the link is closed.
    pub(crate) async fn wait_closed(&self) -> CloseReason {
        let mut rx = self.phase.subscribe();
        match rx.wait_for(|p| matches!(p, Phase::Closed(_))).await.map(|p| p.clone()) {
            Ok(Phase::Closed(reason)) => reason,
            _ => CloseReason::Local,
        }
    }

    pub(crate) fn peer_name(&self) -> String {
        match (self.peer.get(), self.remote_addr) {
            (Some(p), Some(a)) => format!("{} ({a})", p.host),
            (Some(p), None) => p.host.to_string(),
            (None, Some(a)) => a.to_string(),
            (None, None) => format!("link #{}", self.id),
        }
    }

    pub(crate) fn is_v1(&self) -> bool {
        self.peer.get().is_none_or(|p| p.v1)
    }

    pub(crate) fn error_for(&self, reason: &CloseReason) -> Error {
        match reason {
            CloseReason::Protocol(detail) => Error::Protocol { peer: self.peer_name(), detail: detail.clone() },
            r => Error::LinkClosed { peer: self.peer_name(), reason: r.to_string() },
        }
    }

    /// Milliseconds since the link started, read from the clock.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// [`Link::now_ms`] as of the keep-alive task's last tick: precise enough for
    /// timeouts and linger times, and free of a clock read on every frame.
    pub(crate) fn coarse_ms(&self) -> u64 {
        self.coarse_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    pub(crate) fn tick(&self) -> u64 {
        let now = self.now_ms();
        self.coarse_ms.store(now, Ordering::Relaxed);
        now
    }

    /// Tuning that never grows a window.
    pub(crate) fn fixed_window(&self) -> Tuning {
        Tuning { max_window: crate::proto::INITIAL_WINDOW, horizon_us: 0, eager: self.is_v1() }
    }

    pub(crate) fn tuning(&self) -> Tuning {
        let rtt = self.rtt_us.load(Ordering::Relaxed);
        Tuning {
            max_window: self.config.windows.max_stream_window,
            horizon_us: rtt.saturating_mul(2).max(TUNING_FLOOR_US),
            // The peer's close waits for our credit (it may be a node of ours behind a
            // Go relay): hand it back as a Go reader would.
            eager: self.is_v1(),
        }
    }

    /// Wakes the writer if it sleeps and something is queued. Call after queuing
    /// frames, with the lock held.
    pub(crate) fn kick(&self, st: &mut LinkState) {
        if st.writer_idle && !(st.partial.is_empty() && st.ctrl.is_empty() && st.data.is_empty()) {
            st.writer_idle = false;
            self.wake_writer.notify_one();
        }
    }

    /// The header of a frame of stream `key`.
    pub(crate) fn stream_header(&self, key: &Key, cmd: Command, len: usize) -> Header {
        debug_assert!(cmd.is_v1() || !self.is_v1());
        Header {
            cmd,
            dst_host: key.remote_host,
            src_host: self.local_host,
            dst_port: key.remote_port,
            src_port: key.local_port,
            len: len as u32,
        }
    }

    /// Waits until at most `cap` bytes are queued for the writer, or the link closed.
    pub(crate) async fn wait_drained(&self, cap: usize) {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            {
                let st = self.state.lock();
                if st.closed.is_some() || st.partial.len() + st.ctrl.len() + st.data.len() <= cap {
                    return;
                }
            }
            drained.await;
        }
    }

    /// Queues a frame of stream `key`.
    pub(crate) fn push_stream_frame(&self, st: &mut LinkState, key: &Key, cmd: Command, payload: &[u8]) {
        st.push(self.stream_header(key, cmd, payload.len()), payload);
    }

    /// Refuses a DIAL or aborts a stream: RST for peers that speak it; a v1 peer gets
    /// FIN2 + FIN1 for an aborted stream and nothing for a refused dial (Go drops such
    /// dials itself, its dialer waits for its deadline).
    pub(crate) fn push_reset(&self, st: &mut LinkState, key: &Key, reason: RstReason, established: bool) {
        if !self.is_v1() {
            self.push_stream_frame(st, key, Command::Rst, &[reason as u8]);
        } else if established {
            self.push_stream_frame(st, key, Command::Fin2, &[]);
            self.push_stream_frame(st, key, Command::Fin1, &[]);
        }
    }

    /// Closes the link: every stream on it fails (after its buffered data is read),
    /// dials on it fail, the node forgets it. Idempotent.
    pub(crate) fn close(&self, reason: CloseReason) {
        let mut wakers = Vec::new();
        {
            let mut st = self.state.lock();
            if st.closed.is_some() {
                return;
            }
            match &reason {
                CloseReason::Local | CloseReason::PeerClosed => {
                    tracing::debug!(link = self.id, peer = %self.peer_name(), %reason, "link closed")
                }
                _ => tracing::warn!(link = self.id, peer = %self.peer_name(), %reason, "link closed"),
            }
            st.closed = Some(reason.clone());
            st.linger.clear();
            st.close_windows.clear();
            st.waiting_space.clear();
            for (_, slot) in st.table.iter_mut() {
                slot.take_wakers(&mut wakers);
            }
            let orphans = st.table.retain_handled();
            self.counters.streams_closed.fetch_add(orphans.len() as u64, Ordering::Relaxed);
            if !matches!(reason, CloseReason::Local) {
                st.partial.clear();
                st.ctrl.clear();
                st.data.clear();
                st.direct = None;
            }
            st.writer_idle = false;
        }
        self.wake_writer.notify_one();
        for w in wakers {
            w.wake();
        }
        self.phase.send_replace(Phase::Closed(reason.clone()));
        if let Some(node) = self.node.upgrade() {
            node.unregister_link(self);
        }
        // The writer flushes and exits by itself; the reader may be parked in a read.
        let tasks = std::mem::take(&mut *self.tasks.lock());
        if let Some(reader) = tasks.get(1) {
            reader.abort();
        }
        if let Some(keepalive) = tasks.get(2) {
            keepalive.abort();
        }
        if !matches!(reason, CloseReason::Local) {
            if let Some(writer) = tasks.first() {
                writer.abort();
            }
        }
    }
}

impl LinkState {
    /// Appends an encoded frame to the priority or the data queue.
    pub(crate) fn push(&mut self, h: Header, payload: &[u8]) {
        let q = if h.cmd.is_priority() { &mut self.ctrl } else { &mut self.data };
        q.reserve(crate::proto::HEADER_LEN + payload.len());
        h.put(q);
        q.put_slice(payload);
    }

    /// Appends a frame to the data queue whatever its priority, so that it follows the
    /// frames queued before it.
    pub(crate) fn push_behind_data(&mut self, h: Header, payload: &[u8]) {
        self.data.reserve(crate::proto::HEADER_LEN + payload.len());
        h.put(&mut self.data);
        self.data.put_slice(payload);
    }

    /// Forgets a stream whose handle is gone, giving back its window budget.
    pub(crate) fn free(&mut self, id: u32, counters: &Counters) {
        let slot = self.table.remove(id);
        if slot.waiting_space {
            // The id may be reused: it must not stay in the queue.
            self.waiting_space.retain(|&waiting| waiting != id);
        }
        self.budget.used = self.budget.used.saturating_sub(slot.state.recv.extra());
        self.buffered -= slot.charge();
        counters.streams_closed.fetch_add(1, Ordering::Relaxed);
    }
}
