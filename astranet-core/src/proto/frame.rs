//! The 29-byte frame header and the command table of the astranet wire protocol.
//!
//! ```text
//! offset size field
//!  0     1    cmd
//!  1     8    dst host
//!  9     8    src host
//! 17     4    dst port
//! 21     4    src port
//! 25     4    payload length
//! 29     len  payload
//! ```
//! Everything is big-endian. The decoder is incremental: it takes whatever bytes have
//! arrived and yields complete frames, splitting payloads off the read buffer without
//! copying (the payload keeps the read buffer alive: see the link reader for when it
//! copies instead).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::fmt;

/// Size of every frame header.
pub const HEADER_LEN: usize = 29;

/// Largest payload ever sent, and the largest a v1 (Go) receiver can read.
pub const MAX_PAYLOAD: usize = 65_536;

/// A command code. The v1 codes are those of the original Go package; [`Command::Rst`]
/// is an extension sent only to peers that announced it in their handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Command {
    /// The server accepted a DIAL: first frame of the stream handshake, server to client.
    Syn = 2,
    /// The client answers SYN; the server may write from then on.
    Ack = 4,
    /// The server answers ACK; the client may write from then on.
    SynAck = 6,
    /// The sender will not read any more: the receiver's writes on the stream fail.
    Fin1 = 8,
    /// The sender finished writing: the receiver's reads return EOF once its buffer drains.
    Fin2 = 16,
    /// Stream error notice: Go only sets a flag nothing reads; accepted and ignored here.
    Err = 32,
    /// Stream data; the payload is the bytes.
    Data = 128,
    /// Sets the receiver's send window to the u32 payload (bytes in flight allowed).
    WndSize = 129,
    /// Gives send credit back: the sender consumed as many bytes as the u32 payload says.
    Rewind = 130,
    /// Keep-alive probe (all header fields 0), answered with PONG.
    Ping = 160,
    /// Keep-alive answer to PING.
    Pong = 161,
    /// Opens a stream to (dst host, dst port) from (src host, src port).
    Dial = 190,
    /// First frame on a link, both ways: src host is the sender's id, the payload the
    /// JSON [`Handshake`](super::Handshake).
    Handshake = 191,
    /// Announces that the service named in the payload lives at (src host, src port).
    Service = 192,
    /// Withdraws a SERVICE announcement (payload: the name).
    NoService = 193,
    /// Host (src host) can be reached directly at the TCP address in the payload (`ip:port`).
    Follow = 194,
    /// Routed to dst host: asks it for its direct addresses (answered with FOLLOW).
    Discover = 195,
    /// Sent by a relay: the route to (src host) is gone.
    Reset = 196,
    /// Extension: abort a stream or refuse a DIAL; payload is one [`RstReason`] byte.
    /// Not a priority frame: it must not overtake the stream's DATA and FIN frames.
    Rst = 200,
}

impl Command {
    /// Every command, in code order.
    pub const ALL: [Command; 19] = [
        Command::Syn,
        Command::Ack,
        Command::SynAck,
        Command::Fin1,
        Command::Fin2,
        Command::Err,
        Command::Data,
        Command::WndSize,
        Command::Rewind,
        Command::Ping,
        Command::Pong,
        Command::Dial,
        Command::Handshake,
        Command::Service,
        Command::NoService,
        Command::Follow,
        Command::Discover,
        Command::Reset,
        Command::Rst,
    ];

    /// Decodes a command byte; `None` for codes no version of the protocol defines.
    pub fn from_u8(code: u8) -> Option<Command> {
        Self::ALL.iter().copied().find(|c| *c as u8 == code)
    }

    /// Priority frames are written ahead of queued data frames.
    pub fn is_priority(self) -> bool {
        matches!(
            self,
            Command::Syn
                | Command::Ack
                | Command::SynAck
                | Command::Rewind
                | Command::Dial
                | Command::Handshake
                | Command::Reset
        )
    }

