//! Streams between two nodes: echo, bulk integrity, concurrency, isolation of slow
//! readers, half-close, abort, refusal, timeouts.

mod common;

use astranet::{Addr, Error, Node};
use common::*;
use std::io::ErrorKind;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Accepts forever, echoing every stream back until EOF.
fn spawn_echo(listener: astranet::Listener) {
    tokio::spawn(async move {
        while let Ok(stream) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(stream);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
}

async fn echo_roundtrip(server: &Node, client: &Node) {
    let listener = server.bind(":7").unwrap();
    let addr = listener.local_addr();
    assert_eq!(addr, Addr::new(server.host_id(), 7));
    spawn_echo(listener);
    let mut s = within(10, client.dial(addr)).await.unwrap();
    assert_eq!(s.peer_addr(), addr);
    assert_eq!(s.local_addr().host, client.host_id());
    s.write_all(b"hello astranet").await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    within(10, s.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back, b"hello astranet");
}

#[tokio::test]
async fn echo_over_tcp() {
    let (server, client) = tcp_pair().await;
    echo_roundtrip(&server, &client).await;
}

#[tokio::test]
async fn echo_over_in_memory_duplex() {
    let (server, client) = duplex_pair().await;
    echo_roundtrip(&server, &client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_256_mib_checksummed() {
    const TOTAL: usize = 256 << 20;
    let (server, client) = tcp_pair().await;
    let listener = server.bind("").unwrap();
    let addr = listener.local_addr();
    let receiver = tokio::spawn(async move {
        let mut s = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let (mut n, mut sum) = (0usize, Fnv::default());
        loop {
            let r = s.read(&mut buf).await.unwrap();
            if r == 0 {
                break;
            }
            sum.update(&buf[..r]);
            n += r;
        }
        (n, sum.0)
    });
    let mut s = within(10, client.dial(addr)).await.unwrap();
    let mut sent = Fnv::default();
    let mut chunk = vec![0u8; 1 << 20];
    let mut x: u32 = 1;
    for _ in 0..TOTAL / chunk.len() {
        for b in chunk.iter_mut() {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
        sent.update(&chunk);
        within(60, s.write_all(&chunk)).await.unwrap();
    }
    drop(s);
    let (n, sum) = within(120, receiver).await.unwrap();
    assert_eq!(n, TOTAL);
    assert_eq!(sum, sent.0);
}

/// FNV-1a, enough to tell corrupted, lost or reordered bytes apart.
#[derive(Clone, Copy)]
struct Fnv(u64);
impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf29ce484222325)
    }
}
impl Fnv {
    fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_streams_each_verified() {
    const N: usize = 10_000;
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":9").unwrap();
    let addr = listener.local_addr();
    spawn_echo(listener);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..N {
        let client = client.clone();
        tasks.spawn(async move {
            let mut s = client.dial(addr).await.unwrap();
            let msg = format!("stream {i} says hello").repeat(1 + i % 7);
            s.write_all(msg.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, msg.as_bytes(), "stream {i}");
        });
    }
    within(120, async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await;
    assert_eq!(client.stats().streams_opened, N as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_reader_does_not_stall_other_streams() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":5").unwrap();
    let addr = listener.local_addr();
    // The first stream accepted is never read.
    let (mut stuck, parked) = connected(&client, &listener).await;
    spawn_echo(listener);
    // Fill its window and more: the writer must block, not the link.
    let blocked_writer = tokio::spawn(async move {
        let big = vec![7u8; 4 << 20];
        let _ = stuck.write_all(&big).await;
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..100 {
        let client = client.clone();
        tasks.spawn(async move {
            let mut s = client.dial(addr).await.unwrap();
            let msg = vec![i as u8; 200_000];
            let (mut r, mut w) = tokio::io::split(&mut s);
            let write = async {
                w.write_all(&msg).await.unwrap();
                w.shutdown().await.unwrap();
            };
            let mut back = Vec::new();
            let read = r.read_to_end(&mut back);
            let (_, n) = tokio::join!(write, read);
            n.unwrap();
            assert_eq!(back, msg);
        });
    }
    within(60, async {
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
        }
    })
    .await;
    assert!(!blocked_writer.is_finished(), "the unread stream's writer is held by its window");
    drop(parked);
}

#[tokio::test]
async fn half_close_both_ways() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":1").unwrap();
    let (mut c, mut s) = connected(&client, &listener).await;

    // Client finishes writing; it can still read what the server sends afterwards.
    c.write_all(b"request").await.unwrap();
    c.shutdown().await.unwrap();
    let mut req = Vec::new();
    within(5, s.read_to_end(&mut req)).await.unwrap();
    assert_eq!(req, b"request");
    assert!(c.write_all(b"late").await.is_err(), "writes after shutdown fail");
    s.write_all(b"response").await.unwrap();
    s.shutdown().await.unwrap();
    let mut resp = Vec::new();
    within(5, c.read_to_end(&mut resp)).await.unwrap();
    assert_eq!(resp, b"response");

    // The other way round: the server half-closes first.
    let (mut c, mut s) = connected(&client, &listener).await;
    s.write_all(b"banner").await.unwrap();
    s.shutdown().await.unwrap();
    let mut banner = Vec::new();
    within(5, c.read_to_end(&mut banner)).await.unwrap();
    assert_eq!(banner, b"banner");
    c.write_all(b"still open").await.unwrap();
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(5, s.read_to_end(&mut rest)).await.unwrap();
    assert_eq!(rest, b"still open");
}

#[tokio::test]
async fn dropping_a_stream_delivers_everything_then_eof() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":2").unwrap();
    let (mut c, mut s) = connected(&client, &listener).await;
    let data = vec![42u8; 60_000];
    c.write_all(&data).await.unwrap();
    drop(c);
    let mut got = Vec::new();
    within(5, s.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, data);
    // The dropped side reads no more: writes towards it fail.
    let err = within(5, async {
        loop {
            if let Err(e) = s.write_all(b"anyone?").await {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::BrokenPipe);
}

#[tokio::test]
async fn abort_resets_the_peer() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":3").unwrap();
    let (c, mut s) = connected(&client, &listener).await;
    c.abort();
    let mut buf = [0u8; 8];
    let err = within(5, s.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
    let err = s.write_all(b"x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn dial_to_unbound_port_is_refused_at_once() {
    let (server, client) = tcp_pair().await;
    let started = std::time::Instant::now();
    let err = within(5, client.dial(Addr::new(server.host_id(), 4242))).await.unwrap_err();
    assert!(matches!(err, Error::Refused { reason: astranet::proto::RstReason::NoListener, .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert!(started.elapsed() < Duration::from_secs(3), "refusal does not wait for the timeout");
}

#[tokio::test]
async fn dial_times_out_when_nobody_accepts() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":6").unwrap();
    let err = within(5, client.dial_timeout(listener.local_addr(), Duration::from_millis(200))).await.unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::TimedOut);
    // The abandoned dial leaves the backlog (its RST needs a moment to arrive; had it
    // been accepted first, the accepted stream would have been reset): the next accept
    // gets the next dial.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let next = tokio::spawn({
        let client = client.clone();
        let addr = listener.local_addr();
        async move { client.dial(addr).await }
    });
    let s = within(5, listener.accept()).await.unwrap();
    let c = within(5, next).await.unwrap().unwrap();
    assert_eq!(s.peer_addr(), c.local_addr());
}

/// Polls `cond` until it holds (the RST of an abandoned dial needs a moment to arrive).
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what} did not happen within 2 s");
}

