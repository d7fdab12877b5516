//! The mesh with Go nodes in it: services announced on each side are seen and dialable
//! by name on the other (with an environment suffix), withdrawn when the Go process
//! dies, and routers of either kind relay between nodes of the other kind.

use astranet::{Node, Role};
use astranet_interop::servers::{serve, Mode};
use astranet_interop::{trace, within, GoPeer, Pattern};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    within(secs, what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

/// Write, half-close, read to EOF: the echo must be exactly what was sent.
async fn echo_by_name(node: &Node, name: &str, size: usize, seed: u64) {
    let mut s = within(20, "dial by name", node.dial(name)).await.unwrap();
    let data = Pattern::bytes(seed, size);
    within(60, "echo", async {
        let (mut r, mut w) = tokio::io::split(&mut s);
        let writer = async {
            w.write_all(&data).await?;
            w.shutdown().await
        };
        let reader = async {
            let mut back = Vec::new();
            r.read_to_end(&mut back).await.map(|_| back)
        };
        let (written, back) = tokio::join!(writer, reader);
        written.unwrap();
        assert_eq!(back.unwrap(), data, "echo of {size} bytes through {name}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_cross_both_ways_with_an_environment_and_vanish_with_the_go_process() {
    trace();
    let ours = Node::builder().env(["prod", "eu"]).build();
    let addr = ours.listen("127.0.0.1:0").await.unwrap();
    let mut go = GoPeer::start(&["-env", "prod,eu", "-join", &addr.to_string()]).await;
    let _echo = serve(ours.bind("rsvc").unwrap(), Mode::Echo);
    go.ok("serve gsvc echo").await;

    // Ours, as the Go node sees it: the full name, and dialable by the short one.
    go.wait_service("rsvc.prod.eu", 10).await;
    go.ok("dial-echo rsvc 100000 1 1 3 30").await;
    // The Go node's, as ours sees it.
    let go_host = go.host;
    wait_for("the Go service", 10, || {
        ours.services().iter().any(|s| s.name == "gsvc.prod.eu" && s.addr.host == go_host)
    })
    .await;
    echo_by_name(&ours, "gsvc", 200_000, 2).await;
    // "name:port", as the Go package writes it.
    let port = ours.services().into_iter().find(|s| s.name == "gsvc.prod.eu").unwrap().addr.port;
    echo_by_name(&ours, &format!("gsvc:{port}"), 10, 3).await;

    // The Go process dies: its names are withdrawn at once (its TCP connection closes).
    go.kill().await;
    wait_for("withdrawal", 5, || !ours.services().iter().any(|s| s.addr.host == go_host)).await;
    let err = ours.dial_timeout("gsvc", Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(err, astranet::Error::NoSuchService { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_in_another_environment_is_not_reached() {
    let ours = Node::builder().env(["staging"]).build();
    let addr = ours.listen("127.0.0.1:0").await.unwrap();
    let mut go = GoPeer::start(&["-env", "prod", "-join", &addr.to_string()]).await;
    let _echo = serve(ours.bind("db").unwrap(), Mode::Echo);
    go.wait_service("db.staging", 10).await;
    // The Go node dials "db" + ".prod": nobody announced that.
    let err = go.cmd("dial-echo db 10 1 1 1 2").await.unwrap_err();
    assert!(err["error"].as_str().unwrap().contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_of_ours_relays_between_two_go_nodes() {
    trace();
    let router = Node::builder().role(Role::Router).build();
    let addr = router.listen("127.0.0.1:0").await.unwrap().to_string();
    // Neither Go node listens, so neither advertises a direct address (FOLLOW): each
    // has exactly one link, to the router, and every stream is relayed.
    let mut a = GoPeer::start(&["-join", &addr]).await;
    let mut b = GoPeer::start(&["-join", &addr]).await;
    a.ok("serve ga echo").await;
    a.ok("serve gsink sink").await;
    b.wait_service("ga", 10).await;
    b.wait_service("gsink", 10).await;
    b.ok("dial-echo ga 1048576 1 1 1 60").await;
    b.ok("dial-echo ga 10000 100 1 200 60").await;
    within(120, "16 MiB relayed", b.cmd(&format!("dial-send gsink {} 5", 16 << 20))).await.unwrap();
    assert!(router.stats().bytes_in > 16 << 20, "the bytes went through the router");
    let routes = b.ok("routes").await;
    let hosts: Vec<&str> = routes["routes"].as_array().unwrap().iter().map(|r| r["host"].as_str().unwrap()).collect();
    assert_eq!(hosts, [router.host_id().to_string()], "B's only link is the router");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_router_relays_between_two_of_ours() {
    trace();
    let mut go = GoPeer::start(&["-role", "router", "-listen", "127.0.0.1:0"]).await;
    let addr = go.addr.unwrap();
    // One link each to the Go router (the Go router's fault with a second link between
    // the same hosts is not what is tested here); ours do not listen, so no direct link
    // is offered either.
    let a = Node::new();
    let b = Node::new();
    assert_eq!(within(10, "A joins", a.join(addr)).await.unwrap(), go.host);
    assert_eq!(within(10, "B joins", b.join(addr)).await.unwrap(), go.host);
    let _echo = serve(a.bind("ra").unwrap(), Mode::Echo);
    let a_host = a.host_id();
    wait_for("A's service through the Go router", 10, || {
        b.services().iter().any(|s| s.name == "ra" && s.addr.host == a_host && s.via == Some(go.host))
    })
    .await;
    echo_by_name(&b, "ra", 3 << 20, 7).await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let b = b.clone();
        tasks.push(tokio::spawn(async move { echo_by_name(&b, "ra", 5000, 1000 + i).await }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b.peers(), [go.host], "B reaches A only through the Go router");
    go.ok("services").await;
}

/// A Go server's streams accepted through our router end when the router loses the
/// dialer: Go's RESET only closes the streams it dialed, so the router also closes each
/// cut stream in the dialer's name (FIN2 + FIN1), and the Go handler's read returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_go_servers_streams_end_when_our_router_loses_the_dialer() {
    trace();
    let router = Node::builder().role(Role::Router).build();
    let addr = router.listen("127.0.0.1:0").await.unwrap();
    let mut go = GoPeer::start(&["-join", &addr.to_string()]).await;
    go.ok("serve held hold").await;
    let dialer = Node::new();
    dialer.join(addr).await.unwrap();
    wait_for("the Go service through the router", 10, || dialer.services().iter().any(|s| s.name == "held")).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut s = within(10, "dial the Go service", dialer.dial("held")).await.unwrap();
        s.write_all(b"some bytes").await.unwrap();
        streams.push(s);
    }
    wait_for("the relayed streams", 10, || router.stats().relayed_streams == 3).await;
    dialer.close();
    let mut ended = 0;
    within(10, "the Go handlers see their streams end", async {
        while ended < 3 {
            let ev = go.events().recv().await.expect("gopeer runs");
            if ev["event"] == "held-ended" {
                assert_eq!(ev["bytes"], 10, "{ev}");
                ended += 1;
            }
        }
    })
    .await;
    assert_eq!(router.stats().relayed_streams, 0);
}
