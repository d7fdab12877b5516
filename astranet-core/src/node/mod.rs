//! The node: an astranet instance with its host id, links, listeners and ports.

mod admission;
mod direct;
mod events;
mod join;
mod mesh;
mod relay;
mod secure;
mod target;

pub use target::{IntoTarget, Target};

use crate::addr::{Addr, HostId, LinkId};
use crate::config::{Config, NodeBuilder};
use crate::error::{Error, Result};
use crate::link::sink::{Sink, TcpOut};
use crate::link::{LinkEvents, LinkHandle, LinkSettings, Reading};
use crate::listener::{Listener, ListenerOwner, ListenerShared};
use crate::proto::link::{CloseReason, OpenError, Policy, StreamKey};
use crate::registry::{Registry, RouteInfo, Selector, ServiceInfo};
use crate::stats::{Counters, LinkInfo, Stats};
use crate::stream::Stream;
use hashbrown::{HashMap, HashSet};
use parking_lot::{Mutex, RwLock};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use target::{BindTarget, TargetKind};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, ToSocketAddrs};
use tokio::sync::watch;
use tokio::task::AbortHandle;

/// Automatic ports (dials and `bind("")`) count up from here, as in the Go package, so
/// they never collide with the small fixed ports applications choose.
const FIRST_AUTO_PORT: u32 = (1 << 24) + 1;

#[derive(Default)]
struct Links {
    by_id: HashMap<LinkId, LinkHandle>,
    /// Links whose handshake completed, by the peer's host id, oldest first.
    by_host: HashMap<HostId, Vec<LinkHandle>>,
}

/// What dials by name and [`ServiceWatch`]es wait on: the registry's version, and
/// whether the node closed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct RegistryState {
    pub version: u64,
    pub closed: bool,
}

pub(crate) struct NodeShared {
    pub config: Arc<Config>,
    settings: LinkSettings,
    pub counters: Arc<Counters>,
    /// This node, for the links' events and listeners (which must not keep it alive).
    me: Weak<NodeShared>,
    links: RwLock<Links>,
    listeners: RwLock<HashMap<u32, Arc<ListenerShared>>>,
    next_port: AtomicU32,
    next_link: AtomicU64,
    pub(crate) relay: Mutex<relay::Relay>,
    pub(crate) registry: Mutex<Registry>,
    pub(crate) registry_state: watch::Sender<RegistryState>,
    /// Where this node accepts links, and the IPs its peers see it as.
    pub(crate) listen_addrs: Mutex<Vec<SocketAddr>>,
    pub(crate) seen_ips: Mutex<std::collections::BTreeSet<std::net::IpAddr>>,
    /// Relayed hosts asked for their direct addresses: the link each was asked
    /// through, and the addresses tried since.
    pub(crate) discovered: Mutex<HashMap<HostId, (LinkId, u32)>>,
    /// Relayed hosts being joined directly: the addresses they gave that wait to be
    /// tried, one after another until one links.
    pub(crate) following: Mutex<HashMap<HostId, std::collections::VecDeque<SocketAddr>>>,
    /// Hosts that asked this node for its addresses, and the link they asked through.
    pub(crate) followers: Mutex<HashMap<HostId, LinkId>>,
    /// Names joined, resolved again periodically.
    pub(crate) resolution: Mutex<join::Resolution>,
    /// Addresses joined (each has a task keeping a link to it up).
    pub(crate) joined: Mutex<HashSet<SocketAddr>>,
    /// Accept loops and re-join supervisors, stopped on close.
    background: Mutex<Vec<AbortHandle>>,
    closed: AtomicBool,
    /// Links accepted per source address (see [`admission`]).
    inbound: Mutex<admission::Inbound>,
}

impl NodeShared {
    pub(crate) fn host_id(&self) -> HostId {
        self.config.host_id
    }

    /// This node as its links and background tasks hold it.
    pub(crate) fn weak(&self) -> Weak<NodeShared> {
        self.me.clone()
    }

    /// Starts a link over `reader`/`sink` and registers it, unless the node is closing
    /// (then the link is closed at once).
    pub(crate) fn start_link<R>(
        &self,
        reading: Reading<R>,
        sink: Sink,
        remote_addr: Option<SocketAddr>,
        identity: Option<crate::link::Identity>,
    ) -> LinkHandle
    where
        R: tokio::io::AsyncRead + Send + Unpin + 'static,
    {
        let id = LinkId(self.next_link.fetch_add(1, Ordering::Relaxed));
        let events: Weak<dyn LinkEvents> = self.me.clone();
        let link = LinkHandle::spawn(
            id,
            self.host_id(),
            self.settings.clone(),
            self.counters.clone(),
            events,
            reading,
            sink,
            remote_addr,
            identity,
        );
        self.register_link(&link);
        link
    }