    /// Whether a v1 (Go) peer knows this command.
    pub fn is_v1(self) -> bool {
        self != Command::Rst
    }

    /// The payload length this command requires, or `None` when it carries a
    /// variable-length payload.
    pub fn fixed_payload_len(self) -> Option<usize> {
        match self {
            Command::Data | Command::Handshake | Command::Service | Command::NoService | Command::Follow => None,
            Command::WndSize | Command::Rewind => Some(4),
            Command::Rst => Some(1),
            _ => Some(0),
        }
    }

    /// Commands addressed to a host (not just to the link's neighbour): a node passes
    /// them on when the destination is another host. (RESET is not: it speaks for the
    /// relay that sends it, to its neighbour.)
    pub fn is_routed(self) -> bool {
        self.is_stream_frame() || matches!(self, Command::Dial | Command::Discover | Command::Follow)
    }

    /// Commands that belong to one stream (matched by the 4-tuple).
    pub fn is_stream_frame(self) -> bool {
        matches!(
            self,
            Command::Syn
                | Command::Ack
                | Command::SynAck
                | Command::Fin1
                | Command::Fin2
                | Command::Err
                | Command::Data
                | Command::WndSize
                | Command::Rewind
                | Command::Rst
        )
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Command::Syn => "SYN",
            Command::Ack => "ACK",
            Command::SynAck => "SYN_ACK",
            Command::Fin1 => "FIN1",
            Command::Fin2 => "FIN2",
            Command::Err => "ERR",
            Command::Data => "DATA",
            Command::WndSize => "WND_SIZE",
            Command::Rewind => "REWIND",
            Command::Ping => "PING",
            Command::Pong => "PONG",
            Command::Dial => "DIAL",
            Command::Handshake => "HANDSHAKE",
            Command::Service => "SERVICE",
            Command::NoService => "NO_SERVICE",
            Command::Follow => "FOLLOW",
            Command::Discover => "DISCOVER",
            Command::Reset => "RESET",
            Command::Rst => "RST",
        };
        f.write_str(name)
    }
}

/// Why a stream was aborted or a DIAL refused (payload of [`Command::Rst`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum RstReason {
    /// The peer aborted the stream (or gave up on its dial).
    Aborted = 0,
    /// Nobody listens on the dialed port.
    NoListener = 1,
    /// The listener's accept backlog is full.
    BacklogFull = 2,
    /// The link carries as many streams as the receiver allows.
    StreamLimit = 3,
    /// The listening node is shutting down.
    Closing = 4,
    /// A relay on the way carries as many relayed streams as it allows (for the
    /// dialing host, or in total).
    RelayLimit = 5,
    /// The listening node's access policy does not let the dialer reach the service.
    Forbidden = 6,
    /// A relay lost its link to the stream's other end (the receiver fails the stream
    /// as it does on RESET).
    RouteLost = 7,
}

impl RstReason {
    /// Decodes the RST payload byte; unknown codes count as [`RstReason::Aborted`].
    pub fn from_u8(code: u8) -> RstReason {
        match code {
            1 => RstReason::NoListener,
            2 => RstReason::BacklogFull,
            3 => RstReason::StreamLimit,
            4 => RstReason::Closing,
            5 => RstReason::RelayLimit,
            6 => RstReason::Forbidden,
            7 => RstReason::RouteLost,
            _ => RstReason::Aborted,
        }
    }
}

impl fmt::Display for RstReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RstReason::Aborted => "aborted by peer",
            RstReason::NoListener => "nobody listens on that port",
            RstReason::BacklogFull => "listener backlog full",
            RstReason::StreamLimit => "stream limit of the link reached",
            RstReason::Closing => "node shutting down",
            RstReason::RelayLimit => "relay stream limit reached",
            RstReason::Forbidden => "forbidden by the listening node's access policy",
            RstReason::RouteLost => "a relay lost its route to the peer",
        })
    }
}