#[tokio::test]
async fn a_timed_out_dial_frees_its_backlog_place_at_once() {
    let (server, client) = tcp_pair_with(Node::builder().listener_backlog(1), Node::builder()).await;
    let listener = server.bind(":9").unwrap();
    let addr = listener.local_addr();
    // While the dial waits it is visible on both nodes.
    let waiting = tokio::spawn({
        let client = client.clone();
        async move { client.dial_timeout(addr, Duration::from_millis(300)).await }
    });
    eventually("the DIAL reaching the backlog", || server.stats().pending_dials == 1).await;
    assert_eq!(client.stats().streams, 1);
    // A second dial meets a full backlog.
    let err = within(5, client.dial(addr)).await.unwrap_err();
    assert!(matches!(err, Error::Refused { reason: astranet::proto::RstReason::BacklogFull, .. }), "{err}");
    let err = within(5, waiting).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }), "{err}");
    // The timed-out dial is gone from both nodes, and the backlog takes the next one
    // without anybody calling accept().
    eventually("the backlog emptying", || server.stats().pending_dials == 0).await;
    assert_eq!(client.stats().streams, 0);
    let next = tokio::spawn({
        let client = client.clone();
        async move { client.dial(addr).await }
    });
    eventually("the next DIAL queueing", || server.stats().pending_dials == 1).await;
    let s = within(5, listener.accept()).await.unwrap();
    let c = within(5, next).await.unwrap().unwrap();
    assert_eq!(s.peer_addr(), c.local_addr());
}

