//! Why a link closed.

use std::fmt;
use std::time::Duration;

/// Why a link went down. `Display` gives the message a person reads.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// This node closed it.
    Local,
    /// The peer closed the connection.
    PeerClosed,
    /// Reading or writing the connection failed (the OS error).
    Io(String),
    /// The peer broke the protocol (which rule, and how).
    Protocol(String),
    /// A timer ran out.
    Timeout(LinkTimeout),
    /// The peer made a bounded resource grow past its limit.
    Limit(String),
}

/// The timer that closed a link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkTimeout {
    /// No HANDSHAKE arrived within this time.
    Handshake(Duration),
    /// Nothing at all arrived for this long.
    Idle(Duration),
    /// A write made no progress for this long.
    Write(Duration),
    /// A frame of this many bytes was not complete this long after it began.
    FrameStall {
        /// The frame's size as far as known (its header says it once it arrived).
        len: usize,
        /// How long it had been incomplete.
        after: Duration,
    },
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::PeerClosed => f.write_str("connection closed by peer"),
            CloseReason::Io(e) => write!(f, "i/o error: {e}"),
            CloseReason::Protocol(e) => write!(f, "protocol violation: {e}"),
            CloseReason::Timeout(t) => t.fmt(f),
            CloseReason::Limit(e) => write!(f, "limit exceeded: {e}"),
        }
    }
}

impl fmt::Display for LinkTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkTimeout::Handshake(d) => write!(f, "no HANDSHAKE within {d:?}"),
            LinkTimeout::Idle(d) => write!(f, "nothing received for {d:?}"),
            LinkTimeout::Write(d) => write!(f, "a write was pending for more than {d:?}"),
            LinkTimeout::FrameStall { len, after } => {
                write!(f, "a {len}-byte frame was incomplete {after:?} after it began")
            }
        }
    }
}
