//! The node: an astranet instance with its host id, links, listeners and ports.

use crate::addr::{Addr, HostId};
use crate::config::{Config, NodeBuilder};
use crate::error::{Error, Result};
use crate::link::sink::Sink;
use crate::link::stream_ops::OpenError;
use crate::link::table::Key;
use crate::link::{CloseReason, Link};
use crate::listener::{Listener, ListenerShared};
use crate::registry::{self, Registry, RouteInfo, Selector, ServiceInfo};
use crate::relay::{Pair, RelayTable};
use crate::stats::{Counters, Stats};
use crate::stream::Stream;
use hashbrown::{HashMap, HashSet};
use parking_lot::{Mutex, RwLock};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Automatic ports (dials and `bind("")`) count up from here, as in the Go package, so
/// they never collide with the small fixed ports applications choose.
const FIRST_AUTO_PORT: u32 = (1 << 24) + 1;

/// Where to dial: a virtual address, or a service name (with an optional key for
/// consistent hashing).
///
/// Anything that converts with [`IntoTarget`] is accepted by [`Node::dial`]: an
/// [`Addr`], a `Target`, or a string — `"<16 hex digits>:<port>"` is an address,
/// `"name:port"` the instance of a service listening on that port, anything else a
/// service name (the node's environment suffix is appended to names).
///
/// ```
/// use astranet::Target;
/// let by_name = Target::name("db");
/// let sticky = Target::name("sessions").with_key("user-42");
/// // The Go package's forms: a `registry://` network hashes on the network string,
/// // `vport2registry` on the "port" part of "name:key".
/// let go1 = Target::from_go("registry://user-42", "sessions").unwrap();
/// let go2 = Target::from_go("vport2registry", "sessions:user-42").unwrap();
/// assert_eq!(go2, Target::name("sessions").with_key("user-42"));
/// # let _ = (by_name, sticky, go1);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target(TargetKind);

#[derive(Clone, Debug, PartialEq, Eq)]
enum TargetKind {
    Addr(Addr),
    /// A service name, and optionally the port its instance listens on.
    Name {
        name: String,
        selector: Selector,
        port: Option<u32>,
    },
}

impl Target {
    /// A service name; each dial picks one of its instances at random.
    pub fn name(name: impl Into<String>) -> Target {
        Target(TargetKind::Name { name: name.into(), selector: Selector::Random, port: None })
    }

    /// Picks the instance by consistent hashing on `key`: every node maps the same key
    /// to the same instance (while the set of instances is the same). No effect on an
    /// address.
    pub fn with_key(self, key: impl Into<String>) -> Target {
        match self.0 {
            TargetKind::Name { name, port, .. } => {
                Target(TargetKind::Name { name, selector: Selector::Key(key.into()), port })
            }
            addr => Target(addr),
        }
    }

    /// The Go package's `Dial(network, address)` arguments: a `registry://…` network
    /// hashes on the network string, `vport2registry` reads `address` as `name:key`,
    /// any other network dials `address` as [`Target`]'s `FromStr` reads it.
    pub fn from_go(network: &str, address: &str) -> Result<Target> {
        if network.starts_with("registry://") {
            return Ok(Target::name(address).with_key(network));
        }
        if network == "vport2registry" {
            let (name, key) = address.rsplit_once(':').ok_or_else(|| Error::InvalidTarget {
                target: address.to_string(),
                reason: "vport2registry takes \"name:key\"".to_string(),
            })?;
            return Ok(Target::name(name).with_key(key));
        }
        address.parse()
    }
}

impl From<Addr> for Target {
    fn from(a: Addr) -> Target {
        Target(TargetKind::Addr(a))
    }
}

impl std::str::FromStr for Target {
    type Err = Error;
    fn from_str(s: &str) -> Result<Target> {
        if let Ok(addr) = s.parse::<Addr>() {
            return Ok(addr.into());
        }
        let invalid =
            |e: registry::AnnouncementError| Error::InvalidTarget { target: s.to_string(), reason: e.to_string() };
        // "name:port": the instance of `name` that listens on `port`.
        if let Some((name, port)) = s.rsplit_once(':').and_then(|(n, p)| Some((n, p.parse::<u32>().ok()?))) {
            registry::parse_name(name.as_bytes()).map_err(invalid)?;
            let target = Target::name(name);
            return Ok(Target(match target.0 {
                TargetKind::Name { name, selector, .. } => TargetKind::Name { name, selector, port: Some(port) },
                addr => addr,
            }));
        }
        registry::parse_name(s.as_bytes()).map_err(invalid)?;
        Ok(Target::name(s))
    }
}

