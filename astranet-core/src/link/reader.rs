//! The link reader: pulls large chunks, parses every complete frame in them, and
//! dispatches the whole batch under one acquisition of the link lock. DATA payloads go
//! to their stream as slices of the read buffer; wakers run after the lock is released.

use super::table::{Key, PAYLOAD_OVERHEAD};
use super::{CloseReason, Link, LinkState, PeerInfo, Phase};
use crate::addr::{Addr, HostId};
use crate::proto::{handshake, Command, Decoder, Frame, Handshake, Header, RstReason, HEADER_LEN, MAX_PAYLOAD};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Bytes asked for per read: enough for many frames per syscall.
const READ_CHUNK: usize = 256 * 1024;

/// DATA payloads shorter than this are copied out of the read buffer (see
/// `on_stream_frame`): a live slice then pins at most 16 times its size.
const COPY_BELOW: usize = 16 * 1024;

/// Free read buffers kept for reuse, and retired buffers examined per refill.
const KEEP_FREE: usize = 4;
const SCAN: usize = 16;

/// Read buffers of one link. DATA payloads are handed out as slices of the read buffer,
/// so a retired buffer is free again only once every stream consumed its slices.
/// Retired buffers wait here until then and are reused, which saves the page faults of
/// fresh allocations; at most [`KEEP_FREE`] free ones are kept.
struct ReadBuffers {
    retired: VecDeque<BytesMut>,
}

impl ReadBuffers {
    /// Makes room for a read in `buf`: reclaims it in place if no slice of it is alive,
    /// else switches to a free retired buffer (or a new one), carrying over the bytes
    /// of an incomplete frame.
    fn make_room(&mut self, buf: &mut BytesMut) {
        const ROOM: usize = MAX_PAYLOAD + HEADER_LEN;
        if buf.capacity() - buf.len() >= ROOM || buf.try_reclaim(ROOM) {
            return;
        }
        let need = buf.len() + ROOM;
        let mut next = None;
        let mut free = 0;
        // Oldest first: the likeliest to have been consumed.
        for _ in 0..self.retired.len().min(SCAN) {
            let Some(mut b) = self.retired.pop_front() else { break };
            if !b.try_reclaim(need) {
                self.retired.push_back(b);
            } else if next.is_none() {
                next = Some(b);
            } else if free < KEEP_FREE {
                free += 1;
                self.retired.push_back(b);
            }
        }
        let mut next = next.unwrap_or_else(|| BytesMut::with_capacity(READ_CHUNK.max(need)));
        next.extend_from_slice(buf);
        let mut old = std::mem::replace(buf, next);
        old.clear();
        self.retired.push_back(old);
    }
}

/// The length of the incomplete frame at the front of `buf`, as far as it is known.
fn pending_len(buf: &[u8]) -> usize {
    if buf.len() < HEADER_LEN {
        return HEADER_LEN;
    }
    HEADER_LEN + u32::from_be_bytes([buf[25], buf[26], buf[27], buf[28]]) as usize
}

/// Listener work found while dispatching, done in arrival order once the link lock is
/// released (a listener must never be entered with the link locked).
pub(super) enum Deferred {
    /// A DIAL for the listener on `key.local_port`.
    Dial(Key),
    /// The dialer gave up a DIAL that may still wait in that listener's backlog.
    Cancel(Key),
    /// SERVICE or NO_SERVICE, for the node's registry.
    Announcement { cmd: Command, name: Bytes, addr: Addr },
    /// A frame for another host, to relay.
    Forward(Frame),
    /// `from` asks for this node's direct addresses.
    Discover { from: HostId },
    /// `host` says it can be reached directly at `addr` ("ip:port").
    Follow { host: HostId, addr: Bytes },
}

/// How much earlier than a v1 peer's close window this side stops writing, on top of
/// two round trips (see `on_stream_frame`).
const V1_CLOSE_MARGIN_MS: u64 = 200;

/// Bytes a relay lets pile up on the outgoing link before it stops reading the incoming
/// one, in multiples of the link write queue.
const RELAY_BACKLOG: usize = 4;