/// A full backlog makes room for a link with fewer DIALs waiting: the newest of the
/// link with most is refused instead. A lone dialer still fills the whole backlog.
#[tokio::test]
async fn a_full_backlog_makes_room_for_a_link_with_fewer_dials() {
    let server = Node::builder().listener_backlog(4).build();
    let addr = server.listen("127.0.0.1:0").await.unwrap();
    let (flooder, other) = (Node::new(), Node::new());
    within(10, flooder.join(addr)).await.unwrap();
    within(10, other.join(addr)).await.unwrap();
    let listener = server.bind(":11").unwrap();
    let target = listener.local_addr();
    let dial = |node: &Node| {
        let node = node.clone();
        tokio::spawn(async move { node.dial(target).await })
    };
    let mut first = Vec::new();
    for _ in 0..3 {
        first.push(dial(&flooder));
        let n = first.len();
        eventually("the flooder's DIAL queueing", || server.stats().pending_dials == n).await;
    }
    let newest = dial(&flooder);
    eventually("the backlog filling", || server.stats().pending_dials == 4).await;
    // Full, and the flooder has the most waiting: its next DIAL is refused.
    let err = within(5, flooder.dial(target)).await.unwrap_err();
    assert!(matches!(err, Error::Refused { reason: astranet::proto::RstReason::BacklogFull, .. }), "{err}");
    // The other node's DIAL takes the place of the flooder's newest.
    let theirs = dial(&other);
    let err = within(5, newest).await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Refused { reason: astranet::proto::RstReason::BacklogFull, .. }), "{err}");
    for _ in 0..4 {
        within(5, listener.accept()).await.unwrap();
    }
    within(5, theirs).await.unwrap().unwrap();
    for d in first {
        within(5, d).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn cancelled_dials_give_back_their_share_of_the_stream_limit() {
    let (server, client) = tcp_pair_with(Node::builder().max_streams_per_link(5), Node::builder()).await;
    let listener = server.bind(":10").unwrap();
    let addr = listener.local_addr();
    for i in 0..4 {
        // Two ways to give up: the dial's own timeout, and dropping its future.
        if i % 2 == 0 {
            let err = within(5, client.dial_timeout(addr, Duration::from_millis(100))).await.unwrap_err();
            assert!(matches!(err, Error::TimedOut { .. }), "{err}");
        } else {
            assert!(tokio::time::timeout(Duration::from_millis(100), client.dial(addr)).await.is_err());
        }
    }
    eventually("the backlog emptying", || server.stats().pending_dials == 0).await;
    assert_eq!((server.stats().streams, client.stats().streams), (0, 0));
    // The whole limit is free again: five streams open, the sixth is refused.
    let mut open = Vec::new();
    for _ in 0..5 {
        open.push(connected(&client, &listener).await);
    }
    let err = within(5, client.dial(addr)).await.unwrap_err();
    assert!(matches!(err, Error::Refused { reason: astranet::proto::RstReason::StreamLimit, .. }), "{err}");
}

#[tokio::test]
async fn dial_without_a_route_fails_with_no_route() {
    let node = Node::new();
    let err = node.dial(Addr::new(astranet::HostId(12345), 1)).await.unwrap_err();
    assert!(matches!(err, Error::NoRoute(_)));
}

#[tokio::test]
async fn lost_link_is_distinct_from_timeout() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":8").unwrap();
    let (mut c, _s) = connected(&client, &listener).await;
    server.close();
    let mut buf = [0u8; 4];
    let err = within(5, c.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionAborted, "{err}");
}