/// What [`Node::dial`] accepts: [`Target`], [`Addr`], `&str` and `String` (parsed as
/// [`Target`]'s `FromStr` does).
pub trait IntoTarget {
    /// The target, or [`Error::InvalidTarget`].
    fn into_target(self) -> Result<Target>;
}

impl IntoTarget for Target {
    fn into_target(self) -> Result<Target> {
        Ok(self)
    }
}

impl IntoTarget for Addr {
    fn into_target(self) -> Result<Target> {
        Ok(self.into())
    }
}

impl IntoTarget for &str {
    fn into_target(self) -> Result<Target> {
        self.parse()
    }
}

impl IntoTarget for String {
    fn into_target(self) -> Result<Target> {
        self.parse()
    }
}

#[derive(Default)]
struct Links {
    by_id: HashMap<u64, Arc<Link>>,
    /// Links whose handshake completed, by the peer's host id, oldest first.
    by_host: HashMap<HostId, Vec<Arc<Link>>>,
}

pub(crate) struct NodeShared {
    pub config: Arc<Config>,
    pub counters: Arc<Counters>,
    links: RwLock<Links>,
    listeners: RwLock<HashMap<u32, Arc<ListenerShared>>>,
    next_port: AtomicU32,
    next_link: AtomicU64,
    /// Relayed pairs of hosts (source, destination) and the links towards each.
    pub(crate) relay_pairs: Mutex<HashMap<(u64, u64), Pair>>,
    /// Streams relayed by this node, for its relay limits.
    pub(crate) relay_streams: Mutex<RelayTable>,
    /// FIN1 frames to send in the name of Go hosts once they forget a stream they
    /// closed (see `relay.rs`): (when, frame, link), in order.
    pub(crate) relay_v1_closes: Mutex<std::collections::VecDeque<(std::time::Instant, crate::proto::Header, u64)>>,
    pub(crate) registry: Mutex<Registry>,
    /// The registry's version, watched by dials waiting for a name.
    pub(crate) registry_version: watch::Sender<u64>,
    /// Where this node accepts links, and the IPs its peers see it as.
    pub(crate) listen_addrs: Mutex<Vec<SocketAddr>>,
    pub(crate) seen_ips: Mutex<std::collections::BTreeSet<std::net::IpAddr>>,
    /// Relayed hosts asked for their direct addresses, with the addresses tried since.
    /// The link each was asked through.
    pub(crate) discovered: Mutex<HashMap<HostId, (u64, u32)>>,
    /// Hosts that asked this node for its addresses, and the link they asked through.
    pub(crate) followers: Mutex<HashMap<HostId, u64>>,
    /// Addresses joined (each has a task keeping a link to it up).
    pub(crate) joined: Mutex<HashSet<SocketAddr>>,
    /// Accept loops and re-join supervisors, stopped on close.
    background: Mutex<Vec<AbortHandle>>,
    closed: AtomicBool,
}

impl NodeShared {
    pub(crate) fn host_id(&self) -> HostId {
        self.config.host_id
    }

    pub(crate) fn next_link_id(&self) -> u64 {
        self.next_link.fetch_add(1, Ordering::Relaxed)
    }

    /// Returns false when the node is closing: the link must not start.
    pub(crate) fn register_link(&self, link: &Arc<Link>) -> bool {
        let mut links = self.links.write();
        // Checked under the lock `close` takes to list the links it closes.
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        links.by_id.insert(link.id, link.clone());
        true
    }

    pub(crate) fn link_up(&self, link: &Arc<Link>, host: HostId) {
        {
            let mut links = self.links.write();
            if !links.by_id.contains_key(&link.id) {
                return;
            }
            links.by_host.entry(host).or_default().push(link.clone());
        }
        self.announce_to(link);
    }

    /// Links whose handshake completed.
    pub(crate) fn up_links(&self) -> Vec<Arc<Link>> {
        self.links.read().by_host.values().flatten().cloned().collect()
    }

    pub(crate) fn unregister_link(&self, link: &Link) {
        self.unregister_link_routes(link);
        self.link_lost(link.id);
        self.relay_link_lost(link.id);
        self.followers_lost(link.id);
    }

