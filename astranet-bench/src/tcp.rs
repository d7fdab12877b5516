//! Raw TCP on loopback: one kernel connection per stream, the limit a multiplexer is
//! measured against.

use std::future::Future;
use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

use crate::pair::{Kind, Transport};

/// The kernel caps the accept queue at net.core.somaxconn (4096 by default); dials are
/// also bounded per batch, so no SYN is dropped and retried a second later.
const BACKLOG: u32 = 4096;
/// Descriptors kept free for the runtime, the yamux and astranet links, stdio.
const SPARE_FDS: u64 = 256;

pub struct Tcp;

impl Transport for Tcp {
    const KIND: Kind = Kind::Tcp;
    type Stream = TcpStream;
    type Address = SocketAddr;
    type Server = TcpListener;
    type Client = SocketAddr;

    async fn serve() -> io::Result<(TcpListener, SocketAddr)> {
        listen_loopback()
    }

    async fn connect(to: SocketAddr) -> io::Result<SocketAddr> {
        Ok(to)
    }

    fn open(to: &SocketAddr) -> impl Future<Output = io::Result<TcpStream>> + Send {
        connect_nodelay(*to)
    }

    fn accept(listener: &TcpListener) -> impl Future<Output = io::Result<TcpStream>> + Send {
        accept_nodelay(listener)
    }
}

pub fn listen_loopback() -> io::Result<(TcpListener, SocketAddr)> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let listener = socket.listen(BACKLOG)?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

/// Connects to a loopback listener with Nagle off, as the multiplexers' links run.
pub async fn connect_nodelay(to: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(to).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Accepts with Nagle off.
pub async fn accept_nodelay(listener: &TcpListener) -> io::Result<TcpStream> {
    let (stream, _) = listener.accept().await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// How many loopback connections this process can hold at once: both ends are ours, so
/// each one costs two descriptors.
pub fn max_connections() -> usize {
    let limit = crate::sys::fd_limit();
    (limit.saturating_sub(SPARE_FDS) / 2) as usize
}
