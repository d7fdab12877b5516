//! Node configuration and its builder.

use crate::addr::HostId;
use crate::proto::link::LinkConfig;
use crate::proto::INITIAL_WINDOW;
use std::time::Duration;

/// What a node does in the mesh, with the Go package's meanings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Role {
    /// Announces its services to its neighbours and links directly to hosts it
    /// reaches through a relay (Go's `New()`, the default).
    #[default]
    Peer,
    /// Announces nothing; dials services others announce and links directly to
    /// relayed hosts (Go's `Client()`).
    Client,
    /// Announces its services; never links to relayed hosts (Go's `Server()`).
    Server,
    /// Announces its services and passes on the services its direct neighbours
    /// announce, so nodes that only reach the router can dial them (Go's `Router()`).
    Router,
}

impl Role {
    /// Whether this node announces the services it binds.
    pub fn announces(self) -> bool {
        self != Role::Client
    }

    /// Whether this node links directly to hosts it reaches through a relay
    /// (DISCOVER / FOLLOW): every role but [`Role::Server`].
    pub fn follows(self) -> bool {
        self != Role::Server
    }

    /// Whether this node re-announces its neighbours' services.
    pub fn routes(self) -> bool {
        self == Role::Router
    }
}

impl std::str::FromStr for Role {
    type Err = crate::Error;

    /// `"peer"`, `"client"`, `"server"` or `"router"`.
    fn from_str(s: &str) -> Result<Role, crate::Error> {
        Ok(match s {
            "peer" => Role::Peer,
            "client" => Role::Client,
            "server" => Role::Server,
            "router" => Role::Router,
            other => {
                return Err(crate::Error::InvalidConfig(format!(
                    "unknown role {other:?}: peer, client, server or router"
                )))
            }
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Peer => "peer",
            Role::Client => "client",
            Role::Server => "server",
            Role::Router => "router",
        })
    }
}

/// Keep-alive timings. The defaults are the Go package's (keep-alive 10 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeepAlive {
    /// Send PING when nothing was written for this long.
    pub ping_after: Duration,
    /// Close the link when a write has been pending this long.
    pub write_timeout: Duration,
    /// Close the link when nothing at all was received for this long.
    pub idle_timeout: Duration,
}

impl KeepAlive {
    /// The Go package's rule for a keep-alive period `k`: PING after `k/2` without
    /// writes, write timeout `k`, idle timeout `10k`.
    pub fn from_period(k: Duration) -> KeepAlive {
        KeepAlive { ping_after: k / 2, write_timeout: k, idle_timeout: k.saturating_mul(10) }
    }
}

impl Default for KeepAlive {
    fn default() -> Self {
        KeepAlive::from_period(Duration::from_secs(10))
    }
}

/// Limits that protect a node from hostile or runaway peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Streams (open, opening or lingering) per link; further dials are refused.
    pub max_streams_per_link: usize,
    /// Dials waiting for `accept` per listener; further dials are refused. When it is
    /// full, a dial over a link with fewer waiting than another takes the place of
    /// that one's newest, which is refused: one peer cannot fill it for everyone.
    pub listener_backlog: usize,
    /// Received bytes buffered but unread, per link; a peer that exceeds it is
    /// disconnected. Unread data may keep the link's read buffers alive: besides these
    /// bytes a link holds at most 17 read buffers of 256 KiB, or of one larger frame
    /// (beyond 16 kept alive, received data is copied out of them instead).
    pub max_link_buffer: usize,
    /// Bytes of frames queued for writing per link before writers wait.
    pub link_write_queue: usize,
    /// Streams this node relays for one dialing host; further relayed dials are
    /// refused ("relay stream limit reached").
    pub max_relayed_streams_per_host: usize,
    /// Streams this node relays in total.
    pub max_relayed_streams: usize,
    /// Service announcements stored per link; further ones are dropped (logged).
    pub max_announcements_per_link: usize,
    /// Service announcements stored per instance host, whatever links they came
    /// through; further ones are dropped (logged).
    pub max_announcements_per_host: usize,
    /// Bytes of control frames (answers to the peer's frames, DIALs, credit) queued on
    /// a link; a peer that makes it grow past this by not reading is disconnected.
    pub max_control_queue: usize,
    /// Links (and connections still in their handshake) accepted from one source IP
    /// address; further connections from it are closed at once.
    pub max_links_per_address: usize,
    /// Streams and DIALs a peer may reset per second on a link (with a burst of as
    /// many); a peer that resets faster is disconnected (a rapid-reset flood).
    pub max_resets_per_second: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_streams_per_link: 1 << 20,
            listener_backlog: 65_536,
            max_links_per_address: 256,
            max_resets_per_second: 10_000,
            max_link_buffer: 1 << 30,
            link_write_queue: 1 << 20,
            max_relayed_streams_per_host: 1 << 20,
            max_relayed_streams: 1 << 22,
            max_announcements_per_link: 100_000,
            max_announcements_per_host: 10_000,
            max_control_queue: 64 << 20,
        }
    }
}