    /// The link towards `host`: a direct one, else one to a neighbour that relays for it.
    fn route_any(&self, host: HostId) -> Option<Arc<Link>> {
        self.route(host).or_else(|| {
            let relayed = self.registry.lock().relayed_hosts();
            relayed.into_iter().filter(|(h, _)| *h == host).find_map(|(_, via)| self.route(via))
        })
    }

    /// A registered link by id.
    pub(crate) fn link(&self, id: u64) -> Option<Arc<Link>> {
        self.links.read().by_id.get(&id).cloned()
    }

    fn unregister_link_routes(&self, link: &Link) {
        let mut links = self.links.write();
        links.by_id.remove(&link.id);
        if let Some(host) = link.peer.get().map(|p| p.host) {
            if let Some(list) = links.by_host.get_mut(&host) {
                list.retain(|l| l.id != link.id);
                if list.is_empty() {
                    links.by_host.remove(&host);
                }
            }
        }
    }

    /// The link that leads to `host`.
    pub(crate) fn route(&self, host: HostId) -> Option<Arc<Link>> {
        self.links.read().by_host.get(&host).and_then(|l| l.first().cloned())
    }

    pub(crate) fn listener(&self, port: u32) -> Option<Arc<ListenerShared>> {
        self.listeners.read().get(&port).cloned()
    }

    pub(crate) fn unbind(&self, port: u32, which: &Arc<ListenerShared>) {
        let removed = {
            let mut listeners = self.listeners.write();
            let ours = listeners.get(&port).is_some_and(|l| Arc::ptr_eq(l, which));
            ours && listeners.remove(&port).is_some()
        };
        if let (true, Some(name)) = (removed, which.name()) {
            self.service_unbound(name, Addr::new(self.host_id(), port));
        }
    }

    fn alloc_port(&self) -> u32 {
        loop {
            let port = self.next_port.fetch_add(1, Ordering::Relaxed);
            if port >= FIRST_AUTO_PORT {
                return port;
            }
            // Wrapped around after four billion ports: start over.
            let _ = self.next_port.compare_exchange(port + 1, FIRST_AUTO_PORT, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// Runs `task` until the node is closed.
    pub(crate) fn spawn_background(&self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let handle = tokio::spawn(task).abort_handle();
        let mut background = self.background.lock();
        if self.closed.load(Ordering::Acquire) {
            handle.abort();
        } else {
            background.push(handle);
        }
    }

    /// Fails once the node was closed.
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::NodeClosed);
        }
        Ok(())
    }

    fn close(&self) {
        // Under the links lock, so that no link registers after the list below is taken.
        let _registering = self.links.write();
        self.closed.store(true, Ordering::Release);
        drop(_registering);
        for task in self.background.lock().drain(..) {
            task.abort();
        }
        let listeners: Vec<_> = self.listeners.write().drain().map(|(_, l)| l).collect();
        for l in listeners {
            l.close();
        }
        let links: Vec<_> = self.links.read().by_id.values().cloned().collect();
        for link in links {
            link.close(CloseReason::Local);
        }
    }
}

impl Drop for NodeShared {
    fn drop(&mut self) {
        self.close();
    }
}

/// An astranet node: a host id, links to neighbour nodes, listeners and streams.
///
/// Cheap to clone (all clones are the same node). Dropping the last clone closes it.
/// All methods that start I/O must be called inside a tokio runtime.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> astranet::Result<()> {
/// use astranet::Node;
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let server = Node::new();
/// let client = Node::new();
/// // Any ordered byte pipe can be a link; `listen`/`join` use TCP.
/// let (a, b) = tokio::io::duplex(1 << 16);
/// let (_, _) = tokio::try_join!(server.attach(a), client.attach(b))?;
///
/// let listener = server.bind(":7")?;
/// let addr = listener.local_addr();
/// tokio::spawn(async move {
///     let mut s = listener.accept().await?;
///     let mut buf = [0u8; 5];
///     s.read_exact(&mut buf).await?;
///     s.write_all(&buf).await?;
///     Ok::<_, astranet::Error>(())
/// });
///
/// let mut stream = client.dial(addr).await?;
/// stream.write_all(b"hello").await?;
/// let mut echo = [0u8; 5];
/// stream.read_exact(&mut echo).await?;
/// assert_eq!(&echo, b"hello");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Node {
    shared: Arc<NodeShared>,
}

