//! The stream state machine, without I/O: which frames a stream accepts in which phase,
//! what it answers, and when it may be forgotten.
//!
//! ```text
//! client                              server
//! Dialing   --DIAL-->
//!                                     (listener backlog; accept)
//!           <--SYN--                  SynSent
//! Acked     --ACK-->                  Established (may write)
//! Established <--SYN_ACK--
//! ```
//! Closing follows the protocol's two FINs: FIN2 "I finished writing" (half-close),
//! FIN1 "I will not read any more". A side that has sent both (or RST) sends nothing
//! else on the stream, so its peer may forget the stream as soon as it has received
//! them; the sender of the FINs lingers a while for frames already in flight.
//!
//! A v1 (Go) peer never sends FIN1. Its `Close()` sends FIN2 and goes on reading for
//! [`V1_CLOSE_WINDOW`], then forgets the stream: so its FIN2 only ends its writing, and
//! the window's end ([`StreamState::close_window_over`]) is when it stops reading.

use super::flow::{FlowError, SendWindow};
use super::frame::{Command, RstReason};
use super::recv::Recv;
use std::time::Duration;

/// How long a v1 (Go) peer goes on reading after its `Close()` (Go's `TCP_CLOSE_WND`,
/// `socket/stream.go`): counted from the arrival of its FIN2, after which it has
/// forgotten the stream.
pub const V1_CLOSE_WINDOW: Duration = Duration::from_secs(10);

/// Which side opened the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// This side dialed (sent DIAL).
    Client,
    /// This side accepted a DIAL (sends SYN).
    Server,
}

/// Where the stream's opening handshake stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opening {
    /// Client: DIAL sent, waiting for SYN.
    Dialing,
    /// Client: SYN received and ACK sent; DATA from the server may arrive already.
    Acked,
    /// Server: SYN sent, waiting for ACK.
    SynSent,
    /// Both sides may write; this side is the one that dialed or accepted.
    Established(Role),
}

/// One direction of the stream as seen from this side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Half {
    /// Still flowing.
    Open,
    /// Closed by the application; the FIN that says so waits until a v1 peer read
    /// everything sent (see [`StreamState::shutdown_write`]).
    Owed,
    /// Closed, and the peer told (or nothing needs telling).
    Closed,
}

/// How the peer's reading side stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerReading {
    /// The peer reads.
    Open,
    /// The peer said it reads no more (FIN1).
    Closed,
    /// A v1 peer's close window ended: it has forgotten the stream.
    Forgot,
}

/// Why a stream can no longer be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The peer sent RST (refused a dial or aborted the stream).
    Reset(RstReason),
    /// The application aborted the stream.
    Aborted,
    /// A relay reported (RESET) that it lost its route to the peer's host.
    RouteLost,
    /// No data moved for the stream's idle timeout: it was reset.
    TimedOut,
    /// The dial was not answered within its timeout: it was given up.
    DialTimedOut,
}

/// A protocol rule broken by the peer on one stream.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamViolation {
    /// A frame the stream's phase does not allow (e.g. DATA before the handshake or
    /// after FIN2).
    #[error("{cmd} not expected in phase {phase:?}")]
    Unexpected {
        /// The offending command.
        cmd: Command,
        /// The stream's opening phase.
        phase: Opening,
    },
    /// A flow-control rule was broken.
    #[error(transparent)]
    Flow(#[from] FlowError),
}

impl StreamViolation {
    /// Flow violations break the receiver's memory bound and always close the link;
    /// out-of-order frames from a v1 peer are dropped, since Go's own state machine is
    /// loose about them.
    pub fn is_fatal_for_v1(&self) -> bool {
        matches!(self, StreamViolation::Flow(_))
    }
}