#[tokio::test]
async fn listening_on_a_taken_tcp_port_names_it() {
    let node = Node::new();
    let addr = node.listen("127.0.0.1:0").await.unwrap();
    let err = Node::new().listen(addr).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    assert!(err.to_string().starts_with(&format!("listening on {addr}: ")), "{err}");
}

#[tokio::test]
async fn bind_rejects_taken_ports_and_bad_targets() {
    let node = Node::new();
    let a = node.bind(":100").unwrap();
    assert!(matches!(node.bind(":100"), Err(Error::AddrInUse(100))));
    assert!(matches!(node.bind("x:y"), Err(Error::InvalidTarget { .. })));
    assert!(matches!(node.bind(":-1"), Err(Error::InvalidTarget { .. })));
    let auto1 = node.bind("").unwrap().local_addr().port.0;
    let auto2 = node.bind(":0").unwrap().local_addr().port.0;
    assert!(auto1 > 1 << 24 && auto2 > 1 << 24 && auto1 != auto2);
    drop(a);
    node.bind(":100").expect("port is free again once its listener is dropped");
}

#[tokio::test]
async fn closed_listener_fails_accept_and_refuses_dials() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":11").unwrap();
    let addr = listener.local_addr();
    listener.close();
    assert!(matches!(listener.accept().await, Err(Error::ListenerClosed)));
    assert!(matches!(within(5, client.dial(addr)).await, Err(Error::Refused { .. })));
}

