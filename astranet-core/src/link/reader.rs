//! The link reader: pulls large chunks from the socket and hands each to the state
//! machine, which handles every complete frame in it under one lock acquisition. DATA
//! payloads stay slices of the read buffer until they are read.

use super::LinkHandle;
use crate::proto::frame::{HEADER_LEN, MAX_PAYLOAD};
use crate::proto::link::CloseReason;
use bytes::BytesMut;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncReadExt};

/// A next hop holding more than this many bytes relayed or queued pauses the readers of
/// the links that feed it until it is down to [`RELAY_BUFFER_LOW`]. Flow control
/// alone bounds a relay's buffer by the windows its receivers granted, which with
/// thousands of relayed streams is hundreds of MiB: memory that costs more than it
/// carries (the relayed benchmark lost a third of its throughput to it). Only a hop
/// whose link is congested gets there; a stream whose reader stopped holds at most its
/// window at its receiver, not at the relay.
pub(crate) const RELAY_BUFFER_HIGH: usize = 8 << 20;
const RELAY_BUFFER_LOW: usize = 4 << 20;

/// Bytes asked for per read: enough for many frames per syscall.
const READ_CHUNK: usize = 256 * 1024;

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

pub(super) async fn run<R: AsyncRead + Unpin>(link: LinkHandle, mut io: R) {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut buffers = ReadBuffers { retired: VecDeque::new() };
    loop {
        buffers.make_room(&mut buf);
        let n = match io.read_buf(&mut buf).await {
            Ok(0) => return link.close(CloseReason::PeerClosed),
            Ok(n) => n,
            Err(e) => return link.close(CloseReason::Io(e.to_string())),
        };
        link.counters.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
        // Frames for other hosts leave as events and are queued on their next hop at
        // once, checked against flow control by the relay: a slow reader behind a relay
        // stalls only its own stream.
        if link.with(|l, wakers| l.handle_input(Instant::now(), &mut buf, wakers)).is_err() {
            return;
        }
        // A next hop whose link is congested (see RELAY_BUFFER_HIGH) pauses this
        // reader, as a TCP relay would, until it drained.
        link.wait_for_hop(RELAY_BUFFER_LOW).await;
    }
}
