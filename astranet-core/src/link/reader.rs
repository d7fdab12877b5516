//! The link reader: pulls large chunks from the socket and hands each to the state
//! machine, which handles every complete frame in it under one lock acquisition. DATA
//! payloads stay slices of the read buffer until they are read.

use super::driven::ReadDriver;
use super::LinkHandle;
use crate::proto::frame::{incomplete_frame_len, HEADER_LEN, MAX_PAYLOAD, RESERVE_AHEAD};
use crate::proto::link::CloseReason;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::net::TcpStream;

/// A next hop holding more than this many bytes relayed or queued pauses the readers of
/// the links that feed it until it is down to [`RELAY_BUFFER_LOW`]. Flow control
/// alone bounds a relay's buffer by the windows its receivers granted, which with
/// thousands of relayed streams is hundreds of MiB: memory that costs more than it
/// carries (the relayed benchmark lost a third of its throughput to it). Only a hop
/// whose link is congested gets there; a stream whose reader stopped holds at most its
/// window at its receiver, not at the relay.
pub(crate) const RELAY_BUFFER_HIGH: usize = 8 << 20;
const RELAY_BUFFER_LOW: usize = 4 << 20;

/// Bytes asked for per read: enough for many frames per syscall, and the size of a
/// read buffer (larger only to hold a frame over that size: a Go sender puts its whole
/// window in one DATA frame).
const READ_CHUNK: usize = 256 * 1024;

/// Reads in a row without waiting after which the reader lets other tasks run.
const BUSY_READS: u32 = 8;

/// The same for a reader a [`ReadDriver`] polls: the events of what it read reach the
/// embedder only when its poll returns, so it returns after every read that filled
/// a buffer, as a runtime reader's wakers would have fired by then.
pub(super) const DRIVEN_BUSY_READS: u32 = 1;

/// Room kept for a read: a whole frame of the usual maximum size.
const ROOM: usize = MAX_PAYLOAD + HEADER_LEN;

/// Free read buffers kept for reuse, and pinned buffers examined per refill.
const KEEP_FREE: usize = 4;
const SCAN: usize = 16;

/// Read buffers a link's unread payload slices may pin. Beyond this, payloads are
/// copied out of the read buffer until the application has read enough: what a peer
/// can make a link hold is then `max_link_buffer` of unread payload plus at most this
/// many read buffers (4 MiB), whatever the sizes of its frames.
pub(crate) const MAX_PINNED: usize = 16;

/// A read buffer and the size of its allocation (a view's own capacity says nothing
/// of the allocation it keeps alive).
struct Buffer {
    bytes: BytesMut,
    size: usize,
}

impl Buffer {
    fn new(size: usize) -> Buffer {
        Buffer { bytes: BytesMut::with_capacity(size), size }
    }
}

/// Read buffers of one link. DATA payloads are handed out as slices of the read buffer,
/// so a retired buffer is free again only once every stream consumed its slices.
/// Retired buffers wait in `pinned` until then and are reused, which saves the page
/// faults of fresh allocations; at most [`KEEP_FREE`] free ones are kept. Nothing else
/// allocates them (the link's decoder reserves nothing), so their sizes are known.
pub(super) struct ReadBuffers {
    current: Buffer,
    pinned: VecDeque<Buffer>,
    free: Vec<Buffer>,
}

impl ReadBuffers {
    pub(super) fn new() -> ReadBuffers {
        ReadBuffers { current: Buffer::new(READ_CHUNK), pinned: VecDeque::new(), free: Vec::new() }
    }

    /// Makes room in the current buffer for a read and for the rest of the incomplete
    /// frame at its front (up to [`RESERVE_AHEAD`] at a time): reclaims it in place if
    /// no slice of it is alive, else switches to a free buffer (or a new one), carrying
    /// over the bytes of the incomplete frame.
    fn make_room(&mut self) {
        let buf = &mut self.current.bytes;
        let rest = incomplete_frame_len(buf).saturating_sub(buf.len()).min(RESERVE_AHEAD);
        let room = rest.max(ROOM);
        if buf.capacity() - buf.len() >= room || (buf.len() + room <= self.current.size && buf.try_reclaim(room)) {
            return;
        }
        let need = buf.len() + room;
        self.collect();
        let next = match self.free.iter().position(|b| b.size >= need) {
            Some(i) => self.free.swap_remove(i),
            None => Buffer::new(READ_CHUNK.max(need)),
        };
        let mut old = std::mem::replace(&mut self.current, next);
        self.current.bytes.extend_from_slice(&old.bytes);
        old.bytes.clear();
        self.pinned.push_back(old);
    }

