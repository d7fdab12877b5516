//! A hand-driven protocol peer: the attacker. It connects from 127.0.0.2, so that the
//! per-address link cap it may run into leaves the well-behaved client (127.0.0.1)
//! alone.

use astranet::proto::{Command, Decoder, Frame, Handshake, Header, HEADER_LEN, MAX_PAYLOAD};
use bytes::BytesMut;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The attacker's host id.
pub const ME: u64 = 0x0BAD_F00D;

/// The attacker's source address.
const FROM: &str = "127.0.0.2:0";

/// Lowers the calling thread's scheduling priority (not that of threads already
/// started, such as a [`Drain`] that must keep up with the node): on a machine of two
/// cores, the attacker must not starve the node or the good client of CPU, or their
/// delays would say nothing about the node.
pub fn yield_to_others() {
    // SAFETY: plain system calls on the calling thread.
    unsafe {
        let me = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, me, 10);
    }
}

/// A TCP connection to `to` from the attacker's address.
pub fn tcp(to: SocketAddr) -> io::Result<TcpStream> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_io().build()?;
    let sock = rt.block_on(async {
        let s = tokio::net::TcpSocket::new_v4()?;
        s.bind(FROM.parse().unwrap())?;
        s.connect(to).await?.into_std()
    })?;
    sock.set_nonblocking(false)?;
    sock.set_nodelay(true)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))?;
    sock.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(sock)
}

/// Appends one frame from the attacker to `out`.
pub fn put(out: &mut Vec<u8>, cmd: Command, node: u64, node_port: u32, my_port: u32, payload: &[u8]) {
    let h =
        Header { cmd, dst_host: node, src_host: ME, dst_port: node_port, src_port: my_port, len: payload.len() as u32 };
    h.put(out);
    out.extend_from_slice(payload);
}

/// The HANDSHAKE frame: with this project's extensions (`ext`) or as a v1 (Go) peer.
pub fn handshake(ext: bool) -> Vec<u8> {
    let hs = if ext {
        Handshake::ours("127.0.0.1:1".into())
    } else {
        Handshake { raddr: "127.0.0.1:1".into(), ext: vec![] }
    };
    let mut out = Vec::new();
    put(&mut out, Command::Handshake, 0, 0, 0, &hs.encode());
    out
}

/// A linked raw peer.
pub struct RawPeer {
    pub sock: TcpStream,
    /// The node's host id.
    pub node: u64,
    buf: BytesMut,
}

impl RawPeer {
    /// Connects and exchanges handshakes.
    pub fn connect(to: SocketAddr, ext: bool) -> io::Result<RawPeer> {
        let mut sock = tcp(to)?;
        sock.write_all(&handshake(ext))?;
        let mut peer = RawPeer { sock, node: 0, buf: BytesMut::new() };
        let theirs = peer.recv_until(|f| f.header.cmd == Command::Handshake)?;
        peer.node = theirs.header.src_host;
        Ok(peer)
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.sock.write_all(bytes)
    }