/// A decoded frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// Byte 0: the command code.
    pub cmd: Command,
    /// Bytes 1..9: the host id the frame is for (0: the node at the other end of the link).
    pub dst_host: u64,
    /// Bytes 9..17: the host id of the sender.
    pub src_host: u64,
    /// Bytes 17..21: the virtual port at the destination.
    pub dst_port: u32,
    /// Bytes 21..25: the virtual port at the source.
    pub src_port: u32,
    /// Bytes 25..29: the payload length in bytes.
    pub len: u32,
}

impl Header {
    /// A header with every address field zero (PING, PONG, link-level frames).
    pub fn link(cmd: Command, len: u32) -> Header {
        Header { cmd, dst_host: 0, src_host: 0, dst_port: 0, src_port: 0, len }
    }

    /// Appends the 29 header bytes to `out`.
    pub fn put(&self, out: &mut impl BufMut) {
        out.put_u8(self.cmd as u8);
        out.put_u64(self.dst_host);
        out.put_u64(self.src_host);
        out.put_u32(self.dst_port);
        out.put_u32(self.src_port);
        out.put_u32(self.len);
    }

    /// Parses a header; the slice must hold at least [`HEADER_LEN`] bytes.
    pub fn parse(mut b: &[u8]) -> Result<Header, FrameError> {
        let code = b.get_u8();
        let cmd = Command::from_u8(code).ok_or(FrameError::UnknownCommand(code))?;
        Ok(Header {
            cmd,
            dst_host: b.get_u64(),
            src_host: b.get_u64(),
            dst_port: b.get_u32(),
            src_port: b.get_u32(),
            len: b.get_u32(),
        })
    }
}

/// A whole frame: header and payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The header; `header.len` must equal `payload.len()`.
    pub header: Header,
    /// The payload bytes that follow the header.
    pub payload: Bytes,
}

impl Frame {
    /// Appends the encoded frame to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        debug_assert_eq!(self.header.len as usize, self.payload.len());
        out.reserve(HEADER_LEN + self.payload.len());
        self.header.put(out);
        out.extend_from_slice(&self.payload);
    }

    /// The 4-byte big-endian value of a WND_SIZE or REWIND frame.
    pub fn u32_payload(&self) -> u32 {
        let mut p = &self.payload[..];
        p.get_u32()
    }
}

/// A frame the decoder refuses. Any of these closes the link it arrived on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The command byte (held here) is not a code of any protocol version.
    #[error("unknown command code {0}")]
    UnknownCommand(u8),
    /// The header announces a payload longer than the decoder's limit.
    #[error("{cmd} frame with a {len}-byte payload exceeds the {max}-byte limit")]
    TooLong {
        /// The frame's command.
        cmd: Command,
        /// The announced payload length, in bytes.
        len: u32,
        /// The decoder's limit, in bytes.
        max: u32,
    },
    /// A command with a fixed payload length (see [`Command::fixed_payload_len`]) announces
    /// another length.
    #[error("{cmd} frame needs a {expected}-byte payload, got {len}")]
    BadPayloadLen {
        /// The frame's command.
        cmd: Command,
        /// The announced payload length, in bytes.
        len: u32,
        /// The length the command requires, in bytes.
        expected: u32,
    },
}

/// Most the decoder reserves beyond the received bytes of an incomplete frame.
pub const RESERVE_AHEAD: usize = 1 << 20;

/// The length of the incomplete frame at the front of `buf` (header included), as far
/// as it is known: [`HEADER_LEN`] until the header is complete.
pub fn incomplete_frame_len(buf: &[u8]) -> usize {
    if buf.len() < HEADER_LEN {
        return HEADER_LEN;
    }
    HEADER_LEN + u32::from_be_bytes([buf[25], buf[26], buf[27], buf[28]]) as usize
}