pub(super) async fn run<R: AsyncRead + Unpin>(link: Arc<Link>, mut io: R) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut buffers = ReadBuffers { retired: VecDeque::new() };
    let decoder = Decoder::new(MAX_PAYLOAD as u32);
    let mut frames: Vec<Frame> = Vec::new();
    let mut wakers: Vec<Waker> = Vec::new();
    let mut deferred: Vec<Deferred> = Vec::new();
    let stall = link.config.frame_stall_timeout;
    // When the first byte of the incomplete frame at the front of `buf` arrived: the
    // rest must follow within `stall` (Go's read watchdog does the same).
    let mut frame_started: Option<tokio::time::Instant> = None;
    loop {
        buffers.make_room(&mut buf);
        let read = io.read_buf(&mut buf);
        let read = match frame_started {
            None => read.await,
            Some(t0) => match tokio::time::timeout_at(t0 + stall, read).await {
                Ok(read) => read,
                Err(_) => {
                    let what = format!("a {}-byte frame was incomplete {stall:?} after it began", pending_len(&buf));
                    return link.close(CloseReason::Timeout(what));
                }
            },
        };
        let n = match read {
            Ok(0) => return link.close(CloseReason::PeerClosed),
            Ok(n) => n,
            Err(e) => return link.close(CloseReason::Io(e.to_string())),
        };
        link.last_rx_ms.store(link.coarse_ms(), Ordering::Relaxed);
        link.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        loop {
            match decoder.decode_with(&mut buf, |h| link.may_receive_oversized(h)) {
                Ok(Some(frame)) => {
                    frames.push(frame);
                    frame_started = None;
                }
                Ok(None) => break,
                Err(e) => {
                    // Frames before the bad one are still delivered.
                    let _ = link.dispatch(&mut frames, &mut wakers, &mut deferred);
                    wakers.drain(..).for_each(Waker::wake);
                    return link.close(CloseReason::Protocol(e.to_string()));
                }
            }
        }
        if !buf.is_empty() && frame_started.is_none() {
            frame_started = Some(tokio::time::Instant::now());
        }
        link.counters.frames_in.fetch_add(frames.len() as u64, Ordering::Relaxed);
        let result = link.dispatch(&mut frames, &mut wakers, &mut deferred);
        wakers.drain(..).for_each(Waker::wake);
        if let Err(reason) = result {
            return link.close(reason);
        }
        let mut congested: Vec<Arc<Link>> = Vec::new();
        let node = link.node.upgrade();
        for work in deferred.drain(..) {
            match work {
                Deferred::Forward(frame) => {
                    let Some(node) = &node else { continue };
                    if let Some(to) = node.forward(&link, &frame) {
                        if !congested.iter().any(|l| l.id == to.id) {
                            congested.push(to);
                        }
                    }
                }
                Deferred::Dial(key) => link.offer_dial(key),
                Deferred::Cancel(key) => link.cancel_dial(&key),
                Deferred::Announcement { cmd, name, addr } => {
                    if let Some(node) = &node {
                        node.on_announcement(&link, cmd, &name, addr);
                    }
                }
                Deferred::Discover { from } => {
                    if let Some(node) = &node {
                        node.on_discover(&link, from);
                    }
                }
                Deferred::Follow { host, addr } => {
                    if let Some(node) = &node {
                        node.on_follow(&link, host, &addr);
                    }
                }
            }
        }
        drop(node);
        // Relayed frames are not read faster than the next hop takes them.
        let cap = RELAY_BACKLOG * link.config.limits.link_write_queue;
        let waited = !congested.is_empty();
        for to in congested.drain(..) {
            to.wait_drained(cap).await;
        }
        if waited && frame_started.is_some() {
            // The time spent not reading does not count against the peer.
            frame_started = Some(tokio::time::Instant::now());
        }
    }
}

