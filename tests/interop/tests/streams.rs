//! Streams between a node of this project and a node of the original Go package, over
//! real loopback TCP, whichever side joins: bulk data checksummed each way, many
//! concurrent streams, and the Go close idiom (write, `Close()`, read to EOF) in both
//! directions.

use astranet::{Node, Stream};
use astranet_interop::servers::{serve, Mode};
use astranet_interop::{read_digest, trace, within, write_pattern, GoPeer, Pattern};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A node of ours listening on loopback, and a Go node that joined it.
async fn go_joins_ours() -> (Node, GoPeer) {
    trace();
    let ours = Node::new();
    let addr = ours.listen("127.0.0.1:0").await.unwrap();
    let go = GoPeer::start(&["-join", &addr.to_string()]).await;
    wait_link(&ours, &go).await;
    (ours, go)
}

/// A Go node listening on loopback, and a node of ours that joined it.
async fn ours_joins_go() -> (Node, GoPeer) {
    trace();
    let go = GoPeer::start(&["-listen", "127.0.0.1:0"]).await;
    let ours = Node::new();
    let peer = within(10, "join the Go node", ours.join(go.addr.unwrap())).await.unwrap();
    assert_eq!(peer, go.host, "the handshake carries the Go node's host id");
    (ours, go)
}