/// Flow-control settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Windows {
    /// Largest receive window a stream is auto-tuned to.
    pub max_stream_window: u32,
    /// Total window growth (beyond the 64 KiB every stream starts with) per link.
    pub link_window_budget: u64,
    /// A receive window every stream is granted with its first credit, whatever its
    /// credit loop says (within `max_stream_window` and the link's budget); 0: none,
    /// windows grow only as the loop asks. Throughput rather than room for the link's
    /// other streams (see [`Stream::poll_read_with_window`](crate::Stream::poll_read_with_window)).
    pub min_stream_window: u32,
}

impl Default for Windows {
    fn default() -> Self {
        Windows { max_stream_window: 16 << 20, link_window_budget: 256 << 20, min_stream_window: 0 }
    }
}

/// Everything a [`Node`](crate::Node) is configured with.
#[derive(Clone, Debug)]
pub struct Config {
    /// What the node does in the mesh (default [`Role::Peer`]).
    pub role: Role,
    /// The environment suffix appended to every service name this node binds or
    /// dials (`".a.b"` for `env(["a", "b"])`; default empty). Meshes sharing routers
    /// are isolated by it.
    pub env: String,
    /// The node's host id; random by default.
    pub host_id: HostId,
    /// Keep-alive timings; by default those of a 10 s period (see [`KeepAlive`]).
    pub keepalive: KeepAlive,
    /// Resource limits (see [`Limits`] for the defaults).
    pub limits: Limits,
    /// Flow-control settings (see [`Windows`] for the defaults).
    pub windows: Windows,
    /// Default timeout of [`Node::dial`](crate::Node::dial).
    pub dial_timeout: Duration,
    /// A link whose peer sends no HANDSHAKE within this time is closed.
    pub handshake_timeout: Duration,
    /// A link is closed when a frame that began arriving is not complete within this
    /// time (a peer that sends a header and stalls). Go's read watchdog uses 10 s.
    pub frame_stall_timeout: Duration,
    /// How long a closed stream is remembered to absorb frames still in flight.
    pub linger: Duration,
    /// The idle timeout every stream starts with: a stream on which no data moved
    /// either way for this long is reset ([`Stream::set_idle_timeout`] changes it per
    /// stream). `None` (the default): streams live as long as their link.
    ///
    /// [`Stream::set_idle_timeout`]: crate::Stream::set_idle_timeout
    pub stream_idle_timeout: Option<Duration>,
    /// How often [`Node::join`](crate::Node::join) resolves its name again to join new addresses
    /// (default 10 s, as in the Go package).
    pub resolve_interval: Duration,
    /// Longest wait between two attempts of [`Node::join`](crate::Node::join) to re-establish a link.
    pub max_reconnect_delay: Duration,
    /// Encrypted, authenticated links (see [`crate::tls`]); `None`: plaintext links.
    pub tls: Option<crate::tls::TlsConfig>,
    /// Who may join, announce and dial (see [`crate::access`]); needs `tls`. `None`:
    /// every peer the mesh CA certified may do everything.
    pub access: Option<crate::access::AccessPolicy>,
    /// Who reads (and maybe writes) the plaintext TCP links once their handshake is
    /// done (see [`LinkDriver`](crate::LinkDriver)). `None` (the default): the runtime.
    pub link_driver: Option<std::sync::Arc<crate::LinkDriver>>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            role: Role::Peer,
            env: String::new(),
            host_id: HostId::random(),
            keepalive: KeepAlive::default(),
            limits: Limits::default(),
            windows: Windows::default(),
            dial_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            frame_stall_timeout: Duration::from_secs(10),
            linger: Duration::from_secs(10),
            stream_idle_timeout: None,
            max_reconnect_delay: Duration::from_secs(60),
            resolve_interval: Duration::from_secs(10),
            tls: None,
            access: None,
            link_driver: None,
        }
    }
}

