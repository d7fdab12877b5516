//! Where a link's frames are written: a TCP socket, plain or under TLS (frames sealed
//! into records, see [`super::records`]), which streams may also write to directly
//! (without a task switch) while the link's writer is idle, or any other byte pipe,
//! written by the writer task alone.

use super::records::{Records, SealedSocket};
use std::io::{self, IoSlice};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::time::timeout;

#[cfg(any(target_os = "linux", target_os = "android"))]
const SEND_FLAGS: libc::c_int = libc::MSG_NOSIGNAL;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SEND_FLAGS: libc::c_int = 0;

/// The sending side of a link's TCP socket.
pub(crate) enum TcpOut {
    /// The write half of a socket the runtime reads.
    Half(OwnedWriteHalf),
    /// A descriptor of its own, registered with the runtime for writability alone: the
    /// socket of a link a [`LinkDriver`](super::driven::LinkDriver) reads, whose
    /// incoming bytes must not wake the runtime's reactor.
    Own(AsyncFd<std::net::TcpStream>),
}

impl TcpOut {
    /// A descriptor of its own for `socket`'s sending side (see [`TcpOut::Own`]).
    pub(crate) fn own(socket: &TcpStream) -> io::Result<TcpOut> {
        let dup: std::net::TcpStream = socket2::SockRef::from(socket).try_clone()?.into();
        // SAFETY: the AsyncFd owns `dup`, so its fd stays open and the same while it
        // is registered.
        Ok(TcpOut::Own(unsafe { AsyncFd::register_with_interest(dup, tokio::io::Interest::WRITABLE) }?))
    }

    fn socket(&self) -> socket2::SockRef<'_> {
        match self {
            TcpOut::Half(half) => socket2::SockRef::from(half.as_ref()),
            TcpOut::Own(fd) => socket2::SockRef::from(fd.get_ref()),
        }
    }

    async fn writable(&self) -> io::Result<()> {
        match self {
            TcpOut::Half(half) => half.writable().await,
            TcpOut::Own(fd) => fd.writable().await.map(drop),
        }
    }
}

impl Drop for TcpOut {
    fn drop(&mut self) {
        // As dropping an `OwnedWriteHalf` does: the peer gets FIN even while the
        // reading side's descriptor is still open.
        if let TcpOut::Own(fd) = self {
            let _ = fd.get_ref().shutdown(std::net::Shutdown::Write);
        }
    }
}

/// Writes what the socket takes now, without blocking, as `sendmsg` with
/// `MSG_NOSIGNAL`: a peer that reset the connection gives `EPIPE`, never a `SIGPIPE`
/// that would kill a C or Go program embedding the library (Rust binaries ignore the
/// signal; their hosts need not).
pub(crate) fn try_send(tcp: &TcpOut, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    let send = || send(tcp.socket(), parts);
    match tcp {
        TcpOut::Half(half) => half.as_ref().try_io(tokio::io::Interest::WRITABLE, send),
        TcpOut::Own(fd) => fd.try_io(tokio::io::Interest::WRITABLE, |_| send()),
    }
}

fn send_no_signal(socket: &TcpStream, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    socket.try_io(tokio::io::Interest::WRITABLE, || send(socket2::SockRef::from(socket), parts))
}

/// One `sendmsg` with [`SEND_FLAGS`].
fn send(socket: socket2::SockRef<'_>, parts: &[IoSlice<'_>]) -> io::Result<usize> {
    socket.send_vectored_with_flags(parts, SEND_FLAGS)
}

