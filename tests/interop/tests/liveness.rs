//! Keep-alive across a mixed link, and what happens to our streams when the Go node dies.

use astranet::{KeepAlive, Node};
use astranet_interop::{trace, within, GoPeer};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Our PINGs keep the link up past our idle timeout: the Go node answers them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_link_lives_on_our_pings() {
    trace();
    let mut go = GoPeer::start(&["-tap-listen", "127.0.0.1:0"]).await;
    let timings = KeepAlive {
        ping_after: Duration::from_millis(500),
        write_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(3),
    };
    let ours = Node::builder().keepalive_timings(timings).build();
    within(10, "join", ours.join(go.addr.unwrap())).await.unwrap();
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(ours.peers(), [go.host], "the link outlived 2.5 idle timeouts");
    let stats = go.ok("tap-stats").await;
    assert!(stats["counts"]["160"].as_u64().unwrap_or(0) >= 5, "the Go node received our PINGs: {stats}");
}

/// The Go node PINGs a link it has not written to for 5 s; our PONGs reach it, and its
/// PINGs keep the link up past our idle timeout although we never PING.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_link_lives_on_go_pings() {
    trace();
    let mut go = GoPeer::start(&["-tap-listen", "127.0.0.1:0"]).await;
    let timings = KeepAlive {
        ping_after: Duration::from_secs(3600),
        write_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(8),
    };
    let ours = Node::builder().keepalive_timings(timings).build();
    within(10, "join", ours.join(go.addr.unwrap())).await.unwrap();
    let frames_before = ours.stats().frames_in;
    tokio::time::sleep(Duration::from_secs(13)).await;
    assert_eq!(ours.peers(), [go.host], "the link outlived our 8 s idle timeout");
    assert!(ours.stats().frames_in >= frames_before + 2, "the Go node's PINGs arrived");
    let stats = go.ok("tap-stats").await;
    assert!(stats["counts"]["161"].as_u64().unwrap_or(0) >= 2, "our PONGs reached the Go node: {stats}");
}

/// A Go node killed while our streams wait on it: they fail at once with "link closed".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_to_a_killed_go_node_fail_promptly() {
    trace();
    let ours = Node::new();
    let addr = ours.listen("127.0.0.1:0").await.unwrap();
    let mut go = GoPeer::start(&["-join", &addr.to_string()]).await;
    go.ok("serve hold hold").await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(within(20, "dial", ours.dial("hold")).await.unwrap());
    }
    let readers: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut buf = [0u8; 16];
                s.read(&mut buf).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed = Instant::now();
    go.kill().await;
    for r in readers {
        let err = within(5, "a read on a dead link", r).await.unwrap().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted, "{err}");
        assert!(err.to_string().contains("link to") && err.to_string().contains("closed"), "{err}");
    }
    assert!(killed.elapsed() < Duration::from_secs(2), "failed after {:?}", killed.elapsed());
    assert!(ours.peers().is_empty());
}