async fn wait_link(ours: &Node, go: &GoPeer) {
    within(10, "Go node's link", async {
        while !ours.peers().contains(&go.host) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Dials a Go service by name once the node has heard of it.
async fn dial(ours: &Node, name: &str) -> Stream {
    within(20, "dial the Go service", ours.dial(name)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_close_idiom_gets_the_whole_echo() {
    let (ours, mut go) = go_joins_ours().await;
    let _echo = serve(ours.bind("echo").unwrap(), Mode::Echo);
    go.wait_service("echo", 10).await;
    // Write, Close(), read to EOF: what every Go user of the original does.
    for size in [1_000, 65_536, 1 << 20, 8 << 20] {
        let v = within(60, "echo", go.cmd(&format!("dial-echo echo {size} {size} 1 1 30"))).await;
        assert!(v.is_ok(), "{size}-byte echo after Close(): {v:?}");
    }
    // And without Close() before reading.
    go.ok("dial-echo echo 100000 7 0 1 30").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_written_seconds_after_go_closes_still_arrives() {
    let (ours, mut go) = go_joins_ours().await;
    let mut served = Vec::new();
    let mut answers = Vec::new();
    for secs in [1u64, 5, 9] {
        let name = format!("late{secs}");
        served.push(serve(ours.bind(&name).unwrap(), Mode::ReplyAfter(Duration::from_secs(secs))));
        go.wait_service(&name, 10).await;
        answers.push((secs, go.start_cmd(&format!("dial-echo {name} 200000 {secs} 1 1 30")).await));
    }
    for (secs, answer) in answers {
        let v = within(30, "late reply", answer).await.unwrap();
        assert_eq!(v["ok"], true, "reply {secs} s after Close(): {v}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_long_after_a_go_close_fail_clearly() {
    let (ours, mut go) = go_joins_ours().await;
    let listener = ours.bind("late").unwrap();
    go.wait_service("late", 10).await;
    let answer = go.start_cmd("dial-echo late 10 1 1 1 30").await;
    let mut s = within(10, "accept", listener.accept()).await.unwrap();
    let mut got = Vec::new();
    within(10, "read to EOF", s.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, Pattern::bytes(1, 10));
    // The Go side forgets its stream 10 s after Close(): a write that cannot be
    // delivered any more fails instead of waiting forever for credit.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let big = vec![0u8; 1 << 20];
    let err = within(10, "write after the close window", s.write_all(&big)).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::BrokenPipe, "{err}");
    assert!(err.to_string().contains("closed"), "{err}");
    drop(s);
    let v = within(30, "Go side", answer).await.unwrap();
    assert_eq!(v["ok"], false, "the Go reader saw EOF after 10 s without a reply: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_each_way_when_go_joins_ours() {
    let (ours, mut go) = go_joins_ours().await;
    let _sink = serve(ours.bind("sink").unwrap(), Mode::Sink);
    let _source = serve(ours.bind("source").unwrap(), Mode::Source { size: 64 << 20, seed: 11 });
    go.wait_service("sink", 10).await;
    go.wait_service("source", 10).await;
    within(120, "Go sends 64 MiB", go.cmd(&format!("dial-send sink {} 10", 64 << 20))).await.unwrap();
    within(120, "Go receives 64 MiB", go.cmd(&format!("dial-recv source {} 11", 64 << 20))).await.unwrap();

    go.ok("serve gsink sink").await;
    go.ok(&format!("serve gsource source {} 13", 64 << 20)).await;
    send_to_go_sink(&ours, "gsink", 64 << 20, 12).await;
    receive_from_go_source(&ours, "gsource", 64 << 20, 13).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_mib_each_way_when_ours_joins_go() {
    let (ours, mut go) = ours_joins_go().await;
    go.ok("serve gsink sink").await;
    go.ok(&format!("serve gsource source {} 21", 64 << 20)).await;
    send_to_go_sink(&ours, "gsink", 64 << 20, 20).await;
    receive_from_go_source(&ours, "gsource", 64 << 20, 21).await;

    let _sink = serve(ours.bind("sink").unwrap(), Mode::Sink);
    let _source = serve(ours.bind("source").unwrap(), Mode::Source { size: 64 << 20, seed: 23 });
    go.wait_service("sink", 10).await;
    go.wait_service("source", 10).await;
    within(120, "Go sends 64 MiB", go.cmd(&format!("dial-send sink {} 22", 64 << 20))).await.unwrap();
    within(120, "Go receives 64 MiB", go.cmd(&format!("dial-recv source {} 23", 64 << 20))).await.unwrap();
}

async fn send_to_go_sink(ours: &Node, name: &str, size: u64, seed: u64) {
    let mut s = dial(ours, name).await;
    within(120, "send to the Go sink", async {
        write_pattern(&mut s, seed, size).await.unwrap();
        // Our half-close is the Go Close(): the Go reader gets EOF, we keep reading.
        s.shutdown().await.unwrap();
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.unwrap();
        assert_eq!(answer.len(), 40, "count + SHA-256");
        assert_eq!(u64::from_be_bytes(answer[..8].try_into().unwrap()), size);
        assert_eq!(answer[8..], Pattern::sha256(seed, size), "the Go side received other bytes");
    })
    .await;
}

async fn receive_from_go_source(ours: &Node, name: &str, size: u64, seed: u64) {
    let mut s = dial(ours, name).await;
    let (n, digest) = within(120, "receive from the Go source", read_digest(&mut s)).await.unwrap();
    assert_eq!(n, size);
    assert_eq!(digest, Pattern::sha256(seed, size));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streams_each_way() {
    let (ours, mut go) = go_joins_ours().await;
    let _echo = serve(ours.bind("echo").unwrap(), Mode::Echo);
    go.wait_service("echo", 10).await;
    let v = within(120, "1,000 Go streams", go.cmd("dial-echo echo 4096 100 1 1000 60")).await.unwrap();
    assert_eq!(v["whole"], 1000);

    go.ok("serve gecho echo").await;
    let mut tasks = Vec::new();
    for i in 0..1000u64 {
        let ours = ours.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = ours.dial("gecho").await.unwrap();
            let data = Pattern::bytes(5000 + i, 4096);
            s.write_all(&data).await.unwrap();
            s.shutdown().await.unwrap();
            let mut back = Vec::new();
            s.read_to_end(&mut back).await.unwrap();
            assert_eq!(back, data, "stream {i}");
        }));
    }
    within(120, "1,000 streams to the Go echo", async {
        for t in tasks {
            t.await.unwrap();
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_echo_and_close_read_as_data_then_eof() {
    let (ours, mut go) = ours_joins_go().await;
    go.ok("serve gecho echo").await;
    go.ok("serve glate reply-after 3000").await;
    for (name, size) in [("gecho", 10u64), ("gecho", 3 << 20), ("glate", 100_000)] {
        let mut s = dial(&ours, name).await;
        let data = Pattern::bytes(size, size as usize);
        within(30, "echo from the Go server", async {
            let (mut r, mut w) = tokio::io::split(&mut s);
            let reader = async {
                let mut back = Vec::new();
                r.read_to_end(&mut back).await.map(|_| back)
            };
            let writer = async {
                w.write_all(&data).await?;
                w.shutdown().await
            };
            let (back, written) = tokio::join!(reader, writer);
            written.unwrap();
            assert_eq!(back.unwrap(), data, "{name}: data, then EOF from the Go Close()");
        })
        .await;
    }
}

/// A Go reader drops what it has not read 10 s after a FIN2 arrives: our FIN2 waits
/// until the Go side read everything, so a slow Go reader loses nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_go_reader_loses_nothing_after_we_close() {
    let (ours, mut go) = go_joins_ours().await;
    let _source = serve(ours.bind("source").unwrap(), Mode::Source { size: 1 << 20, seed: 31 });
    go.wait_service("source", 10).await;
    let v = within(60, "slow read", go.cmd(&format!("dial-recv source {} 31 12000", 1 << 20))).await;
    assert!(v.is_ok(), "{v:?}");
}
