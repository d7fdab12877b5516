//! The bytes a Go node receives from a node of ours, parsed on the Go side (gopeer's
//! tap): after a workout of every stream and mesh path towards it, no command code
//! outside the protocol's table arrived, and no frame over 64 KiB (a Go reader cannot
//! take one).

use astranet::{Addr, Node};
use astranet_interop::servers::{serve, Mode};
use astranet_interop::{trace, within, GoPeer};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_peer_receives_only_v1_commands() {
    trace();
    let mut go = GoPeer::start(&["-tap-listen", "127.0.0.1:0"]).await;
    let ours = Node::builder().max_streams_per_link(64).listener_backlog(16).build();
    within(10, "join", ours.join(go.addr.unwrap())).await.unwrap();

    // Services both ways, echoes both ways with window growth (WND_SIZE, REWIND).
    let _echo = serve(ours.bind("echo").unwrap(), Mode::Echo);
    go.wait_service("echo", 10).await;
    go.ok("dial-echo echo 4194304 1 1 2 60").await;
    go.ok("dial-echo echo 1000 2 0 10 60").await;
    go.ok("serve gecho echo").await;
    go.ok("serve ghold hold").await;
    go.ok("serve gsource source 8388608 3").await;
    let mut s = within(20, "dial", ours.dial("gsource")).await.unwrap();
    let mut sink = Vec::new();
    within(60, "read", s.read_to_end(&mut sink)).await.unwrap();
    assert_eq!(sink.len(), 8 << 20);

    // Aborts (RST between our nodes), refusals and given-up dials, in their v1 forms.
    let aborted = within(20, "dial", ours.dial("ghold")).await.unwrap();
    aborted.abort();
    let mut half = within(20, "dial", ours.dial("gecho")).await.unwrap();
    half.write_all(b"x").await.unwrap();
    drop(half);
    let port = ours.services().into_iter().find(|s| s.name == "ghold").unwrap().addr.port;
    let given_up = ours.dial_timeout(Addr::new(go.host, port.0 + 1000), Duration::from_millis(300)).await;
    assert!(given_up.is_err(), "nobody listens there; a Go node drops the dial");
    // Dials over our stream limit and over a full backlog are refused the v1 way.
    let unaccepted = ours.bind("unaccepted").unwrap();
    go.wait_service("unaccepted", 10).await;
    let _ = go.cmd("dial-echo unaccepted 10 1 1 20 2").await;
    drop(unaccepted);
    let _ = go.cmd("dial-echo echo 10 1 1 100 5").await;
    // A withdrawal.
    let gone = ours.bind("gone").unwrap();
    go.wait_service("gone", 10).await;
    drop(gone);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let stats = go.ok("tap-stats").await;
    assert_eq!(stats["unknown"], serde_json::json!({}), "command codes a Go node does not know: {stats}");
    assert!(stats["max_payload"].as_u64().unwrap() <= 65_536, "{stats}");
    for cmd in ["2", "6", "16", "128", "129", "130", "191", "192", "193"] {
        assert!(stats["counts"][cmd].as_u64().unwrap_or(0) > 0, "the workout sent command {cmd}: {stats}");
    }
}
