//! The stream handle: a virtual connection, used like a TCP stream.

use crate::addr::Addr;
use crate::error::Error;
use crate::link::LinkHandle;
use crate::proto::link::{StreamError, StreamId, StreamKey};
use std::fmt;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
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
    link: LinkHandle,
    /// Slot in the link's stream table; [`RELEASED`] once the handle gave it back.
    /// (Two words in all: with millions of streams, the handle is part of the
    /// memory of an idle stream. The key lives in the slot.)
    id: StreamId,
}

const RELEASED: StreamId = StreamId::MAX;

impl Stream {
    pub(crate) fn new(link: LinkHandle, id: StreamId) -> Stream {
        Stream { link, id }
    }

    /// This end's virtual address: (this node's host id, local port).
    pub fn local_addr(&self) -> Addr {
        self.link.local_addr(&self.key())
    }

    /// The other end's virtual address.
    pub fn peer_addr(&self) -> Addr {
        self.key().remote()
    }

    /// Resets the stream: unsent and unread data is dropped and the peer's reads and
    /// writes fail with [`io::ErrorKind::ConnectionReset`] (a v1 Go peer sees EOF).
    pub fn abort(mut self) {
        let id = std::mem::replace(&mut self.id, RELEASED);
        self.link.with(|l, _| l.abort(id, Instant::now()));
    }

    /// Resets the stream when no data moved on it either way for `timeout`, counted
    /// from now; its reads and writes then fail with [`io::ErrorKind::TimedOut`] and
    /// the peer's with a reset. `None` turns it off. The default is the node's
    /// [`Config::stream_idle_timeout`](crate::Config::stream_idle_timeout) (none unless
    /// set).
    ///
    /// ```
    /// # async fn demo(node: astranet::Node) -> std::io::Result<()> {
    /// use std::time::Duration;
    /// let stream = node.dial("db").await?;
    /// // A client that disappears without closing does not hold the stream forever.
    /// stream.set_idle_timeout(Some(Duration::from_secs(300)));
    /// # Ok(()) }
    /// ```
    pub fn set_idle_timeout(&self, timeout: Option<Duration>) {
        let id = self.id;
        self.link.with(|l, _| l.set_idle_timeout(id, timeout, Instant::now()));
    }

    /// Makes a write that waits `timeout` for room (the peer's window, the link's
    /// queue) fail with [`io::ErrorKind::TimedOut`]. Bytes already accepted by earlier
    /// writes are not affected and the stream stays usable, as after a write deadline
    /// of Go's `net.Conn`. `None` (the default): writes wait as long as it takes.
    /// Reads are bounded by the caller, e.g. with `tokio::time::timeout`.
    pub fn set_write_timeout(&self, timeout: Option<Duration>) {
        let id = self.id;
        self.link.with(|l, _| l.set_write_timeout(id, timeout, Instant::now()));
    }

    /// Reads up to `max` bytes of what arrived as they are, without copying them: a
    /// slice of the buffer the link read them into, which it keeps alive. An empty
    /// chunk is the end of the stream (or `max` 0). For passing received bytes on
    /// (to a file, another socket) without a buffer of one's own.
    ///
    /// ```
    /// # async fn demo(node: astranet::Node, mut out: impl tokio::io::AsyncWrite + Unpin) -> std::io::Result<()> {
    /// use tokio::io::AsyncWriteExt;
    /// let mut stream = node.dial("logs").await?;
    /// loop {
    ///     let chunk = stream.read_chunk(1 << 20).await?;
    ///     if chunk.is_empty() {
    ///         break;
    ///     }
    ///     out.write_all(&chunk).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn read_chunk(&mut self, max: usize) -> io::Result<bytes::Bytes> {
        std::future::poll_fn(|cx| self.poll_read_chunk(cx, max)).await
    }

    /// [`Stream::read_chunk`] as a poll function: `Pending` (the waker registered)
    /// while nothing arrived.
    pub fn poll_read_chunk(&mut self, cx: &mut Context<'_>, max: usize) -> Poll<io::Result<bytes::Bytes>> {
        let id = self.id;
        let read = self.link.with(|l, _| l.poll_read_chunk(id, cx.waker(), max, 0, Instant::now()));
        read.map_err(|e| self.error(e).into())
    }

    /// [`AsyncRead::poll_read`] for a reader that passes what it reads on in bursts
    /// (into a socket, a pipe) rather than as it arrives: the stream's receive window
    /// is raised to `min_window` bytes with the first credit it returns, within
    /// [`Windows::max_stream_window`](crate::Windows::max_stream_window) and the link's
    /// window budget. Otherwise a window starts at 64 KiB and grows only while the
    /// stream moves more than a window per two of its shortest credit loops; a reader
    /// held up by whatever it writes to waits through loops much longer than that, and
    /// its sender with it.
    ///
    /// ```
    /// use std::pin::Pin;
    /// use std::task::{Context, Poll};
    /// use tokio::io::{AsyncRead, ReadBuf};
    ///
    /// /// A stream read into a pipe whose buffer holds 1 MiB.
    /// struct Piped(astranet::Stream);
    ///
    /// impl AsyncRead for Piped {
    ///     fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
    ///         self.0.poll_read_with_window(cx, buf, 1 << 20)
    ///     }
    /// }
    /// ```
    pub fn poll_read_with_window(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
        min_window: u32,
    ) -> Poll<io::Result<()>> {
        let (id, max) = (self.id, buf.remaining());
        let put = |chunk: &[u8]| buf.put_slice(chunk);
        let read = self.link.with(|l, _| l.poll_read(id, cx.waker(), max, min_window, put, Instant::now()));
        read.map(|r| r.map(|_| ()).map_err(|e| self.error(e).into()))
    }

    /// Completes once a dialed stream is established: `Ready(Ok(()))`, or the dial's
    /// error ([`Error::Refused`], [`Error::TimedOut`], …, as [`Node::dial`]'s).
    /// A stream of [`Node::start_dial`] waits in its reads and writes until then.
    ///
    /// [`Node::dial`]: crate::Node::dial
    /// [`Node::start_dial`]: crate::Node::start_dial
    pub fn poll_established(&self, cx: &Context<'_>) -> Poll<Result<(), Error>> {
        let id = self.id;
        self.link.with(|l, _| l.poll_established(id, cx.waker())).map_err(|e| self.error(e))
    }

    /// The stream's key (its slot lives as long as the handle).
    fn key(&self) -> StreamKey {
        let id = self.id;
        self.link.with(|l, _| l.stream_key(id))
    }

    fn error(&self, e: StreamError) -> Error {
        self.link.stream_error(e, &self.key())
    }
}

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_read_with_window(cx, buf, 0)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let id = self.id;
        let written = self.link.with_direct(|l, direct, _| l.poll_write(id, cx.waker(), buf, direct, Instant::now()));
        written.map_err(|e| self.error(e).into())
    }

    /// Written bytes are already queued on the link; there is nothing to flush.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let id = self.id;
        let result = self.link.with(|l, _| l.shutdown_write(id));
        Poll::Ready(result.map_err(|e| self.error(e).into()))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        if self.id != RELEASED {
            let id = self.id;
            self.link.with(|l, _| l.release(id, Instant::now()));
        }
    }
}

impl fmt::Debug for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stream").field("local", &self.local_addr()).field("peer", &self.peer_addr()).finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn handle_is_two_words() {
        // Millions of idle streams each hold one: keep it an Arc and a slot number.
        assert_eq!(std::mem::size_of::<super::Stream>(), 16);
    }
}
