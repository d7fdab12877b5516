//! Links over TLS: encryption, mutual authentication by a mesh CA, host ids bound to
//! certificates, one port for TLS and (when allowed) plaintext peers.

mod common;

use astranet::proto::RstReason;
use astranet::{AccessPolicy, AccessRule, Error, HostId, Node, TlsConfig};
use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// (certificate PEM, key PEM) of a node with this host id.
    fn node(&self, host: u64, name: &str) -> (String, String) {
        let mut params = CertificateParams::new(vec![format!("{:016x}.host.astranet", host)]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn tls(&self, host: u64) -> TlsConfig {
        self.named(host, &format!("node-{host}"))
    }

    /// The identity of a node whose certificate's common name is `name`.
    fn named(&self, host: u64, name: &str) -> TlsConfig {
        let (cert, key) = self.node(host, name);
        TlsConfig::from_pem(self.cert.pem().as_bytes(), cert.as_bytes(), key.as_bytes()).unwrap()
    }
}

async fn secure_pair(ca: &Ca) -> (Node, Node) {
    tcp_pair_with(Node::builder().tls(ca.tls(0x1111)), Node::builder().tls(ca.tls(0x2222))).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_echo_and_256_mib_checksummed() {
    let ca = Ca::new("mesh");
    let (server, client) = secure_pair(&ca).await;
    assert_eq!(server.host_id(), HostId(0x1111), "the host id is the certificate's");
    // The joining side is up when join returns; the listening side a moment later.
    for _ in 0..200 {
        if !server.links().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(client.links()[0].secure && server.links()[0].secure);
    let listener = server.bind(":7").unwrap();
    let receiver = tokio::spawn(async move {
        let mut s = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 256 * 1024];
        let (mut total, mut sum) = (0usize, 0u64);
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            sum = buf[..n].iter().fold(sum, |a, &b| a.wrapping_mul(31).wrapping_add(b as u64));
            total += n;
        }
        s.write_all(b"done").await.unwrap();
        (total, sum)
    });
    let mut c = within(10, client.dial(astranet::Addr::new(server.host_id(), 7))).await.unwrap();
    let chunk: Vec<u8> = (0..256 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let mut sum = 0u64;
    for _ in 0..1024 {
        sum = chunk.iter().fold(sum, |a, &b| a.wrapping_mul(31).wrapping_add(b as u64));
        c.write_all(&chunk).await.unwrap();
    }
    c.shutdown().await.unwrap();
    let mut done = Vec::new();
    within(60, c.read_to_end(&mut done)).await.unwrap();
    assert_eq!(done, b"done");
    assert_eq!(within(60, receiver).await.unwrap(), (256 << 20, sum));
}

#[tokio::test]
async fn a_peer_of_another_ca_is_refused_before_it_learns_anything() {
    let (mesh, other) = (Ca::new("mesh"), Ca::new("intruders"));
    let server = Node::builder().tls(mesh.tls(0x1111)).build();
    server.bind("secret-service").unwrap();
    let addr = server.listen("127.0.0.1:0").await.unwrap();
    let intruder = Node::builder().tls(other.tls(0x3333)).handshake_timeout(Duration::from_secs(2)).build();
    let err = within(10, intruder.join(addr)).await.unwrap_err();
    assert!(matches!(err, Error::Io(_) | Error::LinkClosed { .. } | Error::TimedOut { .. }), "{err}");
    assert!(intruder.services().is_empty() && intruder.links().is_empty());
    assert!(server.links().is_empty());
}

/// A hand-driven TLS peer certified as `certified` that sends a HANDSHAKE saying it
/// is `claimed`.
async fn raw_tls_peer(
    addr: std::net::SocketAddr,
    ca: &Ca,
    certified: u64,
    claimed: u64,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let (cert, key) = ca.node(certified, "raw");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(rustls_pki_types::CertificateDer::from(ca.cert.der().to_vec())).unwrap();
    let chain = vec![rustls_pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(Arc::new(roots))
        .with_client_auth_cert(chain, key)
        .unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("0000000000001111.host.astranet").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg)).connect(name, tcp).await.unwrap();
    let payload = astranet::proto::Handshake::ours("127.0.0.1:1".into()).encode();
    let mut frame = Vec::new();
    astranet::proto::Header {
        cmd: astranet::proto::Command::Handshake,
        dst_host: 0,
        src_host: claimed,
        dst_port: 0,
        src_port: 0,
        len: payload.len() as u32,
    }
    .put(&mut frame);
    frame.extend_from_slice(&payload);
    tls.write_all(&frame).await.unwrap();
    tls
}

#[tokio::test]
async fn a_peer_claiming_another_host_id_is_refused() {
    let ca = Ca::new("mesh");
    let server = Node::builder().tls(ca.tls(0x1111)).build();
    let addr = server.listen("127.0.0.1:0").await.unwrap();
    // The honest peer's link comes up...
    let _honest = raw_tls_peer(addr, &ca, 0x4444, 0x4444).await;
    for _ in 0..100 {
        if server.peers() == [HostId(0x4444)] {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server.peers(), [HostId(0x4444)]);
    // ...the one certified as 0x6666 that says it is 0x5555 is closed, never up.
    let mut liar = raw_tls_peer(addr, &ca, 0x6666, 0x5555).await;
    let mut sink = Vec::new();
    let _ = within(10, liar.read_to_end(&mut sink)).await;
    assert_eq!(server.peers(), [HostId(0x4444)]);
}

#[tokio::test]
async fn plaintext_peers_are_refused_unless_allowed() {
    let ca = Ca::new("mesh");
    let strict = Node::builder().tls(ca.tls(0x1111)).build();
    let addr = strict.listen("127.0.0.1:0").await.unwrap();
    let plain = Node::builder().handshake_timeout(Duration::from_millis(500)).build();
    assert!(within(10, plain.join(addr)).await.is_err());
    assert!(strict.links().is_empty());

    let open = Node::builder().tls(ca.tls(0x2222).allow_plaintext(true)).build();
    let addr = open.listen("127.0.0.1:0").await.unwrap();
    let peer = within(10, plain.join(addr)).await.unwrap();
    assert_eq!(peer, open.host_id());
    for _ in 0..200 {
        if !open.links().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let links = open.links();
    assert!(links.len() == 1 && !links[0].secure, "{links:?}");
}

#[tokio::test]
async fn a_connection_that_never_completes_tls_is_closed_by_the_handshake_timeout() {
    let ca = Ca::new("mesh");
    let node = Node::builder().tls(ca.tls(0x1111)).handshake_timeout(Duration::from_millis(300)).build();
    let addr = node.listen("127.0.0.1:0").await.unwrap();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(&[0x16]).await.unwrap(); // a TLS record begins, and stalls
    let started = std::time::Instant::now();
    let mut sink = Vec::new();
    let _ = within(5, slow.read_to_end(&mut sink)).await;
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_host_id_other_than_the_certificates_is_refused() {
    let ca = Ca::new("mesh");
    let err = Node::builder().tls(ca.tls(0x1111)).host_id(HostId(0x2222)).try_build().unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
    let err = TlsConfig::from_pem(ca.cert.pem().as_bytes(), b"not pem", b"").unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
}

#[tokio::test]
async fn the_access_policy_decides_who_joins_announces_and_dials() {
    let ca = Ca::new("mesh");
    let policy = AccessPolicy::new().allow(AccessRule::peers("web-*").may_announce("web-*").may_dial("db"));
    let server = Node::builder().tls(ca.named(0x1111, "db-server")).access(policy).build();
    let addr = server.listen("127.0.0.1:0").await.unwrap();
    let db = server.bind("db").unwrap();
    let _secret = server.bind("secret").unwrap();
    tokio::spawn(async move {
        while let Ok(mut s) = db.accept().await {
            let _ = s.write_all(b"db here").await;
        }
    });

    // No rule names "intruder-1": certified by the mesh CA, still refused.
    let intruder =
        Node::builder().tls(ca.named(0x3333, "intruder-1")).handshake_timeout(Duration::from_secs(2)).build();
    assert!(within(10, intruder.join(addr)).await.is_err());

    let web = Node::builder().tls(ca.named(0x2222, "web-1")).build();
    within(10, web.join(addr)).await.unwrap();
    // It may dial "db"...
    let mut c = within(10, web.dial("db")).await.unwrap();
    let mut hello = [0u8; 7];
    within(10, c.read_exact(&mut hello)).await.unwrap();
    assert_eq!(&hello, b"db here");
    // ...not "secret": refused with its own reason, at once.
    let err = within(10, web.dial("secret")).await.unwrap_err();
    assert!(matches!(err, Error::Refused { reason: RstReason::Forbidden, .. }), "{err}");

    // Its announcements: "web-a" is stored, "evil" dropped.
    let _a = web.bind("web-a").unwrap();
    let _evil = web.bind("evil").unwrap();
    let mut watch = server.watch_services();
    within(10, watch.wait_for(Duration::from_secs(5), |s| s.iter().any(|s| s.name == "web-a"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(server.services().iter().all(|s| s.name != "evil"), "{:?}", server.services());
}

#[test]
fn an_access_policy_needs_tls() {
    let err = Node::builder().access(AccessPolicy::new()).try_build().unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)), "{err}");
}

/// A router between a client and a service host; `relay` says whether the host's and
/// the client's rules let the router speak for other hosts.
async fn through_a_router(relay: bool, client_policy: bool) -> (Node, Node, Node) {
    let ca = Ca::new("mesh");
    let rule = |r: AccessRule| if relay { r.may_relay() } else { r };
    let router = Node::builder().tls(ca.named(0x1000, "router-1")).role(astranet::Role::Router).build();
    let addr = router.listen("127.0.0.1:0").await.unwrap();
    let server_policy = AccessPolicy::new().allow(rule(AccessRule::peers("router-*").may_dial("db").may_announce("*")));
    let server = Node::builder().tls(ca.named(0x2000, "db-1")).access(server_policy).build();
    let policy = AccessPolicy::new().allow(rule(AccessRule::peers("router-*").may_announce("*")));
    let mut client = Node::builder().tls(ca.named(0x3000, "app-1")).role(astranet::Role::Client);
    if client_policy {
        client = client.access(policy);
    }
    let client = client.build();
    within(10, server.join(addr)).await.unwrap();
    within(10, client.join(addr)).await.unwrap();
    let db = server.bind("db").unwrap();
    tokio::spawn(async move {
        while let Ok(mut s) = db.accept().await {
            let _ = s.write_all(b"db here").await;
        }
    });
    (router, server, client)
}

#[tokio::test]
async fn only_peers_allowed_to_relay_speak_for_other_hosts() {
    // Without may_relay: the client drops the router's announcement of the server's
    // "db"...
    let (router, _server, client) = through_a_router(false, true).await;
    let mut watch = router.watch_services();
    within(10, watch.wait_for(Duration::from_secs(5), |s| s.iter().any(|s| s.name == "db"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(client.services().iter().all(|s| s.name != "db"), "{:?}", client.services());
    // ...and the server refuses a DIAL the router relays from another host.
    let (_router, _server, client) = through_a_router(false, false).await;
    let err = within(10, client.dial("db")).await.unwrap_err();
    assert!(matches!(err, Error::Refused { reason: RstReason::Forbidden, .. }), "{err}");

    // With may_relay: both go through.
    let (_router, _server, client) = through_a_router(true, true).await;
    let mut c = within(10, client.dial("db")).await.unwrap();
    let mut hello = [0u8; 7];
    within(10, c.read_exact(&mut hello)).await.unwrap();
    assert_eq!(&hello, b"db here");
}