    fn register_link(&self, link: &LinkHandle) {
        {
            let mut links = self.links.write();
            // Checked under the lock `close` takes to list the links it closes.
            if !self.closed.load(Ordering::Acquire) && !link.is_closed() {
                links.by_id.insert(link.id, link.clone());
                return;
            }
        }
        link.close(CloseReason::Local);
    }

    /// A link's handshake completed: it becomes the route to `host`, and hears what
    /// this node offers.
    pub(crate) fn link_up(&self, link: &LinkHandle, host: HostId) {
        {
            let mut links = self.links.write();
            if self.closed.load(Ordering::Acquire) || link.is_closed() {
                return;
            }
            // The handshake may complete before `start_link` registered the link.
            links.by_id.entry(link.id).or_insert_with(|| link.clone());
            links.by_host.entry(host).or_default().push(link.clone());
        }
        self.announce_to(link);
    }

    /// Links whose handshake completed.
    pub(crate) fn up_links(&self) -> Vec<LinkHandle> {
        self.links.read().by_host.values().flatten().cloned().collect()
    }

    /// A link closed: forget it and everything learned through it.
    pub(crate) fn link_closed(&self, link: &LinkHandle) {
        {
            let mut links = self.links.write();
            links.by_id.remove(&link.id);
            for list in links.by_host.values_mut() {
                list.retain(|l| l.id != link.id);
            }
            links.by_host.retain(|_, list| !list.is_empty());
        }
        self.inbound_closed(link.id);
        self.link_lost(link.id);
        self.relay_link_lost(link.id);
        self.followers_lost(link.id);
    }

    /// The link towards `host`: a direct one, else one to a neighbour that relays for it.
    fn route_any(&self, host: HostId) -> Option<LinkHandle> {
        self.route(host).or_else(|| {
            let relayed = self.registry.lock().relayed_hosts();
            relayed.into_iter().filter(|(h, _)| *h == host).find_map(|(_, via)| self.route(via))
        })
    }

    /// A registered link by id.
    pub(crate) fn link(&self, id: LinkId) -> Option<LinkHandle> {
        self.links.read().by_id.get(&id).cloned()
    }

    /// The link that leads to `host`.
    pub(crate) fn route(&self, host: HostId) -> Option<LinkHandle> {
        self.links.read().by_host.get(&host).and_then(|l| l.first().cloned())
    }