/// What the driver must do after an incoming frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Answer with this frame (ACK, SYN_ACK or RST).
    pub reply: Option<Command>,
    /// Send FIN2 now (after the reply): a close that waited for the peer to read
    /// everything ([`StreamState::shutdown_write`]), or a v1 server's late accept of a
    /// dial given up on, which must not be left waiting.
    pub fin2: bool,
    /// Send FIN1 now, after FIN2 if both.
    pub fin1: bool,
    /// A v1 peer closed: it reads for [`V1_CLOSE_WINDOW`] more, then the driver calls
    /// [`StreamState::close_window_over`].
    pub start_close_window: bool,
    /// Wake the task waiting on the read side (a read, or a dial waiting to be
    /// established).
    pub wake_read: bool,
    /// Wake the task waiting to write (credit or stream state changed).
    pub wake_write: bool,
    /// The payload goes into the receive buffer (false: drop it, accounted).
    pub keep_data: bool,
}

/// Everything the protocol knows about one stream. (Kept small, with no field that
/// another one implies: this is most of the memory of an idle stream.)
#[derive(Debug)]
pub struct StreamState {
    opening: Opening,
    /// Our writing half (FIN2) and reading half (FIN1). The reading half closes only
    /// when the application lets go of the stream (or aborts it).
    writing: Half,
    reading: Half,
    /// The peer finished writing (FIN2 received).
    peer_done_writing: bool,
    peer_reading: PeerReading,
    /// The peer may be a v1 node: it never sends FIN1 and stops reading
    /// [`V1_CLOSE_WINDOW`] after its FIN2.
    v1: bool,
    /// The application let go of the stream (its handle was released). Not the
    /// reading half: a stream reset by a timeout has both halves closed, and a handle.
    released: bool,
    /// Why the stream failed; `Aborted` also means we sent RST (or its v1 form).
    fault: Option<Fault>,
    /// Flow control of the data we send.
    pub send: SendWindow,
    /// The data we receive, with its flow control.
    pub recv: Recv,
}

impl StreamState {
    /// A client stream whose DIAL is about to be sent.
    pub fn dialing(peer_is_v1: bool) -> StreamState {
        Self::new(Opening::Dialing, peer_is_v1)
    }

    /// A server stream whose SYN is about to be sent.
    pub fn accepted(peer_is_v1: bool) -> StreamState {
        Self::new(Opening::SynSent, peer_is_v1)
    }

    fn new(opening: Opening, v1: bool) -> StreamState {
        StreamState {
            opening,
            writing: Half::Open,
            reading: Half::Open,
            peer_done_writing: false,
            peer_reading: PeerReading::Open,
            v1,
            released: false,
            fault: None,
            send: SendWindow::default(),
            recv: Recv::default(),
        }
    }

    /// Whether this side dialed or accepted the stream.
    pub fn role(&self) -> Role {
        match self.opening {
            Opening::Dialing | Opening::Acked => Role::Client,
            Opening::SynSent => Role::Server,
            Opening::Established(role) => role,
        }
    }

    /// We sent RST (or its v1 form): the application aborted, or a timeout did.
    pub fn reset_sent(&self) -> bool {
        matches!(self.fault, Some(Fault::Aborted | Fault::TimedOut | Fault::DialTimedOut))
    }

    /// The application still holds the stream.
    pub fn has_handle(&self) -> bool {
        !self.released
    }

    /// The application let go of the stream.
    pub fn release_handle(&mut self) {
        self.released = true;
    }

    /// Where the opening handshake stands.
    pub fn opening(&self) -> Opening {
        self.opening
    }

    /// Why the stream can no longer be used, if it was reset or aborted.
    pub fn fault(&self) -> Option<Fault> {
        self.fault
    }

    /// The handshake completed: ACK received (server) or SYN_ACK received (client).
    pub fn is_established(&self) -> bool {
        matches!(self.opening, Opening::Established(_))
    }

    /// The client answered SYN with ACK: the server considers the stream open.
    pub fn ack_sent(&self) -> bool {
        self.role() == Role::Client && self.opening != Opening::Dialing
    }

    /// The client is still waiting for its dial to complete.
    pub fn is_dialing(&self) -> bool {
        matches!(self.opening, Opening::Dialing | Opening::Acked) && self.fault.is_none()
    }

    /// The peer will send no more data: reads end at EOF once the buffer drains.
    pub fn peer_done_writing(&self) -> bool {
        self.peer_done_writing
    }

