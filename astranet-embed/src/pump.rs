//! A stream as one end of a socketpair, for code that needs a real file descriptor
//! (`select`, Go's `net.FileConn`, Python's `socket`, `asyncio`).
//!
//! One task copies both ways between the stream and our end of an
//! `AF_UNIX`/`SOCK_STREAM` pair; the caller owns the other end. The rules, the same in
//! every front:
//!
//! | event                                   | effect                                   |
//! |-----------------------------------------|------------------------------------------|
//! | the peer ends its side (FIN)             | the fd reads end of file                 |
//! | the fd's owner `shutdown(SHUT_WR)`s       | the stream is half-closed (FIN)          |
//! | the owner closes the fd, all data read   | the stream closes gracefully             |
//! | the owner closes it with data unread, or stops reading and the pump's write fails | the stream is aborted (RST) |
//! | the peer resets, or the link is lost     | the fd reads end of file (writes: `EPIPE`) |
//! | [`Pump::abort`]                          | the stream is aborted                    |
//!
//! Writes use `MSG_NOSIGNAL`: a C program is never sent `SIGPIPE` by the pump.
//! Buffers start at 8 KiB and double up to 256 KiB while reads fill them: a million
//! idle pumps stay cheap, a busy one makes few, large copies.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::runtime::Handle;
use tokio::sync::Notify;

use crate::socket::{recv, send};

const FIRST_BUF: usize = 8 << 10;
const MAX_BUF: usize = 256 << 10;

/// The receive window a pumped stream asks for. The pump reads in bursts: it fills
/// the socket's buffer (about 200 KiB) and its own (up to 256 KiB), then waits for the
/// fd's owner, so its credit loops are often far longer than the shortest, which alone
/// would size the window. One stream of Go's socketpair tier over loopback: 0.9–1.4
/// GB/s without it, 1.3–1.5 with it (1 and 4 MiB measured alike).
const PUMP_WINDOW: u32 = 1 << 20;

/// The stream as the pump reads it (see [`astranet::Stream::poll_read_with_window`]).
struct Pumped(astranet::Stream);

impl AsyncRead for Pumped {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.get_mut().0.poll_read_with_window(cx, buf, PUMP_WINDOW)
    }
}