impl Default for Node {
    fn default() -> Self {
        Node::new()
    }
}

impl Node {
    /// A node with the default configuration and a random host id.
    pub fn new() -> Node {
        Node::builder().build()
    }

    /// A [`NodeBuilder`] starting from the default configuration.
    pub fn builder() -> NodeBuilder {
        NodeBuilder::default()
    }

    pub(crate) fn with_config(config: Config) -> Node {
        Node {
            shared: Arc::new(NodeShared {
                config: Arc::new(config),
                counters: Arc::default(),
                links: RwLock::default(),
                listeners: RwLock::default(),
                next_port: AtomicU32::new(FIRST_AUTO_PORT),
                next_link: AtomicU64::new(1),
                relay_pairs: Mutex::default(),
                relay_streams: Mutex::default(),
                relay_v1_closes: Mutex::default(),
                registry: Mutex::default(),
                registry_version: watch::Sender::new(0),
                listen_addrs: Mutex::default(),
                seen_ips: Mutex::default(),
                discovered: Mutex::default(),
                followers: Mutex::default(),
                joined: Mutex::default(),
                background: Mutex::default(),
                closed: AtomicBool::new(false),
            }),
        }
    }

    /// This node's host id.
    pub fn host_id(&self) -> HostId {
        self.shared.host_id()
    }

    /// The configuration the node was built with.
    pub fn config(&self) -> &Config {
        &self.shared.config
    }

