//! The node seen from a hand-driven peer on the wire: exact bytes, the Go (v1) rules,
//! keep-alive, limits, and hostile input that must close only the offending link.

mod common;

use astranet::proto::{Command, Handshake, Header, RstReason, HEADER_LEN};
use astranet::{Addr, Error, HostId, KeepAlive, Listener, Node, Stream};
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn listening(node: &Node) -> std::net::SocketAddr {
    node.listen("127.0.0.1:0").await.unwrap()
}

#[tokio::test]
async fn handshake_bytes() {
    let node = Node::new();
    let addr = listening(&node).await;
    let (peer, hs) = within(5, RawPeer::connect(addr, false)).await;
    // cmd 191, dst host 0, src host = node id, ports 0, then the JSON.
    assert_eq!(
        hs.header,
        Header {
            cmd: Command::Handshake,
            dst_host: 0,
            src_host: node.host_id().0,
            dst_port: 0,
            src_port: 0,
            len: hs.payload.len() as u32
        }
    );
    let local = peer.sock.local_addr().unwrap();
    let expected = format!(r#"{{"RAddr":"{local}","Ext":["rst"]}}"#);
    assert_eq!(std::str::from_utf8(&hs.payload).unwrap(), expected);
    let decoded = Handshake::decode(&hs.payload).unwrap();
    assert_eq!(decoded.raddr, local.to_string());
}

#[tokio::test]
async fn stream_life_cycle_bytes_with_a_v1_peer() {
    let node = Node::new();
    let addr = listening(&node).await;
    let listener = node.bind(":80").unwrap();
    let (mut peer, _) = within(5, RawPeer::connect(addr, false)).await;
    let me = HostId(peer.host);
    let n = node.host_id();

    // DIAL -> (accept) SYN -> ACK -> SYN_ACK, every field checked.
    peer.send(peer.stream_header(Command::Dial, n, 80, 5000, 0), &[]).await;
    let mut server = within(5, listener.accept()).await.unwrap();
    assert_eq!(server.peer_addr(), Addr::new(me, 5000));
    let syn = within(5, peer.recv_skip_ping()).await.unwrap();
    assert_eq!(
        syn.header,
        Header { cmd: Command::Syn, dst_host: me.0, src_host: n.0, dst_port: 5000, src_port: 80, len: 0 }
    );
    peer.send(peer.stream_header(Command::Ack, n, 80, 5000, 0), &[]).await;
    let syn_ack = within(5, peer.recv_skip_ping()).await.unwrap();
    assert_eq!(syn_ack.header.cmd, Command::SynAck);
    assert_eq!((syn_ack.header.dst_port, syn_ack.header.src_port), (5000, 80));

    // DATA in, REWIND out once a quarter of the window is consumed.
    let chunk = vec![9u8; 20_000];
    peer.send(peer.stream_header(Command::Data, n, 80, 5000, chunk.len() as u32), &chunk).await;
    let mut got = vec![0u8; 20_000];
    within(5, server.read_exact(&mut got)).await.unwrap();
    assert_eq!(got, chunk);
    let rewind = within(5, peer.recv_skip_ping()).await.unwrap();
    assert_eq!(rewind.header.cmd, Command::Rewind);
    assert_eq!(rewind.payload.as_ref(), &20_000u32.to_be_bytes());

    // DATA out, never more than 65,536 bytes per frame to a v1 peer.
    let big = vec![1u8; 150_000];
    let writer = tokio::spawn(async move { server.write_all(&big).await });
    let mut received = 0;
    while received < 65_536 {
        let f = within(5, peer.recv_skip_ping()).await.unwrap();
        assert_eq!(f.header.cmd, Command::Data);
        assert!(f.payload.len() <= 65_536);
        received += f.payload.len();
    }
    assert_eq!(received, 65_536, "the sender stops at the initial window");
    peer.send(peer.stream_header(Command::Rewind, n, 80, 5000, 4), &200_000u32.to_be_bytes()[..]).await;
    // REWIND beyond what was sent is a violation (Go would wrap its counter): the
    // link is closed.
    within(5, peer.expect_closed()).await;
    let err = within(5, writer).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{err}");
}

#[tokio::test]
async fn a_v1_peer_never_receives_extension_commands() {
    let node = Node::new();
    let addr = listening(&node).await;
    let listener = node.bind(":1").unwrap();
    let (mut peer, _) = within(5, RawPeer::connect(addr, false)).await;
    let n = node.host_id();
    // A dial to a port nobody listens on is dropped silently, as Go does.
    peer.send(peer.stream_header(Command::Dial, n, 999, 7, 0), &[]).await;
    // An aborted stream becomes FIN2 + FIN1.
    peer.dial(n, 1, 8).await;
    let s = within(5, listener.accept()).await.unwrap();
    peer.complete(n, 1, 8).await;
    s.abort();
    let mut cmds = Vec::new();
    while cmds.len() < 2 {
        let f = within(5, peer.recv_skip_ping()).await.unwrap();
        assert!(f.header.cmd.is_v1(), "{} sent to a v1 peer", f.header.cmd);
        cmds.push(f.header.cmd);
    }
    assert_eq!(cmds, [Command::Fin2, Command::Fin1]);
}

#[tokio::test]
async fn refused_dial_gets_rst_with_the_reason() {
    let node = Node::new();
    let addr = listening(&node).await;
    let (mut peer, _) = within(5, RawPeer::connect(addr, true)).await;
    let n = node.host_id();
    peer.send(peer.stream_header(Command::Dial, n, 999, 7, 0), &[]).await;
    let rst = within(5, peer.recv_skip_ping()).await.unwrap();
    assert_eq!(
        rst.header,
        Header { cmd: Command::Rst, dst_host: peer.host, src_host: n.0, dst_port: 7, src_port: 999, len: 1 }
    );
    assert_eq!(rst.payload[0], RstReason::NoListener as u8);
}

#[tokio::test]
async fn ping_is_answered_even_before_the_handshake() {
    let node = Node::new();
    let addr = listening(&node).await;
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut ping = Vec::new();
    Header::link(Command::Ping, 0).put(&mut ping);
    sock.write_all(&ping).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let mut seen = Vec::new();
    within(5, async {
        loop {
            let n = sock.read(&mut buf).await.unwrap();
            seen.extend_from_slice(&buf[..n]);
            // Their HANDSHAKE, then our PONG.
            let hs_len = HEADER_LEN + u32::from_be_bytes(seen[25..29].try_into().unwrap()) as usize;
            if seen.len() >= hs_len + HEADER_LEN {
                let mut pong = Vec::new();
                Header::link(Command::Pong, 0).put(&mut pong);
                assert_eq!(&seen[hs_len..hs_len + HEADER_LEN], &pong[..]);
                return;
            }
        }
    })
    .await;
}

fn short_keepalive() -> KeepAlive {
    KeepAlive {
        ping_after: Duration::from_millis(100),
        write_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_millis(400),
    }
}

#[tokio::test]
async fn keepalive_pings_an_idle_link_and_drops_a_silent_peer() {
    let node = Node::builder().keepalive_timings(short_keepalive()).build();
    let addr = listening(&node).await;
    let (mut peer, _) = within(5, RawPeer::connect(addr, false)).await;
    // The node PINGs when it has written nothing for a while.
    let mut pings = 0;
    let closed_after = within(5, async {
        let started = std::time::Instant::now();
        while let Some(f) = peer.recv().await {
            if f.header == Header::link(Command::Ping, 0) {
                pings += 1;
            }
        }
        started.elapsed()
    })
    .await;
    assert!(pings >= 2, "{pings} PINGs");
    assert!(closed_after >= Duration::from_millis(300), "closed after {closed_after:?}");
    assert_eq!(node.stats().links, 0);
}

#[tokio::test]
async fn keepalive_keeps_a_quiet_link_with_a_live_peer() {
    let timings = short_keepalive();
    let (a, b) =
        tcp_pair_with(Node::builder().keepalive_timings(timings), Node::builder().keepalive_timings(timings)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.stats().links, 1);
    assert_eq!(b.stats().links, 1);
}

#[tokio::test]
async fn no_handshake_closes_the_link() {
    let node = Node::builder().handshake_timeout(Duration::from_millis(200)).build();
    let addr = listening(&node).await;
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut sink = Vec::new();
    within(5, sock.read_to_end(&mut sink)).await.unwrap();
}

#[tokio::test]
async fn joining_a_peer_that_never_answers_times_out() {
    // A TCP listener that accepts and says nothing.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let node = Node::builder().handshake_timeout(Duration::from_millis(200)).build();
    let err = within(5, node.join(addr)).await.unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    node.close();
}

#[tokio::test]
async fn addresses_that_do_not_resolve_are_resolve_errors() {
    let node = Node::new();
    for bad in ["nonsense", "256.0.0.1:0", "no-such-host.invalid:1"] {
        let err = node.listen(bad).await.unwrap_err();
        assert!(matches!(err, Error::Resolve(_)), "{bad}: {err}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "the error names the address: {err}");
        let err = within(10, node.join(bad)).await.unwrap_err();
        assert!(matches!(err, Error::Resolve(_)), "{bad}: {err}");
        assert!(err.to_string().contains(&format!("{bad:?}")), "the error names the address: {err}");
    }
}

/// Sends `bad` after a handshake and checks that only that link is closed.
async fn hostile(ext: bool, bad: impl FnOnce(&mut RawPeer, HostId) -> Vec<u8>) {
    let node = Node::new();
    let addr = listening(&node).await;
    let listener = node.bind(":1").unwrap();
    // A well-behaved neighbour on another link.
    let good = Node::new();
    good.join(addr).await.unwrap();

    let (mut peer, _) = within(5, RawPeer::connect(addr, ext)).await;
    peer.dial(node.host_id(), 1, 77).await;
    let _accepted = within(5, listener.accept()).await.unwrap();
    peer.complete(node.host_id(), 1, 77).await;
    let bytes = bad(&mut peer, node.host_id());
    peer.send_raw(&bytes).await;
    within(5, peer.expect_closed()).await;

    // The node and its other link carry on.
    let (mut c, mut s) = connected(&good, &listener).await;
    c.write_all(b"still fine").await.unwrap();
    c.shutdown().await.unwrap();
    let mut got = Vec::new();
    within(5, s.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"still fine");
}

fn frame(h: Header, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    h.put(&mut out);
    out.extend_from_slice(payload);
    out
}

#[tokio::test]
async fn oversized_frame_closes_only_its_link() {
    for ext in [false, true] {
        hostile(ext, |p, n| frame(p.stream_header(Command::Data, n, 1, 77, 100 << 20), b"")).await;
    }
}

#[tokio::test]
async fn unknown_command_closes_only_its_link() {
    hostile(true, |p, n| {
        let mut f = frame(p.stream_header(Command::Data, n, 1, 77, 0), b"");
        f[0] = 99;
        f
    })
    .await;
}

#[tokio::test]
async fn truncated_control_payload_closes_only_its_link() {
    // A 3-byte REWIND would crash a Go node; here it is refused.
    hostile(false, |p, n| frame(p.stream_header(Command::Rewind, n, 1, 77, 3), &[0, 0, 1])).await;
}

#[tokio::test]
async fn malformed_handshake_closes_the_link() {
    let node = Node::new();
    let addr = listening(&node).await;
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let payload = br#"{"RAddr":5}"#;
    let h = Header {
        cmd: Command::Handshake,
        dst_host: 0,
        src_host: 1,
        dst_port: 0,
        src_port: 0,
        len: payload.len() as u32,
    };
    sock.write_all(&frame(h, payload)).await.unwrap();
    let mut sink = Vec::new();
    within(5, sock.read_to_end(&mut sink)).await.unwrap();
}

/// DATA may arrive after its stream was forgotten (it waited in a congested queue
/// longer than the linger time): it is dropped and counted, and the link stays up.
#[tokio::test]
async fn data_for_an_unknown_stream_is_dropped_and_counted() {
    for ext in [false, true] {
        let node = Node::new();
        let addr = listening(&node).await;
        let listener = node.bind(":1").unwrap();
        let (mut peer, _) = within(5, RawPeer::connect(addr, ext)).await;
        let n = node.host_id();
        let dropped = node.stats().frames_dropped;
        peer.send(peer.stream_header(Command::Data, n, 1, 4242, 5), b"hello").await;
        // The link still works.
        peer.dial(n, 1, 7).await;
        let mut s = within(5, listener.accept()).await.unwrap();
        peer.complete(n, 1, 7).await;
        peer.send(peer.stream_header(Command::Data, n, 1, 7, 2), b"ok").await;
        let mut got = [0u8; 2];
        within(5, s.read_exact(&mut got)).await.unwrap();
        assert_eq!(node.stats().frames_dropped, dropped + 1);
    }
}

#[tokio::test]
async fn data_beyond_the_window_closes_only_its_link() {
    for ext in [false, true] {
        hostile(ext, |p, n| {
            let mut out = Vec::new();
            for _ in 0..2 {
                out.extend(frame(p.stream_header(Command::Data, n, 1, 77, 40_000), &[0u8; 40_000]));
            }
            out
        })
        .await;
    }
}

#[tokio::test]
async fn out_of_order_handshake_frame_from_our_kind_closes_the_link() {
    hostile(true, |p, n| frame(p.stream_header(Command::SynAck, n, 1, 77, 0), b"")).await;
}

#[tokio::test]
async fn garbage_closes_only_its_link() {
    hostile(false, |_, _| vec![0xFF; 64]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_over_the_limit_is_refused_not_queued() {
    let (server, client) = tcp_pair_with(Node::builder().max_streams_per_link(1000), Node::builder()).await;
    let listener = server.bind(":3").unwrap();
    let addr = listener.local_addr();
    let acceptor = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok(s) = listener.accept().await {
            held.push(s);
        }
    });
    let mut streams = Vec::new();
    for _ in 0..1000 {
        streams.push(within(10, client.dial(addr)).await.unwrap());
    }
    let err = within(5, client.dial(addr)).await.unwrap_err();
    assert!(matches!(err, astranet::Error::Refused { reason: RstReason::StreamLimit, .. }), "{err}");
    // Closing one makes room again (after its linger time on the server).
    drop(streams.pop());
    drop(acceptor);
}

#[tokio::test]
async fn backlog_limit_refuses_extra_dials() {
    let (server, client) = tcp_pair_with(Node::builder().listener_backlog(2), Node::builder()).await;
    let listener = server.bind(":3").unwrap();
    let addr = listener.local_addr();
    let pending: Vec<_> = (0..2)
        .map(|_| {
            let client = client.clone();
            tokio::spawn(async move { client.dial(addr).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let err = within(5, client.dial(addr)).await.unwrap_err();
    assert!(matches!(err, astranet::Error::Refused { reason: RstReason::BacklogFull, .. }), "{err}");
    for _ in 0..2 {
        within(5, listener.accept()).await.unwrap();
    }
    for p in pending {
        within(5, p).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn unread_bytes_over_the_link_budget_disconnect_the_peer() {
    let (server, client) = tcp_pair_with(Node::builder().max_link_buffer(100_000), Node::builder()).await;
    let listener = server.bind(":3").unwrap();
    let mut streams = Vec::new();
    for _ in 0..2 {
        streams.push(connected(&client, &listener).await);
    }
    for (c, _) in streams.iter_mut() {
        c.write_all(&[0u8; 60_000]).await.unwrap();
    }
    within(5, async {
        while server.stats().links > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// A raw peer (`ext`: one that speaks this project's extensions) linked to `node`,
/// with a stream open from its port `my_port` to the node's port 1: the peer, the
/// node's host id, the node's end of the stream and the listener on port 1.
async fn raw_stream(node: &Node, ext: bool, my_port: u32) -> (RawPeer, HostId, Stream, Listener) {
    let addr = listening(node).await;
    let listener = node.bind(":1").unwrap();
    let (mut peer, _) = within(5, RawPeer::connect(addr, ext)).await;
    let n = node.host_id();
    peer.dial(n, 1, my_port).await;
    let s = within(5, listener.accept()).await.unwrap();
    peer.complete(n, 1, my_port).await;
    (peer, n, s, listener)
}

/// A Go-style sender (whole window in one DATA frame) towards a fast reader: the node
/// grows the window with WND_SIZE and accepts the larger frames that follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fast_reader_grows_a_v1_senders_window() {
    let node = Node::new();
    let (mut peer, n, mut s, _listener) = raw_stream(&node, false, 9).await;
    let reader = tokio::spawn(async move {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0usize;
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return total,
                Ok(k) => total += k,
            }
        }
    });
    let (mut window, mut inflight, mut sent, mut biggest) = (65_536u32, 0u32, 0usize, 0usize);
    within(20, async {
        while biggest <= 65_536 {
            let credit = window - inflight;
            if credit > 0 {
                let body = vec![5u8; credit as usize];
                peer.send(peer.stream_header(Command::Data, n, 1, 9, credit), &body).await;
                inflight += credit;
                sent += credit as usize;
                biggest = biggest.max(credit as usize);
            }
            let f = peer.recv_skip_ping().await.expect("link stays up");
            match f.header.cmd {
                Command::Rewind => inflight -= u32::from_be_bytes(f.payload[..].try_into().unwrap()),
                Command::WndSize => window = u32::from_be_bytes(f.payload[..].try_into().unwrap()),
                other => panic!("unexpected {other}"),
            }
        }
    })
    .await;
    assert!(window > 65_536);
    // Past any grant (the largest window is 16 MiB), a frame is refused from its header
    // alone.
    peer.send(peer.stream_header(Command::Data, n, 1, 9, (16 << 20) + 1), &[]).await;
    within(5, peer.expect_closed()).await;
    assert_eq!(within(10, reader).await.unwrap(), sent);
}

/// A node with `min_stream_window` grants it with the first credit it returns (a
/// WND_SIZE beside that REWIND), whatever the stream's loop.
#[tokio::test]
async fn min_stream_window_is_granted_with_the_first_credit() {
    let node = Node::builder().min_stream_window(1 << 20).build();
    let (mut peer, n, mut s, _listener) = raw_stream(&node, false, 9).await;
    peer.send(peer.stream_header(Command::Data, n, 1, 9, 20_000), &[3u8; 20_000]).await;
    let mut got = vec![0u8; 20_000];
    within(5, s.read_exact(&mut got)).await.unwrap();
    let mut credit = Vec::new();
    while credit.len() < 2 {
        let f = within(5, peer.recv_skip_ping()).await.expect("link stays up");
        credit.push((f.header.cmd, u32::from_be_bytes(f.payload[..].try_into().unwrap())));
    }
    credit.sort_by_key(|(cmd, _)| *cmd == Command::Rewind);
    assert_eq!(credit, [(Command::WndSize, 1 << 20), (Command::Rewind, 20_000)]);
}

#[tokio::test]
async fn a_v1_frame_over_64_kib_without_a_grant_closes_the_link_at_once() {
    // Only the header: the link must not wait for the payload to refuse it.
    hostile(false, |p, n| frame(p.stream_header(Command::Data, n, 1, 77, 65_537), b"")).await;
    hostile(false, |p, n| frame(p.stream_header(Command::Data, n, 1, 4242, 1 << 20), b"")).await;
    hostile(false, |_, _| frame(Header::link(Command::Service, 70_000), b"")).await;
}

#[tokio::test]
async fn a_frame_that_stalls_after_its_header_closes_the_link() {
    let node = Node::builder().frame_stall_timeout(Duration::from_millis(300)).build();
    let (mut peer, n, _s, _listener) = raw_stream(&node, false, 5).await;
    // A header and half its payload, then nothing: closed long before the idle timeout.
    let started = std::time::Instant::now();
    peer.send(peer.stream_header(Command::Data, n, 1, 5, 1000), &[7u8; 500]).await;
    within(5, peer.expect_closed()).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn a_v1_close_still_gets_the_reply_then_our_fin2() {
    let node = Node::new();
    let (mut peer, n, mut s, _listener) = raw_stream(&node, false, 6).await;
    // The Go idiom: write, Close() (FIN2), then read until EOF.
    peer.send(peer.stream_header(Command::Data, n, 1, 6, 4), b"ping").await;
    peer.send(peer.stream_header(Command::Fin2, n, 1, 6, 0), &[]).await;
    let mut got = Vec::new();
    within(5, s.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"ping");
    s.write_all(b"pong").await.unwrap();
    drop(s);
    let mut f = within(5, peer.recv_skip_ping()).await.unwrap();
    if f.header.cmd == Command::Rewind {
        // Credit for "ping", if it was read before FIN2 arrived.
        f = within(5, peer.recv_skip_ping()).await.unwrap();
    }
    assert_eq!((f.header.cmd, f.payload.as_ref()), (Command::Data, &b"pong"[..]));
    // A Go reader drops what it has not read 10 s after FIN2: FIN2 waits until the
    // reply was read (REWIND), then EOF follows.
    let nothing = tokio::time::timeout(Duration::from_millis(300), peer.recv_skip_ping()).await;
    assert!(nothing.is_err(), "FIN2 before the reply was read: {nothing:?}");
    peer.send(peer.stream_header(Command::Rewind, n, 1, 6, 4), &4u32.to_be_bytes()).await;
    let mut cmds = Vec::new();
    while cmds.len() < 2 {
        cmds.push(within(5, peer.recv_skip_ping()).await.unwrap().header.cmd);
    }
    assert_eq!(cmds, [Command::Fin2, Command::Fin1], "EOF for the Go reader");
}

/// A Go reader hands credit back after every read, and a Go writer's close waits for
/// nothing: towards a v1 peer this node does the same, so that its own close (which
/// waits for the peer's credit) works with a node of ours behind a Go relay.
#[tokio::test]
async fn a_v1_peer_gets_credit_after_every_read() {
    let node = Node::new();
    let (mut peer, n, mut s, _listener) = raw_stream(&node, false, 6).await;
    peer.send(peer.stream_header(Command::Data, n, 1, 6, 100), &[3u8; 100]).await;
    let mut got = [0u8; 100];
    within(5, s.read_exact(&mut got)).await.unwrap();
    let f = within(5, peer.recv_skip_ping()).await.unwrap();
    assert_eq!((f.header.cmd, f.payload.as_ref()), (Command::Rewind, &100u32.to_be_bytes()[..]));
}

#[tokio::test]
async fn fins_owed_to_a_v1_reader_that_never_reads_go_out_after_the_linger() {
    let node = Node::builder().linger(Duration::from_millis(300)).build();
    let (mut peer, _, mut s, _listener) = raw_stream(&node, false, 6).await;
    s.write_all(b"unread").await.unwrap();
    drop(s);
    let mut cmds = Vec::new();
    while cmds.len() < 3 {
        cmds.push(within(5, peer.recv_skip_ping()).await.unwrap().header.cmd);
    }
    assert_eq!(cmds, [Command::Data, Command::Fin2, Command::Fin1]);
}

#[tokio::test]
async fn a_go_server_answering_a_dial_given_up_is_closed_cleanly() {
    let node = Node::new();
    let addr = listening(&node).await;
    let (mut peer, _) = within(5, RawPeer::connect(addr, false)).await;
    let me = HostId(peer.host);
    let dial = node.dial_timeout(Addr::new(me, 80), Duration::from_millis(200)).await;
    assert!(matches!(dial, Err(astranet::Error::TimedOut { .. })));
    let d = within(5, peer.recv_skip_ping()).await.unwrap();
    assert_eq!(d.header.cmd, Command::Dial);
    // The Go server accepts late: its stream completes and is closed at once, so its
    // reads end and its writes fail instead of waiting forever.
    let (node_port, n) = (d.header.src_port, node.host_id());
    peer.send(
        Header { cmd: Command::Syn, dst_host: n.0, src_host: me.0, dst_port: node_port, src_port: 80, len: 0 },
        &[],
    )
    .await;
    let mut cmds = Vec::new();
    while cmds.len() < 3 {
        cmds.push(within(5, peer.recv_skip_ping()).await.unwrap().header.cmd);
    }
    assert_eq!(cmds, [Command::Ack, Command::Fin2, Command::Fin1]);
}

#[tokio::test]
async fn rst_after_unread_data_fails_reads_without_panicking() {
    let node = Node::new();
    let (mut peer, n, mut s, listener) = raw_stream(&node, true, 3).await;
    peer.send(peer.stream_header(Command::Data, n, 1, 3, 100), &[1u8; 100]).await;
    peer.send(peer.stream_header(Command::Rst, n, 1, 3, 1), &[0]).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut buf = [0u8; 200];
    let err = within(5, s.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    // The link is intact and its accounting consistent: a new stream works.
    peer.dial(n, 1, 4).await;
    let mut s2 = within(5, listener.accept()).await.unwrap();
    peer.complete(n, 1, 4).await;
    peer.send(peer.stream_header(Command::Data, n, 1, 4, 5), b"hello").await;
    let mut got = [0u8; 5];
    within(5, s2.read_exact(&mut got)).await.unwrap();
    assert_eq!(&got, b"hello");
}

#[tokio::test]
async fn a_dial_given_up_after_ack_closes_the_go_servers_stream() {
    let node = Node::new();
    let addr = listening(&node).await;
    let (mut peer, _) = within(5, RawPeer::connect(addr, false)).await;
    let me = HostId(peer.host);
    // The node dials the raw (Go-like) peer, which answers SYN but never SYN_ACK.
    let dial = tokio::spawn({
        let node = node.clone();
        async move { node.dial_timeout(Addr::new(me, 80), Duration::from_millis(300)).await }
    });
    let d = within(5, peer.recv_skip_ping()).await.unwrap();
    assert_eq!(d.header.cmd, Command::Dial);
    let (node_port, n) = (d.header.src_port, node.host_id());
    peer.send(
        Header { cmd: Command::Syn, dst_host: n.0, src_host: me.0, dst_port: node_port, src_port: 80, len: 0 },
        &[],
    )
    .await;
    assert_eq!(within(5, peer.recv_skip_ping()).await.unwrap().header.cmd, Command::Ack);
    assert!(matches!(within(5, dial).await.unwrap(), Err(astranet::Error::TimedOut { .. })));
    let mut cmds = Vec::new();
    while cmds.len() < 2 {
        cmds.push(within(5, peer.recv_skip_ping()).await.unwrap().header.cmd);
    }
    assert_eq!(cmds, [Command::Fin2, Command::Fin1]);
}

#[tokio::test]
async fn a_closed_node_takes_no_new_work() {
    let node = Node::new();
    node.close();
    assert!(matches!(node.bind(":1"), Err(astranet::Error::NodeClosed)));
    assert!(matches!(node.listen("127.0.0.1:0").await, Err(astranet::Error::NodeClosed)));
    assert!(matches!(node.dial(Addr::new(HostId(1), 1)).await, Err(astranet::Error::NodeClosed)));
}

#[tokio::test]
async fn a_peer_that_floods_without_reading_its_answers_is_disconnected() {
    let node = Node::builder().max_control_queue(10_000).link_write_queue(1).build();
    let addr = listening(&node).await;
    let (mut peer, _) = within(5, RawPeer::connect(addr, false)).await;
    let mut ping = Vec::new();
    Header::link(Command::Ping, 0).put(&mut ping);
    let burst: Vec<u8> = ping.iter().copied().cycle().take(ping.len() * 10_000).collect();
    // Every PING asks for a PONG; this peer never reads them. Once the socket buffers
    // are full, answers queue up to the limit and the node hangs up.
    within(10, async {
        while node.stats().links > 0 {
            if peer.sock.write_all(&burst).await.is_err() {
                break;
            }
        }
    })
    .await;
    within(5, async {
        while node.stats().links > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// Waits until `node` has `n` links up (the listening side of a link comes up a moment
/// after the joining side's `join` returned).
async fn links_become(node: &Node, n: usize) {
    for _ in 0..250 {
        if node.links().len() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} links, expected {n}", node.links().len());
}

#[tokio::test]
async fn links_from_one_address_are_capped() {
    let node = Node::builder().max_links_per_address(2).build();
    let addr = node.listen("127.0.0.1:0").await.unwrap();
    let (a, b, c) = (Node::new(), Node::new(), Node::builder().handshake_timeout(Duration::from_millis(500)).build());
    within(5, a.join(addr)).await.unwrap();
    within(5, b.join(addr)).await.unwrap();
    links_become(&node, 2).await;
    // A third from 127.0.0.1 is closed at once.
    assert!(within(5, c.join(addr)).await.is_err());
    assert_eq!(node.links().len(), 2);
    // A place frees when a link closes.
    a.close();
    links_become(&node, 1).await;
    let d = Node::new();
    within(5, d.join(addr)).await.unwrap();
    links_become(&node, 2).await;
}

#[tokio::test]
async fn a_rapid_reset_flood_closes_the_link() {
    let node = Node::builder().max_resets_per_second(200).build();
    let addr = listening(&node).await;
    let _listener = node.bind(":1").unwrap();
    // Within the budget: DIAL then RST a hundred times, the link stays.
    let (mut peer, _) = within(5, RawPeer::connect(addr, true)).await;
    for p in 0..100u32 {
        peer.dial(node.host_id(), 1, 1000 + p).await;
        peer.send(peer.stream_header(Command::Rst, node.host_id(), 1, 1000 + p, 1), &[0]).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(node.links().len(), 1);
    // Thousands at once: disconnected.
    let mut burst = Vec::new();
    for p in 0..5000u32 {
        for (cmd, payload) in [(Command::Dial, &[][..]), (Command::Rst, &[0u8][..])] {
            peer.stream_header(cmd, node.host_id(), 1, 5000 + p, payload.len() as u32).put(&mut burst);
            burst.extend_from_slice(payload);
        }
    }
    peer.send_raw(&burst).await;
    within(5, peer.expect_closed()).await;
    for _ in 0..100 {
        if node.links().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(node.links().is_empty());
}

/// A peer that leaves one large payload unread in every read buffer (and fills the rest
/// with PONGs, which the node drops) cannot make its link hold more than a bounded
/// number of read buffers: once they exceed its unread bytes by 4 MiB, payloads are
/// copied. Without the bound, 64 payloads of 20,000 bytes held 64 buffers of 256 KiB
/// (16 MiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unread_payloads_pin_a_bounded_number_of_read_buffers() {
    let node = Node::new();
    let addr = node.listen("127.0.0.1:0").await.unwrap();
    let listener = node.bind(":5").unwrap();
    let (mut peer, hs) = within(5, RawPeer::connect(addr, true)).await;
    let host = HostId(hs.header.src_host);
    let mut held = Vec::new();
    for port in 100..164 {
        peer.dial(host, 5, port).await;
        held.push(within(5, listener.accept()).await.unwrap());
        peer.complete(host, 5, port).await;
    }
    let pongs: Vec<u8> = (0..8_000).flat_map(|_| frame(Header::link(Command::Pong, 0), &[])).collect();
    for port in 100..165 {
        let mut round = Vec::new();
        if port < 164 {
            round = frame(peer.stream_header(Command::Data, host, 5, port, 20_000), &[port as u8; 20_000]);
        }
        round.extend_from_slice(&pongs);
        peer.send_raw(&round).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let links = node.links();
    let held_bytes = links[0].read_buffers;
    // 4 MiB beyond the 1.28 MB unread, plus the buffer being filled and one the
    // check let through.
    let bound = (4 << 20) + 64 * 20_000 + 2 * 256 * 1024;
    assert!(held_bytes <= bound, "{held_bytes} bytes of read buffers held, more than {bound}");
    // Every payload is intact, sliced or copied.
    for (i, s) in held.iter_mut().enumerate() {
        let mut buf = vec![0u8; 20_000];
        within(5, s.read_exact(&mut buf)).await.unwrap();
        assert!(buf.iter().all(|&b| b == (100 + i) as u8));
    }
}
