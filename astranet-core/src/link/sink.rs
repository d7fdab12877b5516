//! Where a link's frames are written: a TCP socket, which streams may also write to
//! directly (without a copy or a task switch) while the link's writer is idle, or any
//! other byte pipe, written by the writer task alone.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::time::timeout;

/// Writes what the socket takes now, without blocking, as `sendmsg` with
/// `MSG_NOSIGNAL`: a peer that reset the connection gives `EPIPE`, never a `SIGPIPE`
/// that would kill a C or Go program embedding the library (Rust binaries ignore the
/// signal; their hosts need not).
pub(crate) fn try_send(tcp: &OwnedWriteHalf, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    send_no_signal(tcp.as_ref(), parts)
}

fn send_no_signal(socket: &TcpStream, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    const FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    const FLAGS: libc::c_int = 0;
    socket
        .try_io(tokio::io::Interest::WRITABLE, || socket2::SockRef::from(socket).send_vectored_with_flags(parts, FLAGS))
}

/// A TCP stream whose writes never raise `SIGPIPE` (see [`try_send`]): TLS links run
/// over it, since the TLS layer writes with plain `write`.
pub(crate) struct NoSignal(pub TcpStream);

impl AsyncRead for NoSignal {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for NoSignal {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(buf)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.0.poll_write_ready(cx))?;
            match send_no_signal(&self.0, bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                written => return Poll::Ready(written),
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// The writing end of a link.
pub(crate) enum Sink {
    Tcp(Arc<OwnedWriteHalf>),
    Io(Box<dyn AsyncWrite + Send + Unpin>),
}

impl Sink {
    /// The socket streams may write to directly, if there is one.
    pub(crate) fn direct(&self) -> Option<Arc<OwnedWriteHalf>> {
        match self {
            Sink::Tcp(tcp) => Some(tcp.clone()),
            Sink::Io(_) => None,
        }
    }

    /// Writes every slice, in order. Fails with [`io::ErrorKind::TimedOut`] when the
    /// pipe accepts nothing for `stall` (a slow pipe that makes progress is fine; a TCP
    /// socket makes progress while its peer acknowledges bytes).
    pub(crate) async fn write_all(&mut self, parts: &[&[u8]], stall: Duration) -> io::Result<()> {
        let stalled =
            || io::Error::new(io::ErrorKind::TimedOut, format!("a write was pending for more than {stall:?}"));
        let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
        while !parts.is_empty() {
            let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
            let written = match self {
                Sink::Tcp(tcp) => match try_send(tcp, &slices) {
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        wait_writable(tcp, stall).await.map_err(|e| {
                            if e.kind() == io::ErrorKind::TimedOut {
                                stalled()
                            } else {
                                e
                            }
                        })?;
                        continue;
                    }
                    Err(e) => return Err(e),
                },
                Sink::Io(io) => timeout(stall, io.write_vectored(&slices)).await.map_err(|_| stalled())??,
            };
            if written == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            advance(&mut parts, written);
        }
        if let Sink::Io(io) = self {
            timeout(stall, io.flush()).await.map_err(|_| stalled())??;
        }
        Ok(())
    }

    /// Ends the connection after everything was written.
    pub(crate) async fn shutdown(self) {
        match self {
            // Dropping the last handle of the write half sends FIN.
            Sink::Tcp(_) => {}
            Sink::Io(mut io) => {
                let _ = io.shutdown().await;
            }
        }
    }
}

/// Waits until the socket takes bytes again. Fails with [`io::ErrorKind::TimedOut`]
/// when the peer acknowledged nothing for `stall`: the kernel reports a full socket
/// writable only once a third of its send buffer drained, which on a slow link (a few
/// MiB autotuned, 1 Mbit/s) takes longer than a short write timeout while the link is
/// alive and busy.
async fn wait_writable(tcp: &OwnedWriteHalf, stall: Duration) -> io::Result<()> {
    let mut unacked = unacknowledged(tcp);
    loop {
        match timeout(stall, tcp.writable()).await {
            Ok(ready) => return ready,
            Err(_) => match (unacked, unacknowledged(tcp)) {
                (Some(before), Some(now)) if now < before => unacked = Some(now),
                _ => return Err(io::ErrorKind::TimedOut.into()),
            },
        }
    }
}

/// Bytes of the socket's send queue the peer has not acknowledged (Linux `SIOCOUTQ`);
/// `None` where that cannot be asked.
fn unacknowledged(tcp: &OwnedWriteHalf) -> Option<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::AsRawFd;
        let fd = tcp.as_ref().as_raw_fd();
        let mut queued: libc::c_int = 0;
        // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int through the pointer.
        let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
        (r == 0).then_some(queued as usize)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        let _ = tcp;
        None
    }
}

/// Drops the first `n` bytes of `parts`.
fn advance(parts: &mut Vec<&[u8]>, mut n: usize) {
    let mut done = 0;
    for p in parts.iter_mut() {
        if n >= p.len() {
            n -= p.len();
            done += 1;
        } else {
            *p = &p[n..];
            break;
        }
    }
    parts.drain(..done);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_across_slices() {
        let (a, b, c) = (&b"abc"[..], &b"de"[..], &b"fgh"[..]);
        let mut parts = vec![a, b, c];
        super::advance(&mut parts, 4);
        assert_eq!(parts, vec![&b"e"[..], &b"fgh"[..]]);
        super::advance(&mut parts, 4);
        assert!(parts.is_empty());
    }

    /// Run in a child process (the signal's disposition is process-wide): with SIGPIPE
    /// at its default, as in a C program, writing to a socket whose sending side is
    /// shut must fail with EPIPE instead of killing the process, for plaintext links
    /// ([`try_send`]) and TLS links ([`NoSignal`]).
    #[test]
    fn writes_to_a_broken_socket_raise_no_sigpipe() {
        if std::env::var_os("ASTRANET_SIGPIPE_CHILD").is_none() {
            let exe = std::env::current_exe().unwrap();
            let status = std::process::Command::new(exe)
                .args(["--exact", "link::sink::tests::writes_to_a_broken_socket_raise_no_sigpipe", "--nocapture"])
                .env("ASTRANET_SIGPIPE_CHILD", "1")
                .status()
                .unwrap();
            assert!(status.success(), "the child died: {status:?}");
            return;
        }
        // SAFETY: restores the default action, as a C program has it.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let ours = tokio::net::TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
            let _theirs = listener.accept().await.unwrap();
            socket2::SockRef::from(&ours).shutdown(std::net::Shutdown::Write).unwrap();
            let (_r, w) = ours.into_split();
            w.as_ref().writable().await.unwrap();
            let err = try_send(&w, &[IoSlice::new(b"after shutdown")]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
            // The stream TLS links write through (rustls writes with writev, which
            // raises SIGPIPE where send with MSG_NOSIGNAL does not).
            let ours = w.reunite(_r).unwrap();
            let err = NoSignal(ours).write_vectored(&[IoSlice::new(b"after shutdown")]).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        });
    }
}
