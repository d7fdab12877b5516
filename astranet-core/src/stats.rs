//! Counters of a node, readable at any time with [`crate::Node::stats`].

use crate::addr::{HostId, LinkId};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A node's counters, updated by its links as they go (see [`Stats`] for a snapshot).
#[derive(Debug, Default)]
pub struct Counters {
    /// Streams ever created (dialed or accepted).
    pub streams_opened: AtomicU64,
    /// Streams forgotten.
    pub streams_closed: AtomicU64,
    /// Bytes read from all links, frame headers included.
    pub bytes_in: AtomicU64,
    /// Bytes written to all links, frame headers included.
    pub bytes_out: AtomicU64,
    /// Frames received.
    pub frames_in: AtomicU64,
    /// Frames dropped: for unknown streams or hosts, or not understood in their context.
    pub frames_dropped: AtomicU64,
}

/// A snapshot of a node's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Links whose handshake completed and that are still up.
    pub links: usize,
    /// Streams known to the node: open, opening, or closed and lingering.
    pub streams: u64,
    /// Streams ever created (dialed or accepted).
    pub streams_opened: u64,
    /// DIALs from other nodes waiting in this node's listener backlogs (not streams
    /// yet: they become streams when accepted, and leave when their dialer gives up).
    pub pending_dials: usize,
    /// Bytes read from all links, frame headers included.
    pub bytes_in: u64,
    /// Bytes written to all links, frame headers included.
    pub bytes_out: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames dropped: for unknown streams or hosts, or not understood in their context.
    pub frames_dropped: u64,
    /// Streams this node relays between other hosts now.
    pub relayed_streams: usize,
}

impl Counters {
    pub(crate) fn snapshot(&self, links: usize) -> Stats {
        let opened = self.streams_opened.load(Ordering::Relaxed);
        let closed = self.streams_closed.load(Ordering::Relaxed);
        Stats {
            links,
            streams: opened.saturating_sub(closed),
            streams_opened: opened,
            pending_dials: 0,
            bytes_in: self.bytes_in.load(Ordering::Relaxed),
            bytes_out: self.bytes_out.load(Ordering::Relaxed),
            frames_in: self.frames_in.load(Ordering::Relaxed),
            frames_dropped: self.frames_dropped.load(Ordering::Relaxed),
            relayed_streams: 0,
        }
    }
}

/// One link of a node, as [`crate::Node::links`] shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LinkInfo {
    /// The link's number on this node.
    pub id: LinkId,
    /// The neighbour's host id.
    pub peer: HostId,
    /// The neighbour's socket address (`None` for a link over another pipe).
    pub remote_addr: Option<SocketAddr>,
    /// Streams on the link (open, opening, or closed and lingering).
    pub streams: usize,
    /// The round trip measured by keep-alive PING/PONG (zero until measured).
    pub rtt: Duration,
    /// The neighbour speaks only the original protocol (a Go node).
    pub v1: bool,
    /// The link runs over TLS and the neighbour's certificate was verified.
    pub secure: bool,
    /// Bytes of read buffers the link holds: the one being filled, and those kept
    /// alive by received data not read yet (at most 16 beyond the first).
    pub read_buffers: usize,
}
