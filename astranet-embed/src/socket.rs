//! A stream socket of any family (the end of a socketpair, a Unix or TCP connection)
//! as tokio's `AsyncRead` and `AsyncWrite`: what a link runs over when a program hands
//! the library a descriptor (`astranet_attach`).
//!
//! Writes use `MSG_NOSIGNAL`: a peer that went away gives `EPIPE`, never a `SIGPIPE`
//! that would end a C or Go program (Rust's own binaries ignore the signal; the
//! library's hosts need not). The socketpair pump writes the same way.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A non-blocking stream socket registered with the current runtime.
pub struct Socket(AsyncFd<UnixStream>);

impl Socket {
    /// Takes `fd` (see [`is_connected_stream_socket`]), makes it non-blocking
    /// and registers it with the runtime of the calling task.
    pub fn new(fd: OwnedFd) -> io::Result<Socket> {
        // Any family: only `recv`, `send` and `shutdown` are used on it.
        let socket = UnixStream::from(fd);
        socket.set_nonblocking(true)?;
        // SAFETY: the UnixStream owns its fd, which nothing closes or replaces while
        // the AsyncFd holds it.
        Ok(Socket(unsafe { AsyncFd::register(socket)? }))
    }
}

/// Whether `fd` is a connected socket of type `SOCK_STREAM` (not a listening one, not
/// one whose connection never was).
pub fn is_connected_stream_socket(fd: impl AsFd) -> bool {
    let fd = fd.as_fd().as_raw_fd();
    let int_option = |name| {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads an int option into a live int of the size given.
        let r =
            unsafe { libc::getsockopt(fd, libc::SOL_SOCKET, name, (&mut value as *mut libc::c_int).cast(), &mut len) };
        (r == 0).then_some(value)
    };
    let mut peer: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: writes at most `len` bytes into a live sockaddr_storage.
    let connected = unsafe { libc::getpeername(fd, (&mut peer as *mut libc::sockaddr_storage).cast(), &mut len) } == 0;
    int_option(libc::SO_TYPE) == Some(libc::SOCK_STREAM) && int_option(libc::SO_ACCEPTCONN) == Some(0) && connected
}

/// One `send` with `MSG_NOSIGNAL`.
pub(crate) fn send(socket: &UnixStream, data: &[u8]) -> io::Result<usize> {
    // SAFETY: sends from a live buffer on a socket we hold.
    let r = unsafe { libc::send(socket.as_raw_fd(), data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// One `recv`.
pub(crate) fn recv(socket: &UnixStream, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: receives into a live buffer from a socket we hold.
    let r = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            let mut ready = ready!(self.0.poll_read_ready(cx))?;
            match ready.try_io(|fd| recv(fd.get_ref(), buf.initialize_unfilled())) {
                Ok(n) => {
                    buf.advance(n?);
                    return Poll::Ready(Ok(()));
                }
                Err(_would_block) => continue,
            }
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            let mut ready = ready!(self.0.poll_write_ready(cx))?;
            match ready.try_io(|fd| send(fd.get_ref(), data)) {
                Ok(n) => return Poll::Ready(n),
                Err(_would_block) => continue,
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(self.0.get_ref().shutdown(std::net::Shutdown::Write))
    }
}