/// Incremental decoder: feed it the read buffer, take frames out.
#[derive(Debug, Clone)]
pub struct Decoder {
    max_payload: u32,
    reserve: bool,
}

impl Decoder {
    /// A decoder that refuses payloads longer than `max_payload` bytes
    /// ([`FrameError::TooLong`]).
    pub fn new(max_payload: u32) -> Decoder {
        Decoder { max_payload, reserve: true }
    }

    /// Whether an incomplete frame makes the decoder reserve room for its rest in the
    /// buffer (yes by default). A caller that keeps room itself, and accounts for the
    /// buffers it allocates, turns it off (the link reader does: see
    /// [`incomplete_frame_len`]).
    pub fn reserving(mut self, on: bool) -> Decoder {
        self.reserve = on;
        self
    }

    /// Changes the payload limit, in bytes, for the frames decoded from now on.
    pub fn set_max_payload(&mut self, max_payload: u32) {
        self.max_payload = max_payload;
    }

    /// Takes the next complete frame off the front of `buf`, `Ok(None)` if more bytes
    /// are needed. The header is validated as soon as it is complete, so an oversized
    /// length is refused before its payload arrives.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        self.decode_with(buf, |_| false)
    }

    /// [`Decoder::decode`], except that a frame over the payload limit is accepted when
    /// `oversize_ok` says so for its header (asked once per complete header, before the
    /// payload arrives; e.g. DATA up to the window granted to a v1 sender).
    pub fn decode_with(
        &self,
        buf: &mut BytesMut,
        oversize_ok: impl FnOnce(&Header) -> bool,
    ) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let header = Header::parse(&buf[..HEADER_LEN])?;
        let len = header.len;
        match header.cmd.fixed_payload_len() {
            Some(expected) if len as usize != expected => {
                return Err(FrameError::BadPayloadLen { cmd: header.cmd, len, expected: expected as u32 });
            }
            _ if len > self.max_payload && !oversize_ok(&header) => {
                return Err(FrameError::TooLong { cmd: header.cmd, len, max: self.max_payload });
            }
            _ => {}
        }
        let total = HEADER_LEN + len as usize;
        if buf.len() < total {
            // Room for the rest, but never more than a read's worth ahead of the bytes
            // that actually arrived: a header alone commits little memory.
            if self.reserve {
                buf.reserve((total - buf.len()).min(RESERVE_AHEAD));
            }
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let payload = buf.split_to(len as usize).freeze();
        Ok(Some(Frame { header, payload }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incomplete_frame_length() {
        assert_eq!(incomplete_frame_len(&[0; 5]), HEADER_LEN);
        let mut h = [0u8; 29];
        h[25..29].copy_from_slice(&70_000u32.to_be_bytes());
        assert_eq!(incomplete_frame_len(&h), 29 + 70_000);
    }

    fn roundtrip(frame: &Frame) -> Frame {
        let mut buf = BytesMut::new();
        frame.encode(&mut buf);
        let decoder = Decoder::new(MAX_PAYLOAD as u32);
        let out = decoder.decode(&mut buf).unwrap().unwrap();
        assert!(buf.is_empty());
        out
    }

    #[test]
    fn every_command_code_roundtrips() {
        for cmd in Command::ALL {
            assert_eq!(Command::from_u8(cmd as u8), Some(cmd));
        }
        for code in 0..=255u8 {
            if let Some(cmd) = Command::from_u8(code) {
                assert_eq!(cmd as u8, code);
            }
        }
        assert_eq!(Command::from_u8(62), None, "FORCE_CLOSED is internal to Go");
    }

    #[test]
    fn header_is_byte_exact() {
        let h = Header {
            cmd: Command::Dial,
            dst_host: 0x0102030405060708,
            src_host: 0x1112131415161718,
            dst_port: 0x21222324,
            src_port: 0x31323334,
            len: 0,
        };
        let mut buf = BytesMut::new();
        h.put(&mut buf);
        assert_eq!(
            &buf[..],
            &[
                190, 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x21, 0x22, 0x23, 0x24,
                0x31, 0x32, 0x33, 0x34, 0, 0, 0, 0
            ]
        );
    }

    #[test]
    fn partial_input_waits() {
        let f = Frame {
            header: Header { cmd: Command::Data, dst_host: 1, src_host: 2, dst_port: 3, src_port: 4, len: 5 },
            payload: Bytes::from_static(b"hello"),
        };
        let mut enc = BytesMut::new();
        f.encode(&mut enc);
        let d = Decoder::new(MAX_PAYLOAD as u32);
        for cut in 0..enc.len() {
            let mut part = BytesMut::from(&enc[..cut]);
            assert_eq!(d.decode(&mut part).unwrap(), None);
        }
        assert_eq!(roundtrip(&f), f);
    }

    #[test]
    fn oversized_length_is_refused_from_the_header_alone() {
        let mut buf = BytesMut::new();
        Header { cmd: Command::Data, dst_host: 1, src_host: 2, dst_port: 3, src_port: 4, len: 65_537 }.put(&mut buf);
        let err = Decoder::new(MAX_PAYLOAD as u32).decode(&mut buf).unwrap_err();
        assert_eq!(err, FrameError::TooLong { cmd: Command::Data, len: 65_537, max: 65_536 });
    }

    #[test]
    fn fixed_payload_lengths_are_enforced() {
        for (cmd, len) in [(Command::Rewind, 3), (Command::WndSize, 0), (Command::Ping, 1), (Command::Syn, 4)] {
            let mut buf = BytesMut::new();
            Header::link(cmd, len).put(&mut buf);
            buf.extend_from_slice(&vec![0; len as usize]);
            assert!(matches!(Decoder::new(MAX_PAYLOAD as u32).decode(&mut buf), Err(FrameError::BadPayloadLen { .. })));
        }
    }

    #[test]
    fn unknown_command_is_refused() {
        let mut buf = BytesMut::from(&[7u8; HEADER_LEN][..]);
        assert_eq!(Decoder::new(MAX_PAYLOAD as u32).decode(&mut buf), Err(FrameError::UnknownCommand(7)));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn any_frame() -> impl Strategy<Value = Frame> {
            (
                proptest::sample::select(Command::ALL.to_vec()),
                any::<u64>(),
                any::<u64>(),
                any::<u32>(),
                any::<u32>(),
                proptest::collection::vec(any::<u8>(), 0..9000),
            )
                .prop_map(|(cmd, dh, sh, dp, sp, body)| {
                    let body = match cmd.fixed_payload_len() {
                        Some(n) => vec![0xA5; n],
                        None => body,
                    };
                    Frame {
                        header: Header {
                            cmd,
                            dst_host: dh,
                            src_host: sh,
                            dst_port: dp,
                            src_port: sp,
                            len: body.len() as u32,
                        },
                        payload: Bytes::from(body),
                    }
                })
        }

        proptest! {
            #[test]
            fn frames_roundtrip_through_any_chunking(
                frames in proptest::collection::vec(any_frame(), 1..8),
                chunk in 1usize..5000,
            ) {
                let mut wire = BytesMut::new();
                for f in &frames { f.encode(&mut wire); }
                let d = Decoder::new(MAX_PAYLOAD as u32);
                let mut buf = BytesMut::new();
                let mut out = Vec::new();
                for piece in wire.chunks(chunk) {
                    buf.extend_from_slice(piece);
                    while let Some(f) = d.decode(&mut buf).unwrap() { out.push(f); }
                }
                prop_assert!(buf.is_empty());
                prop_assert_eq!(out, frames);
            }

            #[test]
            fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let d = Decoder::new(MAX_PAYLOAD as u32);
                let mut buf = BytesMut::from(&bytes[..]);
                while let Ok(Some(_)) = d.decode(&mut buf) {}
            }
        }
    }
}
