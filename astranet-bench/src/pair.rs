//! What every measured transport provides: an accepting end and an opening end, each
//! started on the runtime that calls it, so each workload is written once and can run
//! both ends on one runtime or each end on its own.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum, Serialize, Deserialize)]
pub enum Kind {
    /// Raw TCP on loopback: a connection per stream, the physical limit.
    #[value(name = "tcp")]
    #[serde(rename = "raw_tcp")]
    Tcp,
    /// The `yamux` crate over one TCP connection.
    #[serde(rename = "yamux")]
    Yamux,
    /// This project, over one TCP link.
    #[serde(rename = "astranet")]
    Astranet,
    /// This project through one relay hop: both nodes joined to a router.
    #[value(name = "relayed")]
    #[serde(rename = "astranet_relayed")]
    Relayed,
    /// This project over one TLS 1.3 link (mesh CA, both sides authenticated).
    #[value(name = "tls")]
    #[serde(rename = "astranet_tls")]
    Tls,
    /// The original Go astranet package, both ends in a Go process of their own
    /// (`astranet-bench/goastranet`), over one TCP link.
    #[value(name = "go")]
    #[serde(rename = "astranet_go")]
    GoOriginal,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Tcp, Kind::Yamux, Kind::Astranet, Kind::Relayed, Kind::Tls, Kind::GoOriginal];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Tcp => "raw TCP",
            Kind::Yamux => "yamux",
            Kind::Astranet => "astranet",
            Kind::Relayed => "astranet relayed",
            Kind::Tls => "astranet+tls",
            Kind::GoOriginal => "Go astranet",
        }
    }
}

pub trait Transport: Sized + 'static {
    const KIND: Kind;
    /// True when opening a stream tells the peer nothing until the stream's first frame
    /// (yamux sends SYN with the first data, ACK with the first reply). Streams are then
    /// established by one byte each way, so that every counted stream exists at both ends.
    const LAZY_OPEN: bool = false;

    type Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static;
    /// What the opening end needs to reach the accepting end.
    type Address: Send + 'static;
    type Server: Send + Sync + 'static;
    type Client: Send + Sync + 'static;

    /// Starts the accepting end on loopback.
    fn serve() -> impl Future<Output = io::Result<(Self::Server, Self::Address)>>;
    /// Starts the opening end; the accepting end need not be polled meanwhile.
    fn connect(to: Self::Address) -> impl Future<Output = io::Result<Self::Client>>;
    fn open(client: &Self::Client) -> impl Future<Output = io::Result<Self::Stream>> + Send;
    fn accept(server: &Self::Server) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Opens a stream; returns once it is established at both ends.
pub async fn open<T: Transport>(client: &T::Client) -> io::Result<T::Stream> {
    let mut stream = T::open(client).await?;
    if T::LAZY_OPEN {
        stream.write_all(b"!").await?;
        stream.flush().await?;
        stream.read_exact(&mut [0u8; 1]).await?;
    }
    Ok(stream)
}

/// Accepts a stream opened with [`open`].
pub async fn accept<T: Transport>(server: &T::Server) -> io::Result<T::Stream> {
    let mut stream = T::accept(server).await?;
    if T::LAZY_OPEN {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        stream.write_all(&byte).await?;
        stream.flush().await?;
    }
    Ok(stream)
}

/// Both ends of a transport on the current runtime.
pub struct Pair<T: Transport> {
    server: T::Server,
    client: T::Client,
}

/// Time allowed to set up a pair (a TCP connect and, for the multiplexers, a handshake).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl<T: Transport> Pair<T> {
    pub async fn connect() -> io::Result<Arc<Self>> {
        let setup = async {
            let (server, address) = T::serve().await?;
            let client = T::connect(address).await?;
            Ok(Arc::new(Pair { server, client }))
        };
        tokio::time::timeout(CONNECT_TIMEOUT, setup).await.map_err(|_| timed_out("connecting"))?
    }

    /// Opens `n` streams with up to `in_flight` dials pending; returns (opener ends,
    /// acceptor ends) once every stream is established at both ends.
    pub async fn establish(
        self: &Arc<Self>,
        n: usize,
        in_flight: usize,
    ) -> io::Result<(Vec<T::Stream>, Vec<T::Stream>)> {
        let acceptor = {
            let pair = self.clone();
            spawn(async move {
                let mut accepted = Vec::with_capacity(n);
                for _ in 0..n {
                    accepted.push(accept::<T>(&pair.server).await?);
                }
                Ok(accepted)
            })
        };
        let opened: Vec<T::Stream> = futures::stream::iter(0..n)
            .map(|_| open::<T>(&self.client))
            .buffer_unordered(in_flight.max(1))
            .try_collect()
            .await?;
        let accepted = acceptor.await?;
        Ok((opened, accepted))
    }

    /// Opens one stream and returns both of its ends.
    pub async fn establish_one(self: &Arc<Self>) -> io::Result<(T::Stream, T::Stream)> {
        let (opened, accepted) = tokio::join!(open::<T>(&self.client), accept::<T>(&self.server));
        Ok((opened?, accepted?))
    }
}

pub fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("timed out {what}"))
}

/// A spawned task that is aborted when dropped, so a timed-out or failed measurement
/// leaves nothing running behind it.
pub struct Task<T>(JoinHandle<T>);

pub fn spawn<T: Send + 'static>(fut: impl Future<Output = io::Result<T>> + Send + 'static) -> Task<io::Result<T>> {
    Task(tokio::spawn(fut))
}

impl<T> From<JoinHandle<T>> for Task<T> {
    fn from(handle: JoinHandle<T>) -> Self {
        Task(handle)
    }
}

impl<T> Future for Task<io::Result<T>> {
    type Output = io::Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|joined| joined.map_err(io::Error::other)?)
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
