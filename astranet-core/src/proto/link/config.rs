//! What a link needs to know of its node's configuration.

use std::time::Duration;

/// The timings and limits of one link (taken from the node's `Config`).
#[derive(Clone, Debug)]
pub struct LinkConfig {
    /// Send PING when nothing was written for this long.
    pub ping_after: Duration,
    /// Close the link when nothing at all was received for this long.
    pub idle_timeout: Duration,
    /// Close the link when the peer's HANDSHAKE does not arrive within this time.
    pub handshake_timeout: Duration,
    /// Close the link when a frame that began arriving is not complete within this time.
    pub frame_stall_timeout: Duration,
    /// How long a closed stream is remembered, from when its last frame was written,
    /// to absorb frames in flight.
    pub linger: Duration,
    /// Streams (open, opening or lingering) on the link.
    pub max_streams: usize,
    /// Received bytes buffered but unread, all streams together; a peer that makes it
    /// grow past this is disconnected.
    pub max_buffer: usize,
    /// Bytes of data frames queued for writing before writers wait.
    pub write_queue: usize,
    /// Bytes of control frames (answers, credit) queued before the peer that does not
    /// read them is disconnected.
    pub max_control_queue: usize,
    /// Largest auto-tuned receive window per stream.
    pub max_stream_window: u32,
    /// A window every stream is granted with its first credit (0: none; see
    /// [`Tuning::min_window`](crate::proto::Tuning::min_window)).
    pub min_stream_window: u32,
    /// Total receive-window growth (beyond the initial windows) on the link.
    pub window_budget: u64,
    /// Streams and DIALs the peer may reset per second, on average (a burst of as many
    /// is allowed); a peer that resets faster is disconnected (a rapid-reset flood).
    pub max_resets_per_second: u32,
    /// The idle timeout every stream starts with (see [`Link::set_idle_timeout`]).
    ///
    /// [`Link::set_idle_timeout`]: super::Link::set_idle_timeout
    pub stream_idle_timeout: Option<Duration>,
}

impl Default for LinkConfig {
    /// The defaults of the Go package where it has one (keep-alive 10 s).
    fn default() -> Self {
        LinkConfig {
            ping_after: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(100),
            handshake_timeout: Duration::from_secs(10),
            frame_stall_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(10),
            max_streams: 1 << 20,
            max_buffer: 1 << 30,
            write_queue: 1 << 20,
            max_control_queue: 64 << 20,
            max_stream_window: 16 << 20,
            min_stream_window: 0,
            window_budget: 256 << 20,
            max_resets_per_second: 10_000,
            stream_idle_timeout: None,
        }
    }
}