    /// Accepts links on a TCP address; returns the bound address (useful with port 0).
    /// Runs in the background until the node is closed.
    pub async fn listen(&self, addr: impl ToSocketAddrs) -> Result<SocketAddr> {
        self.shared.check_open()?;
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        self.shared.listening_at(local);
        let node = Arc::downgrade(&self.shared);
        self.shared.spawn_background(async move {
            loop {
                let (socket, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of fds and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a link failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(node) = node.upgrade() else { return };
                start_tcp_link(&node, socket, peer);
            }
        });
        Ok(local)
    }

    /// Joins the node(s) listening at `addr`: one TCP link to every address the name
    /// resolves to, each kept up (re-dialed with exponential back-off up to
    /// [`Config::max_reconnect_delay`] when it drops), and the name resolved again every
    /// [`Config::resolve_interval`] so that new addresses are joined too. Returns the
    /// host id of the first peer once its handshake is done; fails if no address can be
    /// reached now (addresses that fail while another succeeds are retried).
    pub async fn join<A>(&self, addr: A) -> Result<HostId>
    where
        A: ToSocketAddrs + Clone + Send + Sync + 'static,
    {
        self.shared.check_open()?;
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host(addr.clone()).await?.collect();
        let host = self.join_resolved(addrs).await?;
        self.shared.spawn_background(crate::join::re_resolve(Arc::downgrade(&self.shared), addr));
        Ok(host)
    }

    /// Joins each of `addrs` (one link per address, kept up as [`Node::join`] does),
    /// without name resolution.
    pub async fn join_all(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> Result<HostId> {
        self.shared.check_open()?;
        self.join_resolved(addrs.into_iter().collect()).await
    }

    async fn join_resolved(&self, mut addrs: Vec<SocketAddr>) -> Result<HostId> {
        addrs.sort();
        addrs.dedup();
        match self.shared.join_all(addrs).await? {
            Some(host) => Ok(host),
            None => Err(Error::InvalidTarget {
                target: String::new(),
                reason: "no address to join (or already joining without a link up)".into(),
            }),
        }
    }

    /// Runs a link over any ordered, reliable byte pipe (an in-memory duplex, a Unix
    /// socket, a TLS stream…). Returns the peer's host id once the handshake is done.
    pub async fn attach<T>(&self, io: T) -> Result<HostId>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        self.shared.check_open()?;
        let (r, w) = tokio::io::split(io);
        let link = Link::spawn(&self.shared, r, Sink::Io(Box::new(w)), None);
        link.wait_up().await
    }

    /// Binds a listener, like the Go package's `Bind`:
    /// - `"name"`: a service name on an automatic port, announced to the mesh;
    /// - `"name:port"`: a service name on a fixed port;
    /// - `":port"`: a port without a name (`":0"` or `""`: an automatic port).
    ///
    /// Names get the node's environment suffix ([`NodeBuilder::env`]); a node whose
    /// role announces ([`crate::Role::announces`]) tells every neighbour, and withdraws
    /// the name when the listener closes.
    pub fn bind(&self, target: &str) -> Result<Listener> {
        self.shared.check_open()?;
        let invalid = |reason: &str| Error::InvalidTarget { target: target.to_string(), reason: reason.to_string() };
        let (name, port) = match target.rsplit_once(':') {
            None => (target, "0"),
            Some((name, port)) => (name, port),
        };
        let port = port.parse::<u32>().map_err(|_| invalid("the port is not a number from 0 to 4294967295"))?;
        let name = match name {
            "" => None,
            name => {
                let full = format!("{name}{}", self.shared.config.env);
                registry::parse_name(full.as_bytes()).map_err(|e| invalid(&e.to_string()))?;
                Some(full)
            }
        };
        let shared = {
            let mut listeners = self.shared.listeners.write();
            let port = if port == 0 {
                std::iter::repeat_with(|| self.shared.alloc_port())
                    .find(|p| !listeners.contains_key(p))
                    .expect("an endless iterator finds a free port")
            } else if listeners.contains_key(&port) {
                return Err(Error::AddrInUse(port));
            } else {
                port
            };
            let shared = Arc::new(ListenerShared::new(&self.shared, port, name));
            listeners.insert(port, shared.clone());
            shared
        };
        let listener = Listener::new(shared.clone());
        if let Some(name) = shared.name() {
            self.shared.service_bound(name, listener.local_addr());
        }
        Ok(listener)
    }

    /// Opens a stream to a virtual address, waiting at most [`Config::dial_timeout`].
    /// Returns once the stream is established.
    ///
    /// Errors: [`Error::NoRoute`] without a link to the host, [`Error::Refused`] when the
    /// remote node refuses (nobody listens, backlog full, stream limit), and
    /// [`Error::TimedOut`] (a Go peer never refuses: dials to a port nobody listens on
    /// time out).
    pub async fn dial(&self, target: impl IntoTarget) -> Result<Stream> {
        self.dial_timeout(target, self.shared.config.dial_timeout).await
    }

    /// [`Node::dial`] with its own timeout.
    pub async fn dial_timeout(&self, target: impl IntoTarget, timeout: Duration) -> Result<Stream> {
        self.shared.check_open()?;
        let deadline = tokio::time::Instant::now() + timeout;
        let (addr, link) = match target.into_target()?.0 {
            TargetKind::Addr(addr) => (addr, self.shared.route_any(addr.host).ok_or(Error::NoRoute(addr.host))?),
            TargetKind::Name { name, selector, port } => {
                self.resolve(&name, &selector, port, deadline, timeout).await?
            }
        };
        let id = loop {
            let key = Key { local_port: self.shared.alloc_port(), remote_port: addr.port, remote_host: addr.host.0 };
            match link.open_stream(key) {
                Ok(id) => break id,
                Err(OpenError::KeyInUse) => continue,
                Err(OpenError::Failed(e)) => return Err(e),
            }
        };
        // If the dial fails or is cancelled, dropping the handle gives the dial up.
        let stream = Stream::new(link, id);
        let established = poll_fn(|cx| stream.link().poll_established(stream.slot(), cx));
        match tokio::time::timeout_at(deadline, established).await {
            Ok(Ok(())) => Ok(stream),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::TimedOut { what: format!("dial to {addr}"), after: timeout }),
        }
    }

    /// Waits until `name` (plus the environment suffix) is announced, then picks an
    /// instance and the link that leads to it.
    async fn resolve(
        &self,
        name: &str,
        selector: &Selector,
        port: Option<u32>,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Result<(Addr, Arc<Link>)> {
        let full = format!("{name}{}", self.shared.config.env);
        let mut changes = self.shared.registry_version.subscribe();
        loop {
            changes.borrow_and_update();
            let pick = self.shared.registry.lock().pick(&full, selector, port);
            if let Some(pick) = pick {
                // Through a relay, always the same link to it (the one routes use): a
                // relay routes answers by host pair, so a host's streams must not be
                // spread over several links to the same relay.
                let relayed = pick.addr.host != pick.via;
                let link = if relayed { self.shared.route(pick.via) } else { None };
                if let Some(link) = link.or_else(|| self.shared.link(pick.link)) {
                    return Ok((pick.addr, link));
                }
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::NodeClosed),
                Err(_) => return Err(Error::NoSuchService { name: full, after: timeout }),
            }
        }
    }

