//! astranet: two nodes joined by one loopback TCP link; streams are dialed from one node
//! to a listener on the other. The same over TLS, and through one relay hop: both
//! nodes joined to a router, which forwards every frame.

use std::io;
use std::net::SocketAddr;

use astranet::{Addr, Listener, Node, Role, Target};

use crate::pair::{Kind, Transport};

/// Far above any level the benchmark asks for (10M with `--streams-10m`, plus a batch).
const MAX_STREAMS: usize = 20_000_000;
/// Lets a whole batch of dials wait for `accept` without being refused.
const BACKLOG: usize = 1_000_000;

pub struct Astranet;

pub struct Server {
    // Held so that the node, and its end of the link, live as long as the listener.
    _node: Node,
    listener: Listener,
}

pub struct Client {
    node: Node,
    target: Addr,
}

fn node() -> Node {
    builder().build()
}

fn builder() -> astranet::NodeBuilder {
    Node::builder().max_streams_per_link(MAX_STREAMS).listener_backlog(BACKLOG)
}

/// The TLS identities of the two nodes: a mesh CA made for the run, and a certificate
/// for each (ECDSA P-256, as `astranet keys` makes them).
fn tls_identities() -> io::Result<(astranet::TlsConfig, astranet::TlsConfig)> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let fail = |e: rcgen::Error| io::Error::other(e.to_string());
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let node = |host: u64| -> io::Result<astranet::TlsConfig> {
        let params = CertificateParams::new(vec![astranet::tls::host_name(astranet::HostId(host))]).map_err(fail)?;
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &ca_cert, &ca_key).map_err(fail)?;
        astranet::TlsConfig::from_pem(ca_cert.pem().as_bytes(), cert.pem().as_bytes(), key.serialize_pem().as_bytes())
            .map_err(io::Error::other)
    };
    Ok((node(0x5e5e)?, node(0xc1c1)?))
}

/// [`Astranet`] with both nodes on TLS.
pub struct AstranetTls;

impl Transport for AstranetTls {
    const KIND: Kind = Kind::Tls;
    type Stream = astranet::Stream;
    /// As [`Astranet`]'s, and the client's identity.
    type Address = (SocketAddr, Addr, astranet::TlsConfig);
    type Server = Server;
    type Client = Client;

    async fn serve() -> io::Result<(Server, Self::Address)> {
        let (server_tls, client_tls) = tls_identities()?;
        let node = builder().tls(server_tls).build();
        let bound = node.listen("127.0.0.1:0").await.map_err(io::Error::other)?;
        let listener = node.bind("").map_err(io::Error::other)?;
        let target = Addr::new(node.host_id(), listener.local_addr().port);
        Ok((Server { _node: node, listener }, (bound, target, client_tls)))
    }

    async fn connect((bound, target, tls): Self::Address) -> io::Result<Client> {
        let node = builder().tls(tls).build();
        node.join(bound).await.map_err(io::Error::other)?;
        Ok(Client { node, target })
    }

    async fn open(client: &Client) -> io::Result<Self::Stream> {
        Astranet::open(client).await
    }

    async fn accept(server: &Server) -> io::Result<Self::Stream> {
        Astranet::accept(server).await
    }
}

impl Transport for Astranet {
    const KIND: Kind = Kind::Astranet;
    type Stream = astranet::Stream;
    /// The server node's TCP address to join, and its listener's stream address.
    type Address = (SocketAddr, Addr);
    type Server = Server;
    type Client = Client;

    async fn serve() -> io::Result<(Server, Self::Address)> {
        let node = node();
        let bound = node.listen("127.0.0.1:0").await.map_err(io::Error::other)?;
        let listener = node.bind("").map_err(io::Error::other)?;
        let target = Addr::new(node.host_id(), listener.local_addr().port);
        Ok((Server { _node: node, listener }, (bound, target)))
    }

    async fn connect((bound, target): Self::Address) -> io::Result<Client> {
        let node = node();
        node.join(bound).await.map_err(io::Error::other)?;
        Ok(Client { node, target })
    }

    async fn open(client: &Client) -> io::Result<Self::Stream> {
        client.node.dial(client.target).await.map_err(io::Error::other)
    }

    async fn accept(server: &Server) -> io::Result<Self::Stream> {
        server.listener.accept().await.map_err(io::Error::other)
    }
}

pub struct Relayed;

pub struct RelayedServer {
    _router: Node,
    _node: Node,
    listener: Listener,
}

pub struct RelayedClient {
    node: Node,
    target: Target,
}

impl Transport for Relayed {
    const KIND: Kind = Kind::Relayed;
    type Stream = astranet::Stream;
    /// The router's TCP address, and the name the listener is announced under.
    type Address = (SocketAddr, String);
    type Server = RelayedServer;
    type Client = RelayedClient;

    async fn serve() -> io::Result<(RelayedServer, Self::Address)> {
        let router = Node::builder().role(Role::Router).max_streams_per_link(MAX_STREAMS).build();
        let bound = router.listen("127.0.0.1:0").await.map_err(io::Error::other)?;
        let node = node();
        node.join(bound).await.map_err(io::Error::other)?;
        let name = format!("bench-{}", node.host_id());
        let listener = node.bind(&name).map_err(io::Error::other)?;
        Ok((RelayedServer { _router: router, _node: node, listener }, (bound, name)))
    }

    async fn connect((bound, name): Self::Address) -> io::Result<RelayedClient> {
        // A server-role node never links to the host directly: every frame goes
        // through the router.
        let node =
            Node::builder().role(Role::Server).max_streams_per_link(MAX_STREAMS).listener_backlog(BACKLOG).build();
        node.join(bound).await.map_err(io::Error::other)?;
        let mut watch = node.watch_services();
        watch
            .wait_for(std::time::Duration::from_secs(10), |s| s.iter().any(|s| s.name == name))
            .await
            .map_err(io::Error::other)?;
        Ok(RelayedClient { node, target: Target::name(name) })
    }

    async fn open(client: &RelayedClient) -> io::Result<Self::Stream> {
        client.node.dial(client.target.clone()).await.map_err(io::Error::other)
    }

    async fn accept(server: &RelayedServer) -> io::Result<Self::Stream> {
        server.listener.accept().await.map_err(io::Error::other)
    }
}