/// Builds a [`Node`](crate::Node).
///
/// ```
/// use std::time::Duration;
/// let node = astranet::Node::builder()
///     .keepalive(Duration::from_secs(4))
///     .max_streams_per_link(100_000)
///     .build();
/// # drop(node);
/// ```
#[derive(Clone, Debug, Default)]
pub struct NodeBuilder {
    config: Config,
}

impl NodeBuilder {
    /// Links over TLS with this identity (see [`crate::tls`]): every link this node
    /// opens or accepts is encrypted and its peer authenticated by the mesh CA. The
    /// node's host id becomes the one its certificate names.
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> Self {
        self.config.host_id = tls.host_id();
        self.config.tls = Some(tls);
        self
    }

    /// Access rules for peers, by their certificate names (see [`crate::access`]).
    /// Needs [`NodeBuilder::tls`].
    pub fn access(mut self, policy: crate::access::AccessPolicy) -> Self {
        self.config.access = Some(policy);
        self
    }

    /// Plaintext TCP links are read (and, as its [`Drive`](crate::Drive) says,
    /// written) by `driver` once their handshake is done, on the threads that call
    /// [`LinkDriver::run`](crate::LinkDriver::run), instead of by the runtime (see
    /// [`LinkDriver`](crate::LinkDriver)).
    pub fn link_driver(mut self, driver: std::sync::Arc<crate::LinkDriver>) -> Self {
        self.config.link_driver = Some(driver);
        self
    }

    /// Fixes the host id instead of a random one (the default).
    pub fn host_id(mut self, id: HostId) -> Self {
        self.config.host_id = id;
        self
    }

    /// The node's role in the mesh (default [`Role::Peer`]).
    pub fn role(mut self, role: Role) -> Self {
        self.config.role = role;
        self
    }

    /// The environment: `env(["prod", "eu"])` makes every bound or dialed name end in
    /// `.prod.eu`, like Go's `WithEnv("prod", "eu")`.
    pub fn env<I, S>(mut self, parts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.config.env = parts.into_iter().map(|p| format!(".{}", p.as_ref())).collect();
        self
    }

    /// Streams relayed for one dialing host (default 1,048,576).
    pub fn max_relayed_streams_per_host(mut self, n: usize) -> Self {
        self.config.limits.max_relayed_streams_per_host = n;
        self
    }

    /// Streams relayed in total (default 4,194,304).
    pub fn max_relayed_streams(mut self, n: usize) -> Self {
        self.config.limits.max_relayed_streams = n;
        self
    }

    /// Service announcements stored per instance host (default 10,000).
    pub fn max_announcements_per_host(mut self, n: usize) -> Self {
        self.config.limits.max_announcements_per_host = n;
        self
    }

    /// Service announcements stored per link (default 100,000).
    pub fn max_announcements_per_link(mut self, n: usize) -> Self {
        self.config.limits.max_announcements_per_link = n;
        self
    }

    /// Keep-alive period `k` with the Go rules (see [`KeepAlive::from_period`]).
    /// Default: 10 s.
    pub fn keepalive(mut self, k: Duration) -> Self {
        self.config.keepalive = KeepAlive::from_period(k);
        self
    }

    /// Keep-alive timings set one by one. Default: those of a 10 s period.
    pub fn keepalive_timings(mut self, k: KeepAlive) -> Self {
        self.config.keepalive = k;
        self
    }

    /// Sets [`Limits::max_streams_per_link`]: streams (open, opening or lingering) per
    /// link. Beyond it our dials fail with [`Error::LimitExceeded`](crate::Error::LimitExceeded)
    /// and the peer's dials are refused (RST, or dropped for a v1
    /// peer). Default: 1,048,576 (2^20).
    pub fn max_streams_per_link(mut self, n: usize) -> Self {
        self.config.limits.max_streams_per_link = n;
        self
    }