impl Link {
    /// Handles a batch of frames. Returns the reason to close the link, if any.
    fn dispatch(
        self: &Arc<Self>,
        frames: &mut Vec<Frame>,
        wakers: &mut Vec<Waker>,
        deferred: &mut Vec<Deferred>,
    ) -> Result<(), CloseReason> {
        if frames.is_empty() {
            return Ok(());
        }
        let mut came_up = None;
        let mut st = self.state.lock();
        if let Some(reason) = &st.closed {
            // Closed under us (possibly before this task's handle was stored): stop.
            frames.clear();
            return Err(reason.clone());
        }
        let mut result = Ok(());
        for frame in frames.drain(..) {
            if result.is_err() {
                continue;
            }
            if self.peer.get().is_none() {
                match frame.header.cmd {
                    Command::Handshake => match self.on_handshake(&frame) {
                        Ok(up) => came_up = Some(up),
                        Err(e) => result = Err(e),
                    },
                    Command::Ping => self.pong(&mut st),
                    cmd => tracing::trace!(link = self.id, %cmd, "frame before handshake dropped"),
                }
                continue;
            }
            result = self.on_frame(&mut st, frame, wakers, deferred);
        }
        // Answers (most are control frames; PONG and FOLLOW queue behind data) pile up
        // faster than the peer reads them. Data written by streams stays below the write
        // queue, and relayed data below RELAY_BACKLOG of them, so they do not count.
        let limits = &self.config.limits;
        let max = limits.max_control_queue + (RELAY_BACKLOG + 2) * limits.link_write_queue;
        if result.is_ok() && st.ctrl.len() + st.data.len() > max {
            result = Err(CloseReason::Limit(format!(
                "more than {} bytes of control frames queued",
                limits.max_control_queue
            )));
        }
        self.kick(&mut st);
        drop(st);
        if let Some((host, seen_as)) = came_up {
            self.came_up(host, &seen_as);
        }
        result
    }

    /// Whether a frame over [`MAX_PAYLOAD`] may be read. A Go sender puts all the
    /// window it has into one DATA frame, so a stream whose window this node grew past
    /// 64 KiB receives frames up to that grant: from a v1 peer, or from a Go host behind
    /// a relay. Nothing else may be that large.
    fn may_receive_oversized(&self, h: &Header) -> bool {
        if h.cmd != Command::Data || self.peer.get().is_none() {
            return false;
        }
        if h.dst_host != self.local_host {
            // Relayed: up to what the receiving end granted, as seen passing through.
            return self.node.upgrade().is_some_and(|node| node.relay_grant(h) >= h.len);
        }
        let key = Key { local_port: h.dst_port, remote_port: h.src_port, remote_host: h.src_host };
        let st = self.state.lock();
        st.table.find(&key).and_then(|id| st.table.get(id)).is_some_and(|slot| slot.state.recv.window() >= h.len)
    }

    fn pong(&self, st: &mut LinkState) {
        st.push(Header::link(Command::Pong, 0), &[]);
    }

    /// Returns the peer's host id and how it sees this node's address (`RAddr`).
    fn on_handshake(&self, frame: &Frame) -> Result<(HostId, String), CloseReason> {
        let hs = Handshake::decode(&frame.payload).map_err(|e| CloseReason::Protocol(e.to_string()))?;
        let host = HostId(frame.header.src_host);
        if host.0 == 0 {
            return Err(CloseReason::Protocol("HANDSHAKE with host id 0".into()));
        }
        if host.0 == self.local_host {
            return Err(CloseReason::Protocol("the link leads back to this node".into()));
        }
        let v1 = !hs.has(handshake::CAP_RST);
        tracing::debug!(link = self.id, peer = %host, v1, raddr = %hs.raddr, "handshake");
        let _ = self.peer.set(PeerInfo { host, v1 });
        Ok((host, hs.raddr))
    }

    /// Registers the link with the node and starts measuring its round trip.
    fn came_up(self: &Arc<Self>, host: HostId, seen_as: &str) {
        // The route exists before anyone waiting for the handshake hears of it. (A link
        // closed meanwhile is no longer registered, so it gets no route.)
        if let Some(node) = self.node.upgrade() {
            node.seen_as(seen_as);
            node.link_up(self, host);
        }
        // A close that raced in keeps its Closed phase: waiters must see it.
        let up = self.phase.send_if_modified(|phase| match phase {
            Phase::Handshaking => {
                *phase = Phase::Up(host);
                true
            }
            _ => false,
        });
        if !up {
            return;
        }
        let mut st = self.state.lock();
        if st.closed.is_none() {
            self.ping(&mut st);
            self.kick(&mut st);
        }
    }

