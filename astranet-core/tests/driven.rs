//! Links read and written by a `LinkDriver` on a thread of the test's own (as an
//! embedder's event loop would), not by the runtime: handshakes, data both ways, many
//! streams, relaying, links closing from either end, and a driver that reads alone.

mod common;

use astranet::{Addr, Drive, LinkDriver, Node, Role};
use common::*;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An event loop of the embedder's: waits for the driver's fd with `poll(2)` and runs
/// it, until dropped.
struct EventLoop {
    stop: Arc<AtomicBool>,
    /// Set: the loop runs nothing (an embedder busy elsewhere).
    paused: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EventLoop {
    fn start(driver: Arc<LinkDriver>) -> EventLoop {
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let (flag, pause) = (stop.clone(), paused.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::Acquire) {
                if pause.load(Ordering::Acquire) {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                let mut pfd = libc::pollfd { fd: driver.fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one valid pollfd.
                if unsafe { libc::poll(&mut pfd, 1, 20) } > 0 && !pause.load(Ordering::Acquire) {
                    driver.run();
                }
            }
        });
        EventLoop { stop, paused, thread: Some(thread) }
    }

    /// Stops running the driver (after the run in progress, if any).
    async fn pause(&self) {
        self.paused.store(true, Ordering::Release);
        // Longer than a poll's wait and a run.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::Release);
    }
}

impl Drop for EventLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Keep-alive of the nodes here: long, so that no PING arriving every few seconds
/// hides a read the driver failed to continue (it would be read with the PING).
const KEEPALIVE: Duration = Duration::from_secs(600);

fn driven(role: Role) -> (Node, Arc<LinkDriver>, EventLoop) {
    driven_for(role, Drive::ReadsAndWrites)
}

fn driven_for(role: Role, drive: Drive) -> (Node, Arc<LinkDriver>, EventLoop) {
    let driver = LinkDriver::new(drive).unwrap();
    let node = Node::builder().role(role).keepalive(KEEPALIVE).link_driver(driver.clone()).build();
    let event_loop = EventLoop::start(driver.clone());
    (node, driver, event_loop)
}

/// A driven server joined by a client whose runtime reads its link; returns once the
/// server's driver reads the link.
async fn driven_server_and_client() -> (Node, Arc<LinkDriver>, EventLoop, Node) {
    let (server, reads, event_loop) = driven(Role::Peer);
    let client = Node::builder().keepalive(KEEPALIVE).build();
    let addr = server.listen("127.0.0.1:0").await.unwrap();
    within(10, client.join(addr)).await.unwrap();
    eventually("the link driven", || reads.links() == 1).await;
    (server, reads, event_loop, client)
}

/// A driven router, and a server and a client node joined to it, the server through
/// `route` (which may put something between them); returns once the router's driver
/// reads both links.
async fn driven_router<F>(
    route: impl FnOnce(std::net::SocketAddr) -> F,
) -> (Node, Arc<LinkDriver>, EventLoop, Node, Node)
where
    F: std::future::Future<Output = std::net::SocketAddr>,
{
    let (router, reads, event_loop) = driven(Role::Router);
    let addr = router.listen("127.0.0.1:0").await.unwrap();
    let server = Node::builder().role(Role::Server).keepalive(KEEPALIVE).build();
    let client = Node::builder().role(Role::Client).keepalive(KEEPALIVE).build();
    within(10, server.join(route(addr).await)).await.unwrap();
    within(10, client.join(addr)).await.unwrap();
    eventually("both links driven", || reads.links() == 2).await;
    (router, reads, event_loop, server, client)
}

/// Accepts `streams` streams on `listener` and reads each to its end: what each sent.
fn receive_all(listener: astranet::Listener, streams: usize) -> tokio::task::JoinHandle<Vec<Vec<u8>>> {
    tokio::spawn(async move {
        let mut tasks = Vec::new();
        for _ in 0..streams {
            let mut s = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut all = Vec::new();
                s.read_to_end(&mut all).await.unwrap();
                all
            }));
        }
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        got
    })
}

