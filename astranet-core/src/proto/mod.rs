//! The astranet wire protocol without I/O: frame codec, handshake, stream state
//! machine, flow-control accounting, a whole link as a state machine ([`link::Link`])
//! and the relaying rules ([`relay::RelayTable`]). Everything here is plain data and
//! functions of their inputs (bytes, time, operations), so it is unit-tested,
//! property-tested and fuzzed without sockets or a runtime.

pub mod flow;
pub mod frame;
pub mod handshake;
pub mod link;
pub mod recv;
pub mod relay;
pub mod stream;

pub use flow::{Credit, FlowError, RecvWindow, SendWindow, Tuning, WindowBudget, INITIAL_WINDOW};
pub use frame::{Command, Decoder, Frame, FrameError, Header, RstReason, HEADER_LEN, MAX_PAYLOAD};
pub use handshake::Handshake;
pub use stream::{Effects, Fault, Half, Opening, PeerReading, Role, StreamState, StreamViolation, V1_CLOSE_WINDOW};