    pub(super) fn ping(&self, st: &mut LinkState) {
        self.ping_sent_us.store(self.now_us() + 1, Ordering::Relaxed);
        st.push(Header::link(Command::Ping, 0), &[]);
    }

    fn on_frame(
        &self,
        st: &mut LinkState,
        frame: Frame,
        wakers: &mut Vec<Waker>,
        deferred: &mut Vec<Deferred>,
    ) -> Result<(), CloseReason> {
        let h = frame.header;
        let v1 = self.is_v1();
        if h.cmd == Command::Rst && v1 {
            return Err(CloseReason::Protocol("RST from a peer that did not negotiate it".into()));
        }
        if h.dst_host != 0 && h.dst_host != self.local_host && h.cmd.is_routed() {
            deferred.push(Deferred::Forward(frame));
            return Ok(());
        }
        tracing::trace!(link = self.id, cmd = %h.cmd, src = h.src_port, dst = h.dst_port, len = h.len, "frame");
        match h.cmd {
            Command::Ping => self.pong(st),
            Command::Pong => self.on_pong(),
            Command::Handshake => tracing::debug!(link = self.id, "repeated HANDSHAKE ignored"),
            Command::Dial if self.for_us(&h) => deferred.push(Deferred::Dial(Key {
                local_port: h.dst_port,
                remote_port: h.src_port,
                remote_host: h.src_host,
            })),
            cmd if cmd.is_stream_frame() && self.for_us(&h) => {
                return self.on_stream_frame(st, frame, wakers, deferred)
            }
            Command::Service | Command::NoService => deferred.push(Deferred::Announcement {
                cmd: h.cmd,
                name: frame.payload,
                addr: Addr::new(HostId(h.src_host), h.src_port),
            }),
            Command::Reset if h.dst_host == 0 || h.dst_host == self.local_host => {
                self.on_route_lost(st, HostId(h.src_host), wakers)
            }
            Command::Reset => {
                self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
            Command::Discover => deferred.push(Deferred::Discover { from: HostId(h.src_host) }),
            Command::Follow => deferred.push(Deferred::Follow { host: HostId(h.src_host), addr: frame.payload }),
            _ => {}
        }
        Ok(())
    }

    /// Whether a DIAL or stream frame is addressed to this node. Frames for other hosts
    /// are dropped (counted): this node does not relay.
    fn for_us(&self, h: &Header) -> bool {
        if h.dst_host == self.local_host {
            return true;
        }
        self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(link = self.id, cmd = %h.cmd, dst = %HostId(h.dst_host), "frame for another host dropped");
        false
    }

    fn on_pong(&self) {
        let sent = self.ping_sent_us.swap(0, Ordering::Relaxed);
        if sent == 0 {
            return;
        }
        let sample = (self.now_us() + 1).saturating_sub(sent).min(u32::MAX as u64) as u32;
        let old = self.rtt_us.load(Ordering::Relaxed);
        let rtt = if old == 0 { sample } else { (old / 8) * 7 + sample / 8 };
        self.rtt_us.store(rtt.max(1), Ordering::Relaxed);
    }

    fn on_stream_frame(
        &self,
        st: &mut LinkState,
        frame: Frame,
        wakers: &mut Vec<Waker>,
        deferred: &mut Vec<Deferred>,
    ) -> Result<(), CloseReason> {
        let h = frame.header;
        let key = Key { local_port: h.dst_port, remote_port: h.src_port, remote_host: h.src_host };
        let Some(id) = st.table.find(&key) else {
            return self.on_unknown_stream(st, &key, h.cmd, deferred);
        };
        let arg = match h.cmd {
            Command::Rewind | Command::WndSize => frame.u32_payload(),
            Command::Rst => u32::from(frame.payload[0]),
            _ => h.len,
        };
        let len = frame.payload.len();
        let max_buffer = self.config.limits.max_link_buffer;
        if st.buffered + len + PAYLOAD_OVERHEAD > max_buffer {
            return Err(CloseReason::Limit(format!("more than {max_buffer} unread bytes buffered on the link")));
        }
        let slot = st.table.get_mut(id).expect("indexed slot exists");
        let charged = slot.charge();
        let fx = match slot.state.on_frame(h.cmd, arg) {
            Ok(fx) => fx,
            Err(v) if self.is_v1() && !v.is_fatal_for_v1() => {
                tracing::debug!(link = self.id, %v, "frame dropped");
                self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(v) => return Err(CloseReason::Protocol(format!("stream {}:{}: {v}", HostId(h.src_host), h.src_port))),
        };
        if fx.keep_data && len > 0 {
            // A payload handed out as a slice keeps its whole read buffer alive until it
            // is read. Small ones are copied, so a slow reader pins little memory, unless
            // the reader already waits on an empty queue and takes it at once.
            let taken_at_once = slot.queue.is_empty() && slot.read_waker.is_some();
            let payload = if len < COPY_BELOW && !taken_at_once {
                bytes::Bytes::copy_from_slice(&frame.payload)
            } else {
                frame.payload
            };
            slot.queue.push(payload);
        }
        if h.cmd == Command::Rst {
            // A reset stream's unread data is dropped (its accounting already was).
            slot.queue.clear();
        }
        let key = slot.key;
        match fx.reply {
            Some(Command::Rst) => self.push_reset(st, &key, RstReason::Aborted, false),
            Some(reply) => self.push_stream_frame(st, &key, reply, &[]),
            None => {}
        }
        if fx.fin2 {
            self.push_stream_frame(st, &key, Command::Fin2, &[]);
        }
        if fx.fin1 {
            self.push_stream_frame(st, &key, Command::Fin1, &[]);
        }
        if fx.start_close_window {
            // The peer's window started when it closed, before its FIN2 got here, and
            // what we write takes a while to reach it: stop a little early.
            let rtt_ms = u64::from(self.rtt_us.load(Ordering::Relaxed)) / 1000;
            let window = crate::proto::V1_CLOSE_WINDOW.as_millis() as u64;
            let end = self.now_ms() + window.saturating_sub(V1_CLOSE_MARGIN_MS + 2 * rtt_ms);
            st.close_windows.push_back((id, key, end));
        }
        let slot = st.table.get_mut(id).expect("indexed slot exists");
        if fx.wake_read {
            wakers.extend(slot.read_waker.take());
        }
        if fx.wake_write {
            wakers.extend(slot.write_waker.take());
        }
        st.buffered = st.buffered + slot.charge() - charged;
        Ok(())
    }

    /// RESET from a relay: `lost` is out of reach. Every stream with it on this link
    /// fails.
    fn on_route_lost(&self, st: &mut LinkState, lost: HostId, wakers: &mut Vec<Waker>) {
        tracing::debug!(link = self.id, host = %lost, "relay lost its route to the host");
        for (_, slot) in st.table.iter_mut() {
            if slot.key.remote_host == lost.0 && slot.state.fault().is_none() {
                slot.state.route_lost();
                slot.take_wakers(wakers);
            }
        }
    }

    /// A stream frame that matches no stream. A v1 peer's are dropped (Go's own close
    /// is loose about late frames). From a peer of this implementation DATA is a
    /// violation (it would be data nobody granted a window for); a SYN for a dial given
    /// up on is answered with RST, an RST may cancel a DIAL still in a backlog, and other
    /// control frames that raced a close are dropped.
    fn on_unknown_stream(
        &self,
        st: &mut LinkState,
        key: &Key,
        cmd: Command,
        deferred: &mut Vec<Deferred>,
    ) -> Result<(), CloseReason> {
        self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
        // Frames from beyond a relay may come from a v1 host: treat them as such.
        let from_peer = self.peer.get().is_some_and(|p| p.host.0 == key.remote_host);
        if self.is_v1() || !from_peer {
            tracing::debug!(link = self.id, %cmd, "frame for an unknown stream dropped");
            return Ok(());
        }
        match cmd {
            Command::Syn => self.push_reset(st, key, RstReason::Aborted, false),
            Command::Rst => deferred.push(Deferred::Cancel(*key)),
            Command::Data => {
                return Err(CloseReason::Protocol(format!(
                    "DATA for unknown stream {}:{} -> port {}",
                    HostId(key.remote_host),
                    key.remote_port,
                    key.local_port
                )))
            }
            cmd => tracing::debug!(link = self.id, %cmd, "late frame for a forgotten stream dropped"),
        }
        Ok(())
    }
}
