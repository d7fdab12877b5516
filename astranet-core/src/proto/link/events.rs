//! What a link tells its node: everything that concerns more than the link itself.

use super::close::CloseReason;
use super::table::StreamKey;
use crate::addr::{Addr, HostId};
use crate::proto::frame::{Command, Frame};
use bytes::Bytes;

/// A link's news for its node, taken with [`super::Link::poll_event`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake completed: the peer's host id, and how the peer sees this node's
    /// address (`RAddr`, `ip:port` or empty).
    Up {
        /// The neighbour's host id.
        peer: HostId,
        /// This node's address as the neighbour sees it.
        seen_as: String,
    },
    /// A DIAL for the listener on `key.local_port` (nothing is created until the node
    /// accepts it with [`super::Link::accept_stream`] or refuses it).
    Dial(StreamKey),
    /// The dialer gave up a DIAL that may still wait in a listener's backlog.
    CancelDial(StreamKey),
    /// A relay lost its route to this host (RESET): DIALs from it on this link that
    /// still wait in a listener's backlog will never be wanted.
    RouteLost(HostId),
    /// SERVICE or NO_SERVICE: `name` at `addr`.
    Announcement {
        /// [`Command::Service`] or [`Command::NoService`].
        cmd: Command,
        /// The service name, as received (not checked yet).
        name: Bytes,
        /// Where the instance listens.
        addr: Addr,
    },
    /// A frame for another host, to relay.
    Forward(Frame),
    /// `from` asks for this node's direct addresses.
    Discover {
        /// The asking host.
        from: HostId,
    },
    /// `host` says it can be reached directly at `addr` (`ip:port`, as received).
    Follow {
        /// The host that can be reached.
        host: HostId,
        /// Its address, as received (not checked yet).
        addr: Bytes,
    },
    /// The link is closed; nothing more will come from it.
    Closed(CloseReason),
}
