//! The link reader: pulls large chunks from the socket and hands each to the state
//! machine, which handles every complete frame in it under one lock acquisition. DATA
//! payloads stay slices of the read buffer until they are read.

use super::driven::LinkDriver;
use super::LinkHandle;
use crate::proto::frame::{incomplete_frame_len, HEADER_LEN, MAX_PAYLOAD, RESERVE_AHEAD};
use crate::proto::link::CloseReason;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
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

/// The same for a reader a [`LinkDriver`] polls: the events of what it read reach the
/// embedder only when its poll returns, so it returns after every read that filled
/// a buffer, as a runtime reader's wakers would have fired by then.
pub(super) const DRIVEN_BUSY_READS: u32 = 1;

/// Room kept for a read: a whole frame of the usual maximum size.
const ROOM: usize = MAX_PAYLOAD + HEADER_LEN;

/// Free read buffers always kept for reuse, and pinned buffers examined per refill.
const KEEP_FREE: usize = 4;
const SCAN: usize = 16;

/// Beyond [`KEEP_FREE`], free buffers are kept as long as the link recently needed
/// them: every this often, down to the most that were pinned at once since. A
/// buffer dropped and allocated again costs 64 page faults (a bulk stream paid a
/// quarter of its CPU time for them).
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Bytes of read buffers that unread payload slices may pin beyond the bytes unread
/// on the link. Past that, payloads are copied out of the read buffer until the
/// application has read enough. A stream whose reader lags holds full buffers
/// (nothing to copy for); a peer that leaves one small payload unread in each buffer
/// holds mostly empty ones, and gets at most this many bytes of them (4 MiB) on top
/// of its unread bytes, which `max_link_buffer` bounds.
pub(crate) const PIN_SLACK: usize = 4 << 20;

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
/// faults of fresh allocations; free ones are kept as [`TRIM_EVERY`] says. Nothing
/// else allocates them (the link's decoder reserves nothing), so their sizes are known.
pub(super) struct ReadBuffers {
    current: Buffer,
    pinned: VecDeque<Buffer>,
    /// The sizes of the pinned buffers, summed.
    pinned_bytes: usize,
    free: Vec<Buffer>,
    /// The sizes of the free buffers, summed.
    free_bytes: usize,
    /// The most buffers pinned at once since the last trim.
    peak: usize,
    trimmed_at: Instant,
}

impl ReadBuffers {
    pub(super) fn new() -> ReadBuffers {
        ReadBuffers {
            current: Buffer::new(READ_CHUNK),
            pinned: VecDeque::new(),
            pinned_bytes: 0,
            free: Vec::new(),
            free_bytes: 0,
            peak: 0,
            trimmed_at: Instant::now(),
        }
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
            Some(i) => {
                let b = self.free.swap_remove(i);
                self.free_bytes -= b.size;
                b
            }
            None => Buffer::new(READ_CHUNK.max(need)),
        };
        let mut old = std::mem::replace(&mut self.current, next);
        self.current.bytes.extend_from_slice(&old.bytes);
        old.bytes.clear();
        self.pinned_bytes += old.size;
        self.pinned.push_back(old);
        self.peak = self.peak.max(self.pinned.len());
    }

    /// Frees the pinned buffers whose slices were all consumed (oldest first: the
    /// likeliest to be).
    fn collect(&mut self) {
        for _ in 0..self.pinned.len().min(SCAN) {
            let Some(mut b) = self.pinned.pop_front() else { break };
            // Room for the whole allocation only if no slice of it is alive.
            if b.bytes.try_reclaim(b.size) {
                self.pinned_bytes -= b.size;
                self.free_bytes += b.size;
                self.free.push(b);
            } else {
                self.pinned.push_back(b);
            }
        }
    }

    /// Every [`TRIM_EVERY`], drops the free buffers beyond what the busiest moment
    /// since needed (and [`KEEP_FREE`]).
    fn trim(&mut self, now: Instant) {
        if now.duration_since(self.trimmed_at) < TRIM_EVERY {
            return;
        }
        self.collect();
        let keep = KEEP_FREE.max(self.peak.saturating_sub(self.pinned.len()));
        for b in self.free.drain(keep.min(self.free.len())..) {
            self.free_bytes -= b.size;
        }
        self.peak = self.pinned.len();
        self.trimmed_at = now;
    }

    /// Whether payloads must be copied now: the pinned buffers exceed the link's
    /// `unread` bytes by more than [`PIN_SLACK`].
    fn must_copy(&mut self, unread: usize) -> bool {
        if self.pinned_bytes > PIN_SLACK + unread {
            self.collect();
        }
        self.pinned_bytes > PIN_SLACK + unread
    }

    /// Bytes held: the current, pinned and free buffers.
    fn held(&self) -> usize {
        self.current.size + self.pinned_bytes + self.free_bytes
    }
}