    /// Frees the pinned buffers whose slices were all consumed (oldest first: the
    /// likeliest to be). Free ones beyond [`KEEP_FREE`] are dropped.
    fn collect(&mut self) {
        for _ in 0..self.pinned.len().min(SCAN) {
            let Some(mut b) = self.pinned.pop_front() else { break };
            // Room for the whole allocation only if no slice of it is alive.
            if !b.bytes.try_reclaim(b.size) {
                self.pinned.push_back(b);
            } else if self.free.len() < KEEP_FREE {
                self.free.push(b);
            }
        }
    }

    /// Whether payloads must be copied now: [`MAX_PINNED`] buffers are pinned.
    fn saturated(&mut self) -> bool {
        if self.pinned.len() >= MAX_PINNED {
            self.collect();
        }
        self.pinned.len() >= MAX_PINNED
    }

    /// Bytes held: the current, pinned and free buffers.
    fn held(&self) -> usize {
        self.current.size + self.pinned.iter().chain(&self.free).map(|b| b.size).sum::<usize>()
    }
}

/// Reads the link until it closes.
pub(super) async fn run<R: AsyncRead + Unpin>(link: LinkHandle, io: R) {
    read(link, io, ReadBuffers::new(), BUSY_READS).await
}

/// Reads a TCP link until its handshake is done, then hands it, with the bytes read
/// and not yet handled, to `driver` (see [`ReadDriver`]).
pub(super) async fn run_then_hand_over(link: LinkHandle, mut io: TcpStream, driver: Arc<ReadDriver>) {
    let mut buffers = ReadBuffers::new();
    if !read_while(&link, &mut io, &mut buffers, BUSY_READS, |link| link.peer().is_none()).await {
        return;
    }
    // Out of the runtime's reactor: the driver's epoll alone hears of its bytes.
    let adopted = io.into_std().and_then(|io| driver.adopt(link.clone(), io, buffers));
    match adopted {
        Ok(token) => link.read_by(&driver, token),
        Err(e) => link.close(CloseReason::Io(format!("cannot hand the link's reading over: {e}"))),
    }
}

/// Reads the link until it closes, starting with the unhandled bytes in `buffers`,
/// letting others run after `busy_reads` reads in a row.
pub(super) async fn read<R: AsyncRead + Unpin>(link: LinkHandle, mut io: R, mut buffers: ReadBuffers, busy_reads: u32) {
    read_while(&link, &mut io, &mut buffers, busy_reads, |_| true).await;
}

/// Reads the link while `go_on` says so after each chunk handled; returns whether it
/// stopped for that (false: the link closed).
async fn read_while<R: AsyncRead + Unpin>(
    link: &LinkHandle,
    io: &mut R,
    buffers: &mut ReadBuffers,
    busy_reads: u32,
    go_on: impl Fn(&LinkHandle) -> bool,
) -> bool {
    // Reads in a row that found bytes waiting.
    let mut busy = 0;
    loop {
        buffers.make_room();
        let mut waited = false;
        let read = {
            let mut read = std::pin::pin!(io.read_buf(&mut buffers.current.bytes));
            std::future::poll_fn(|cx| {
                let r = read.as_mut().poll(cx);
                waited |= r.is_pending();
                r
            })
            .await
        };
        let n = match read {
            Ok(0) => {
                link.close(CloseReason::PeerClosed);
                return false;
            }
            Ok(n) => n,
            Err(e) => {
                link.close(CloseReason::Io(e.to_string()));
                return false;
            }
        };
        link.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        let copy = buffers.saturated();
        link.read_buffers.store(buffers.held(), Ordering::Relaxed);
        // Frames for other hosts leave as events and are queued on their next hop at
        // once, checked against flow control by the relay: a slow reader behind a relay
        // stalls only its own stream.
        let buf = &mut buffers.current.bytes;
        let handled = link.with(|l, wakers| {
            l.copy_payloads(copy);
            l.handle_input(Instant::now(), buf, wakers).map(|()| l.queued())
        });
        let Ok(queued) = handled else { return false };
        // A next hop whose link is congested (see RELAY_BUFFER_HIGH) pauses this
        // reader, as a TCP relay would, until it drained.
        link.wait_for_hop(RELAY_BUFFER_LOW).await;
        // A peer that floods keeps the socket readable: without yielding, this task
        // would run until tokio's budget runs out (128 reads), holding the worker
        // while the tasks it woke (the link's writer, streams of other links) wait in
        // its slot. Yielding after every read costs a fifth of the throughput of many
        // parallel streams: it yields every few reads in a row, and at once when the
        // answers to what it read (RSTs to a DIAL flood, say) fill the write queue, so
        // that the writer takes them before more pile up.
        busy = if waited { 0 } else { busy + 1 };
        if busy >= busy_reads || queued >= link.settings.link.write_queue {
            busy = 0;
            tokio::task::yield_now().await;
        }
        if !go_on(link) {
            return true;
        }
    }
}
