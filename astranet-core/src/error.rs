//! The one error type of the library.

use crate::addr::{Addr, HostId};
use crate::proto::link::CloseReason;
use crate::proto::RstReason;
use std::io;
use std::time::Duration;

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, each variant meaningful on its own.
///
/// Converts into [`std::io::Error`] with a matching [`io::ErrorKind`] (refused,
/// timed out, reset, …) and this error as the inner error, so code written for sockets
/// keeps working; stream I/O returns those.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The remote node refused the dial.
    #[error("connection to {addr} refused: {reason}")]
    Refused {
        /// The address that was dialed.
        addr: Addr,
        /// Why the remote node refused, from its RST frame.
        reason: RstReason,
    },
    /// The operation did not complete within its timeout.
    #[error("{what} timed out after {}", human(*.after))]
    TimedOut {
        /// The operation that timed out, e.g. `"dial to <addr>"`.
        what: String,
        /// The timeout that expired.
        after: Duration,
    },
    /// Nobody announced the service (on the port asked for, if any) within the dial
    /// timeout.
    #[error("no such service {name:?}{} (nobody announced it within {})", on_port(*.port), human(*.after))]
    NoSuchService {
        /// The full name looked up, environment suffix included.
        name: String,
        /// The port the dial asked for (`"name:port"`), if any.
        port: Option<u32>,
        /// How long the dial waited for it to appear.
        after: Duration,
    },
    /// No link leads to the host.
    #[error("no route to host {0}")]
    NoRoute(HostId),
    /// The link the stream or dial travelled on went down.
    #[error("link to {peer} closed: {reason}")]
    LinkClosed {
        /// The peer of the link: its host id and/or socket address, or `link #<n>`
        /// before either is known.
        peer: String,
        /// Why the link closed (closed locally, by the peer, I/O error, timeout, limit).
        reason: CloseReason,
    },
    /// A relay on the way lost its route to the stream's remote host (RESET).
    #[error("the relay {relay} lost its route to host {host}")]
    RouteLost {
        /// The host that is out of reach.
        host: HostId,
        /// The relay that said so: the peer of the link, named as in
        /// [`Error::LinkClosed`].
        relay: String,
    },
    /// The peer aborted the stream.
    #[error("stream reset by peer ({0})")]
    Reset(RstReason),
    /// The stream was aborted locally.
    #[error("stream aborted")]
    Aborted,
    /// The stream was shut down for writing on this side.
    #[error("stream closed for writing")]
    BrokenPipe,
    /// The peer no longer reads the stream: it said so (FIN1), or it is a v1 (Go) node
    /// that closed the stream more than 10 s ago and has forgotten it.
    #[error("the peer no longer reads the stream: {0}")]
    PeerClosed(&'static str),
    /// The peer broke the protocol; the link was closed.
    #[error("protocol violation by {peer}: {detail}")]
    Protocol {
        /// The peer of the link, named as in [`Error::LinkClosed`].
        peer: String,
        /// Which rule the peer broke.
        detail: String,
    },
    /// A configured limit was hit.
    #[error("limit exceeded: {0}")]
    LimitExceeded(String),
    /// A bind or dial target that does not parse.
    #[error("invalid target {target:?}: {reason}")]
    InvalidTarget {
        /// The string as given.
        target: String,
        /// Why it does not parse.
        reason: String,
    },
    /// A configuration value is out of range (see [`Config::validate`](crate::Config::validate)).
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The port is already bound on this node.
    #[error("virtual port {0} is already bound")]
    AddrInUse(u32),
    /// The node was closed.
    #[error("node closed")]
    NodeClosed,
    /// The listener was closed.
    #[error("listener closed")]
    ListenerClosed,
    /// A TCP address given to [`Node::listen`](crate::Node::listen) or
    /// [`Node::join`](crate::Node::join) is malformed or its name did not resolve.
    #[error("cannot resolve the TCP address: {0}")]
    Resolve(io::Error),
    /// A socket operation failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Error {
    /// The closest [`io::ErrorKind`].
    pub fn kind(&self) -> io::ErrorKind {
        use io::ErrorKind as K;
        match self {
            Error::Refused { .. } => K::ConnectionRefused,
            Error::TimedOut { .. } => K::TimedOut,
            Error::NoRoute(_) => K::HostUnreachable,
            Error::NoSuchService { .. } => K::NotFound,
            Error::LinkClosed { .. } | Error::RouteLost { .. } => K::ConnectionAborted,
            Error::Reset(_) | Error::Aborted => K::ConnectionReset,
            Error::BrokenPipe | Error::PeerClosed(_) => K::BrokenPipe,
            Error::Protocol { .. } => K::InvalidData,
            Error::LimitExceeded(_) => K::Other,
            Error::InvalidTarget { .. } | Error::InvalidConfig(_) => K::InvalidInput,
            Error::AddrInUse(_) => K::AddrInUse,
            Error::NodeClosed | Error::ListenerClosed => K::NotConnected,
            Error::Resolve(_) => K::NotFound,
            Error::Io(e) => e.kind(),
        }
    }
}

/// A duration as a message says it: "250 ms", "10 s", "1.5 s" (a timeout computed
/// from a deadline is a few microseconds short; nobody wants "249.818392ms").
fn human(d: Duration) -> String {
    let ms = (d.as_micros() + 500) / 1000;
    match ms {
        0..1000 => format!("{ms} ms"),
        _ if ms % 1000 == 0 => format!("{} s", ms / 1000),
        _ => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// `" on port 80"` in a message, or nothing.
fn on_port(port: Option<u32>) -> String {
    port.map(|p| format!(" on port {p}")).unwrap_or_default()
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            e => io::Error::new(e.kind(), e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_say_durations_as_people_do() {
        let e = Error::NoSuchService { name: "db.prod".into(), port: None, after: Duration::from_micros(249_818) };
        assert_eq!(e.to_string(), "no such service \"db.prod\" (nobody announced it within 250 ms)");
        let e = Error::TimedOut { what: "dial to x".into(), after: Duration::from_secs(10) };
        assert_eq!(e.to_string(), "dial to x timed out after 10 s");
        assert_eq!(human(Duration::from_millis(1500)), "1.5 s");
        assert_eq!(human(Duration::ZERO), "0 ms");
    }
}
