//! What a link may send and how strict it is, decided once by the peer's handshake.

use crate::proto::frame::{Command, RstReason};
use crate::proto::stream::StreamViolation;

/// The rules of a link, from what the peer's HANDSHAKE announced.
///
/// Every difference between a v1 (Go) peer and a peer of this project is a method
/// here, so that the rest of the link asks once instead of re-deciding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// The peer announced no extension: the Go package's protocol exactly.
    V1,
    /// The peer speaks this project's extensions (`rst`).
    Extended,
}

/// What to do with a stream frame that matches no stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unknown {
    /// Drop it (counted).
    Drop,
    /// A SYN for a dial this side gave up: answer RST.
    Refuse,
    /// An RST that may cancel a DIAL still waiting in a listener's backlog.
    CancelDial,
}

impl Policy {
    /// Whether the peer may be sent `cmd`.
    pub fn can_send(self, cmd: Command) -> bool {
        self == Policy::Extended || cmd.is_v1()
    }

    /// Whether the peer may send `cmd`.
    pub fn may_receive(self, cmd: Command) -> bool {
        self.can_send(cmd)
    }

    /// Streams on this link treat the far end as a possible v1 node (it may be a Go
    /// host even behind a relay): its FIN2 starts a close window, our FINs wait for
    /// its credit, and credit goes back after every read.
    pub fn streams_are_v1(self) -> bool {
        self == Policy::V1
    }

    /// The frames that refuse a DIAL: RST with the reason, or nothing for a v1 peer
    /// (Go drops dials it cannot serve; its dialer waits for its deadline).
    pub fn refusal(self, reason: RstReason) -> Option<(Command, u8)> {
        (self == Policy::Extended).then_some((Command::Rst, reason as u8))
    }

    /// The frames that abort a stream: RST, or for a v1 peer the v1 close (FIN2 then
    /// FIN1) once the stream exists on its side.
    pub fn abort_frames(self, peer_has_stream: bool) -> &'static [Command] {
        match (self, peer_has_stream) {
            (Policy::Extended, _) => &[Command::Rst],
            (Policy::V1, true) => &[Command::Fin2, Command::Fin1],
            (Policy::V1, false) => &[],
        }
    }

    /// How a frame for no known stream is handled. From a v1 peer every such frame is
    /// dropped, as Go's own close is loose about late frames. An RST (which only hosts
    /// of this project send) may give up a DIAL still waiting in a backlog, whether it
    /// comes from the neighbour or through it. A late SYN from the neighbour is
    /// refused; from hosts beyond it (which may be Go hosts) it is dropped. Other late
    /// frames race a close and are dropped too: DATA that waited in a congested queue
    /// may arrive after its stream was forgotten.
    pub fn unknown_stream(self, cmd: Command, from_neighbour: bool) -> Unknown {
        match (self, cmd) {
            (Policy::V1, _) => Unknown::Drop,
            (Policy::Extended, Command::Rst) => Unknown::CancelDial,
            (Policy::Extended, Command::Syn) if from_neighbour => Unknown::Refuse,
            _ => Unknown::Drop,
        }
    }

    /// Whether a broken stream rule closes the link. Flow violations always do (the
    /// receiver's memory bound depends on them); out-of-order frames from a v1 peer are
    /// dropped, as Go's own state machine is loose about them.
    pub fn is_fatal(self, v: &StreamViolation) -> bool {
        self == Policy::Extended || v.is_fatal_for_v1()
    }

    /// How a relayed frame is passed to a peer of this policy: as is, translated (an
    /// RST reaches a v1 node as the v1 close), or not at all.
    pub fn relay(self, cmd: Command) -> Relay {
        match cmd {
            cmd if self.can_send(cmd) => Relay::AsIs,
            Command::Rst => Relay::As(&[Command::Fin2, Command::Fin1]),
            _ => Relay::Drop,
        }
    }
}

/// How a relay passes a frame on (see [`Policy::relay`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Relay {
    /// Unchanged.
    AsIs,
    /// As these frames, with the same addresses and no payload.
    As(&'static [Command]),
    /// Not at all.
    Drop,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v1_peer_never_gets_an_extension() {
        for cmd in Command::ALL {
            assert_eq!(Policy::V1.can_send(cmd), cmd.is_v1());
        }
        assert_eq!(Policy::V1.refusal(RstReason::NoListener), None);
        assert_eq!(Policy::V1.abort_frames(false), &[] as &[Command]);
        assert_eq!(Policy::V1.abort_frames(true), &[Command::Fin2, Command::Fin1]);
        assert_eq!(Policy::Extended.abort_frames(false), &[Command::Rst]);
        assert_eq!(Policy::V1.relay(Command::Rst), Relay::As(&[Command::Fin2, Command::Fin1]));
        assert_eq!(Policy::V1.relay(Command::Data), Relay::AsIs);
        assert_eq!(Policy::Extended.relay(Command::Rst), Relay::AsIs);
    }

    #[test]
    fn unknown_streams() {
        assert_eq!(Policy::V1.unknown_stream(Command::Syn, true), Unknown::Drop);
        assert_eq!(Policy::Extended.unknown_stream(Command::Syn, false), Unknown::Drop);
        assert_eq!(Policy::Extended.unknown_stream(Command::Syn, true), Unknown::Refuse);
        assert_eq!(Policy::Extended.unknown_stream(Command::Rst, true), Unknown::CancelDial);
        assert_eq!(Policy::Extended.unknown_stream(Command::Rst, false), Unknown::CancelDial);
        assert_eq!(Policy::V1.unknown_stream(Command::Rst, true), Unknown::Drop);
        assert_eq!(Policy::Extended.unknown_stream(Command::Data, true), Unknown::Drop);
    }
}
