//! The stream handle: a virtual connection, used like a TCP stream.

use crate::addr::{Addr, HostId};
use crate::link::Link;
use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// One bidirectional byte stream between two nodes, multiplexed over a link.
///
/// It implements tokio's [`AsyncRead`] and [`AsyncWrite`]:
/// - `write` queues bytes on the link as soon as the peer's window allows, so a
///   completed write is never lost, even if the handle is dropped right after;
/// - `shutdown` half-closes (the peer reads EOF, this side can still read);
/// - dropping the handle closes gracefully: everything written is delivered, then
///   the peer reads EOF and its writes fail;
/// - [`Stream::abort`] resets it instead.
///
/// ```
/// # async fn demo(node: astranet::Node, server: astranet::Addr) -> std::io::Result<()> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
/// let mut stream = node.dial(server).await?;
/// stream.write_all(b"ping").await?;
/// stream.shutdown().await?;
/// let mut reply = Vec::new();
/// stream.read_to_end(&mut reply).await?;
/// # Ok(()) }
/// ```
pub struct Stream {
    link: Arc<Link>,
    /// Slot in the link's stream table; `RELEASED` once the handle gave it back.
    id: u32,
}

const RELEASED: u32 = u32::MAX;

impl Stream {
    pub(crate) fn new(link: Arc<Link>, id: u32) -> Stream {
        Stream { link, id }
    }

    pub(crate) fn link(&self) -> &Link {
        &self.link
    }

    pub(crate) fn slot(&self) -> u32 {
        self.id
    }

    /// This end's virtual address: (this node's host id, local port).
    pub fn local_addr(&self) -> Addr {
        let key = self.link.key_of(self.id);
        Addr::new(HostId(self.link.local_host), key.local_port)
    }

    /// The other end's virtual address.
    pub fn peer_addr(&self) -> Addr {
        let key = self.link.key_of(self.id);
        Addr::new(HostId(key.remote_host), key.remote_port)
    }

    /// Resets the stream: unsent and unread data is dropped and the peer's reads and
    /// writes fail with [`io::ErrorKind::ConnectionReset`] (a v1 Go peer sees EOF).
    pub fn abort(mut self) {
        self.link.abort(self.id);
        self.id = RELEASED;
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.link.poll_read(self.id, cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.link.poll_write(self.id, cx, buf)
    }

    /// Written bytes are already queued on the link; there is nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.link.shutdown_write(self.id))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.id != RELEASED {
            self.link.release(self.id);
        }
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.id == RELEASED {
            return f.write_str("Stream(released)");
        }
        f.debug_struct("Stream").field("local", &self.local_addr()).field("peer", &self.peer_addr()).finish()
    }
}
