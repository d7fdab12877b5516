//! Helpers shared by the integration tests: node pairs, a raw protocol peer, timeouts.
#![allow(dead_code)]

use astranet::proto::{Command, Decoder, Frame, Handshake, Header, MAX_PAYLOAD};
use astranet::{HostId, Node, NodeBuilder};
use bytes::BytesMut;
use std::future::Future;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Fails the test instead of hanging it.
pub async fn within<T>(secs: u64, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f).await.expect("test step timed out")
}

pub fn trace() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// Two nodes joined by one TCP link on loopback.
pub async fn tcp_pair_with(a: NodeBuilder, b: NodeBuilder) -> (Node, Node) {
    let (server, client) = (a.build(), b.build());
    let addr = server.listen("127.0.0.1:0").await.unwrap();
    let peer = within(10, client.join(addr)).await.unwrap();
    assert_eq!(peer, server.host_id());
    (server, client)
}

pub async fn tcp_pair() -> (Node, Node) {
    tcp_pair_with(Node::builder(), Node::builder()).await
}

/// Two nodes joined by an in-memory duplex pipe.
pub async fn duplex_pair() -> (Node, Node) {
    let (server, client) = (Node::new(), Node::new());
    let (a, b) = tokio::io::duplex(256 * 1024);
    let (sh, ch) = within(10, async { tokio::try_join!(server.attach(a), client.attach(b)) }).await.unwrap();
    assert_eq!(sh, client.host_id());
    assert_eq!(ch, server.host_id());
    (server, client)
}

/// Dials `listener` from `client` and accepts: (client end, server end).
pub async fn connected(client: &Node, listener: &astranet::Listener) -> (astranet::Stream, astranet::Stream) {
    let (c, s) = within(10, async { tokio::join!(client.dial(listener.local_addr()), listener.accept()) }).await;
    (c.unwrap(), s.unwrap())
}

/// A hand-driven protocol peer over TCP, for byte-level and hostile-input tests.
pub struct RawPeer {
    pub sock: TcpStream,
    pub host: u64,
    buf: BytesMut,
    decoder: Decoder,
}

impl RawPeer {
    /// Connects to a listening node and exchanges handshakes. `ext`: announce this
    /// implementation's extensions (otherwise behave as a v1 Go peer).
    pub async fn connect(addr: std::net::SocketAddr, ext: bool) -> (RawPeer, Frame) {
        let sock = TcpStream::connect(addr).await.unwrap();
        let mut peer = RawPeer { sock, host: 0x0BAD_F00D, buf: BytesMut::new(), decoder: Decoder::new(1 << 24) };
        let hs = if ext {
            Handshake::ours("127.0.0.1:1".into())
        } else {
            Handshake { raddr: "127.0.0.1:1".into(), ext: vec![] }
        };
        let payload = hs.encode();
        peer.send(
            Header {
                cmd: Command::Handshake,
                dst_host: 0,
                src_host: peer.host,
                dst_port: 0,
                src_port: 0,
                len: payload.len() as u32,
            },
            &payload,
        )
        .await;
        let theirs = peer.recv_skip_ping().await.expect("node sends HANDSHAKE");
        assert_eq!(theirs.header.cmd, Command::Handshake);
        (peer, theirs)
    }

    pub async fn send(&mut self, h: Header, payload: &[u8]) {
        let mut out = BytesMut::new();
        h.put(&mut out);
        out.extend_from_slice(payload);
        self.sock.write_all(&out).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.unwrap();
    }

    /// Next frame, `None` when the node closed the connection.
    pub async fn recv(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = self.decoder.decode(&mut self.buf).expect("node sends valid frames") {
                return Some(f);
            }
            if self.sock.read_buf(&mut self.buf).await.ok()? == 0 {
                return None;
            }
        }
    }

    /// Next frame that is not PING/PONG (answering PINGs like Go does).
    pub async fn recv_skip_ping(&mut self) -> Option<Frame> {
        loop {
            let f = self.recv().await?;
            match f.header.cmd {
                Command::Ping => self.send(Header::link(Command::Pong, 0), &[]).await,
                Command::Pong => {}
                _ => return Some(f),
            }
        }
    }

    /// Waits until the node closes the connection, answering PINGs meanwhile.
    pub async fn expect_closed(&mut self) {
        while self.recv_skip_ping().await.is_some() {}
    }

    pub fn stream_header(&self, cmd: Command, node: HostId, node_port: u32, my_port: u32, len: u32) -> Header {
        Header { cmd, dst_host: node.0, src_host: self.host, dst_port: node_port, src_port: my_port, len }
    }

    /// Dials `port` on the node; the node's application must accept before
    /// [`RawPeer::complete`] can finish the handshake.
    pub async fn dial(&mut self, node: HostId, port: u32, my_port: u32) {
        self.send(self.stream_header(Command::Dial, node, port, my_port, 0), &[]).await;
    }

    /// Next frame that is neither PING/PONG nor a service announcement.
    pub async fn recv_stream_frame(&mut self) -> Option<Frame> {
        loop {
            let f = self.recv_skip_ping().await?;
            if !matches!(f.header.cmd, Command::Service | Command::NoService) {
                return Some(f);
            }
        }
    }

    /// Waits for SYN, answers ACK, waits for SYN_ACK (announcements are skipped).
    pub async fn complete(&mut self, node: HostId, port: u32, my_port: u32) {
        let syn = within(5, self.recv_stream_frame()).await.unwrap();
        assert_eq!((syn.header.cmd, syn.header.dst_port), (Command::Syn, my_port));
        self.send(self.stream_header(Command::Ack, node, port, my_port, 0), &[]).await;
        let syn_ack = within(5, self.recv_stream_frame()).await.unwrap();
        assert_eq!(syn_ack.header.cmd, Command::SynAck);
    }
}

pub const MAX: usize = MAX_PAYLOAD;