    pub(crate) fn listener(&self, port: u32) -> Option<Arc<ListenerShared>> {
        self.listeners.read().get(&port).cloned()
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
        if self.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        drop(_registering);
        // Dials waiting for a name and service watchers learn it at once.
        self.registry_state.send_modify(|s| s.closed = true);
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

impl ListenerOwner for NodeShared {
    fn unbind(&self, port: u32, which: &Arc<ListenerShared>) {
        let removed = {
            let mut listeners = self.listeners.write();
            let ours = listeners.get(&port).is_some_and(|l| Arc::ptr_eq(l, which));
            ours && listeners.remove(&port).is_some()
        };
        if let (true, Some(name)) = (removed, which.name()) {
            self.service_unbound(name, Addr::new(self.host_id(), port));
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
        let settings = LinkSettings { link: config.link_config(), write_timeout: config.keepalive.write_timeout };
        let registry = Registry::with_host_limit(config.limits.max_announcements_per_host);
        Node {
            shared: Arc::new_cyclic(|me| NodeShared {
                config: Arc::new(config),
                settings,
                counters: Arc::default(),
                me: me.clone(),
                links: RwLock::default(),
                listeners: RwLock::default(),
                next_port: AtomicU32::new(FIRST_AUTO_PORT),
                next_link: AtomicU64::new(1),
                relay: Mutex::default(),
                registry: Mutex::new(registry),
                registry_state: watch::Sender::new(RegistryState::default()),
                listen_addrs: Mutex::default(),
                seen_ips: Mutex::default(),
                discovered: Mutex::default(),
                followers: Mutex::default(),
                following: Mutex::default(),
                resolution: Mutex::default(),
                joined: Mutex::default(),
                background: Mutex::default(),
                closed: AtomicBool::new(false),
                inbound: Mutex::new(admission::Inbound::default()),
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
    pub async fn listen(&self, addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<SocketAddr> {
        self.shared.check_open()?;
        let addrs = resolve(addr).await?;
        let listener = TcpListener::bind(&addrs[..]).await.map_err(|e| {
            // io::Error's message names no address ("Address already in use").
            let tried: Vec<String> = addrs.iter().map(SocketAddr::to_string).collect();
            Error::Io(std::io::Error::new(e.kind(), format!("listening on {}: {e}", tried.join(", "))))
        })?;
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
                let Some(admission) = node.admit(peer.ip()) else {
                    let max = node.config.limits.max_links_per_address;
                    tracing::warn!(%peer, max, "connection refused: its address holds its limit of links");
                    continue;
                };
                match node.config.tls.clone() {
                    Some(tls) => {
                        tokio::spawn(secure::accept(node, socket, peer, tls, admission));
                    }
                    None => {
                        let link = start_tcp_link(&node, socket, peer);
                        admission.into_link(&node, &link);
                    }
                }
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
    ///
    /// Joining the same target again joins nothing new and starts nothing: one task
    /// per node resolves every joined name.
    pub async fn join<A>(&self, addr: A) -> Result<HostId>
    where
        A: ToSocketAddrs + Clone + Send + Sync + std::fmt::Debug + 'static,
    {
        self.shared.check_open()?;
        let addrs = resolve(addr.clone()).await?;
        let host = self.join_resolved(addrs).await?;
        self.shared.keep_resolving(format!("{addr:?}"), addr);
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
    /// Dropping the future before then (a caller's timeout) closes the link and with
    /// it the pipe.
    pub async fn attach<T>(&self, io: T) -> Result<HostId>
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        self.shared.check_open()?;
        let (r, w) = tokio::io::split(io);
        let link = self.shared.start_link(Reading::Runtime(r), Sink::Io(Box::new(w)), None, None);
        let mut waiting = GivenUp(Some(&link));
        let up = link.wait_up().await;
        waiting.0 = None;
        up
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
        let BindTarget { name, port } = BindTarget::parse(target)?;
        let name = name.map(|name| target::with_env(name, &self.shared.config.env)).transpose()?;
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
            let owner: Weak<dyn ListenerOwner> = self.shared.weak();
            let backlog = self.shared.config.limits.listener_backlog;
            let shared = Arc::new(ListenerShared::new(owner, self.host_id(), port, name, backlog));
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
        let deadline = deadline_after(timeout);
        let target = target.into_target()?;
        target.check()?;
        let stream = match self.start_dial_until(&target, deadline, timeout)? {
            Some(stream) => stream,
            None => self.dial_when_announced(&target, deadline, timeout).await?,
        };
        // If the dial fails or is cancelled, dropping the handle gives the dial up.
        poll_fn(|cx| stream.poll_established(cx)).await?;
        Ok(stream)
    }

    /// Starts a dial without waiting for its answer: the stream is returned at once,
    /// and established once [`Stream::poll_established`] says so (its reads and writes
    /// wait until then). The link gives the dial up after `timeout`. `Ok(None)` when
    /// `target` names a service nobody announced yet ([`Node::dial_timeout`] waits for
    /// it). Fails at once as [`Node::dial`] would without a route, on a stream limit,
    /// or with the node closed.
    ///
    /// ```
    /// # async fn demo(node: astranet::Node) -> astranet::Result<()> {
    /// use std::time::Duration;
    /// if let Some(stream) = node.start_dial(&"db".parse()?, Duration::from_secs(5))? {
    ///     std::future::poll_fn(|cx| stream.poll_established(cx)).await?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn start_dial(&self, target: &Target, timeout: Duration) -> Result<Option<Stream>> {
        self.shared.check_open()?;
        target.check()?;
        self.start_dial_until(target, deadline_after(timeout), timeout)
    }

    /// Picks the route and opens the stream (its DIAL is queued, given up at
    /// `deadline`); `None` for a name nobody announced yet.
    fn start_dial_until(&self, target: &Target, deadline: Instant, timeout: Duration) -> Result<Option<Stream>> {
        loop {
            let (addr, link) = match &target.0 {
                TargetKind::Addr(addr) => (*addr, self.shared.route_any(addr.host).ok_or(Error::NoRoute(addr.host))?),
                TargetKind::Name { name, selector, port } => match self.pick(name, selector, *port)? {
                    Some(pick) => pick,
                    None => return Ok(None),
                },
            };
            match self.open(&link, addr, deadline, timeout) {
                Ok(id) => return Ok(Some(Stream::new(link, id))),
                // A link that closed under a name's feet: its services are being
                // withdrawn, and another instance (or the re-joined link) may serve.
                Err(Error::LinkClosed { .. }) if matches!(target.0, TargetKind::Name { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Waits until the service `target` names is announced (up to `deadline`), then
    /// starts the dial.
    async fn dial_when_announced(&self, target: &Target, deadline: Instant, timeout: Duration) -> Result<Stream> {
        let TargetKind::Name { name, port, .. } = &target.0 else {
            unreachable!("an address is dialed at once or fails")
        };
        let mut changes = self.shared.registry_state.subscribe();
        loop {
            if changes.borrow_and_update().closed {
                return Err(Error::NodeClosed);
            }
            // After subscribing: an announcement since the first try is not missed.
            if let Some(stream) = self.start_dial_until(target, deadline, timeout)? {
                return Ok(stream);
            }
            match tokio::time::timeout_at(deadline.into(), changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(Error::NodeClosed),
                Err(_) => {
                    let name = target::with_env(name, &self.shared.config.env)?;
                    return Err(Error::NoSuchService { name, port: *port, after: timeout });
                }
            }
        }
    }

    /// Creates a stream to `addr` on `link` (its DIAL is queued, given up at
    /// `deadline`).
    fn open(
        &self,
        link: &LinkHandle,
        addr: Addr,
        deadline: Instant,
        timeout: Duration,
    ) -> Result<crate::proto::link::StreamId> {
        loop {
            let key =
                StreamKey { local_port: self.shared.alloc_port(), remote_port: addr.port.0, remote_host: addr.host };
            let opened = link.with(|l, _| {
                let id = l.open_stream(key, Instant::now())?;
                l.set_dial_deadline(id, deadline, timeout);
                Ok(id)
            });
            return match opened {
                Ok(id) => Ok(id),
                Err(OpenError::KeyInUse) => continue,
                Err(OpenError::Limit(max)) => {
                    Err(Error::LimitExceeded(format!("{max} streams on the link to {}", link.peer_name())))
                }
                Err(OpenError::Closed(reason)) => Err(link.closed_error(reason)),
            };
        }
    }

    /// An instance of the service `name` (plus the environment suffix) and the link
    /// that leads to it, if one is announced.
    fn pick(&self, name: &str, selector: &Selector, port: Option<u32>) -> Result<Option<(Addr, LinkHandle)>> {
        let full = target::with_env(name, &self.shared.config.env)?;
        let Some(pick) = self.shared.registry.lock().pick(&full, selector, port) else { return Ok(None) };
        // Through a relay, always the same link to it (the one routes use): a Go relay
        // routes answers by host pair, so a host's streams must not be spread over
        // several links to the same relay.
        let relayed = pick.addr.host != pick.via;
        let link = if relayed { self.shared.route(pick.via) } else { None };
        Ok(link.or_else(|| self.shared.link(pick.link)).filter(|l| !l.is_closed()).map(|link| (pick.addr, link)))
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
        ServiceWatch { node: self.clone(), changes: self.shared.registry_state.subscribe() }
    }

    /// Every service instance this node knows: its own, and those announced by
    /// neighbours (directly, or passed on by a router).
    pub fn services(&self) -> Vec<ServiceInfo> {
        self.shared.registry.lock().list()
    }

    /// The links that are up, ordered by their number.
    pub fn links(&self) -> Vec<LinkInfo> {
        let links: Vec<LinkHandle> = self.shared.links.read().by_host.values().flatten().cloned().collect();
        let mut out: Vec<LinkInfo> = links
            .iter()
            .filter_map(|l| {
                let peer = l.peer()?;
                let (streams, rtt, v1, secure) = l.with(|link, _| {
                    (link.stream_count(), link.rtt(), link.policy() == Policy::V1, link.authenticated().is_some())
                });
                let read_buffers = l.read_buffers.load(Ordering::Relaxed);
                Some(LinkInfo { id: l.id, peer, remote_addr: l.remote_addr, streams, rtt, v1, secure, read_buffers })
            })
            .collect();
        out.sort_by_key(|l| l.id);
        out
    }

    /// Host ids of the neighbours this node has a link to.
    pub fn peers(&self) -> Vec<HostId> {
        self.shared.links.read().by_host.keys().copied().collect()
    }

    /// A snapshot of the node's counters.
    pub fn stats(&self) -> Stats {
        let (links, pending_dials) = {
            let links = self.shared.links.read();
            let all = links.by_host.values().flatten();
            (all.clone().count(), all.map(|l| l.pending_dials.load(Ordering::Relaxed)).sum())
        };
        let mut stats = self.shared.counters.snapshot(links);
        stats.pending_dials = pending_dials;
        stats.relayed_streams = self.shared.relay.lock().table.len();
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
    changes: watch::Receiver<RegistryState>,
}

impl ServiceWatch {
    /// Waits for the next change of the node's services, then lists them. Fails with
    /// [`Error::NodeClosed`] at once when the node is closed.
    pub async fn changed(&mut self) -> Result<Vec<ServiceInfo>> {
        if self.changes.borrow_and_update().closed {
            return Err(Error::NodeClosed);
        }
        self.changes.changed().await.map_err(|_| Error::NodeClosed)?;
        if self.changes.borrow_and_update().closed {
            return Err(Error::NodeClosed);
        }
        Ok(self.node.services())
    }

    /// Waits until `condition` holds for the node's services (checked now and after
    /// every change), at most `timeout`; returns the services it held for. Fails with
    /// [`Error::NodeClosed`] at once when the node is closed.
    pub async fn wait_for(
        &mut self,
        timeout: Duration,
        mut condition: impl FnMut(&[ServiceInfo]) -> bool,
    ) -> Result<Vec<ServiceInfo>> {
        let wait = async {
            loop {
                if self.changes.borrow_and_update().closed {
                    return Err(Error::NodeClosed);
                }
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

impl NodeBuilder {
    /// Creates the node with this configuration (no I/O is started).
    ///
    /// # Panics
    ///
    /// When a value is out of range (see [`Config::validate`]); use
    /// [`try_build`](NodeBuilder::try_build) for configuration that comes from users.
    pub fn build(self) -> Node {
        self.try_build().unwrap_or_else(|e| panic!("astranet::NodeBuilder::build: {e}"))
    }

    /// Creates the node, or [`Error::InvalidConfig`] naming the value out of range.
    ///
    /// ```
    /// use std::time::Duration;
    /// let err = astranet::Node::builder().keepalive(Duration::ZERO).try_build().unwrap_err();
    /// assert!(err.to_string().contains("keepalive"));
    /// ```
    pub fn try_build(self) -> Result<Node> {
        let config = self.into_config();
        config.validate()?;
        Ok(Node::with_config(config))
    }
}

fn start_tcp_link(node: &NodeShared, socket: TcpStream, peer: SocketAddr) -> LinkHandle {
    // Frames are batched by the writer already; Nagle would only add latency.
    let _ = socket.set_nodelay(true);
    if let Some(driver) = &node.config.link_driver {
        // A descriptor of its own for sending, so that incoming bytes wake the driver's
        // epoll alone once it reads the link.
        match TcpOut::own(&socket) {
            Ok(out) => {
                let reading = Reading::<TcpStream>::HandOver(socket, driver.clone());
                return node.start_link(reading, Sink::Tcp(Arc::new(out)), Some(peer), None);
            }
            Err(e) => tracing::warn!("the runtime reads the link to {peer}: {e}"),
        }
    }
    let (r, w) = socket.into_split();
    node.start_link(Reading::Runtime(r), Sink::Tcp(Arc::new(TcpOut::Half(w))), Some(peer), None)
}

pub(crate) async fn connect<A: ToSocketAddrs>(node: &NodeShared, addr: A) -> Result<LinkHandle> {
    let socket = TcpStream::connect(addr).await?;
    if let Some(tls) = &node.config.tls {
        return secure::connect(node, socket, tls).await;
    }
    let peer = socket.peer_addr()?;
    Ok(start_tcp_link(node, socket, peer))
}

/// The socket addresses `addr` stands for; the error names it ("Name or service not
/// known" alone does not say which of a config file's addresses failed).
async fn resolve(addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<Vec<SocketAddr>> {
    let shown = format!("{addr:?}");
    match tokio::net::lookup_host(addr).await {
        Ok(addrs) => Ok(addrs.collect()),
        Err(e) => Err(Error::Resolve(std::io::Error::new(e.kind(), format!("{shown}: {e}")))),
    }
}

/// `timeout` from now; a timeout too long to represent waits for about a century.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// Closes a link whose handshake its caller stopped waiting for (see [`Node::attach`]),
/// even one that came up meanwhile: the caller was told it failed.
struct GivenUp<'a>(Option<&'a LinkHandle>);

impl Drop for GivenUp<'_> {
    fn drop(&mut self) {
        if let Some(link) = self.0 {
            link.close(CloseReason::Local);
        }
    }
}