/// Waits until `f` holds (the driver hears of links on other threads).
async fn eventually(what: &str, f: impl Fn() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("never happened: {what}");
}

fn pattern(i: usize) -> u8 {
    (i * 31 + i / 4096) as u8
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_each_way_between_driven_nodes() {
    sixty_four_mib_each_way(Drive::ReadsAndWrites).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_each_way_between_nodes_driven_for_reads_alone() {
    sixty_four_mib_each_way(Drive::Reads).await;
}

async fn sixty_four_mib_each_way(drive: Drive) {
    const TOTAL: usize = 64 << 20;
    let (server, server_reads, _l1) = driven_for(Role::Peer, drive);
    let (client, client_reads, _l2) = driven_for(Role::Peer, drive);
    let addr = server.listen("127.0.0.1:0").await.unwrap();
    within(10, client.join(addr)).await.unwrap();
    eventually("both links driven", || server_reads.links() == 1 && client_reads.links() == 1).await;

    let listener = server.bind("bulk").unwrap();
    let echo = tokio::spawn(async move {
        let s = listener.accept().await.unwrap();
        let (mut r, mut w) = tokio::io::split(s);
        tokio::io::copy(&mut r, &mut w).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let s = within(10, client.dial("bulk")).await.unwrap();
    let (mut r, mut w) = tokio::io::split(s);
    let writer = tokio::spawn(async move {
        let chunk: Vec<u8> = (0..TOTAL).map(pattern).collect();
        for part in chunk.chunks(100_003) {
            w.write_all(part).await.unwrap();
        }
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::with_capacity(TOTAL);
    within(60, r.read_to_end(&mut back)).await.unwrap();
    assert_eq!(back.len(), TOTAL);
    assert!(back.iter().enumerate().all(|(i, b)| *b == pattern(i)), "bytes differ");
    writer.await.unwrap();
    echo.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_threads_running_one_driver_lose_and_reorder_nothing() {
    const STREAMS: usize = 8;
    const EACH: usize = 4 << 20;
    let (server, reads, _l1, client) = driven_server_and_client().await;
    let _l2 = EventLoop::start(reads.clone());
    let listener = server.bind(":3").unwrap();
    let to = listener.local_addr();
    let receivers = receive_all(listener, STREAMS);
    let mut senders = Vec::new();
    for i in 0..STREAMS {
        let client = client.clone();
        senders.push(tokio::spawn(async move {
            let mut s = client.dial(to).await.unwrap();
            let bytes: Vec<u8> = (0..EACH).map(|j| pattern(j + i)).collect();
            s.write_all(&bytes).await.unwrap();
            s.shutdown().await.unwrap();
        }));
    }
    for t in senders {
        within(20, t).await.unwrap();
    }
    let got = within(20, receivers).await.unwrap();
    for all in got {
        assert_eq!(all.len(), EACH);
        let i = (0..STREAMS).find(|i| all[0] == pattern(*i)).expect("a sender's first byte");
        assert!(all.iter().enumerate().all(|(j, b)| *b == pattern(j + i)), "bytes differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_streams_against_a_runtime_read_peer() {
    let (server, _reads, _l, client) = driven_server_and_client().await;
    let listener = server.bind(":9").unwrap();
    tokio::spawn(async move {
        while let Ok(s) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = tokio::io::split(s);
                let _ = tokio::io::copy(&mut r, &mut w).await;
                let _ = w.shutdown().await;
            });
        }
    });
    let mut tasks = Vec::new();
    for i in 0..1000u32 {
        let client = client.clone();
        let to = Addr::new(server.host_id(), 9);
        tasks.push(tokio::spawn(async move {
            let mut s = client.dial(to).await.unwrap();
            let msg = format!("stream {i} says hello");
            s.write_all(msg.as_bytes()).await.unwrap();
            s.shutdown().await.unwrap();
            let mut back = String::new();
            s.read_to_string(&mut back).await.unwrap();
            assert_eq!(back, msg);
        }));
    }
    for t in tasks {
        within(30, t).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_completes_before_anyone_runs_the_driver() {
    // The handshake is read and written by the runtime: nobody calls `run` here.
    let driver = LinkDriver::new(Drive::ReadsAndWrites).unwrap();
    let client = Node::builder().link_driver(driver.clone()).build();
    let server = Node::new();
    let addr = server.listen("127.0.0.1:0").await.unwrap();
    assert_eq!(within(10, client.join(addr)).await.unwrap(), server.host_id());
    eventually("the link handed over", || driver.links() == 1).await;
    // From now on its bytes wait for `run`.
    let _l = EventLoop::start(driver.clone());
    let listener = server.bind(":1").unwrap();
    let (mut c, mut s) = connected(&client, &listener).await;
    s.write_all(b"read by the driver").await.unwrap();
    let mut buf = [0u8; 18];
    within(10, c.read_exact(&mut buf)).await.unwrap();
    assert_eq!(&buf, b"read by the driver");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driven_router_relays_between_hosts_behind_it() {
    let (_router, _reads, _l, a, b) = driven_router(|addr| async move { addr }).await;
    let listener = a.bind("behind").unwrap();
    tokio::spawn(async move {
        let mut s = listener.accept().await.unwrap();
        let mut all = Vec::new();
        s.read_to_end(&mut all).await.unwrap();
        s.write_all(&(all.len() as u64).to_be_bytes()).await.unwrap();
    });
    let mut s = within(10, b.dial("behind")).await.unwrap();
    s.write_all(&vec![7u8; 8 << 20]).await.unwrap();
    s.shutdown().await.unwrap();
    let mut len = [0u8; 8];
    within(30, s.read_exact(&mut len)).await.unwrap();
    assert_eq!(u64::from_be_bytes(len), 8 << 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_closing_the_link_is_seen_and_the_link_dropped() {
    let (server, reads, _l, client) = driven_server_and_client().await;
    let listener = client.bind(":5").unwrap();
    let (mut s, _c) = connected(&server, &listener).await;
    client.close();
    let mut buf = [0u8; 1];
    let err = within(10, s.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted, "{err}");
    eventually("the link forgotten", || reads.links() == 0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_a_driven_node_closes_its_sockets() {
    let (server, reads, _l, client) = driven_server_and_client().await;
    let listener = server.bind(":5").unwrap();
    let (mut c, _s) = connected(&client, &listener).await;
    server.close();
    eventually("the link forgotten", || reads.links() == 0).await;
    // The peer hears of it from the socket alone.
    let mut buf = [0u8; 1];
    let err = within(10, c.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted, "{err}");
}

/// A TCP proxy to `upstream` for one connection that holds back what comes from
/// `upstream` while `frozen` is set (a next hop that stops reading).
async fn freezable_proxy(upstream: std::net::SocketAddr, frozen: Arc<AtomicBool>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
        let (mut cr, mut cw) = client.into_split();
        let (mut sr, mut sw) = server.into_split();
        tokio::spawn(async move { tokio::io::copy(&mut cr, &mut sw).await });
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while frozen.load(Ordering::Acquire) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            match sr.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if cw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        }
    });
    addr
}

/// 400 streams' initial windows (64 KiB each) are 25 MiB in flight: more than the
/// socket buffers on the way to a receiver that stopped reading, and a router's 8 MiB
/// limit for a next hop, so the reads of the sender's link pause (and resume, by the
/// driver's wake-ups) until the hop drains.
const CONGESTING_STREAMS: usize = 400;
const CONGESTING_BYTES: usize = 128 * 1024;

/// What [`congest`] started: the tasks writing each stream, the task reading them.
struct Congestion {
    senders: Vec<tokio::task::JoinHandle<()>>,
    received: tokio::task::JoinHandle<Vec<Vec<u8>>>,
}

/// Opens the streams from `sender` to "sink" on `receiver`, sets `frozen` (the way
/// between them stops) and starts writing [`CONGESTING_BYTES`] bytes of a pattern on each.
async fn congest(sender: &Node, receiver: &Node, frozen: &AtomicBool) -> Congestion {
    let received = receive_all(receiver.bind("sink").unwrap(), CONGESTING_STREAMS);
    let mut streams = Vec::new();
    for _ in 0..CONGESTING_STREAMS {
        streams.push(within(10, sender.dial_timeout("sink", Duration::from_secs(5))).await.unwrap());
    }
    frozen.store(true, Ordering::Release);
    let bytes: Arc<Vec<u8>> = Arc::new((0..CONGESTING_BYTES).map(pattern).collect());
    let mut senders = Vec::new();
    for mut s in streams {
        let bytes = bytes.clone();
        senders.push(tokio::spawn(async move {
            s.write_all(&bytes).await.unwrap();
            s.shutdown().await.unwrap();
        }));
    }
    Congestion { senders, received }
}

impl Congestion {
    /// Unfreezes the way; every stream must then arrive whole.
    async fn drains(self, frozen: &AtomicBool) {
        frozen.store(false, Ordering::Release);
        for t in self.senders {
            within(60, t).await.unwrap();
        }
        let intact =
            |all: &Vec<u8>| all.len() == CONGESTING_BYTES && all.iter().enumerate().all(|(j, b)| *b == pattern(j));
        assert!(within(60, self.received).await.unwrap().iter().all(intact), "a stream lost or changed bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driven_router_pauses_for_a_congested_hop_and_resumes() {
    trace();
    let frozen = Arc::new(AtomicBool::new(false));
    let (_router, _reads, _l, receiver, sender) = driven_router(|addr| freezable_proxy(addr, frozen.clone())).await;
    let congestion = congest(&sender, &receiver, &frozen).await;
    // Longer than a pause (500 ms): the router's reader pauses more than once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    congestion.drains(&frozen).await;
}

/// Two in-memory pipes joined by copies that stop while `frozen` is set: (one end, the
/// other end).
fn freezable_pipe(frozen: Arc<AtomicBool>) -> (tokio::io::DuplexStream, tokio::io::DuplexStream) {
    let (a, a_mid) = tokio::io::duplex(64 * 1024);
    let (b_mid, b) = tokio::io::duplex(64 * 1024);
    let (ar, aw) = tokio::io::split(a_mid);
    let (br, bw) = tokio::io::split(b_mid);
    for (mut from, mut to) in [(ar, bw), (br, aw)] {
        let frozen = frozen.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                while frozen.load(Ordering::Acquire) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                match from.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if to.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            }
        });
    }
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_link_paused_for_a_congested_hop_leaves_the_fd_idle() {
    // The router drives one link, the sender's; the receiver's is attached over a pipe
    // (served by the runtime), which freezes: the reads of the sender's link pause
    // with bytes left in its socket. A level-triggered wait must not then see the fd
    // readable after every run.
    let (router, driver, event_loop) = driven(Role::Router);
    let addr = router.listen("127.0.0.1:0").await.unwrap();
    let receiver = Node::builder().role(Role::Server).keepalive(KEEPALIVE).build();
    let frozen = Arc::new(AtomicBool::new(false));
    let (ours, theirs) = freezable_pipe(frozen.clone());
    within(10, async { tokio::try_join!(router.attach(ours), receiver.attach(theirs)) }).await.unwrap();
    let sender = Node::builder().role(Role::Client).keepalive(KEEPALIVE).build();
    within(10, sender.join(addr)).await.unwrap();
    eventually("the sender's link driven", || driver.links() == 1).await;
    let congestion = congest(&sender, &receiver, &frozen).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    event_loop.pause().await;
    for _ in 0..5 {
        run_until_idle(&driver).await;
    }
    event_loop.resume();
    congestion.drains(&frozen).await;
}

/// 60 KiB: more than a stream writes straight to the socket (so it is queued for the
/// link's writer), less than a stream's initial window (so it is all sent at once).
const QUEUED: usize = 60 * 1024;

/// A driven client joined to a runtime-served server, a stream between them, and the
/// client's link writer handed over to its driver.
struct DrivenWriter {
    client: Node,
    driver: Arc<LinkDriver>,
    event_loop: EventLoop,
    _server: Node,
    c: astranet::Stream,
    s: astranet::Stream,
}

async fn driven_writer() -> DrivenWriter {
    let (client, driver, event_loop) = driven(Role::Peer);
    let server = Node::builder().keepalive(KEEPALIVE).build();
    let addr = server.listen("127.0.0.1:0").await.unwrap();
    within(10, client.join(addr)).await.unwrap();
    let listener = server.bind(":2").unwrap();
    let (c, s) = connected(&client, &listener).await;
    eventually("the writer handed over", || driver.writers() == 1).await;
    DrivenWriter { client, driver, event_loop, _server: server, c, s }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_driven_writer_writes_only_when_the_driver_runs() {
    // Every node bound to a name: one dropped here would close the link.
    let DrivenWriter { client: _client, driver: _driver, event_loop, _server, mut c, mut s } = driven_writer().await;
    event_loop.pause().await;
    c.write_all(&[5u8; QUEUED]).await.unwrap();
    let mut got = vec![0u8; QUEUED];
    let early = tokio::time::timeout(Duration::from_millis(300), s.read(&mut got)).await;
    assert!(early.is_err(), "bytes left while nobody ran the driver");
    event_loop.resume();
    within(10, s.read_exact(&mut got)).await.unwrap();
    assert!(got.iter().all(|b| *b == 5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_close_flushes_what_a_driven_writer_had_queued() {
    let DrivenWriter { client, driver, event_loop, _server, mut c, mut s } = driven_writer().await;
    // Queued while nobody runs the driver, which nobody will run again: the close
    // hands the writer back to the runtime, which writes it all before the end.
    event_loop.pause().await;
    c.write_all(&[9u8; QUEUED]).await.unwrap();
    client.close();
    let mut got = vec![0u8; QUEUED];
    within(10, s.read_exact(&mut got)).await.unwrap();
    assert!(got.iter().all(|b| *b == 9));
    eventually("the writer let go", || driver.writers() == 0).await;
    drop(event_loop);
}

/// Whether the driver's fd is readable now (as a level-triggered wait sees it).
fn readable(driver: &LinkDriver) -> bool {
    let mut pfd = libc::pollfd { fd: driver.fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, 0) > 0 }
}

/// Runs `driver` until its fd reads as idle; fails if that takes more than a few runs.
async fn run_until_idle(driver: &LinkDriver) {
    for _ in 0..20 {
        if !readable(driver) {
            return;
        }
        driver.run();
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the fd stays readable with nothing left to do");
}

/// Messages both ways on `c` and `s` (streams of `driver`'s node and of another), each
/// carried by the test's own runs of the driver; after each, the fd must read as idle.
async fn fd_readable_only_with_work(driver: &LinkDriver, c: &mut astranet::Stream, s: &mut astranet::Stream) {
    let mut buf = [0u8; 4];
    for i in 0..20u32 {
        run_until_idle(driver).await;
        s.write_all(&i.to_be_bytes()).await.unwrap();
        eventually("bytes arrived", || readable(driver)).await;
        run_until_idle(driver).await;
        within(10, c.read_exact(&mut buf)).await.unwrap();
        assert_eq!(u32::from_be_bytes(buf), i);
        c.write_all(&buf).await.unwrap();
        run_until_idle(driver).await;
        within(10, s.read_exact(&mut buf)).await.unwrap();
        assert_eq!(u32::from_be_bytes(buf), i);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fd_of_a_node_with_one_link_is_readable_only_with_work() {
    // With one link, the driver reads it without asking its epoll which fd woke it.
    let DrivenWriter { client: _client, driver, event_loop, _server, mut c, mut s } = driven_writer().await;
    event_loop.pause().await;
    fd_readable_only_with_work(&driver, &mut c, &mut s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fd_of_a_node_with_two_links_is_readable_only_with_work() {
    let (router, reads, event_loop, _server, client) = driven_router(|addr| async move { addr }).await;
    let listener = router.bind(":7").unwrap();
    let (mut c, mut s) = connected(&client, &listener).await;
    event_loop.pause().await;
    fd_readable_only_with_work(&reads, &mut s, &mut c).await;
}