    /// The hosts this node reaches: its neighbours (direct), and hosts whose services
    /// a neighbour relays.
    pub fn routes(&self) -> Vec<RouteInfo> {
        let mut out: Vec<RouteInfo> =
            self.peers().into_iter().map(|h| RouteInfo { host: h, via: h, direct: true }).collect();
        let relayed = self.shared.registry.lock().relayed_hosts();
        out.extend(relayed.into_iter().map(|(host, via)| RouteInfo { host, via, direct: false }));
        out.sort_by_key(|r| (r.host, !r.direct, r.via));
        out
    }

    /// A feed of registry changes, to wait for services to appear or vanish.
    ///
    /// ```
    /// # async fn demo(node: astranet::Node) -> astranet::Result<()> {
    /// let mut watch = node.watch_services();
    /// // Wait (up to 5 s) until some node announces "db".
    /// let db = watch
    ///     .wait_for(std::time::Duration::from_secs(5), |services| services.iter().any(|s| s.name == "db"))
    ///     .await?;
    /// # drop(db);
    /// # Ok(()) }
    /// ```
    pub fn watch_services(&self) -> ServiceWatch {
        ServiceWatch { node: self.clone(), changes: self.shared.registry_version.subscribe() }
    }

    /// Every service instance this node knows: its own, and those announced by
    /// neighbours (directly, or passed on by a router).
    pub fn services(&self) -> Vec<ServiceInfo> {
        self.shared.registry.lock().list()
    }

    /// Host ids of the neighbours this node has a link to.
    pub fn peers(&self) -> Vec<HostId> {
        self.shared.links.read().by_host.keys().copied().collect()
    }

    /// A snapshot of the node's counters.
    pub fn stats(&self) -> Stats {
        let links = self.shared.links.read().by_host.values().map(Vec::len).sum();
        let mut stats = self.shared.counters.snapshot(links);
        stats.relayed_streams = self.shared.relay_streams.lock().len();
        stats
    }

    /// Closes every listener and link (queued frames are flushed first). Streams fail
    /// with [`Error::LinkClosed`]; the node accepts no new work ([`Error::NodeClosed`]).
    /// Also happens when the last clone is dropped.
    pub fn close(&self) {
        self.shared.close();
    }
}

/// Registry changes of a node, from [`Node::watch_services`].
pub struct ServiceWatch {
    node: Node,
    changes: watch::Receiver<u64>,
}

impl ServiceWatch {
    /// Waits for the next change of the node's services, then lists them. Fails with
    /// [`Error::NodeClosed`] when the node is gone.
    pub async fn changed(&mut self) -> Result<Vec<ServiceInfo>> {
        self.changes.changed().await.map_err(|_| Error::NodeClosed)?;
        Ok(self.node.services())
    }

    /// Waits until `condition` holds for the node's services (checked now and after
    /// every change), at most `timeout`; returns the services it held for.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut condition: impl FnMut(&[ServiceInfo]) -> bool,
    ) -> Result<Vec<ServiceInfo>> {
        let wait = async {
            loop {
                self.changes.borrow_and_update();
                let services = self.node.services();
                if condition(&services) {
                    return Ok(services);
                }
                self.changes.changed().await.map_err(|_| Error::NodeClosed)?;
            }
        };
        tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| Error::TimedOut { what: "waiting for a service change".into(), after: timeout })?
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("host_id", &self.host_id()).finish_non_exhaustive()
    }
}

fn start_tcp_link(node: &Arc<NodeShared>, socket: TcpStream, peer: SocketAddr) -> Arc<Link> {
    // Frames are batched by the writer already; Nagle would only add latency.
    let _ = socket.set_nodelay(true);
    let (r, w) = socket.into_split();
    Link::spawn(node, r, Sink::Tcp(Arc::new(w)), Some(peer))
}

pub(crate) async fn connect<A: ToSocketAddrs>(node: &Arc<NodeShared>, addr: A) -> Result<Arc<Link>> {
    let socket = TcpStream::connect(addr).await?;
    let peer = socket.peer_addr()?;
    Ok(start_tcp_link(node, socket, peer))
}
