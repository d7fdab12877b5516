//! Service discovery between nodes: named binds, announcements and their withdrawal,
//! environments, dial by name with random and consistent-hash selection.

mod common;

use astranet::proto::{Command, Header};
use astranet::{Addr, Error, Node, Reach, Role, Target};
use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn spawn_echo(listener: astranet::Listener) {
    tokio::spawn(async move {
        while let Ok(mut s) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
}

async fn echo_once(s: &mut astranet::Stream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut back = vec![0u8; msg.len()];
    within(5, s.read_exact(&mut back)).await.unwrap();
    assert_eq!(back, msg);
}

/// Waits until `node` lists `name` (with `present`) or fails the test.
async fn wait_service(node: &Node, name: &str, present: bool) {
    node.watch_services()
        .wait_for(Duration::from_secs(5), |services| services.iter().any(|s| s.name == name) == present)
        .await
        .unwrap_or_else(|e| panic!("{name} present={present}: {e}"));
}

#[tokio::test]
async fn bind_by_name_is_announced_and_dialable() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind("db").unwrap();
    assert_eq!(listener.name(), Some("db"));
    let addr = listener.local_addr();
    spawn_echo(listener);
    wait_service(&client, "db", true).await;
    let seen = client.services();
    assert_eq!(seen.len(), 1);
    assert_eq!((seen[0].addr, seen[0].via, seen[0].reach), (addr, Some(server.host_id()), Reach::Direct));
    assert_eq!(server.services()[0].reach, Reach::Local);
    let mut s = within(5, client.dial("db")).await.unwrap();
    assert_eq!(s.peer_addr(), addr);
    echo_once(&mut s, b"by name").await;
}

#[tokio::test]
async fn name_and_port_forms() {
    let (server, client) = tcp_pair().await;
    let fixed = server.bind("web:8080").unwrap();
    assert_eq!((fixed.name(), fixed.local_addr().port), (Some("web"), astranet::Port(8080)));
    let plain = server.bind(":9090").unwrap();
    assert_eq!(plain.name(), None);
    spawn_echo(fixed);
    wait_service(&client, "web", true).await;
    let mut s = within(5, client.dial("web")).await.unwrap();
    assert_eq!(s.peer_addr().port, 8080);
    echo_once(&mut s, b"x").await;
    assert!(matches!(server.bind(":"), Err(Error::InvalidTarget { .. })));
    assert!(matches!(server.bind(&"n".repeat(300)), Err(Error::InvalidTarget { .. })));
}

#[tokio::test]
async fn a_name_is_withdrawn_when_its_listener_closes_or_its_link_drops() {
    let (server, client) = tcp_pair().await;
    let listener = server.bind("tmp").unwrap();
    wait_service(&client, "tmp", true).await;
    drop(listener);
    wait_service(&client, "tmp", false).await;

    let _again = server.bind("tmp").unwrap();
    wait_service(&client, "tmp", true).await;
    server.close();
    wait_service(&client, "tmp", false).await;
}

#[tokio::test]
async fn dial_by_name_waits_for_the_name_to_appear() {
    let (server, client) = tcp_pair().await;
    let dial = tokio::spawn({
        let client = client.clone();
        async move { client.dial_timeout("late", Duration::from_secs(5)).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    spawn_echo(server.bind("late").unwrap());
    let mut s = within(10, dial).await.unwrap().unwrap();
    echo_once(&mut s, b"finally").await;
}

#[tokio::test]
async fn dial_to_a_name_nobody_binds_fails_naming_it() {
    let (_server, client) = tcp_pair().await;
    let err = within(5, client.dial_timeout("nobody", Duration::from_millis(200))).await.unwrap_err();
    assert!(matches!(&err, Error::NoSuchService { name, .. } if name == "nobody"), "{err}");
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    assert!(err.to_string().contains("nobody"));
}

#[tokio::test]
async fn environments_isolate_names() {
    let (prod_server, prod_client) = tcp_pair_with(Node::builder().env(["prod"]), Node::builder().env(["prod"])).await;
    let dev_client = Node::builder().env(["dev"]).build();
    let addr = prod_server.listen("127.0.0.1:0").await.unwrap();
    dev_client.join(addr).await.unwrap();
    let listener = prod_server.bind("db").unwrap();
    assert_eq!(listener.name(), Some("db.prod"));
    spawn_echo(listener);
    wait_service(&prod_client, "db.prod", true).await;
    wait_service(&dev_client, "db.prod", true).await;
    let mut s = within(5, prod_client.dial("db")).await.unwrap();
    echo_once(&mut s, b"prod").await;
    let err = within(5, dev_client.dial_timeout("db", Duration::from_millis(200))).await.unwrap_err();
    assert!(matches!(&err, Error::NoSuchService { name, .. } if name == "db.dev"), "{err}");
    // A name announced on another port than the one asked for.
    let err = within(5, prod_client.dial_timeout("db:80", Duration::from_millis(200))).await.unwrap_err();
    assert!(matches!(&err, Error::NoSuchService { name, port: Some(80), .. } if name == "db.prod"), "{err}");
    assert!(err.to_string().starts_with("no such service \"db.prod\" on port 80 ("), "{err}");
}

#[tokio::test]
async fn a_client_role_announces_nothing() {
    let (client_role, other) = tcp_pair_with(Node::builder().role(Role::Client), Node::builder()).await;
    let _l = client_role.bind("quiet").unwrap();
    spawn_echo(other.bind("loud").unwrap());
    wait_service(&client_role, "loud", true).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(other.services().iter().all(|s| s.name != "quiet"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consistent_hashing_agrees_between_clients() {
    let servers: Vec<Node> = (0..3).map(|_| Node::new()).collect();
    let clients = [Node::new(), Node::new()];
    for server in &servers {
        let addr = server.listen("127.0.0.1:0").await.unwrap();
        for client in &clients {
            client.join(addr).await.unwrap();
        }
        spawn_echo(server.bind("shard").unwrap());
    }
    for client in &clients {
        within(5, async {
            while client.services().len() < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }
    let mut used = std::collections::HashSet::new();
    for k in 0..30 {
        let target = Target::name("shard").with_key(format!("user-{k}"));
        let a = within(5, clients[0].dial(target.clone())).await.unwrap().peer_addr();
        let b = within(5, clients[1].dial(target)).await.unwrap().peer_addr();
        assert_eq!(a, b, "key user-{k}");
        used.insert(a);
    }
    assert!(used.len() > 1, "keys spread over instances");
    // Without a key, instances are picked at random.
    let mut random = std::collections::HashSet::new();
    for _ in 0..30 {
        random.insert(within(5, clients[0].dial("shard")).await.unwrap().peer_addr());
    }
    assert!(random.len() > 1);
}

#[test]
fn go_target_forms() {
    assert_eq!(Target::from_go("", "db").unwrap(), Target::name("db"));
    assert_eq!(Target::from_go("registry://u1", "db").unwrap(), Target::name("db").with_key("registry://u1"));
    assert_eq!(Target::from_go("vport2registry", "db:u1").unwrap(), Target::name("db").with_key("u1"));
    assert!(Target::from_go("vport2registry", "db").is_err());
    let addr = Addr::new(astranet::HostId(0xabc), 7);
    assert_eq!(Target::from_go("", &addr.to_string()).unwrap(), Target::from(addr));
}

#[tokio::test]
async fn invalid_or_excess_announcements_are_dropped_and_the_link_stays() {
    let node = Node::builder().max_announcements_per_link(2).build();
    let addr = node.listen("127.0.0.1:0").await.unwrap();
    let (mut peer, _) = within(5, RawPeer::connect(addr, false)).await;
    let announce = |name: &[u8], port: u32| {
        let mut f = Vec::new();
        Header {
            cmd: Command::Service,
            dst_host: 0,
            src_host: 0x0BAD_F00D,
            dst_port: 0,
            src_port: port,
            len: name.len() as u32,
        }
        .put(&mut f);
        f.extend_from_slice(name);
        f
    };
    for (name, port) in [(&b""[..], 1), (&[b'n'; 300][..], 2), (&[0xff, 0xfe][..], 3)] {
        peer.send_raw(&announce(name, port)).await;
    }
    for port in 10..13 {
        peer.send_raw(&announce(format!("svc{port}").as_bytes(), port)).await;
    }
    within(5, async {
        while node.services().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let names: Vec<String> = node.services().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["svc10", "svc11"]);
    assert_eq!(node.stats().links, 1);
}

/// A and B each reach router R, not each other.
async fn relayed_mesh() -> (Node, Node, Node) {
    let router = Node::builder().role(Role::Router).build();
    let addr = router.listen("127.0.0.1:0").await.unwrap();
    let (a, b) = (Node::new(), Node::new());
    a.join(addr).await.unwrap();
    b.join(addr).await.unwrap();
    (a, router, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_router_relays_a_named_stream_between_nodes_that_only_reach_it() {
    let (a, router, b) = relayed_mesh().await;
    let listener = b.bind("db").unwrap();
    let addr = listener.local_addr();
    spawn_echo(listener);
    wait_service(&a, "db", true).await;
    let seen = a.services();
    assert_eq!((seen[0].addr, seen[0].via, seen[0].reach), (addr, Some(router.host_id()), Reach::Relayed));
    let routes = a.routes();
    assert!(routes.iter().any(|r| r.host == b.host_id() && r.via == router.host_id() && !r.direct), "{routes:?}");
    let mut s = within(5, a.dial("db")).await.unwrap();
    assert_eq!(s.peer_addr(), addr);
    echo_once(&mut s, b"through the router").await;
    // Flow control is end to end: more than a window each way through the relay.
    let big: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = tokio::io::split(s);
    let expected = big.clone();
    let writer = tokio::spawn(async move {
        w.write_all(&big).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut back = Vec::new();
    within(20, r.read_to_end(&mut back)).await.unwrap();
    writer.await.unwrap();
    assert_eq!(back, expected);
    // A dial by address to B goes through R too.
    let mut s = within(5, a.dial(addr)).await.unwrap_or_else(|e| panic!("{e}"));
    echo_once(&mut s, b"by address").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_one_side_of_a_relayed_stream_fails_the_other_side() {
    let (a, _router, b) = relayed_mesh().await;
    let listener = b.bind("svc").unwrap();
    wait_service(&a, "svc", true).await;
    let (c, s) = within(5, async { tokio::join!(a.dial("svc"), listener.accept()) }).await;
    let (mut c, _s) = (c.unwrap(), s.unwrap());
    echo_half(&mut c).await;
    b.close();
    let mut buf = [0u8; 16];
    let err = within(5, c.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted, "{err}");
    // The service hosted on the lost node is withdrawn everywhere.
    wait_service(&a, "svc", false).await;
}

/// Writes on the stream without waiting for anything back (the peer does not echo).
async fn echo_half(s: &mut astranet::Stream) {
    s.write_all(b"hello").await.unwrap();
}

#[tokio::test]
async fn a_frame_for_an_unknown_host_is_dropped_and_counted() {
    let node = Node::new();
    let addr = node.listen("127.0.0.1:0").await.unwrap();
    let (mut peer, _) = within(5, RawPeer::connect(addr, true)).await;
    let before = node.stats().frames_dropped;
    let h = Header { cmd: Command::Dial, dst_host: 0x7777, src_host: peer.host, dst_port: 1, src_port: 2, len: 0 };
    peer.send(h, &[]).await;
    within(5, async {
        while node.stats().frames_dropped == before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(node.stats().links, 1);
}

#[tokio::test]
async fn the_change_feed_reports_appearance_and_withdrawal() {
    let (server, client) = tcp_pair().await;
    let mut watch = client.watch_services();
    let listener = server.bind("feed").unwrap();
    let now = within(5, watch.changed()).await.unwrap();
    assert_eq!(now.len(), 1);
    drop(listener);
    let now = within(5, watch.changed()).await.unwrap();
    assert!(now.is_empty());
    let err = watch.wait_for(Duration::from_millis(100), |s| !s.is_empty()).await.unwrap_err();
    assert!(matches!(err, Error::TimedOut { .. }));
}

#[tokio::test]
async fn join_keeps_one_link_per_address() {
    let server = Node::new();
    let port = server.listen("0.0.0.0:0").await.unwrap().port();
    let client = Node::new();
    let addrs: Vec<std::net::SocketAddr> =
        ["127.0.0.1", "127.0.0.2"].iter().map(|ip| format!("{ip}:{port}").parse().unwrap()).collect();
    assert_eq!(within(5, client.join_all(addrs.clone())).await.unwrap(), server.host_id());
    assert_eq!(client.stats().links, 2);
    // Joining again adds nothing.
    assert_eq!(within(5, client.join_all(addrs)).await.unwrap(), server.host_id());
    assert_eq!(client.stats().links, 2);
    // An unreachable address next to a reachable one: joined, the other is retried.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let other = Node::new();
    let good: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    assert_eq!(within(5, other.join_all([closed, good])).await.unwrap(), server.host_id());
    // Only unreachable addresses: the error of the attempt.
    let err = within(5, Node::new().join_all([closed])).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
}

/// A join given up (its future dropped: a timeout) leaves nothing behind: joining the
/// address again tries again, and succeeds once something answers there.
#[tokio::test]
async fn a_join_given_up_can_be_joined_again() {
    // A TCP listener that accepts and never answers the handshake.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
            if held.len() == 2 {
                return held; // closes the listener: the address is free again
            }
        }
        held
    });
    let client = Node::new();
    for _ in 0..2 {
        let given_up = tokio::time::timeout(Duration::from_millis(200), client.join_all([addr])).await;
        assert!(given_up.is_err(), "the join should still be trying: {given_up:?}");
    }
    drop(within(5, held).await.unwrap());
    // A node now listens there: the address joins.
    let server = Node::new();
    let mut bound = server.listen(addr).await;
    for _ in 0..50 {
        if bound.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        bound = server.listen(addr).await;
    }
    bound.unwrap();
    assert_eq!(within(5, client.join_all([addr])).await.unwrap(), server.host_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_host_is_joined_directly_and_new_streams_go_direct() {
    let router = Node::builder().role(Role::Router).build();
    let raddr = router.listen("127.0.0.1:0").await.unwrap();
    // A only dials (Client role); B can be joined directly but has not said so yet.
    let (a, b) = (Node::builder().role(Role::Client).build(), Node::new());
    b.join(raddr).await.unwrap();
    let listener = b.bind("db").unwrap();
    spawn_echo(listener);
    a.join(raddr).await.unwrap();
    wait_service(&a, "db", true).await;
    // A stream opened while the only way to B is the router.
    let mut relayed = within(5, a.dial("db")).await.unwrap();
    echo_once(&mut relayed, b"before").await;
    // B starts accepting links: A, which asked for B's addresses (DISCOVER) when it
    // first heard of "db", is told the new one (FOLLOW) and joins it directly.
    b.listen("127.0.0.1:0").await.unwrap();
    let mut watch = a.watch_services();
    let direct =
        watch.wait_for(Duration::from_secs(5), |s| s.iter().any(|s| s.name == "db" && s.reach == Reach::Direct)).await;
    assert!(direct.is_ok(), "A joined B directly: {:?}", a.services());
    assert!(a.routes().iter().any(|r| r.host == b.host_id() && r.direct));
    let relayed_before = router.stats().bytes_in;
    let mut s = within(5, a.dial("db")).await.unwrap();
    let big = vec![9u8; 1_000_000];
    let (mut r, mut w) = tokio::io::split(&mut s);
    let (wrote, back) = tokio::join!(
        async {
            w.write_all(&big).await.unwrap();
        },
        async {
            let mut back = vec![0u8; big.len()];
            within(10, r.read_exact(&mut back)).await.unwrap();
            back
        }
    );
    let () = wrote;
    assert_eq!(back, big);
    assert!(router.stats().bytes_in - relayed_before < 500_000, "the stream did not go through the router");
    // The stream opened through the router still works.
    echo_once(&mut relayed, b"after").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_role_stays_on_the_relay() {
    let router = Node::builder().role(Role::Router).build();
    let raddr = router.listen("127.0.0.1:0").await.unwrap();
    let a = Node::builder().role(Role::Server).build();
    let b = Node::new();
    b.listen("127.0.0.1:0").await.unwrap();
    b.join(raddr).await.unwrap();
    a.join(raddr).await.unwrap();
    spawn_echo(b.bind("db").unwrap());
    wait_service(&a, "db", true).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(a.services().iter().all(|s| s.reach == Reach::Relayed));
    let mut s = within(5, a.dial("db")).await.unwrap();
    echo_once(&mut s, b"via the router").await;
}

/// A dial given up through a router leaves the server's backlog at once: the retries
/// find room (each one's DIAL follows the previous one's RST through the relay).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_dial_given_up_leaves_the_backlog() {
    let router = Node::builder().role(Role::Router).build();
    let raddr = router.listen("127.0.0.1:0").await.unwrap();
    let (a, b) = (Node::new(), Node::builder().listener_backlog(1).build());
    a.join(raddr).await.unwrap();
    b.join(raddr).await.unwrap();
    let listener = b.bind("svc").unwrap();
    wait_service(&a, "svc", true).await;
    for _ in 0..3 {
        let err = within(5, a.dial_timeout("svc", Duration::from_millis(100))).await.unwrap_err();
        assert!(matches!(err, Error::TimedOut { .. }), "{err}");
    }
    within(5, async {
        while b.stats().pending_dials > 0 || router.stats().relayed_streams > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let dialing = tokio::spawn({
        let a = a.clone();
        async move { a.dial("svc").await }
    });
    let accepted = within(5, listener.accept()).await.unwrap();
    let dialed = within(5, dialing).await.unwrap().unwrap();
    assert_eq!(accepted.peer_addr(), dialed.local_addr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_limits_refuse_clearly_and_free_up_when_streams_close() {
    let router = Node::builder().role(Role::Router).max_relayed_streams_per_host(3).max_relayed_streams(5).build();
    let raddr = router.listen("127.0.0.1:0").await.unwrap();
    let (a, b, c) = (Node::new(), Node::new(), Node::new());
    for n in [&a, &b, &c] {
        n.join(raddr).await.unwrap();
    }
    spawn_echo(b.bind("svc").unwrap());
    wait_service(&a, "svc", true).await;
    wait_service(&c, "svc", true).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(within(5, a.dial("svc")).await.unwrap());
    }
    assert_eq!(router.stats().relayed_streams, 3);
    let err = within(5, a.dial("svc")).await.unwrap_err();
    assert!(matches!(err, Error::Refused { reason: astranet::proto::RstReason::RelayLimit, .. }), "{err}");
    assert!(err.to_string().contains("relay stream limit"), "{err}");
    // Another host has its own allowance, up to the total.
    held.push(within(5, c.dial("svc")).await.unwrap());
    held.push(within(5, c.dial("svc")).await.unwrap());
    assert!(matches!(within(5, c.dial("svc")).await, Err(Error::Refused { .. })), "total limit");
    // A stream closed on both sides frees its place.
    let mut s = held.remove(0);
    s.shutdown().await.unwrap();
    let mut rest = Vec::new();
    within(5, s.read_to_end(&mut rest)).await.unwrap();
    drop(s);
    within(5, async {
        while router.stats().relayed_streams > 4 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut again = within(5, a.dial("svc")).await.unwrap();
    echo_once(&mut again, b"room again").await;
}

#[tokio::test]
async fn a_follow_nobody_asked_for_is_ignored() {
    let node = Node::new();
    let addr = node.listen("127.0.0.1:0").await.unwrap();
    let bait = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    bait.set_nonblocking(true).unwrap();
    let (mut peer, _) = within(5, RawPeer::connect(addr, true)).await;
    let target = bait.local_addr().unwrap().to_string();
    let h = Header {
        cmd: Command::Follow,
        dst_host: node.host_id().0,
        src_host: 0x5151,
        dst_port: 0,
        src_port: 0,
        len: target.len() as u32,
    };
    peer.send(h, target.as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(bait.accept().map(|_| ()).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    assert_eq!(node.stats().links, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_dials_work_when_the_dialer_has_two_links_to_the_router() {
    let router = Node::builder().role(Role::Router).build();
    let port = router.listen("0.0.0.0:0").await.unwrap().port();
    let (a, b) = (Node::builder().role(Role::Server).build(), Node::new());
    let addrs: Vec<std::net::SocketAddr> =
        ["127.0.0.1", "127.0.0.2"].iter().map(|ip| format!("{ip}:{port}").parse().unwrap()).collect();
    a.join_all(addrs).await.unwrap();
    assert_eq!(a.stats().links, 2);
    b.join(format!("127.0.0.1:{port}")).await.unwrap();
    spawn_echo(b.bind("db").unwrap());
    wait_service(&a, "db", true).await;
    for i in 0..10 {
        let mut s = within(5, a.dial_timeout("db", Duration::from_secs(3))).await.unwrap();
        echo_once(&mut s, format!("try {i}").as_bytes()).await;
    }
}

#[tokio::test]
async fn a_relay_drops_frames_whose_source_is_not_the_neighbour() {
    let router = Node::builder().role(Role::Router).build();
    let addr = router.listen("127.0.0.1:0").await.unwrap();
    let b = Node::new();
    b.join(addr).await.unwrap();
    let (mut peer, _) = within(5, RawPeer::connect(addr, true)).await;
    let before = router.stats().frames_dropped;
    // Claims to come from another host.
    let h = Header { cmd: Command::Dial, dst_host: b.host_id().0, src_host: 0x7E57, dst_port: 1, src_port: 2, len: 0 };
    peer.send(h, &[]).await;
    within(5, async {
        while router.stats().frames_dropped == before {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(router.stats().relayed_streams, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_complete_relayed_response_survives_its_hosts_exit() {
    let (a, _router, b) = relayed_mesh().await;
    let listener = b.bind("once").unwrap();
    wait_service(&a, "once", true).await;
    let (c, s) = within(5, async { tokio::join!(a.dial("once"), listener.accept()) }).await;
    let (mut c, mut s) = (c.unwrap(), s.unwrap());
    s.write_all(b"last words").await.unwrap();
    s.shutdown().await.unwrap();
    drop(s);
    // Give the response time to pass the router, then make B vanish.
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.close();
    let mut got = Vec::new();
    within(5, c.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"last words");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn name_and_port_dials_the_instance_on_that_port() {
    let (s1, client) = tcp_pair().await;
    let s2 = Node::new();
    let addr = s2.listen("127.0.0.1:0").await.unwrap();
    client.join(addr).await.unwrap();
    spawn_echo(s1.bind("web:8080").unwrap());
    spawn_echo(s2.bind("web:9090").unwrap());
    within(5, async {
        while client.services().len() < 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    for _ in 0..10 {
        let s = within(5, client.dial("web:9090")).await.unwrap();
        assert_eq!(s.peer_addr(), Addr::new(s2.host_id(), 9090));
        let k = within(5, client.dial(Target::name("web").with_key("k1"))).await.unwrap();
        assert!([8080, 9090].contains(&k.peer_addr().port.0));
    }
    let keyed: Target = "web:8080".parse::<Target>().unwrap().with_key("k2");
    assert_eq!(within(5, client.dial(keyed)).await.unwrap().peer_addr(), Addr::new(s1.host_id(), 8080));
    let err = within(5, client.dial_timeout("web:7070", Duration::from_millis(200))).await.unwrap_err();
    assert!(matches!(err, Error::NoSuchService { .. }), "{err}");
}

/// Two Server nodes (they stay on the relay) joined to `router`.
async fn relayed_servers(router: &Node) -> (Node, Node) {
    let raddr = router.listen("127.0.0.1:0").await.unwrap();
    let (a, b) = (Node::builder().role(Role::Server).build(), Node::builder().role(Role::Server).build());
    a.join(raddr).await.unwrap();
    b.join(raddr).await.unwrap();
    (a, b)
}

/// Frames a router relays are bounded by their receivers' windows, not by the
/// control-queue limit: relayed bulk data piling up behind a busy writer must not be
/// taken for answers a peer refuses to read (which closed the router's links, and
/// every stream through them failed with "lost its route").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_bulk_data_does_not_count_as_unread_control_frames() {
    let router = Node::builder().role(Role::Router).max_control_queue(1024).link_write_queue(1).build();
    let (a, b) = relayed_servers(&router).await;
    let listener = b.bind("sink").unwrap();
    wait_service(&a, "sink", true).await;
    const STREAMS: usize = 20;
    const BYTES: usize = 2 << 20;
    let readers = tokio::spawn(async move {
        let mut total = 0;
        let mut tasks = Vec::new();
        for _ in 0..STREAMS {
            let mut s = listener.accept().await.unwrap();
            tasks.push(tokio::spawn(async move {
                let mut got = Vec::new();
                s.read_to_end(&mut got).await.map(|_| got.len())
            }));
        }
        for t in tasks {
            total += t.await.unwrap().unwrap();
        }
        total
    });
    let mut writers = Vec::new();
    for _ in 0..STREAMS {
        let mut s = within(5, a.dial("sink")).await.unwrap();
        writers.push(tokio::spawn(async move {
            s.write_all(&vec![7u8; BYTES]).await?;
            s.shutdown().await
        }));
    }
    for w in writers {
        within(60, w).await.unwrap().unwrap();
    }
    assert_eq!(within(60, readers).await.unwrap(), STREAMS * BYTES);
    assert_eq!(router.peers().len(), 2, "the router kept both links");
}

/// Per-stream flow control holds through a relay: a relayed stream whose reader
/// stopped fills only its own window, and the other streams through the router, and
/// the router's own, carry on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_reader_behind_a_relay_stalls_only_its_stream() {
    let router = Node::builder().role(Role::Router).build();
    let (a, b) = relayed_servers(&router).await;
    let stuck = b.bind("stuck").unwrap();
    spawn_echo(b.bind("echo").unwrap());
    spawn_echo(router.bind("local").unwrap());
    for name in ["stuck", "echo", "local"] {
        wait_service(&a, name, true).await;
    }
    let (c, s) = within(5, async { tokio::join!(a.dial("stuck"), stuck.accept()) }).await;
    let (mut c, _never_read) = (c.unwrap(), s.unwrap());
    let filler = tokio::spawn(async move { c.write_all(&vec![1u8; 8 << 20]).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!filler.is_finished(), "the stuck stream's window is full");
    for name in ["echo", "local"] {
        let mut s = within(5, a.dial(name)).await.unwrap();
        within(5, echo_once(&mut s, b"still flowing")).await;
    }
    filler.abort();
}

#[tokio::test]
async fn announcements_of_one_host_are_capped() {
    let (router, node) =
        tcp_pair_with(Node::builder().role(Role::Router).max_announcements_per_host(3), Node::builder()).await;
    let _held: Vec<_> = (0..5).map(|i| node.bind(&format!("svc{i}")).unwrap()).collect();
    wait_service(&router, "svc2", true).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stored = router.services().iter().filter(|s| s.addr.host == node.host_id()).count();
    assert_eq!(stored, 3, "{:?}", router.services());
}

/// Waits (up to 5 s) until `f` holds.
async fn until(mut f: impl FnMut() -> bool) {
    within(5, async {
        while !f() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// One host with two links to a router dials a service behind it over each link: the
/// router answers each stream on the link it came from, and losing one link cuts only
/// the stream that went through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_answers_each_stream_on_its_own_link() {
    let router = Node::builder().role(Role::Router).build();
    let addr = router.listen("127.0.0.1:0").await.unwrap();
    let b = Node::new();
    b.join(addr).await.unwrap();
    let listener = b.bind("db").unwrap();
    let port = listener.local_addr().port.0;
    let (mut one, _) = within(5, RawPeer::connect(addr, true)).await;
    let (mut two, _) = within(5, RawPeer::connect(addr, true)).await;
    until(|| router.stats().links == 3).await;
    one.dial(b.host_id(), port, 10).await;
    let mut first = within(5, listener.accept()).await.unwrap();
    two.dial(b.host_id(), port, 11).await;
    let mut second = within(5, listener.accept()).await.unwrap();
    one.complete(b.host_id(), port, 10).await;
    two.complete(b.host_id(), port, 11).await;

    drop(two);
    let mut buf = [0u8; 8];
    let err = within(5, second.read(&mut buf)).await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted, "{err}");
    // The stream over the link that stayed carries on.
    one.send(one.stream_header(Command::Data, b.host_id(), port, 10, 5), b"still").await;
    within(5, first.read_exact(&mut buf[..5])).await.unwrap();
    assert_eq!(&buf[..5], b"still");
}

/// A dialer behind a relay goes away while its DIAL waits in a listener's backlog: the
/// relay's RESET drops the DIAL, which no longer counts against the link's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_reset_drops_the_lost_hosts_backlogged_dials() {
    let router = Node::builder().role(Role::Router).build();
    let addr = router.listen("127.0.0.1:0").await.unwrap();
    let b = Node::new();
    b.join(addr).await.unwrap();
    let listener = b.bind("slow").unwrap();
    let port = listener.local_addr().port.0;
    let (mut peer, _) = within(5, RawPeer::connect(addr, true)).await;
    until(|| router.stats().links == 2).await;
    for my_port in 10..13 {
        peer.dial(b.host_id(), port, my_port).await;
    }
    until(|| b.stats().pending_dials == 3).await;
    drop(peer);
    until(|| b.stats().pending_dials == 0).await;
    // Nothing is left to accept: a later dial is the first in line.
    let a = Node::new();
    a.join(addr).await.unwrap();
    let (c, s) = within(5, async { tokio::join!(a.dial("slow"), listener.accept()) }).await;
    assert_eq!(s.unwrap().peer_addr(), c.unwrap().local_addr());
}

/// A relayed host that names several addresses (FOLLOW) gets one direct link, not one
/// per address: they are tried one after another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_with_several_addresses_is_joined_once() {
    let router = Node::builder().role(Role::Router).build();
    let raddr = router.listen("127.0.0.1:0").await.unwrap();
    let (a, b) = (Node::builder().role(Role::Client).build(), Node::new());
    for ip in ["127.0.0.1", "127.0.0.2", "127.0.0.3"] {
        b.listen(format!("{ip}:0")).await.unwrap();
    }
    b.join(raddr).await.unwrap();
    spawn_echo(b.bind("db").unwrap());
    a.join(raddr).await.unwrap();
    let mut watch = a.watch_services();
    let direct =
        watch.wait_for(Duration::from_secs(5), |s| s.iter().any(|s| s.name == "db" && s.reach == Reach::Direct)).await;
    assert!(direct.is_ok(), "A joined B directly: {:?}", a.services());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let to_b = a.links().iter().filter(|l| l.peer == b.host_id()).count();
    assert_eq!(to_b, 1, "{:?}", a.links());
    let mut s = within(5, a.dial("db")).await.unwrap();
    echo_once(&mut s, b"direct").await;
}

/// Joining a target again starts no new task: one task per node re-resolves every
/// joined name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joining_a_target_again_starts_nothing_new() {
    let server = Node::new();
    let addr = server.listen("127.0.0.1:0").await.unwrap();
    let client = Node::new();
    let target = format!("127.0.0.1:{}", addr.port());
    client.join(target.clone()).await.unwrap();
    let metrics = tokio::runtime::Handle::current().metrics();
    let before = metrics.num_alive_tasks();
    for _ in 0..50 {
        assert_eq!(client.join(target.clone()).await.unwrap(), server.host_id());
    }
    let after = metrics.num_alive_tasks();
    assert!(after < before + 5, "{before} tasks before, {after} after 50 joins");
    assert_eq!(client.stats().links, 1);
}

/// A TCP proxy whose connections can be cut with a reset, as a failing network or a
/// rebooted middlebox does; it keeps accepting new ones.
struct Proxy {
    addr: std::net::SocketAddr,
    cut: tokio::sync::broadcast::Sender<()>,
}

impl Proxy {
    async fn to(upstream: std::net::SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut, _) = tokio::sync::broadcast::channel(4);
        let cuts = cut.clone();
        tokio::spawn(async move {
            while let Ok((mut down, _)) = listener.accept().await {
                let mut cut = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut up) = tokio::net::TcpStream::connect(upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut down, &mut up) => {}
                        _ = cut.recv() => {
                            // Linger 0: closing sends RST, both ends see an error.
                            let _ = down.set_zero_linger();
                            let _ = up.set_zero_linger();
                        }
                    }
                });
            }
        });
        Proxy { addr, cut }
    }

    fn cut(&self) {
        let _ = self.cut.send(());
    }
}

/// The TCP connection of a link is reset: its streams fail with "link closed" at once
/// (not after the keep-alive), the join re-dials, and dials by name made meanwhile go
/// over the new link as soon as it is up. Streams do not move to the new link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_link_fails_its_streams_at_once_and_new_dials_use_the_new_link() {
    let server = Node::new();
    let proxy = Proxy::to(server.listen("127.0.0.1:0").await.unwrap()).await;
    let client = Node::builder().max_reconnect_delay(Duration::from_millis(200)).build();
    client.join(proxy.addr).await.unwrap();
    spawn_echo(server.bind("db").unwrap());
    wait_service(&client, "db", true).await;
    let first_link = client.links()[0].id;
    let mut streams = Vec::new();
    for i in 0..10 {
        let mut s = within(5, client.dial("db")).await.unwrap();
        echo_once(&mut s, format!("before {i}").as_bytes()).await;
        streams.push(s);
    }

    proxy.cut();
    let started = std::time::Instant::now();
    for s in &mut streams {
        let mut buf = [0u8; 8];
        let err = within(5, s.read(&mut buf)).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionAborted, "{err}");
    }
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    // A dial by name waits for the name to come back with the new link.
    let mut s = within(10, client.dial_timeout("db", Duration::from_secs(8))).await.unwrap();
    echo_once(&mut s, b"after").await;
    let links = client.links();
    assert_eq!(links.len(), 1);
    assert_ne!(links[0].id, first_link, "the stream went over the new link");
}

/// A router's long-lived link carries a lot of relayed traffic: its read buffers stay
/// few. (Buffers that the frame decoder once re-allocated for the rest of a frame were
/// too small to be reused and piled up for the link's lifetime: 0.6 MB per 10 MB
/// relayed.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaying_keeps_a_links_read_buffers_few() {
    let (a, router, b) = relayed_mesh().await;
    spawn_echo(b.bind("db").unwrap());
    wait_service(&a, "db", true).await;
    for round in 0..5u8 {
        let mut tasks = Vec::new();
        for i in 0..20u8 {
            let a = a.clone();
            tasks.push(tokio::spawn(async move {
                let data = vec![round ^ i; 512 * 1024];
                let mut s = within(10, a.dial("db")).await.unwrap();
                let (mut r, mut w) = tokio::io::split(&mut s);
                let (_, back) = tokio::join!(
                    async {
                        w.write_all(&data).await.unwrap();
                        w.shutdown().await.unwrap();
                    },
                    async {
                        let mut back = Vec::new();
                        r.read_to_end(&mut back).await.unwrap();
                        back
                    }
                );
                assert!(back == data);
            }));
        }
        for t in tasks {
            within(30, t).await.unwrap();
        }
    }
    let to_b = router.links().into_iter().find(|l| l.peer == b.host_id()).unwrap();
    assert!(to_b.read_buffers <= 6 * 256 * 1024, "{} bytes of read buffers after 100 MiB relayed", to_b.read_buffers);
}

/// An attach given up (its future dropped: a timeout) closes its link and the pipe: the
/// other end reads end of file, as a socket's peer would.
#[tokio::test]
async fn an_attach_given_up_closes_its_pipe() {
    let node = Node::new();
    let (ours, mut silent) = tokio::io::duplex(64 * 1024);
    let given_up = tokio::time::timeout(Duration::from_millis(200), node.attach(ours)).await;
    assert!(given_up.is_err(), "nobody answered, yet: {given_up:?}");
    // The HANDSHAKE the link sent, then the end.
    let mut got = Vec::new();
    within(5, silent.read_to_end(&mut got)).await.unwrap();
    assert!(!got.is_empty(), "the link's HANDSHAKE was sent");
    assert!(node.peers().is_empty());
}