    /// The peer will read no more: writes fail.
    pub fn peer_done_reading(&self) -> bool {
        self.peer_reading != PeerReading::Open
    }

    /// How the peer's reading side stands.
    pub fn peer_reading(&self) -> PeerReading {
        self.peer_reading
    }

    /// The application closed the writing half ([`StreamState::shutdown_write`] or
    /// [`StreamState::abort`]).
    pub fn write_closed(&self) -> bool {
        self.writing != Half::Open
    }

    /// The application closed the reading half ([`StreamState::shutdown_read`] or
    /// [`StreamState::abort`]).
    pub fn read_closed(&self) -> bool {
        self.reading != Half::Open
    }

    /// The peer has sent both FINs or RST, or forgot the stream: it will send nothing
    /// more on this stream, and must be sent nothing more.
    pub fn peer_gone(&self) -> bool {
        (self.peer_done_writing && self.peer_done_reading())
            || matches!(self.fault, Some(Fault::Reset(_) | Fault::RouteLost))
    }

    /// We have told the peer everything it needs to forget the stream (or owe it only
    /// FINs that wait for it to read).
    pub fn we_are_gone(&self) -> bool {
        self.reset_sent() || (self.writing != Half::Open && self.reading != Half::Open)
    }

    /// The peer may be a v1 (Go) node: it reads for [`V1_CLOSE_WINDOW`] after its FIN2.
    pub fn is_v1(&self) -> bool {
        self.v1
    }

    /// A relay lost its route to the peer: the stream fails (after its buffered data is
    /// read) and sends nothing more.
    pub fn route_lost(&mut self) {
        if self.peer_done_writing {
            // Everything the peer sent arrived: reads end at EOF, only writes fail.
            self.peer_reading = PeerReading::Closed;
        } else if self.fault.is_none() {
            self.fault = Some(Fault::RouteLost);
        }
        self.take_owed_fins();
    }

    fn unexpected(&self, cmd: Command) -> StreamViolation {
        StreamViolation::Unexpected { cmd, phase: self.opening }
    }