    /// The next frame, skipping (and answering, as Go does) what `want` rejects.
    pub fn recv_until(&mut self, mut want: impl FnMut(&Frame) -> bool) -> io::Result<Frame> {
        let decoder = Decoder::new(MAX_PAYLOAD as u32);
        loop {
            while let Some(f) = decoder.decode(&mut self.buf).map_err(io::Error::other)? {
                if want(&f) {
                    return Ok(f);
                }
                if f.header.cmd == Command::Ping {
                    let mut pong = Vec::new();
                    Header::link(Command::Pong, 0).put(&mut pong);
                    self.sock.write_all(&pong)?;
                }
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.sock.read(&mut chunk)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Opens a stream to `port` from `my_port`: DIAL, then SYN, ACK, SYN_ACK.
    pub fn open(&mut self, port: u32, my_port: u32) -> io::Result<()> {
        let mut out = Vec::new();
        put(&mut out, Command::Dial, self.node, port, my_port, &[]);
        self.send(&out)?;
        let of_stream = |cmd| move |f: &Frame| f.header.cmd == cmd && f.header.dst_port == my_port;
        self.recv_until(of_stream(Command::Syn))?;
        out.clear();
        put(&mut out, Command::Ack, self.node, port, my_port, &[]);
        self.send(&out)?;
        self.recv_until(of_stream(Command::SynAck))?;
        Ok(())
    }

    /// Reads everything the node sends from now on, on a thread, counting frames.
    pub fn drain(&self) -> Drain {
        Drain::spawn(self.sock.try_clone().unwrap(), self.buf.clone())
    }
}

impl Drop for RawPeer {
    /// Ends the connection even while a [`Drain`] thread holds a copy of the socket.
    fn drop(&mut self) {
        let _ = self.sock.shutdown(std::net::Shutdown::Both);
    }
}

/// What a node sent a [`RawPeer`], counted by [`RawPeer::drain`].
#[derive(Clone, Debug, Default)]
pub struct Counts {
    /// Frames by command code.
    pub frames: Vec<u64>,
    /// RST frames by reason byte.
    pub refusals: Vec<u64>,
    /// REWIND credit handed back, in bytes.
    pub rewound: u64,
    /// DATA bytes.
    pub data: u64,
    /// When the node closed the connection.
    pub closed: Option<Instant>,
}

impl Counts {
    fn count(&mut self, cmd: u8, payload: &[u8]) {
        let slot = |v: &mut Vec<u64>, i: usize| {
            v.resize(v.len().max(i + 1), 0);
            v[i] += 1;
        };
        slot(&mut self.frames, cmd as usize);
        match Command::from_u8(cmd) {
            Some(Command::Rst) if !payload.is_empty() => slot(&mut self.refusals, payload[0] as usize),
            Some(Command::Rewind) if payload.len() == 4 => {
                self.rewound += u64::from(u32::from_be_bytes(payload.try_into().unwrap()))
            }
            Some(Command::Data) => self.data += payload.len() as u64,
            _ => {}
        }
    }

    pub fn of(&self, cmd: Command) -> u64 {
        self.frames.get(cmd as usize).copied().unwrap_or(0)
    }

    pub fn refused(&self, reason: astranet::proto::RstReason) -> u64 {
        self.refusals.get(reason as usize).copied().unwrap_or(0)
    }
}

/// A reader thread's counts.
pub struct Drain {
    counts: Arc<Mutex<Counts>>,
}

impl Drain {
    /// Reads `sock` until the node closes it; `buf` holds bytes already read. Frames
    /// are counted from their headers in place: the reader must keep up with a node
    /// that answers a flood, or the node rightly takes it for a peer that does not read.
    pub fn spawn(mut sock: TcpStream, buf: BytesMut) -> Drain {
        let counts = Arc::new(Mutex::new(Counts::default()));
        let out = counts.clone();
        std::thread::spawn(move || {
            let mut buf = buf.to_vec();
            let mut chunk = vec![0u8; 256 * 1024];
            loop {
                let mut at = 0;
                {
                    let mut counts = out.lock().unwrap();
                    while let Some(frame) = buf.get(at..at + HEADER_LEN) {
                        let len = u32::from_be_bytes(frame[25..29].try_into().unwrap()) as usize;
                        let Some(payload) = buf.get(at + HEADER_LEN..at + HEADER_LEN + len) else { break };
                        counts.count(frame[0], payload);
                        at += HEADER_LEN + len;
                    }
                }
                buf.drain(..at);
                match sock.read(&mut chunk) {
                    Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {}
                    _ => break,
                }
            }
            out.lock().unwrap().closed = Some(Instant::now());
        });
        Drain { counts }
    }

    pub fn counts(&self) -> Counts {
        self.counts.lock().unwrap().clone()
    }

    /// Waits up to `limit` for the node to close the connection; when it did.
    pub fn closed_within(&self, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(at) = self.counts().closed {
                return Some(at);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