#[tokio::test]
async fn join_re_dials_after_the_link_drops() {
    let server = Node::new();
    let client = Node::builder().max_reconnect_delay(Duration::from_millis(200)).build();
    let addr = server.listen("127.0.0.1:0").await.unwrap();
    client.join(addr).await.unwrap();
    let listener = server.bind(":12").unwrap();
    spawn_echo(listener);
    // Break the link from the server side by closing its links but keeping the node:
    // a fresh node listening on the same port takes over.
    drop(server);
    let server2 = Node::builder().build();
    let addr2 = within(5, async {
        loop {
            match server2.listen(addr).await {
                Ok(a) => return a,
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert_eq!(addr, addr2);
    within(10, async {
        while !client.peers().contains(&server2.host_id()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let listener = server2.bind(":12").unwrap();
    spawn_echo(listener);
    let mut s = within(5, client.dial(Addr::new(server2.host_id(), 12))).await.unwrap();
    s.write_all(b"again").await.unwrap();
    s.shutdown().await.unwrap();
    let mut back = Vec::new();
    within(5, s.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back, b"again");
}

#[tokio::test]
async fn accept_then_abort_fails_the_dial_and_keeps_the_link() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":20").unwrap();
    let addr = listener.local_addr();
    for _ in 0..20 {
        let (dial, accepted) = within(5, async { tokio::join!(client.dial(addr), listener.accept()) }).await;
        accepted.unwrap().abort();
        // The dial either failed with a reset or completed just before it.
        if let Ok(mut s) = dial {
            let mut buf = [0u8; 1];
            let err = within(5, s.read(&mut buf)).await.unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ConnectionReset);
        }
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.stats().links, 1, "the link survived");
    let (mut c, mut s) = connected(&client, &listener).await;
    c.write_all(b"ok").await.unwrap();
    let mut got = [0u8; 2];
    within(5, s.read_exact(&mut got)).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_with_queued_data_and_fin_keeps_the_link() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":21").unwrap();
    for _ in 0..20 {
        let (mut c, mut s) = connected(&client, &listener).await;
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        let _ = c.write_all(&vec![3u8; 60_000]).await;
        c.shutdown().await.unwrap();
        c.abort();
        within(5, reader).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(client.stats().links, 1, "the link survived");
    assert_eq!(server.stats().links, 1);
}

#[tokio::test]
async fn links_lists_each_neighbour_with_its_streams() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":11").unwrap();
    let (_c, _s) = connected(&client, &listener).await;
    let links = client.links();
    assert_eq!(links.len(), 1, "{links:?}");
    let link = &links[0];
    assert_eq!(link.peer, server.host_id());
    assert!(link.remote_addr.is_some());
    assert_eq!(link.streams, 1);
    assert!(!link.v1);
    assert_eq!(server.links()[0].peer, client.host_id());
    server.close();
    eventually("the link going down", || client.links().is_empty()).await;
}

#[tokio::test]
async fn refusals_of_our_own_dials_are_not_resets_by_the_peer() {
    // The reset budget is for streams the peer opens: refused dials of ours do not
    // spend it, however many.
    let (server, client) = tcp_pair_with(Node::builder(), Node::builder().max_resets_per_second(20)).await;
    for _ in 0..200 {
        let err = within(5, client.dial(Addr::new(server.host_id(), 4242))).await.unwrap_err();
        assert!(matches!(err, Error::Refused { .. }), "{err}");
    }
    assert_eq!(client.links().len(), 1);
}

/// A stream on which nothing moves for its idle timeout is reset: this side's
/// operations fail with TimedOut, the peer's with a reset. Data moving keeps it alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_timeout_resets_a_quiet_stream_and_activity_keeps_it() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":7").unwrap();
    let (mut c, mut s) = connected(&client, &listener).await;
    c.set_idle_timeout(Some(Duration::from_millis(300)));
    // Traffic every 100 ms for a second: the stream lives on.
    for _ in 0..10 {
        c.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        within(5, s.read_exact(&mut one)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then silence: reset within the timeout (and the timer's precision).
    let started = std::time::Instant::now();
    let mut buf = [0u8; 8];
    let err = within(5, c.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() < Duration::from_millis(900), "{:?}", started.elapsed());
    let err = c.write_all(b"late").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    let err = within(5, s.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
}

/// The node's default idle timeout applies to every stream, dialed or accepted, and a
/// stream can turn it off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nodes_idle_timeout_applies_to_every_stream_unless_turned_off() {
    let idle = Duration::from_millis(200);
    let (server, client) = tcp_pair_with(Node::builder().stream_idle_timeout(idle), Node::builder()).await;
    let listener = server.bind(":7").unwrap();
    let (mut c1, s1) = connected(&client, &listener).await;
    let (mut c2, s2) = connected(&client, &listener).await;
    s2.set_idle_timeout(None);
    let mut buf = [0u8; 8];
    // The server resets its end of the first stream; the client's read says so.
    let err = within(5, c1.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConnectionReset, "{err}");
    let (mut s1, mut s2) = (s1, s2);
    assert_eq!(within(5, s1.read(&mut buf)).await.unwrap_err().kind(), ErrorKind::TimedOut);
    // The second one outlived the timeout.
    c2.write_all(b"alive").await.unwrap();
    within(5, s2.read_exact(&mut buf[..5])).await.unwrap();
    assert_eq!(&buf[..5], b"alive");
}

/// A write that waits longer than the write timeout for the peer's window fails with
/// TimedOut; nothing is lost and the stream stays usable once the peer reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_timeout_bounds_a_blocked_write_and_the_stream_stays_usable() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":7").unwrap();
    let (mut c, mut s) = connected(&client, &listener).await;
    c.set_write_timeout(Some(Duration::from_millis(300)));
    // The server does not read: the client fills the window, then waits.
    let chunk = vec![7u8; 64 * 1024];
    let mut sent = 0usize;
    let started = std::time::Instant::now();
    let err = within(5, async {
        loop {
            match c.write(&chunk).await {
                Ok(n) => sent += n,
                Err(e) => return e,
            }
        }
    })
    .await;
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert!(sent >= 64 * 1024, "the window's worth went through first ({sent})");
    // Everything accepted arrives, and the stream carries on.
    let reader = tokio::spawn(async move {
        let mut got = vec![0u8; sent + 5];
        s.read_exact(&mut got).await.unwrap();
        got
    });
    c.write_all(b"after").await.unwrap();
    let got = within(5, reader).await.unwrap();
    assert!(got[..sent].iter().all(|&b| b == 7));
    assert_eq!(&got[sent..], b"after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_carry_every_byte_in_order_and_end_empty() {
    const TOTAL: usize = 16 << 20;
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":11").unwrap();
    let (mut c, mut s) = connected(&client, &listener).await;
    let sender = tokio::spawn(async move {
        let bytes: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
        c.write_all(&bytes).await.unwrap();
        c.shutdown().await.unwrap();
    });
    let mut got = Vec::with_capacity(TOTAL);
    loop {
        let chunk = within(30, s.read_chunk(100_000)).await.unwrap();
        if chunk.is_empty() {
            break;
        }
        assert!(chunk.len() <= 100_000);
        got.extend_from_slice(&chunk);
    }
    assert_eq!(got.len(), TOTAL);
    assert!(got.iter().enumerate().all(|(i, b)| *b == (i % 251) as u8), "bytes differ");
    sender.await.unwrap();
    // The end stays the end.
    assert!(s.read_chunk(10).await.unwrap().is_empty());
}

/// A stream reset by its idle timeout keeps its handle's slot when the link goes down
/// afterwards: its calls then report the timeout or the closed link, and dropping it
/// is fine (the slot used to be taken for one without a handle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_stream_outlives_its_link_closing() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":7").unwrap();
    let (mut c, _s) = connected(&client, &listener).await;
    c.set_idle_timeout(Some(Duration::from_millis(100)));
    let mut buf = [0u8; 8];
    let err = within(5, c.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    server.close();
    eventually("the link closing", || client.links().is_empty()).await;
    let err = within(5, c.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TimedOut, "{err}");
    assert!(c.write_all(b"late").await.is_err());
    drop(c);
}

/// `start_dial` returns the stream at once: established once the listener accepts,
/// failing with the dial's error otherwise; `None` for a name nobody announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_dial_returns_at_once_and_the_stream_says_when_it_is_answered() {
    use std::future::poll_fn;
    let (server, client) = tcp_pair().await;
    let listener = server.bind(":12").unwrap();
    let target: astranet::Target = listener.local_addr().to_string().parse().unwrap();
    let mut c = client.start_dial(&target, Duration::from_secs(5)).unwrap().expect("an address is dialed at once");
    let mut s = within(5, listener.accept()).await.unwrap();
    within(5, poll_fn(|cx| c.poll_established(cx))).await.unwrap();
    c.write_all(b"hello").await.unwrap();
    let mut buf = [0u8; 5];
    within(5, s.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"hello");

    // Nobody accepts: the link gives the dial up at its deadline.
    let started = std::time::Instant::now();
    let late = client.start_dial(&target, Duration::from_millis(200)).unwrap().unwrap();
    let err = within(5, poll_fn(|cx| late.poll_established(cx))).await.unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }) && err.to_string().contains("dial to"), "{err}");
    assert!(started.elapsed() >= Duration::from_millis(190), "{:?}", started.elapsed());
    drop(late);
    eventually("the backlog emptying", || server.stats().pending_dials == 0).await;

    // Not announced: nothing to dial yet. No route: an error at once.
    assert!(client.start_dial(&"nobody".parse().unwrap(), Duration::from_secs(1)).unwrap().is_none());
    let unknown: astranet::Target = "0000000000000001:80".parse().unwrap();
    assert!(matches!(client.start_dial(&unknown, Duration::from_secs(1)), Err(Error::NoRoute(_))));
}
