//! # astranet
//!
//! Millions of independent byte streams between machines over a handful of TCP links,
//! with keep-alive, speaking the wire protocol of the Go package
//! [`github.com/astranet/astranet`](https://github.com/astranet/astranet) so that Go
//! nodes and Rust nodes share one mesh.
//!
//! A [`Node`] has a random 64-bit [`HostId`]. Nodes are connected by links
//! ([`Node::listen`] / [`Node::join`] over TCP, or [`Node::attach`] over any byte
//! pipe). A [`Listener`] binds a virtual port ([`Node::bind`]); [`Node::dial`] opens a
//! [`Stream`] to a (host id, port) [`Addr`]. Streams are tokio
//! [`AsyncRead`](tokio::io::AsyncRead) + [`AsyncWrite`](tokio::io::AsyncWrite) with
//! per-stream flow control: a slow reader stalls only its own stream.
//!
//! ```no_run
//! # #[tokio::main]
//! # async fn main() -> astranet::Result<()> {
//! use astranet::{Addr, Node};
//! use tokio::io::AsyncWriteExt;
//!
//! let server = Node::new();
//! let tcp = server.listen("127.0.0.1:0").await?;
//! let listener = server.bind(":80")?;
//!
//! let client = Node::new();
//! let server_id = client.join(tcp).await?;
//! let mut stream = client.dial(Addr::new(server_id, 80)).await?;
//! stream.write_all(b"hello").await?;
//! let incoming = listener.accept().await?;
//! # drop(incoming);
//! # Ok(()) }
//! ```
//!
//! The crate is split like the protocol stacks it learns from: [`proto`] is the wire
//! protocol without I/O, down to a whole link as a state machine
//! ([`proto::link::Link`]); the link driver moves bytes and time into it on tokio, with
//! one reader, one writer and one timer task per link and no task, channel or timer
//! per stream; the node reacts to the links' events (dials, announcements, frames to
//! relay) and owns the mesh state.

#![warn(missing_docs)]

pub mod access;
mod addr;
mod config;
mod error;
mod link;
mod listener;
mod node;
pub mod proto;
mod registry;
mod stats;
mod stream;
pub mod tls;

pub use access::{AccessPolicy, AccessRule};
pub use addr::{Addr, HostId, LinkId, ParseAddrError, Port};
pub use config::{Config, KeepAlive, Limits, NodeBuilder, Role, Windows};
pub use error::{Error, Result};
pub use link::driven::{Drive, LinkDriver};
pub use listener::Listener;
pub use node::{IntoTarget, Node, ServiceWatch, Target};
pub use proto::link::{CloseReason, LinkTimeout};
pub use registry::{Reach, RouteInfo, ServiceInfo};
pub use stats::{Counters, LinkInfo, Stats};
pub use stream::Stream;
pub use tls::TlsConfig;