/// Writes all of `bytes` to a socket not yet split (a TLS handshake), without
/// `SIGPIPE` (see [`try_send`]).
pub(crate) async fn send_all(socket: &TcpStream, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        socket.writable().await?;
        match send_no_signal(socket, &[IoSlice::new(bytes)]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What streams write small frames to directly while the link's writer sleeps.
pub(crate) enum Direct {
    Tcp(Arc<TcpOut>),
    Tls(Arc<SealedSocket>),
}

impl Direct {
    /// Writes one frame without blocking: the bytes taken (`None`: none), and whether
    /// the writer must wake to finish the job.
    pub(crate) fn write(&self, header: &[u8], payload: &[u8]) -> (Option<usize>, bool) {
        match self {
            Direct::Tcp(tcp) => {
                let parts = [IoSlice::new(header), IoSlice::new(payload)];
                (try_send(tcp, &parts).ok().filter(|n| *n > 0), false)
            }
            Direct::Tls(socket) => socket.write_frame(header, payload),
        }
    }
}

/// The writing end of a link.
pub(crate) enum Sink {
    Tcp(Arc<TcpOut>),
    /// A TCP socket under TLS: frames are sealed into records, then sent as on `Tcp`.
    Tls(Arc<SealedSocket>, Records),
    Io(Box<dyn AsyncWrite + Send + Unpin>),
}

impl Sink {
    /// The socket streams may write to directly, if there is one.
    pub(crate) fn direct(&self) -> Option<Direct> {
        match self {
            Sink::Tcp(tcp) => Some(Direct::Tcp(tcp.clone())),
            Sink::Tls(socket, _) => Some(Direct::Tls(socket.clone())),
            Sink::Io(_) => None,
        }
    }

    /// Writes every slice, in order. Fails with [`io::ErrorKind::TimedOut`] when the
    /// pipe accepts nothing for `stall` (a slow pipe that makes progress is fine; a TCP
    /// socket makes progress while its peer acknowledges bytes).
    pub(crate) async fn write_all(&mut self, parts: &[&[u8]], stall: Duration) -> io::Result<()> {
        match self {
            Sink::Tcp(tcp) => send_frames(tcp, parts, stall).await,
            Sink::Tls(socket, out) => socket.write_all(parts, out, stall).await,
            Sink::Io(io) => {
                let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
                while !parts.is_empty() {
                    let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
                    let written = timeout(stall, io.write_vectored(&slices)).await.map_err(|_| stalled(stall))??;
                    if written == 0 {
                        return Err(io::ErrorKind::WriteZero.into());
                    }
                    advance(&mut parts, written);
                }
                timeout(stall, io.flush()).await.map_err(|_| stalled(stall))?
            }
        }
    }

    /// Sends what direct writes left for the writer (TLS records the socket did not
    /// take at once).
    pub(crate) async fn flush_direct(&mut self, stall: Duration) -> io::Result<()> {
        match self {
            Sink::Tls(socket, _) => socket.flush(stall).await,
            Sink::Tcp(_) | Sink::Io(_) => Ok(()),
        }
    }

    /// Ends the connection after everything was written.
    pub(crate) async fn shutdown(self) {
        match self {
            // Dropping the last handle of the write half sends FIN.
            Sink::Tcp(_) => {}
            Sink::Tls(socket, _) => {
                let _ = socket.close(Duration::from_secs(1)).await;
            }
            Sink::Io(mut io) => {
                let _ = io.shutdown().await;
            }
        }
    }
}

fn stalled(stall: Duration) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, format!("a write was pending for more than {stall:?}"))
}

/// Writes every slice to the socket, in order (see [`Sink::write_all`]).
pub(super) async fn send_frames(tcp: &TcpOut, parts: &[&[u8]], stall: Duration) -> io::Result<()> {
    let mut parts: Vec<&[u8]> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    while !parts.is_empty() {
        let slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        match try_send(tcp, &slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => advance(&mut parts, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => wait_writable(tcp, stall).await.map_err(|e| {
                if e.kind() == io::ErrorKind::TimedOut {
                    stalled(stall)
                } else {
                    e
                }
            })?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Waits until the socket takes bytes again. Fails with [`io::ErrorKind::TimedOut`]
/// when the peer acknowledged nothing for `stall`: the kernel reports a full socket
/// writable only once a third of its send buffer drained, which on a slow link (a few
/// MiB autotuned, 1 Mbit/s) takes longer than a short write timeout while the link is
/// alive and busy.
pub(super) async fn wait_writable(tcp: &TcpOut, stall: Duration) -> io::Result<()> {
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
fn unacknowledged(tcp: &TcpOut) -> Option<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        use std::os::fd::AsRawFd;
        let fd = tcp.socket().as_raw_fd();
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
pub(super) fn advance(parts: &mut Vec<&[u8]>, mut n: usize) {
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
    /// shut must fail with EPIPE instead of killing the process, for links
    /// ([`try_send`]) and TLS handshakes ([`send_all`]).
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
            let err = send_all(&ours, b"after shutdown").await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
            let (_r, w) = ours.into_split();
            w.as_ref().writable().await.unwrap();
            let err = try_send(&TcpOut::Half(w), &[IoSlice::new(b"after shutdown")]).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        });
    }
}