    /// Handles an incoming stream frame (`arg` is the u32 payload of REWIND/WND_SIZE, the
    /// length of DATA, the reason byte of RST).
    pub fn on_frame(&mut self, cmd: Command, arg: u32) -> Result<Effects, StreamViolation> {
        let mut fx = Effects::default();
        if self.peer_gone() {
            // Frames already in flight when the peer said goodbye; nothing may follow.
            // A server that closes before our ACK arrives still completes the handshake.
            return match cmd {
                Command::Data | Command::Rewind | Command::WndSize | Command::Err | Command::Fin1 | Command::Fin2 => {
                    Ok(fx)
                }
                Command::SynAck if self.opening == Opening::Acked => {
                    self.opening = Opening::Established(Role::Client);
                    fx.wake_read = true;
                    Ok(fx)
                }
                // A dialer that gave up (RST) answers the SYN that crossed its RST
                // with another.
                Command::Rst if self.opening == Opening::SynSent => Ok(fx),
                _ => Err(self.unexpected(cmd)),
            };
        }
        match cmd {
            Command::Syn => {
                if self.opening != Opening::Dialing {
                    return Err(self.unexpected(cmd));
                }
                self.opening = Opening::Acked;
                if self.fault.is_none() {
                    fx.reply = Some(Command::Ack);
                } else if !self.v1 {
                    // The dial was given up: make sure the accepting side learns it.
                    fx.reply = Some(Command::Rst);
                } else {
                    // A Go server cannot be told "refused": complete its handshake and
                    // close at once, so its reads end at EOF and its writes fail
                    // instead of waiting forever for an ACK.
                    fx.reply = Some(Command::Ack);
                    (fx.fin2, fx.fin1) = (true, true);
                    (self.writing, self.reading) = (Half::Closed, Half::Closed);
                }
            }
            Command::Ack => {
                if self.opening != Opening::SynSent {
                    return Err(self.unexpected(cmd));
                }
                self.opening = Opening::Established(Role::Server);
                if !self.reset_sent() {
                    fx.reply = Some(Command::SynAck);
                }
                fx.wake_write = true;
            }
            Command::SynAck => {
                if self.opening != Opening::Acked {
                    return Err(self.unexpected(cmd));
                }
                self.opening = Opening::Established(Role::Client);
                fx.wake_read = true;
                fx.wake_write = true;
            }
            Command::Data => {
                // A client may get DATA once its ACK went out, before SYN_ACK.
                let may_receive = matches!(self.opening, Opening::Acked | Opening::Established(_));
                if !may_receive || self.peer_done_writing {
                    return Err(self.unexpected(cmd));
                }
                if self.read_closed() || self.fault.is_some() {
                    self.recv.window.on_discard(arg)?;
                } else {
                    self.recv.window.on_data(arg)?;
                    fx.keep_data = true;
                    fx.wake_read = true;
                }
            }
            Command::Fin2 => {
                self.peer_done_writing = true;
                // A Go Close() sends FIN2 and keeps reading for a while: what this side
                // still writes must reach it, and our own FIN2 gives its reader EOF.
                fx.start_close_window = self.v1 && !self.peer_done_reading();
                fx.wake_read = true;
            }
            Command::Fin1 => {
                self.peer_reading = PeerReading::Closed;
                fx.wake_write = true;
            }
            Command::Err => {}
            Command::WndSize => {
                self.send.on_window(arg);
                fx.wake_write = true;
            }
            Command::Rewind => {
                self.send.on_rewind(arg)?;
                fx.wake_write = true;
                if self.send.inflight() == 0 {
                    (fx.fin2, fx.fin1) = self.take_owed_fins();
                }
            }
            Command::Rst if RstReason::from_u8(arg as u8) == RstReason::RouteLost => {
                self.route_lost();
                fx.wake_read = true;
                fx.wake_write = true;
            }
            Command::Rst => {
                self.fault = Some(Fault::Reset(RstReason::from_u8(arg as u8)));
                // A reset stream's unread data is dropped.
                self.recv.clear();
                self.take_owed_fins();
                fx.wake_read = true;
                fx.wake_write = true;
            }
            _ => return Err(self.unexpected(cmd)),
        }
        Ok(fx)
    }

    /// Bytes the application may write now (0 when it must wait or cannot write).
    pub fn write_credit(&self) -> u32 {
        if self.is_established() && !self.write_closed() && !self.peer_done_reading() && self.fault.is_none() {
            self.send.credit()
        } else {
            0
        }
    }

    /// A v1 peer's close window ([`V1_CLOSE_WINDOW`] after its FIN2) is over: it has
    /// forgotten the stream, so nothing more may be sent and writes fail. Returns true
    /// if this changed the stream (wake its writer).
    pub fn close_window_over(&mut self) -> bool {
        if !self.v1 || !self.peer_done_writing || self.peer_done_reading() {
            return false;
        }
        self.peer_reading = PeerReading::Forgot;
        self.take_owed_fins();
        true
    }

    /// FINs that wait for a v1 peer to read what was sent: `(FIN2, FIN1)` to send now.
    /// The driver calls it when the stream's linger time is over, so that a peer that
    /// never reads still gets its EOF; it is also how a REWIND releases them.
    pub fn take_owed_fins(&mut self) -> (bool, bool) {
        let owed = (self.writing == Half::Owed, self.reading == Half::Owed);
        if owed.0 {
            self.writing = Half::Closed;
        }
        if owed.1 {
            self.reading = Half::Closed;
        }
        owed
    }

    /// The application half-closes: returns true if FIN2 must be sent now. Towards a
    /// v1 peer that has not read everything sent yet, FIN2 is owed instead: a Go reader
    /// drops its unread data 10 s after FIN2 arrives, so FIN2 follows the REWIND that
    /// hands the last byte back (or the end of the linger time, see
    /// [`StreamState::take_owed_fins`]).
    pub fn shutdown_write(&mut self) -> bool {
        if self.write_closed() {
            return false;
        }
        if self.peer_gone() || self.reset_sent() {
            self.writing = Half::Closed;
            return false;
        }
        if self.v1 && self.send.inflight() > 0 {
            self.writing = Half::Owed;
            return false;
        }
        self.writing = Half::Closed;
        true
    }