/// Reads the link until it closes.
pub(super) async fn run<R: AsyncRead + Unpin>(link: LinkHandle, io: R) {
    read(link, io, ReadBuffers::new(), BUSY_READS).await
}

/// Reads a TCP link until its handshake is done, then hands it, with the bytes read
/// and not yet handled, to `driver` (see [`LinkDriver`]).
pub(super) async fn run_then_hand_over(link: LinkHandle, mut io: TcpStream, driver: Arc<LinkDriver>) {
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
        let now = Instant::now();
        buffers.trim(now);
        link.read_buffers.store(buffers.held(), Ordering::Relaxed);
        // Frames for other hosts leave as events and are queued on their next hop at
        // once, checked against flow control by the relay: a slow reader behind a relay
        // stalls only its own stream.
        let handled = link.with(|l, wakers| {
            l.copy_payloads(buffers.must_copy(l.unread()));
            l.handle_input(now, &mut buffers.current.bytes, wakers).map(|()| l.queued())
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// Fills the current buffer and retires it, keeping its bytes alive as a payload
    /// slice would.
    fn pin_one(b: &mut ReadBuffers) -> Bytes {
        let room = b.current.bytes.capacity() - b.current.bytes.len();
        b.current.bytes.extend_from_slice(&vec![7u8; room]);
        let slice = b.current.bytes.split().freeze();
        b.make_room();
        slice
    }

    #[test]
    fn free_buffers_outlive_a_burst_by_one_trim_then_go() {
        let mut b = ReadBuffers::new();
        let t0 = b.trimmed_at;
        let slices: Vec<Bytes> = (0..10).map(|_| pin_one(&mut b)).collect();
        assert_eq!(b.pinned.len(), 10);
        drop(slices);
        // Within the period, nothing is dropped; at its end the burst's buffers stay
        // for the next one.
        b.trim(t0 + TRIM_EVERY / 2);
        b.trim(t0 + TRIM_EVERY);
        assert_eq!(b.free.len() + b.pinned.len(), 10);
        assert!(b.pinned.is_empty(), "consumed buffers are free again");
        // A quiet period later, only the few always kept remain.
        b.trim(t0 + 2 * TRIM_EVERY);
        assert_eq!(b.free.len(), KEEP_FREE);
        // A refill reuses them instead of allocating.
        let _held = pin_one(&mut b);
        assert_eq!(b.free.len(), KEEP_FREE - 1);
        assert_eq!(b.free_bytes, b.free.iter().map(|p| p.size).sum::<usize>());
    }

    #[test]
    fn only_buffers_pinned_beyond_the_unread_bytes_make_payloads_copied() {
        let mut b = ReadBuffers::new();
        let n = PIN_SLACK / READ_CHUNK + 2;
        // Full buffers of unread data: they hold what flow control admitted.
        let slices: Vec<Bytes> = (0..n).map(|_| pin_one(&mut b)).collect();
        let unread: usize = slices.iter().map(Bytes::len).sum();
        assert!(!b.must_copy(unread));
        // The same buffers each pinned by one byte: copy.
        let bytes: Vec<Bytes> = slices.iter().map(|s| s.slice(..1)).collect();
        drop(slices);
        assert!(b.must_copy(bytes.len()));
        drop(bytes);
        assert!(!b.must_copy(0), "consumed buffers are collected before deciding");
        assert_eq!(b.pinned_bytes, b.pinned.iter().map(|p| p.size).sum::<usize>());
        assert_eq!(b.free_bytes, b.free.iter().map(|p| p.size).sum::<usize>());
    }
}