    /// Sets [`Limits::max_resets_per_second`]: streams a peer may reset per second.
    pub fn max_resets_per_second(mut self, n: u32) -> Self {
        self.config.limits.max_resets_per_second = n;
        self
    }

    /// Sets [`Limits::max_links_per_address`]: links accepted from one source address.
    pub fn max_links_per_address(mut self, n: usize) -> Self {
        self.config.limits.max_links_per_address = n;
        self
    }

    /// Sets [`Limits::listener_backlog`]: dials waiting for `accept` per listener,
    /// beyond which dials are refused (RST, or dropped for a v1 peer); see the field
    /// for how a full backlog shares itself between links. Default: 65,536.
    pub fn listener_backlog(mut self, n: usize) -> Self {
        self.config.limits.listener_backlog = n;
        self
    }

    /// Sets [`Limits::max_link_buffer`]: bytes received but unread per link; a peer
    /// that exceeds it is disconnected. Default: 1 GiB.
    pub fn max_link_buffer(mut self, bytes: usize) -> Self {
        self.config.limits.max_link_buffer = bytes;
        self
    }

    /// Sets [`Limits::max_control_queue`]: bytes of control frames queued per link; a
    /// peer that makes it grow past this is disconnected. Default: 64 MiB.
    pub fn max_control_queue(mut self, bytes: usize) -> Self {
        self.config.limits.max_control_queue = bytes;
        self
    }

    /// Sets [`Limits::link_write_queue`]: bytes of data frames queued for writing per
    /// link before writers wait (at least 1). Default: 1 MiB.
    pub fn link_write_queue(mut self, bytes: usize) -> Self {
        self.config.limits.link_write_queue = bytes.max(1);
        self
    }

    /// Largest auto-tuned receive window per stream, in bytes (at least 64 KiB).
    /// Sets [`Windows::max_stream_window`]. Default: 16 MiB.
    pub fn max_stream_window(mut self, bytes: u32) -> Self {
        self.config.windows.max_stream_window = bytes.max(INITIAL_WINDOW);
        self
    }

    /// Total receive-window growth allowed per link, in bytes (0 disables
    /// auto-tuning). Sets [`Windows::link_window_budget`]. Default: 256 MiB.
    pub fn link_window_budget(mut self, bytes: u64) -> Self {
        self.config.windows.link_window_budget = bytes;
        self
    }

    /// A receive window every stream gets with its first credit, in bytes (at most
    /// [`max_stream_window`](NodeBuilder::max_stream_window); 0: none). Sets
    /// [`Windows::min_stream_window`]. Default: 0.
    ///
    /// Windows otherwise start at 64 KiB and grow to about twice what a stream moves
    /// per credit loop, which keeps little in flight ahead of a link's other streams
    /// but has a fast sender wait for credit every few hundred KiB on a short link.
    ///
    /// ```
    /// // Bulk transfers between two hosts in one rack: 4 MiB in flight per stream.
    /// let node = astranet::Node::builder().min_stream_window(4 << 20).build();
    /// # drop(node);
    /// ```
    pub fn min_stream_window(mut self, bytes: u32) -> Self {
        self.config.windows.min_stream_window = bytes;
        self
    }

    /// Sets [`Config::dial_timeout`], the timeout of [`Node::dial`](crate::Node::dial). Default: 30 s.
    pub fn dial_timeout(mut self, t: Duration) -> Self {
        self.config.dial_timeout = t;
        self
    }

    /// Sets [`Config::handshake_timeout`]: a link whose peer sends no HANDSHAKE within
    /// it is closed. Default: 10 s.
    pub fn handshake_timeout(mut self, t: Duration) -> Self {
        self.config.handshake_timeout = t;
        self
    }

    /// Sets [`Config::frame_stall_timeout`]: a link is closed when a frame that began
    /// arriving is not complete within it. Default: 10 s (as the Go package).
    pub fn frame_stall_timeout(mut self, t: Duration) -> Self {
        self.config.frame_stall_timeout = t;
        self
    }

