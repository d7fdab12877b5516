//! The astranet wire protocol without I/O: frame codec, handshake, stream state machine
//! and flow-control accounting. Everything here is plain data and pure functions, so it
//! is unit-tested, property-tested and fuzzed without sockets or a runtime.

pub mod flow;
pub mod frame;
pub mod handshake;
pub mod stream;

pub use flow::{Credit, FlowError, RecvWindow, SendWindow, Tuning, WindowBudget, INITIAL_WINDOW};
pub use frame::{Command, Decoder, Frame, FrameError, Header, RstReason, HEADER_LEN, MAX_PAYLOAD};
pub use handshake::Handshake;
pub use stream::{Effects, Fault, Role, StreamState, StreamViolation, V1_CLOSE_WINDOW};