impl AsyncWrite for Pumped {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// The running pump of a stream.
#[derive(Clone, Debug)]
pub struct Pump {
    abort: Arc<Notify>,
}

impl Pump {
    /// Aborts the stream (RST to the peer) and ends the pump; the fd then reads end of
    /// file.
    pub fn abort(&self) {
        self.abort.notify_one();
    }
}

/// A socketpair ready to carry a stream: made first, so that running out of
/// descriptors fails before the stream is handed over.
pub struct Socketpair {
    theirs: UnixStream,
    ours: AsyncFd<UnixStream>,
    rt: Handle,
}

/// A socketpair whose pump will run on `rt`.
pub fn socketpair(rt: &Handle) -> io::Result<Socketpair> {
    let (theirs, ours) = UnixStream::pair()?;
    ours.set_nonblocking(true)?;
    let ours = {
        let _context = rt.enter();
        // SAFETY: the UnixStream owns its fd, which nothing closes or replaces while
        // the AsyncFd holds it.
        unsafe { AsyncFd::register(ours)? }
    };
    Ok(Socketpair { theirs, ours, rt: rt.clone() })
}

impl Socketpair {
    /// Starts pumping `stream`; returns the caller's end (blocking, close-on-exec) and
    /// the pump.
    pub fn pump(self, stream: astranet::Stream) -> (OwnedFd, Pump) {
        let pump = Pump { abort: Arc::new(Notify::new()) };
        self.rt.spawn(run(stream, self.ours, pump.abort.clone()));
        (self.theirs.into(), pump)
    }
}

/// Why one direction stopped early.
enum Side {
    /// The fd's owner went away or failed: abort the stream.
    Socket,
    /// The stream failed (reset, link lost): just close the fd.
    Stream,
}

fn grow(buf: &mut Vec<u8>, filled: usize) {
    if filled == buf.len() && buf.len() < MAX_BUF {
        buf.resize(buf.len() * 2, 0);
    }
}

async fn run(stream: astranet::Stream, fd: AsyncFd<UnixStream>, abort: Arc<Notify>) {
    let (mut sr, mut sw) = tokio::io::split(Pumped(stream));
    let to_socket = async {
        let mut buf = vec![0u8; FIRST_BUF];
        loop {
            let n = sr.read(&mut buf).await.map_err(|_| Side::Stream)?;
            if n == 0 {
                // SAFETY: shutdown of our own socket.
                unsafe { libc::shutdown(fd.get_ref().as_raw_fd(), libc::SHUT_WR) };
                return Ok(());
            }
            let mut off = 0;
            while off < n {
                let mut ready = fd.writable().await.map_err(|_| Side::Socket)?;
                match ready.try_io(|fd| send(fd.get_ref(), &buf[off..n])) {
                    Ok(sent) => off += sent.map_err(|_| Side::Socket)?,
                    Err(_would_block) => continue,
                }
            }
            grow(&mut buf, n);
        }
    };
    let from_socket = async {
        let mut buf = vec![0u8; FIRST_BUF];
        loop {
            let mut ready = fd.readable().await.map_err(|_| Side::Socket)?;
            let n = match ready.try_io(|fd| recv(fd.get_ref(), &mut buf)) {
                Ok(n) => n.map_err(|_| Side::Socket)?,
                Err(_would_block) => continue,
            };
            if n == 0 {
                sw.shutdown().await.map_err(|_| Side::Stream)?;
                return Ok(());
            }
            sw.write_all(&buf[..n]).await.map_err(|_| Side::Stream)?;
            grow(&mut buf, n);
        }
    };
    let ended: Result<((), ()), Side> = tokio::select! {
        r = async { tokio::try_join!(to_socket, from_socket) } => r,
        _ = abort.notified() => Err(Side::Socket),
    };
    let Pumped(stream) = sr.unsplit(sw);
    if let Err(Side::Socket) = ended {
        stream.abort();
    }
    // Dropping our end: the owner reads end of file.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::Runtime;
    use std::io::{Read, Write};
    use std::time::Duration;

    async fn pair(node: &astranet::Node, other: &astranet::Node) -> (astranet::Stream, astranet::Stream) {
        let addr = other.listen("127.0.0.1:0").await.unwrap();
        node.join(addr).await.unwrap();
        let listener = other.bind("").unwrap();
        let dial = node.dial(listener.local_addr());
        let (ours, theirs) = tokio::join!(dial, listener.accept());
        (ours.unwrap(), theirs.unwrap())
    }

    fn setup() -> (Runtime, std::fs::File, astranet::Stream, Pump, [astranet::Node; 2]) {
        let rt = Runtime::new(1).unwrap();
        let nodes = [astranet::Node::new(), astranet::Node::new()];
        let [n, o] = nodes.clone();
        let (ours, theirs) =
            crate::wait::future(Some(rt.handle()), crate::wait::Wait::Forever, crate::wait::NoInterrupt, async move {
                pair(&n, &o).await
            })
            .unwrap();
        let (fd, pump) = socketpair(rt.handle()).unwrap().pump(ours);
        (rt, std::fs::File::from(fd), theirs, pump, nodes)
    }

    fn on<T>(rt: &Runtime, fut: impl std::future::Future<Output = T> + Send + 'static) -> T
    where
        T: Send + 'static,
    {
        rt.run(crate::wait::Wait::timeout(Some(Duration::from_secs(10))), crate::wait::NoInterrupt, fut).unwrap()
    }

    #[test]
    fn bytes_and_half_closes_pass_both_ways() {
        let (rt, mut fd, mut peer, _pump, _node) = setup();
        fd.write_all(b"ping").unwrap();
        // SAFETY: half-closes our own fd.
        unsafe { libc::shutdown(fd.as_raw_fd(), libc::SHUT_WR) };
        let (got, peer) = on(&rt, async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            peer.write_all(b"pong").await.unwrap();
            peer.shutdown().await.unwrap();
            (got, peer)
        });
        assert_eq!(got, b"ping");
        let mut back = Vec::new();
        fd.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"pong");
        drop(peer);
    }

    #[test]
    fn closing_the_fd_with_data_unread_aborts_the_stream() {
        let (rt, fd, mut peer, _pump, _node) = setup();
        let err = on(&rt, async move {
            peer.write_all(&[7u8; 4096]).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
            drop(fd);
            let mut buf = [0u8; 16];
            loop {
                match peer.read(&mut buf).await {
                    Ok(0) => return None,
                    Ok(_) => continue,
                    Err(e) => return Some(e.kind()),
                }
            }
        });
        assert_eq!(err, Some(io::ErrorKind::ConnectionReset));
    }

    #[test]
    fn abort_resets_the_stream_and_ends_the_fd() {
        let (rt, mut fd, mut peer, pump, _node) = setup();
        pump.abort();
        let kind = on(&rt, async move { peer.read(&mut [0u8; 8]).await.unwrap_err().kind() });
        assert_eq!(kind, io::ErrorKind::ConnectionReset);
        assert_eq!(fd.read(&mut [0u8; 8]).unwrap(), 0);
    }

    #[test]
    fn a_pumped_stream_grants_its_sender_the_pump_window() {
        let (rt, fd, mut peer, _pump, _node) = setup();
        // The fd's owner reads nothing: the peer writes the stream's window and what
        // the pump took before its last credit (at most what the socket and its
        // buffer hold: a few hundred KiB), then waits.
        let sent = on(&rt, async move {
            let chunk = [0u8; 16 << 10];
            let mut sent = 0usize;
            // A write that waits a whole second has met the window (a loaded machine
            // may pause a write for a moment).
            while let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(1), peer.write_all(&chunk)).await {
                sent += chunk.len();
            }
            sent
        });
        assert!(sent > PUMP_WINDOW as usize, "the sender could write only {sent} bytes");
        drop(fd);
    }

    #[test]
    fn a_peer_reset_reads_as_end_of_file() {
        let (rt, mut fd, peer, _pump, _node) = setup();
        on(&rt, async move { peer.abort() });
        assert_eq!(fd.read(&mut [0u8; 8]).unwrap(), 0);
    }
}