    /// The application stops reading: returns true if FIN1 must be sent now (it waits
    /// behind an owed FIN2). Unread data is dropped.
    pub fn shutdown_read(&mut self) -> bool {
        self.recv.clear();
        if self.read_closed() {
            return false;
        }
        if self.peer_gone() || self.reset_sent() {
            self.reading = Half::Closed;
            return false;
        }
        if self.writing == Half::Owed {
            self.reading = Half::Owed;
            return false;
        }
        self.reading = Half::Closed;
        true
    }

    /// The idle timeout expired: the stream is aborted, and fails with the timeout
    /// unless it had failed already. Returns true if RST must be sent (see
    /// [`StreamState::abort`]).
    pub fn time_out(&mut self) -> bool {
        let failed = self.fault.is_some();
        let send = self.abort();
        if !failed {
            self.fault = Some(Fault::TimedOut);
        }
        send
    }

    /// The dial ran out of time: it is given up as when aborted, and fails with
    /// [`Fault::DialTimedOut`]. Returns true if RST must be sent (see
    /// [`StreamState::abort`]).
    pub fn dial_timed_out(&mut self) -> bool {
        debug_assert!(self.is_dialing());
        let send = self.abort();
        self.fault = Some(Fault::DialTimedOut);
        send
    }

    /// The application aborts: returns true if RST must be sent (the caller falls back
    /// to FIN2 + FIN1 for a v1 peer).
    pub fn abort(&mut self) -> bool {
        self.recv.clear();
        self.take_owed_fins();
        let send = !self.peer_gone() && !self.reset_sent();
        (self.writing, self.reading) = (Half::Closed, Half::Closed);
        if self.fault.is_none() {
            self.fault = Some(Fault::Aborted);
        }
        send
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn established_pair() -> (StreamState, StreamState) {
        let mut c = StreamState::dialing(false);
        let mut s = StreamState::accepted(false);
        assert_eq!(c.on_frame(Command::Syn, 0).unwrap().reply, Some(Command::Ack));
        assert_eq!(s.on_frame(Command::Ack, 0).unwrap().reply, Some(Command::SynAck));
        assert!(s.is_established() && s.write_credit() > 0);
        assert!(c.is_dialing());
        c.on_frame(Command::SynAck, 0).unwrap();
        assert!(c.is_established() && !c.is_dialing());
        (c, s)
    }

    #[test]
    fn handshake_and_data() {
        let (mut c, _s) = established_pair();
        let fx = c.on_frame(Command::Data, 100).unwrap();
        assert!(fx.keep_data && fx.wake_read);
        assert_eq!(c.recv.window.buffered(), 100);
    }

    #[test]
    fn client_accepts_data_after_ack_before_syn_ack() {
        let mut c = StreamState::dialing(true);
        c.on_frame(Command::Syn, 0).unwrap();
        assert!(c.on_frame(Command::Data, 10).unwrap().keep_data);
        assert!(c.is_dialing());
    }

    #[test]
    fn out_of_order_frames_are_violations() {
        let mut c = StreamState::dialing(false);
        assert!(c.on_frame(Command::SynAck, 0).is_err());
        assert!(c.on_frame(Command::Data, 1).is_err());
        let mut s = StreamState::accepted(false);
        assert!(s.on_frame(Command::Syn, 0).is_err());
        assert!(s.on_frame(Command::Data, 1).is_err());
        assert!(!s.on_frame(Command::Data, 1).unwrap_err().is_fatal_for_v1());
    }

    #[test]
    fn half_close_both_ways() {
        let (mut c, mut s) = established_pair();
        assert!(c.shutdown_write());
        assert!(!c.shutdown_write(), "FIN2 only once");
        assert_eq!(c.write_credit(), 0);
        s.on_frame(Command::Fin2, 0).unwrap();
        assert!(s.peer_done_writing() && !s.peer_done_reading());
        assert!(s.write_credit() > 0, "the other direction stays open");
        assert!(s.on_frame(Command::Data, 1).is_err(), "no DATA after FIN2");
        assert!(s.shutdown_write());
        c.on_frame(Command::Fin2, 0).unwrap();
        assert!(c.peer_done_writing());
    }

    #[test]
    fn a_v1_close_ends_its_writing_and_its_reading_only_after_the_window() {
        let mut c = StreamState::dialing(true);
        c.on_frame(Command::Syn, 0).unwrap();
        c.on_frame(Command::SynAck, 0).unwrap();
        let fx = c.on_frame(Command::Fin2, 0).unwrap();
        assert!(fx.start_close_window);
        assert!(c.peer_done_writing() && !c.peer_gone());
        assert!(c.write_credit() > 0, "a Go peer reads on after its Close()");
        assert!(c.shutdown_write(), "and gets EOF only from our FIN2");
        assert!(c.close_window_over());
        assert_eq!(c.peer_reading(), PeerReading::Forgot);
        assert!(c.peer_gone());
        assert!(!c.close_window_over(), "once");
    }

    #[test]
    fn fins_to_a_v1_peer_wait_until_it_read_everything() {
        let mut s = StreamState::accepted(true);
        s.on_frame(Command::Ack, 0).unwrap();
        s.send.on_send(1000);
        assert!(!s.shutdown_write() && !s.shutdown_read(), "owed, not sent");
        assert!(s.we_are_gone());
        let fx = s.on_frame(Command::Rewind, 600).unwrap();
        assert!(!fx.fin2 && !fx.fin1);
        let fx = s.on_frame(Command::Rewind, 400).unwrap();
        assert!(fx.fin2 && fx.fin1, "the last byte was read: FIN2 then FIN1");
        assert_eq!(s.take_owed_fins(), (false, false));

        let (mut ours, _) = established_pair();
        ours.send.on_send(1000);
        assert!(ours.shutdown_write(), "a peer of this project keeps what it received");
    }

    #[test]
    fn owed_fins_go_out_at_the_end_of_the_linger() {
        let mut s = StreamState::accepted(true);
        s.on_frame(Command::Ack, 0).unwrap();
        s.send.on_send(10);
        assert!(!s.shutdown_write());
        assert_eq!(s.take_owed_fins(), (true, false));
    }

    #[test]
    fn our_kind_half_closes_without_a_window() {
        let (mut c, _) = established_pair();
        assert!(!c.on_frame(Command::Fin2, 0).unwrap().start_close_window);
        assert!(!c.close_window_over());
        assert!(c.write_credit() > 0);
    }

    #[test]
    fn a_go_server_accepting_a_dial_given_up_is_closed_cleanly() {
        let mut c = StreamState::dialing(true);
        c.abort();
        let fx = c.on_frame(Command::Syn, 0).unwrap();
        assert_eq!((fx.reply, fx.fin2, fx.fin1), (Some(Command::Ack), true, true));
        assert!(c.we_are_gone());
    }

    /// A dial that timed out keeps failing with the timeout, and keeps its handle,
    /// whatever answer arrives late: a Go server's SYN is completed and closed, its
    /// SYN_ACK does not revive the dial; a peer of this project's SYN is refused.
    #[test]
    fn a_timed_out_dial_stays_timed_out_and_held() {
        let mut c = StreamState::dialing(true);
        // Whether a v1 peer is told anything is the link policy's choice (nothing, while
        // it has no stream).
        assert!(c.dial_timed_out());
        let fx = c.on_frame(Command::Syn, 0).unwrap();
        assert_eq!((fx.reply, fx.fin2, fx.fin1), (Some(Command::Ack), true, true));
        c.on_frame(Command::SynAck, 0).unwrap();
        assert_eq!(c.fault(), Some(Fault::DialTimedOut));
        assert!(c.has_handle() && c.reset_sent());
        assert!(!c.abort(), "nothing more to send when the handle goes");

        let mut c = StreamState::dialing(false);
        assert!(c.dial_timed_out(), "a peer of this project gets RST");
        assert_eq!(c.on_frame(Command::Syn, 0).unwrap().reply, Some(Command::Rst));
        assert!(c.has_handle());
    }

    /// The RST of a dial given up and the server's SYN cross: the dialer answers the
    /// SYN with a second RST, which the server takes as a matter of course.
    #[test]
    fn a_second_rst_for_a_dial_given_up_is_no_violation() {
        let mut s = StreamState::accepted(false);
        s.on_frame(Command::Rst, RstReason::Aborted as u32).unwrap();
        s.on_frame(Command::Rst, RstReason::Aborted as u32).unwrap();
        assert_eq!(s.fault(), Some(Fault::Reset(RstReason::Aborted)));
        // Once established, the peer has nothing to answer: a second RST is a violation.
        let (mut c, _) = established_pair();
        c.on_frame(Command::Rst, RstReason::Aborted as u32).unwrap();
        assert!(c.on_frame(Command::Rst, RstReason::Aborted as u32).is_err());
    }

    #[test]
    fn server_closing_before_ack_still_completes_the_dial() {
        let mut c = StreamState::dialing(false);
        c.on_frame(Command::Syn, 0).unwrap();
        c.on_frame(Command::Fin2, 0).unwrap();
        c.on_frame(Command::Fin1, 0).unwrap();
        c.on_frame(Command::SynAck, 0).unwrap();
        assert!(c.is_established() && c.peer_done_writing() && c.write_credit() == 0);
    }

    #[test]
    fn an_aborted_server_stream_does_not_complete_the_handshake() {
        let mut s = StreamState::accepted(false);
        assert!(s.abort());
        assert_eq!(s.on_frame(Command::Ack, 0).unwrap().reply, None);
    }

    #[test]
    fn a_given_up_dial_answers_syn_with_rst() {
        let mut c = StreamState::dialing(false);
        assert!(c.abort());
        assert_eq!(c.on_frame(Command::Syn, 0).unwrap().reply, Some(Command::Rst));
        let mut v1 = StreamState::dialing(true);
        v1.abort();
        assert_eq!(v1.on_frame(Command::Syn, 0).unwrap().reply, Some(Command::Ack));
    }

    #[test]
    fn fins_trailing_a_reset_are_tolerated() {
        let (mut c, _) = established_pair();
        c.on_frame(Command::Rst, 0).unwrap();
        assert!(c.on_frame(Command::Fin2, 0).is_ok());
        assert!(c.on_frame(Command::Fin1, 0).is_ok());
    }

    #[test]
    fn fin1_stops_writes() {
        let (mut c, _) = established_pair();
        c.on_frame(Command::Fin1, 0).unwrap();
        assert_eq!(c.write_credit(), 0);
    }

    #[test]
    fn rst_refuses_a_dial() {
        let mut c = StreamState::dialing(false);
        c.on_frame(Command::Rst, RstReason::NoListener as u32).unwrap();
        assert_eq!(c.fault(), Some(Fault::Reset(RstReason::NoListener)));
        assert!(!c.is_dialing() && c.peer_gone());
    }

    #[test]
    fn abort_and_goodbyes() {
        let (mut c, mut s) = established_pair();
        assert!(c.abort());
        assert!(!c.abort());
        assert!(c.we_are_gone());
        s.on_frame(Command::Rst, 0).unwrap();
        assert!(s.peer_gone());
        assert!(!s.shutdown_write() && !s.shutdown_read(), "nothing is sent to a peer that is gone");
        // In-flight data after the peer left is tolerated, new handshakes are not.
        assert!(s.on_frame(Command::Rewind, 0).is_ok());
        assert!(s.on_frame(Command::Ack, 0).is_err());
    }

    #[test]
    fn data_after_read_close_is_dropped_but_bounded() {
        let (mut c, _) = established_pair();
        assert!(c.shutdown_read());
        let fx = c.on_frame(Command::Data, 65_536).unwrap();
        assert!(!fx.keep_data);
        assert!(matches!(c.on_frame(Command::Data, 1), Err(StreamViolation::Flow(_))));
    }
}