    /// Sets [`Config::linger`]: how long a closed stream is remembered to absorb
    /// frames still in flight. Default: 10 s.
    pub fn linger(mut self, t: Duration) -> Self {
        self.config.linger = t;
        self
    }

    /// Sets [`Config::stream_idle_timeout`]: every stream is reset after this long
    /// without data moving either way. Default: none.
    pub fn stream_idle_timeout(mut self, t: Duration) -> Self {
        self.config.stream_idle_timeout = Some(t);
        self
    }

    /// Sets [`Config::max_reconnect_delay`], the longest back-off between two attempts
    /// of [`Node::join`](crate::Node::join) to re-establish a link. Default: 60 s.
    pub fn max_reconnect_delay(mut self, t: Duration) -> Self {
        self.config.max_reconnect_delay = t;
        self
    }

    /// How often [`Node::join`](crate::Node::join) resolves its name again (default 10 s).
    pub fn resolve_interval(mut self, t: Duration) -> Self {
        self.config.resolve_interval = t.max(Duration::from_millis(10));
        self
    }

    /// The configuration as built so far.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The configuration as built.
    pub fn into_config(self) -> Config {
        self.config
    }
}

impl Config {
    /// Checks every value against its range; the error names the first one out of it.
    /// [`NodeBuilder::try_build`] calls it, so a node never runs with a configuration
    /// that would, say, close every link at the first keep-alive tick.
    ///
    /// ```
    /// let mut config = astranet::Config::default();
    /// config.limits.listener_backlog = 0;
    /// assert!(config.validate().unwrap_err().to_string().contains("listener_backlog"));
    /// ```
    pub fn validate(&self) -> Result<(), crate::Error> {
        fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), crate::Error> {
            if ok {
                Ok(())
            } else {
                Err(crate::Error::InvalidConfig(what()))
            }
        }
        let positive = |name: &str, d: Duration| check(!d.is_zero(), || format!("{name} must be positive"));
        let id = self.host_id.0;
        check(id != 0 && id >> 63 == 0, || format!("host_id must be from 1 to 2^63 - 1, got {id}"))?;
        check(self.access.is_none() || self.tls.is_some(), || {
            "an access policy needs TLS: peers are named by their certificates".into()
        })?;
        if let Some(tls) = &self.tls {
            check(tls.host_id() == self.host_id, || {
                format!("host_id {} differs from {}, the one the TLS certificate names", self.host_id, tls.host_id())
            })?;
        }
        let k = &self.keepalive;
        positive("keepalive (its ping interval)", k.ping_after)?;
        positive("keepalive (its write timeout)", k.write_timeout)?;
        // An idle timeout below the ping interval is allowed: a node may rely on its
        // peer's PINGs (as the interop suite's liveness test does).
        positive("keepalive (its idle timeout)", k.idle_timeout)?;
        positive("dial_timeout", self.dial_timeout)?;
        positive("handshake_timeout", self.handshake_timeout)?;
        positive("frame_stall_timeout", self.frame_stall_timeout)?;
        positive("max_reconnect_delay", self.max_reconnect_delay)?;
        positive("resolve_interval", self.resolve_interval)?;
        if let Some(t) = self.stream_idle_timeout {
            positive("stream_idle_timeout", t)?;
        }
        let l = &self.limits;
        check(l.max_streams_per_link > 0, || "max_streams_per_link must be at least 1".into())?;
        check(l.listener_backlog > 0, || "listener_backlog must be at least 1".into())?;
        check(l.max_links_per_address > 0, || "max_links_per_address must be at least 1".into())?;
        check(l.max_resets_per_second > 0, || "max_resets_per_second must be at least 1".into())?;
        check(l.link_write_queue > 0, || "link_write_queue must be at least 1".into())?;
        // A peer may send a whole initial window on one stream before we read a byte.
        check(l.max_link_buffer >= INITIAL_WINDOW as usize, || {
            format!("max_link_buffer must be at least {INITIAL_WINDOW} (one stream's initial window)")
        })?;
        check(l.max_control_queue >= 1024, || "max_control_queue must be at least 1024".into())?;
        check(self.windows.max_stream_window >= INITIAL_WINDOW, || {
            format!("max_stream_window must be at least {INITIAL_WINDOW}")
        })?;
        check(self.windows.min_stream_window <= self.windows.max_stream_window, || {
            format!("min_stream_window must not exceed max_stream_window ({})", self.windows.max_stream_window)
        })?;
        // `env(["a", "b"])` stores ".a.b": no part may be empty, and since it ends every
        // service name, it may hold nothing a name may not.
        let shown = self.env.strip_prefix('.').unwrap_or(&self.env);
        check(
            self.env.is_empty() || self.env.split('.').skip(1).all(|p| !p.is_empty()) && self.env.starts_with('.'),
            || format!("the environment {shown:?} has an empty part"),
        )?;
        check(!self.env.contains(|c: char| c == ':' || c.is_whitespace() || c.is_control()), || {
            format!("the environment {shown:?} holds ':', whitespace or a control character, as no service name may")
        })?;
        Ok(())
    }

    /// What each link of the node is configured with.
    pub(crate) fn link_config(&self) -> LinkConfig {
        LinkConfig {
            ping_after: self.keepalive.ping_after,
            idle_timeout: self.keepalive.idle_timeout,
            handshake_timeout: self.handshake_timeout,
            frame_stall_timeout: self.frame_stall_timeout,
            linger: self.linger,
            max_streams: self.limits.max_streams_per_link,
            max_buffer: self.limits.max_link_buffer,
            write_queue: self.limits.link_write_queue,
            max_control_queue: self.limits.max_control_queue,
            max_stream_window: self.windows.max_stream_window,
            min_stream_window: self.windows.min_stream_window,
            window_budget: self.windows.link_window_budget,
            max_resets_per_second: self.limits.max_resets_per_second,
            stream_idle_timeout: self.stream_idle_timeout,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Node;

    fn rejected(b: NodeBuilder, what: &str) {
        let e = b.try_build().expect_err(what);
        assert!(matches!(e, crate::Error::InvalidConfig(_)), "{e}");
        assert!(e.to_string().contains(what), "{e} should name {what}");
    }

    #[test]
    fn values_out_of_range_are_refused_by_name() {
        rejected(Node::builder().keepalive(Duration::ZERO), "keepalive");
        rejected(Node::builder().host_id(HostId(0)), "host_id");
        rejected(Node::builder().host_id(HostId(1 << 63)), "host_id");
        rejected(Node::builder().listener_backlog(0), "listener_backlog");
        rejected(Node::builder().max_streams_per_link(0), "max_streams_per_link");
        rejected(Node::builder().dial_timeout(Duration::ZERO), "dial_timeout");
        rejected(Node::builder().handshake_timeout(Duration::ZERO), "handshake_timeout");
        rejected(Node::builder().frame_stall_timeout(Duration::ZERO), "frame_stall_timeout");
        rejected(Node::builder().max_link_buffer(1000), "max_link_buffer");
        rejected(Node::builder().max_control_queue(0), "max_control_queue");
        rejected(Node::builder().env(["prod", ""]), "environment \"prod.\" has an empty part");
        rejected(Node::builder().env(["has space"]), "environment \"has space\" holds");
        rejected(Node::builder().env(["a:b"]), "environment \"a:b\" holds");
        rejected(Node::builder().max_stream_window(1 << 20).min_stream_window(2 << 20), "min_stream_window");
        let k = KeepAlive {
            ping_after: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            idle_timeout: Duration::ZERO,
        };
        rejected(Node::builder().keepalive_timings(k), "idle timeout");
    }

    #[test]
    fn defaults_and_documented_clamps_are_valid() {
        Config::default().validate().unwrap();
        Node::builder()
            .linger(Duration::ZERO)
            .link_write_queue(0)
            .max_stream_window(1)
            .env(["prod", "eu"])
            .try_build()
            .unwrap();
    }

    #[test]
    fn roles_read_as_they_print() {
        for r in [Role::Peer, Role::Client, Role::Server, Role::Router] {
            assert_eq!(r.to_string().parse::<Role>().unwrap(), r);
        }
        assert!("relay".parse::<Role>().unwrap_err().to_string().contains("unknown role"));
    }

    #[test]
    #[should_panic(expected = "keepalive")]
    fn build_panics_on_a_value_out_of_range() {
        let _ = Node::builder().keepalive(Duration::ZERO).build();
    }
}
