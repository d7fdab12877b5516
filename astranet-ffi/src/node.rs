//! Nodes: creation with a configuration struct, TCP links, binding, dialing, counters.

use crate::error::{astranet_error, astranet_result, Failure};
use crate::handles::{self, Obj};
use crate::listener::{astranet_listener, ListenerH};
use crate::poll::{DriveLinks, ReadySet};
use crate::stream::{astranet_stream, StreamH};
use crate::{c_str, ffi, fill_array, out};
use astranet::Drive;
use astranet_embed::config::{FlatConfig, TlsPem};
use astranet_embed::runtime::Runtime;
use astranet_embed::wait::Wait;
use std::ffi::{c_char, c_void};
use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

/// A node (opaque handle): an astranet instance with its host id, links, listeners and
/// streams. Created by `astranet_node_new`, released by `astranet_node_free`.
///
/// Thread-safety: every function taking a node may be called from any thread, also
/// concurrently.
pub struct astranet_node {
    _private: [u8; 0],
}

/// A virtual address: a node's 64-bit host id and a 32-bit virtual port. As text it is
/// "<16 hex digits>:<port>" (see `astranet_addr_format`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct astranet_addr {
    /// The node's host id.
    pub host: u64,
    /// The virtual port.
    pub port: u32,
}

impl From<astranet::Addr> for astranet_addr {
    fn from(a: astranet::Addr) -> Self {
        astranet_addr { host: a.host.0, port: a.port.0 }
    }
}

/// Room for any text the library writes into a caller's buffer (an address with its
/// port and the terminating NUL).
pub const ASTRANET_ADDR_STRLEN: usize = 64;

/// Node configuration. Fill it with `astranet_node_config_init` (the defaults), then
/// change fields. Durations are in milliseconds.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct astranet_node_config {
    /// `sizeof(astranet_node_config)`, set by `astranet_node_config_init`: lets later
    /// versions of the library add fields and still read this one.
    pub struct_size: usize,
    /// The node's host id; 0 (the default) for a random one.
    pub host_id: u64,
    /// Keep-alive period k: PING after k/2 without writes, a link is dead after a write
    /// makes no progress for k or nothing arrives for 10k. Default 10000.
    pub keepalive_ms: u32,
    /// Default timeout of `astranet_dial` when it is given a negative timeout. Default 30000.
    pub dial_timeout_ms: u32,
    /// A link whose peer sends no handshake within this time is closed. Default 10000.
    pub handshake_timeout_ms: u32,
    /// How long a closed stream is remembered to absorb frames in flight. Default 10000.
    pub linger_ms: u32,
    /// Longest wait between two attempts of `astranet_join` to re-establish a link.
    /// Default 60000.
    pub max_reconnect_delay_ms: u32,
    /// Streams (open, opening or lingering) per link. Default 1048576.
    pub max_streams_per_link: u64,
    /// Dials waiting for accept per listener; more are refused. Default 65536.
    pub listener_backlog: u64,
    /// Bytes received but unread per link; a peer exceeding it is disconnected. Default 1 GiB.
    pub max_link_buffer: u64,
    /// Bytes of data frames queued per link before writers wait (0 counts as 1). Default
    /// 1 MiB.
    pub link_write_queue: u64,
    /// Bytes of control frames queued per link; a peer that makes it grow past this is
    /// disconnected. Default 64 MiB.
    pub max_control_queue: u64,
    /// Largest auto-tuned receive window per stream (smaller values count as 65536, the
    /// initial window). Default 16 MiB.
    pub max_stream_window: u32,
    /// Total receive-window growth per link (0 disables auto-tuning). Default 256 MiB.
    pub link_window_budget: u64,
    /// 0 (the default): the node runs on the process-wide runtime, started on first use
    /// with one worker thread per CPU (or `$ASTRANET_WORKER_THREADS`). N > 0: the node
    /// gets a runtime of its own with N worker threads (at most 1024), stopped when the
    /// node is freed.
    pub worker_threads: u32,
    /// What the node does in the mesh: `ASTRANET_ROLE_PEER` (the default),
    /// `ASTRANET_ROLE_CLIENT`, `ASTRANET_ROLE_SERVER` or `ASTRANET_ROLE_ROUTER`, with the
    /// Go package's meanings (see the constants).
    pub role: u32,
    /// The environment, dot-separated ("prod.eu": every bound or dialed service name
    /// ends in ".prod.eu", like Go's `WithEnv("prod", "eu")`); NULL or "" (the default)
    /// for none. Read during `astranet_node_new` only.
    pub environment: *const c_char,
    /// A link is closed when a frame whose header arrived is not complete within this
    /// time (a peer that stalls mid-frame). Default 10000, as the Go package.
    pub frame_stall_timeout_ms: u32,
    /// TLS links (all three set, or none): the PEM text (NUL-terminated) of the mesh
    /// CA's certificate, of this node's certificate chain and of its private key (see
    /// `astranet keys` of the command line). Every link is then TLS 1.3 with both sides
    /// authenticated by the mesh CA, and the node's host id is the one its certificate
    /// names (`host_id` must be 0 or the same). NULL (the default): plaintext links.
    /// Read during `astranet_node_new` only.
    pub tls_ca_pem: *const c_char,
    /// This node's certificate chain (PEM), its own first. See `tls_ca_pem`.
    pub tls_cert_pem: *const c_char,
    /// This node's private key (PEM). See `tls_ca_pem`.
    pub tls_key_pem: *const c_char,
    /// With TLS, also accept plaintext links (nodes without TLS, such as Go nodes):
    /// 1 yes, 0 (the default) no.
    pub tls_allow_plaintext: u32,
    /// The idle timeout every stream starts with: a stream on which no data moved either
    /// way for this long is reset (see `astranet_stream_set_idle_timeout`). 0 (the
    /// default): none.
    pub stream_idle_timeout_ms: u32,
    /// Who may join, announce, dial and relay (needs TLS: peers are named by their
    /// certificates' common names): NUL-terminated TOML text of `[[access]]` tables
    /// with the keys `peers`, `announce`, `dial` and `relay`, as in the configuration
    /// file of the `astranet` command (docs/OPERATIONS.md). A peer no rule matches may
    /// not join; a dial the policy refuses fails at the dialer with
    /// `ASTRANET_ERR_REFUSED`. NULL (the default): no policy. Read during
    /// `astranet_node_new` only.
    pub access_toml: *const c_char,
    /// 1: the node's plaintext TCP links are read inside `astranet_poll`, on the
    /// caller's thread, once their handshake is done; the node fd is then also
    /// readable while a link has bytes to read, and `astranet_poll` may return no
    /// event (the bytes held none). This saves a thread wake-up per message for
    /// programs that poll on a thread of their own; they must call `astranet_poll`
    /// whenever the fd is readable, or the links go unread and their peers close them.
    /// Several threads may call it at once. Blocking calls (`astranet_dial`,
    /// `astranet_stream_read_timeout`, …) also read the links while they wait, every
    /// millisecond, so a program without an event loop works while one of its threads
    /// waits in such a call; between calls nothing reads the links (a stream this node
    /// accepted is then not established at its dialer, whose dial may time out). Handshakes (so
    /// `astranet_join`) and TLS links are served by the node's worker threads either
    /// way. Each link read this way holds one more descriptor (its sending side's
    /// own).
    ///
    /// 2: as 1, and the links are also written inside `astranet_poll` (the node fd is
    /// also readable while a link has frames to write): the node's worker threads then
    /// take no part in moving a link's bytes, which suits a program whose own
    /// scheduler runs its threads (the Go package sets it). What a stream writes then
    /// leaves only while a thread calls `astranet_poll` on its node (or a blocking
    /// call on the node waits), so this mode needs an event loop that serves the node
    /// fd for as long as the node has streams. `astranet_node_free` still flushes what
    /// was queued: the worker threads write it.
    ///
    /// 0 (the default): worker threads read and write every link.
    pub read_links_in_poll: u32,
    /// A receive window every stream is granted with its first credit, whatever its
    /// credit loop says (at most `max_stream_window`, within `link_window_budget`):
    /// throughput rather than room for the link's other streams. 0 (the default):
    /// windows start at 64 KiB and grow to about twice what a stream moves per loop.
    pub min_stream_window: u32,
}

/// Role: announces its services and links directly to hosts it reaches through a
/// relay (Go's `New()`, the default).
pub const ASTRANET_ROLE_PEER: u32 = 0;
/// Role: announces nothing; dials services others announce (Go's `Client()`).
pub const ASTRANET_ROLE_CLIENT: u32 = 1;
/// Role: announces its services; never links to relayed hosts (Go's `Server()`).
pub const ASTRANET_ROLE_SERVER: u32 = 2;
/// Role: announces its services and passes on those of its direct neighbours, so
/// nodes that only reach the router can dial them (Go's `Router()`).
pub const ASTRANET_ROLE_ROUTER: u32 = 3;

fn ms(d: Duration) -> u32 {
    d.as_millis().min(u32::MAX as u128) as u32
}

fn defaults() -> astranet_node_config {
    let c = astranet::Config::default();
    astranet_node_config {
        struct_size: std::mem::size_of::<astranet_node_config>(),
        host_id: 0,
        keepalive_ms: ms(c.keepalive.write_timeout),
        dial_timeout_ms: ms(c.dial_timeout),
        handshake_timeout_ms: ms(c.handshake_timeout),
        linger_ms: ms(c.linger),
        max_reconnect_delay_ms: ms(c.max_reconnect_delay),
        max_streams_per_link: c.limits.max_streams_per_link as u64,
        listener_backlog: c.limits.listener_backlog as u64,
        max_link_buffer: c.limits.max_link_buffer as u64,
        link_write_queue: c.limits.link_write_queue as u64,
        max_control_queue: c.limits.max_control_queue as u64,
        max_stream_window: c.windows.max_stream_window,
        link_window_budget: c.windows.link_window_budget,
        worker_threads: 0,
        role: ASTRANET_ROLE_PEER,
        environment: std::ptr::null(),
        frame_stall_timeout_ms: ms(c.frame_stall_timeout),
        tls_ca_pem: std::ptr::null(),
        tls_cert_pem: std::ptr::null(),
        tls_key_pem: std::ptr::null(),
        tls_allow_plaintext: 0,
        stream_idle_timeout_ms: c.stream_idle_timeout.map_or(0, ms),
        access_toml: std::ptr::null(),
        read_links_in_poll: 0,
        min_stream_window: c.windows.min_stream_window,
    }
}

/// Fills `config` with the defaults (those of the Go package where it has one) and
/// sets its `struct_size`.
///
/// Returns `ASTRANET_OK`, or `ASTRANET_ERR_INVALID_ARGUMENT` when `config` is NULL.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_node_config_init(config: *mut astranet_node_config) -> astranet_result {
    ffi!(std::ptr::null_mut(), {
        out(config, "config")?.set(defaults());
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// The struct's values as the flat configuration every front shares (0 host id: a
/// random one; NULL or "" environment: none). The core validates the values.
fn flat(c: &astranet_node_config) -> Result<FlatConfig, Failure> {
    let d = |ms: u32| Some(Duration::from_millis(ms as u64));
    let role = match c.role {
        ASTRANET_ROLE_PEER => astranet::Role::Peer,
        ASTRANET_ROLE_CLIENT => astranet::Role::Client,
        ASTRANET_ROLE_SERVER => astranet::Role::Server,
        ASTRANET_ROLE_ROUTER => astranet::Role::Router,
        r => return Err(Failure::invalid(format!("role {r} is not an ASTRANET_ROLE_* value"))),
    };
    let env = if c.environment.is_null() { None } else { Some(c_str(c.environment, "environment")?.to_string()) };
    let pem = |p: *const c_char, what: &str| -> Result<Option<Vec<u8>>, Failure> {
        Ok(if p.is_null() { None } else { Some(c_str(p, what)?.as_bytes().to_vec()) })
    };
    let tls = match (
        pem(c.tls_ca_pem, "tls_ca_pem")?,
        pem(c.tls_cert_pem, "tls_cert_pem")?,
        pem(c.tls_key_pem, "tls_key_pem")?,
    ) {
        (Some(ca), Some(cert), Some(key)) => {
            Some(TlsPem { ca, cert, key, allow_plaintext: c.tls_allow_plaintext != 0 })
        }
        (None, None, None) => None,
        _ => return Err(Failure::invalid("TLS needs all of tls_ca_pem, tls_cert_pem and tls_key_pem")),
    };
    Ok(FlatConfig {
        role: Some(role),
        env,
        host_id: (c.host_id != 0).then_some(c.host_id),
        keepalive: d(c.keepalive_ms),
        dial_timeout: d(c.dial_timeout_ms),
        handshake_timeout: d(c.handshake_timeout_ms),
        frame_stall_timeout: d(c.frame_stall_timeout_ms),
        linger: d(c.linger_ms),
        max_reconnect_delay: d(c.max_reconnect_delay_ms),
        max_streams_per_link: Some(c.max_streams_per_link),
        listener_backlog: Some(c.listener_backlog),
        max_link_buffer: Some(c.max_link_buffer),
        link_write_queue: Some(c.link_write_queue),
        max_control_queue: Some(c.max_control_queue),
        max_stream_window: Some(c.max_stream_window),
        link_window_budget: Some(c.link_window_budget),
        min_stream_window: Some(c.min_stream_window),
        stream_idle_timeout: (c.stream_idle_timeout_ms != 0)
            .then(|| Duration::from_millis(c.stream_idle_timeout_ms.into())),
        tls,
        access: match c.access_toml.is_null() {
            true => None,
            false => Some(astranet_embed::config::access_from_toml(c_str(c.access_toml, "access_toml")?)?),
        },
    })
}

pub(crate) struct NodeH {
    pub(crate) node: astranet::Node,
    pub(crate) ready: Arc<ReadySet>,
    pub(crate) rt: Runtime,
}

impl NodeH {
    /// Runs `fut` on the node's runtime and waits for it on this (C) thread.
    pub(crate) fn run<F>(&self, fut: F) -> Result<F::Output, Failure>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let links = DriveLinks(self.ready.links.as_deref());
        self.rt.run(Wait::Forever, links, fut).map_err(|stopped| stopped.failure("astranet call", None))
    }
}

impl Drop for NodeH {
    fn drop(&mut self) {
        self.node.close();
    }
}

fn node_of(p: *mut astranet_node) -> Result<Arc<NodeH>, Failure> {
    handles::get(p as usize, "node", handles::node)
}

/// Creates a node. `config` may be NULL for the defaults; otherwise it must have been
/// set up with `astranet_node_config_init`. Starts the node's runtime if needed (the
/// process-wide one is started on the first call). No link is opened yet.
///
/// On success writes an owned handle to `*node_out` (free it with `astranet_node_free`).
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (NULL `node_out`, a wrong `struct_size`, a
/// value out of range), `ASTRANET_ERR_IO` (no eventfd or threads could be created),
/// `ASTRANET_ERR_FORKED`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_node_new(
    config: *const astranet_node_config,
    node_out: *mut *mut astranet_node,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let node_out = out(node_out, "node_out")?;
        let mut c = defaults();
        if !config.is_null() {
            // SAFETY: reads the size field first, then at most that many bytes (the
            // caller's struct may come from an older, smaller version of the header).
            let size = unsafe { (*config).struct_size };
            let ours = std::mem::size_of::<astranet_node_config>();
            if size < std::mem::size_of::<usize>() || size > ours {
                return Err(Failure::invalid(format!(
                    "config->struct_size is {size}, expected {ours}: use astranet_node_config_init"
                )));
            }
            // SAFETY: copies `size` bytes of the caller's struct over the defaults.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    config.cast::<u8>(),
                    (&mut c as *mut astranet_node_config).cast::<u8>(),
                    size,
                )
            };
        }
        let mut builder = flat(&c)?.builder()?;
        let drive = match c.read_links_in_poll {
            0 => None,
            1 => Some(Drive::Reads),
            2 => Some(Drive::ReadsAndWrites),
            v => return Err(Failure::invalid(format!("read_links_in_poll is {v}, expected 0, 1 or 2"))),
        };
        let ready = ReadySet::new(drive)?;
        if let Some(links) = &ready.links {
            builder = builder.link_driver(links.clone());
        }
        let node = builder.try_build()?;
        let rt = Runtime::new(c.worker_threads)?;
        let h = NodeH { node, ready, rt };
        node_out.set(handles::insert(Obj::Node(Arc::new(h))) as *mut astranet_node);
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Closes and frees a node: every listener and link is closed (queued frames are
/// flushed first), streams of the node fail with `ASTRANET_ERR_LINK_CLOSED` (their
/// handles stay valid until closed), and the node fd must no longer be used. Calls
/// blocked on the node in other threads return with an error. Safe from any thread.
///
/// Returns `ASTRANET_OK`, also for NULL (nothing to do); `ASTRANET_ERR_BAD_HANDLE` for
/// a node freed already (a double free is an error code, not a crash) or a handle of
/// another kind; `ASTRANET_ERR_FORKED` in a forked child (the node is leaked there).
#[no_mangle]
pub extern "C" fn astranet_node_free(node: *mut astranet_node) -> astranet_result {
    ffi!(std::ptr::null_mut(), {
        if node.is_null() {
            return Ok(astranet_result::ASTRANET_OK);
        }
        let h = handles::remove(node as usize, "node", handles::node)?;
        h.node.close();
        h.ready.close();
        drop(h);
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// The node's readiness fd: readable exactly while `astranet_poll` has events to
/// return (an eventfd), or, with `read_links_in_poll`, also while a link has bytes for
/// it to read or (with 2) frames for it to write (an epoll fd). Add it to `epoll`/`poll`/`select` for reading
/// (level-triggered); never read, write or close it yourself. It is owned by the node and valid until
/// `astranet_node_free`. One fd per node, whatever the number of streams.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (NULL `fd_out`), `ASTRANET_ERR_BAD_HANDLE`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_node_fd(
    node: *mut astranet_node,
    fd_out: *mut i32,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let fd_out = out(fd_out, "fd_out")?;
        fd_out.set(node_of(node)?.ready.node_fd());
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Writes the node's 64-bit host id to `*host_id_out`.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (NULL `host_id_out`), `ASTRANET_ERR_BAD_HANDLE`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_node_host_id(
    node: *mut astranet_node,
    host_id_out: *mut u64,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let o = out(host_id_out, "host_id_out")?;
        o.set(node_of(node)?.node.host_id().0);
        Ok(astranet_result::ASTRANET_OK)
    })
}

fn write_str(buf: *mut c_char, cap: usize, s: &str) {
    if buf.is_null() || cap == 0 {
        return;
    }
    let n = s.len().min(cap - 1);
    // SAFETY: the caller passes `cap` writable bytes (documented); we write n + 1 <= cap.
    unsafe {
        std::ptr::copy_nonoverlapping(s.as_ptr(), buf.cast::<u8>(), n);
        *buf.add(n) = 0;
    }
}

/// Accepts links on a TCP address such as "127.0.0.1:0" or "[::1]:7000"; links are
/// accepted in the background until the node is freed. If `bound` is not NULL, the bound
/// address ("127.0.0.1:41234", useful with port 0) is written there as a NUL-terminated
/// string; `bound_capacity` must then be at least `ASTRANET_ADDR_STRLEN`. Blocks until
/// the socket is bound (no network round trip).
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (NULL or non-UTF-8 `addr`, buffer too small),
/// `ASTRANET_ERR_ADDR_IN_USE`, `ASTRANET_ERR_RESOLVE` (malformed, or the name did not
/// resolve), `ASTRANET_ERR_IO` (other socket errors), `ASTRANET_ERR_NODE_CLOSED`, `ASTRANET_ERR_BAD_HANDLE`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_listen(
    node: *mut astranet_node,
    addr: *const c_char,
    bound: *mut c_char,
    bound_capacity: usize,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let n = node_of(node)?;
        let addr = c_str(addr, "addr")?.to_string();
        if !bound.is_null() && bound_capacity < ASTRANET_ADDR_STRLEN {
            return Err(Failure::invalid("bound_capacity is below ASTRANET_ADDR_STRLEN"));
        }
        let core = n.node.clone();
        let local = n.run(async move { core.listen(addr).await })??;
        write_str(bound, bound_capacity, &local.to_string());
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Opens a TCP link to a node listening at `addr` ("127.0.0.1:7000") and keeps it up:
/// when it drops it is re-dialed with exponential back-off until the node is freed.
/// Blocks until the handshake is done or `timeout_ms` ran out (negative: no limit). On
/// success writes the peer's host id to `*peer_host_id` if that is not NULL. A join
/// that fails or times out is given up: nothing keeps trying, and joining the address
/// again tries again. Joining an address already joined returns its peer at once.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT`, `ASTRANET_ERR_RESOLVE` (malformed, or the
/// name did not resolve), `ASTRANET_ERR_TIMED_OUT` (also when the peer never completes
/// the handshake), `ASTRANET_ERR_REFUSED` (nobody listens there), `ASTRANET_ERR_IO`
/// (other socket errors), `ASTRANET_ERR_LINK_CLOSED` (the handshake failed),
/// `ASTRANET_ERR_PROTOCOL`,
/// `ASTRANET_ERR_INVALID_TARGET` (already joining the address, no link up yet: another
/// thread's join of it is in progress), `ASTRANET_ERR_NODE_CLOSED`,
/// `ASTRANET_ERR_BAD_HANDLE`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_join(
    node: *mut astranet_node,
    addr: *const c_char,
    timeout_ms: i32,
    peer_host_id: *mut u64,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let n = node_of(node)?;
        let addr = c_str(addr, "addr")?.to_string();
        let core = n.node.clone();
        let limit = astranet_embed::wait::millis(timeout_ms);
        let what = format!("join {addr}");
        let host = n.run(async move {
            match limit {
                None => core.join(addr).await,
                Some(t) => match tokio::time::timeout(t, core.join(addr)).await {
                    Ok(r) => r,
                    Err(_) => Err(astranet::Error::TimedOut { what, after: t }),
                },
            }
        })??;
        if !peer_host_id.is_null() {
            out(peer_host_id, "peer_host_id")?.set(host.0);
        }
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Runs a link over `fd`, a connected stream socket of any family (the end of a
/// `socketpair`, a Unix or TCP connection a program relays), as `astranet_join` does
/// over the TCP connection it opens. Blocks until the handshake is done or
/// `timeout_ms` ran out (negative: the node's `handshake_timeout_ms` alone bounds
/// it; 0 is refused, as the handshake needs the peer); on success writes the peer's
/// host id to `*peer_host_id` if that is not NULL. The link then runs until the other
/// end goes away or the node is freed, and is not re-established.
///
/// The library owns `fd` from the call on: when this returns, whatever it returns,
/// `fd` is closed (the link runs over a duplicate, closed when the link ends, which
/// the other end reads as end of file).
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (`fd` is not a connected stream socket: a
/// listening or unconnected socket, a pipe, a file; `timeout_ms` is 0),
/// `ASTRANET_ERR_TIMED_OUT`, `ASTRANET_ERR_LINK_CLOSED` (the other end closed or
/// failed the handshake, or the node was freed meanwhile), `ASTRANET_ERR_PROTOCOL`
/// (also: the other end is this node), `ASTRANET_ERR_IO`, `ASTRANET_ERR_NODE_CLOSED`,
/// `ASTRANET_ERR_BAD_HANDLE`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_attach(
    node: *mut astranet_node,
    fd: i32,
    timeout_ms: i32,
    peer_host_id: *mut u64,
    err: *mut *mut astranet_error,
) -> astranet_result {
    // SAFETY: the caller hands `fd` over. Owned before anything can fail (the fork
    // check included), so that every return closes it.
    let fd = (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd) });
    ffi!(err, {
        let fd = fd.ok_or_else(|| Failure::invalid("fd is negative"))?;
        let n = node_of(node)?;
        if !astranet_embed::socket::is_connected_stream_socket(&fd) {
            return Err(Failure::invalid("fd is not a connected stream socket"));
        }
        if timeout_ms == 0 {
            return Err(Failure::invalid("timeout_ms is 0: a handshake needs the peer"));
        }
        // The caller's descriptor is closed at return; the link's own closes with it.
        let link_fd = fd.try_clone()?;
        drop(fd);
        let core = n.node.clone();
        let limit = astranet_embed::wait::millis(timeout_ms);
        let host = n.run(async move {
            // Registered with the reactor of the runtime that serves the link.
            let io = astranet_embed::socket::Socket::new(link_fd)?;
            match limit {
                None => core.attach(io).await,
                Some(t) => match tokio::time::timeout(t, core.attach(io)).await {
                    Ok(r) => r,
                    Err(_) => Err(astranet::Error::TimedOut { what: "attach".into(), after: t }),
                },
            }
        })??;
        if !peer_host_id.is_null() {
            out(peer_host_id, "peer_host_id")?.set(host.0);
        }
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Binds a listener: ":7" for virtual port 7, "" or ":0" for a free automatic port (see
/// `astranet_listener_addr`), "name" or "name:7" to also announce the service `name`
/// (the node's environment appended) to the mesh, so that `astranet_dial` by name
/// reaches it. On success writes an owned handle to `*listener_out` (close it with
/// `astranet_listener_close`, which also withdraws the announcement). Does not block.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (NULL arguments), `ASTRANET_ERR_INVALID_TARGET`
/// (a port that is not a number, an invalid name), `ASTRANET_ERR_ADDR_IN_USE`,
/// `ASTRANET_ERR_NODE_CLOSED`, `ASTRANET_ERR_BAD_HANDLE`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_bind(
    node: *mut astranet_node,
    target: *const c_char,
    listener_out: *mut *mut astranet_listener,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let listener_out = out(listener_out, "listener_out")?;
        let n = node_of(node)?;
        let target = c_str(target, "target")?;
        let l = n.node.bind(target)?;
        let h = ListenerH::new(l, &n);
        listener_out.set(handles::insert(Obj::Listener(h)) as *mut astranet_listener);
        Ok(astranet_result::ASTRANET_OK)
    })
}

fn parse_target(target: *const c_char, key: *const c_char) -> Result<astranet::Target, Failure> {
    let t = c_str(target, "target")?.parse::<astranet::Target>()?;
    Ok(if key.is_null() { t } else { t.with_key(c_str(key, "key")?) })
}

fn dial_limit(n: &NodeH, timeout_ms: i32) -> Duration {
    astranet_embed::wait::millis(timeout_ms).unwrap_or(n.node.config().dial_timeout)
}

/// Opens a stream and blocks until it is established, refused, or `timeout_ms` ran out
/// (negative: the node's `dial_timeout_ms`). `target` is either an address,
/// "<host id, 16 hex digits>:<port>" (as written by `astranet_addr_format`), or a
/// service name (the node's environment is appended), which picks one of the
/// instances announced in the mesh: at random, or by consistent hashing on `key` when
/// `key` is not NULL (every node maps the same key to the same instance; `key` is
/// ignored for an address). A name nobody announced yet is waited for up to the
/// timeout. On success writes an owned handle to `*stream_out` (close it with
/// `astranet_stream_close`).
///
/// Unlike TCP's `connect`, a dial is established when the listener's program accepts
/// it (the protocol answers a dial on accept): a thread cannot dial and then accept
/// its own dial. A node does not dial its own listeners (as the Go package without
/// its loop-back link): its own host id is `ASTRANET_ERR_NO_ROUTE`, and its own
/// services are not among the instances a name picks from.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT`, `ASTRANET_ERR_INVALID_TARGET`,
/// `ASTRANET_ERR_NO_SUCH_SERVICE` (nobody announced the name within the timeout),
/// `ASTRANET_ERR_NO_ROUTE` (no link to that host), `ASTRANET_ERR_REFUSED` (nobody listens,
/// backlog full, stream limit; astranet peers answer at once), `ASTRANET_ERR_TIMED_OUT`
/// (a Go peer never refuses: dials to a closed port time out), `ASTRANET_ERR_LINK_CLOSED`,
/// `ASTRANET_ERR_LIMIT_EXCEEDED`, `ASTRANET_ERR_NODE_CLOSED`, `ASTRANET_ERR_BAD_HANDLE`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_dial(
    node: *mut astranet_node,
    target: *const c_char,
    key: *const c_char,
    timeout_ms: i32,
    stream_out: *mut *mut astranet_stream,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let stream_out = out(stream_out, "stream_out")?;
        let n = node_of(node)?;
        let target = parse_target(target, key)?;
        let limit = dial_limit(&n, timeout_ms);
        let core = n.node.clone();
        let s = n.run(async move { core.dial_timeout(target, limit).await })??;
        let h = StreamH::open(s, &n.ready, n.rt.handle(), 0);
        stream_out.set(handles::insert(Obj::Stream(h)) as *mut astranet_stream);
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Starts a dial without waiting (tier 1): writes a stream handle to `*stream_out` at
/// once, with `userdata` set. When the dial finishes, `astranet_poll` reports the stream
/// `ASTRANET_EVENT_READABLE | ASTRANET_EVENT_WRITABLE`; until then reads and writes
/// return `ASTRANET_AGAIN`. If the dial failed, reads and writes return its error
/// (`ASTRANET_ERR_REFUSED`, `ASTRANET_ERR_TIMED_OUT`, …). `target`, `key` and
/// `timeout_ms` as in `astranet_dial`.
///
/// Errors (at once): `ASTRANET_ERR_INVALID_ARGUMENT`, `ASTRANET_ERR_INVALID_TARGET`,
/// `ASTRANET_ERR_NODE_CLOSED`, `ASTRANET_ERR_BAD_HANDLE`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_dial_start(
    node: *mut astranet_node,
    target: *const c_char,
    key: *const c_char,
    timeout_ms: i32,
    userdata: *mut c_void,
    stream_out: *mut *mut astranet_stream,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let stream_out = out(stream_out, "stream_out")?;
        let n = node_of(node)?;
        let target = parse_target(target, key)?;
        let limit = dial_limit(&n, timeout_ms);
        let userdata = userdata as usize;
        // The DIAL goes out from this thread; the link answers it or times it out. Only
        // a name not announced yet needs a task, to wait for it.
        let h = match n.node.start_dial(&target, limit) {
            Ok(Some(s)) => StreamH::opening(s, &n.ready, n.rt.handle(), userdata),
            Err(e) => StreamH::failed(Failure::from(e), &n.ready, n.rt.handle(), userdata),
            Ok(None) => {
                let h = StreamH::dialing(&n.ready, n.rt.handle(), userdata);
                let core = n.node.clone();
                let task_h = h.clone();
                n.rt.handle().spawn(async move {
                    let r = core.dial_timeout(target, limit).await;
                    task_h.dialed(r.map_err(Failure::from));
                });
                h
            }
        };
        stream_out.set(handles::insert(Obj::Stream(h)) as *mut astranet_stream);
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Counters of a node (see `astranet_node_stats`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct astranet_stats {
    /// Links whose handshake completed and that are still up.
    pub links: u64,
    /// Streams known to the node: open, opening, or closed and lingering.
    pub streams: u64,
    /// Streams ever created (dialed or accepted).
    pub streams_opened: u64,
    /// Bytes read from all links, frame headers included.
    pub bytes_in: u64,
    /// Bytes written to all links, frame headers included.
    pub bytes_out: u64,
    /// Frames received.
    pub frames_in: u64,
    /// Frames dropped (for unknown streams or hosts, or not understood in their context).
    pub frames_dropped: u64,
    /// DIALs from other nodes waiting in this node's listener backlogs.
    pub pending_dials: u64,
    /// Streams this node relays between other hosts now.
    pub relayed_streams: u64,
}

/// Writes a snapshot of the node's counters to `*stats_out`.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (NULL `stats_out`), `ASTRANET_ERR_BAD_HANDLE`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_node_stats(
    node: *mut astranet_node,
    stats_out: *mut astranet_stats,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let o = out(stats_out, "stats_out")?;
        let s = node_of(node)?.node.stats();
        o.set(astranet_stats {
            links: s.links as u64,
            streams: s.streams,
            streams_opened: s.streams_opened,
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            frames_in: s.frames_in,
            frames_dropped: s.frames_dropped,
            pending_dials: s.pending_dials as u64,
            relayed_streams: s.relayed_streams as u64,
        });
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Writes up to `capacity` host ids of the node's neighbours (nodes it has a link to)
/// to `ids` and their total number to `*count` (which may exceed `capacity`: call again
/// with a larger array). `ids` may be NULL when `capacity` is 0.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT`, `ASTRANET_ERR_BAD_HANDLE`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_node_peers(
    node: *mut astranet_node,
    ids: *mut u64,
    capacity: usize,
    count: *mut usize,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let count = out(count, "count")?;
        let peers = node_of(node)?.node.peers();
        fill_array(ids, capacity, "ids", peers.iter().map(|p| p.0), count)?;
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Writes `addr` as "<16 hex digits>:<port>" (the form `astranet_dial` takes) with a
/// terminating NUL into `buf`, which has room for `capacity` bytes (at least
/// `ASTRANET_ADDR_STRLEN`).
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (NULL arguments, capacity too small).
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_addr_format(
    addr: *const astranet_addr,
    buf: *mut c_char,
    capacity: usize,
) -> astranet_result {
    ffi!(std::ptr::null_mut(), {
        // SAFETY: a non-NULL pointer to an astranet_addr (documented).
        let a = unsafe { addr.as_ref() }.ok_or_else(|| crate::error::null("addr"))?;
        if buf.is_null() || capacity < ASTRANET_ADDR_STRLEN {
            return Err(Failure::invalid("buf is NULL or smaller than ASTRANET_ADDR_STRLEN"));
        }
        write_str(buf, capacity, &astranet::Addr::new(astranet::HostId(a.host), a.port).to_string());
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Where a service instance is, as seen from this node (`astranet_service.reach`).
/// Bound on this node.
pub const ASTRANET_REACH_LOCAL: u32 = 0;
/// Announced by the neighbour that hosts it.
pub const ASTRANET_REACH_DIRECT: u32 = 1;
/// Announced through a neighbour that relays for its host.
pub const ASTRANET_REACH_RELAYED: u32 = 2;

/// One instance of a named service (see `astranet_services`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct astranet_service {
    /// The full name, environment included (NUL-terminated, owned by the list).
    pub name: *const c_char,
    /// Where the instance listens.
    pub addr: astranet_addr,
    /// The neighbour whose link the announcement came through; 0 when local.
    pub via: u64,
    /// `ASTRANET_REACH_LOCAL`, `ASTRANET_REACH_DIRECT` or `ASTRANET_REACH_RELAYED`.
    pub reach: u32,
}

/// A snapshot of the services a node knows (opaque, owned by the caller; free it with
/// `astranet_service_list_free`, which also frees the names).
pub struct astranet_service_list {
    items: Vec<astranet_service>,
    _names: Vec<std::ffi::CString>,
}

/// Lists every service instance the node knows: its own, and those announced by
/// neighbours (directly, or passed on by a router). On success writes an owned list to
/// `*list_out`; read it with `astranet_service_list_items`.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (NULL `list_out`), `ASTRANET_ERR_BAD_HANDLE`.
/// Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_services(
    node: *mut astranet_node,
    list_out: *mut *mut astranet_service_list,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let o = out(list_out, "list_out")?;
        let services = node_of(node)?.node.services();
        let names: Vec<std::ffi::CString> =
            services.iter().map(|s| std::ffi::CString::new(s.name.replace('\0', "")).unwrap_or_default()).collect();
        let items = services
            .iter()
            .zip(&names)
            .map(|(s, n)| astranet_service {
                name: n.as_ptr(),
                addr: s.addr.into(),
                via: s.via.map_or(0, |h| h.0),
                reach: match s.reach {
                    astranet::Reach::Local => ASTRANET_REACH_LOCAL,
                    astranet::Reach::Direct => ASTRANET_REACH_DIRECT,
                    astranet::Reach::Relayed => ASTRANET_REACH_RELAYED,
                },
            })
            .collect();
        o.set(Box::into_raw(Box::new(astranet_service_list { items, _names: names })));
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// The entries of a service list: writes a pointer to its first element (valid until
/// `astranet_service_list_free`) to `*items_out` and their number to `*count_out`.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT` (a NULL argument). Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_service_list_items(
    list: *const astranet_service_list,
    items_out: *mut *const astranet_service,
    count_out: *mut usize,
) -> astranet_result {
    ffi!(std::ptr::null_mut(), {
        let (items, count) = (out(items_out, "items_out")?, out(count_out, "count_out")?);
        // SAFETY: a non-NULL list from astranet_services (documented).
        let l = unsafe { list.as_ref() }.ok_or_else(|| crate::error::null("list"))?;
        items.set(l.items.as_ptr());
        count.set(l.items.len());
        Ok(astranet_result::ASTRANET_OK)
    })
}

/// Frees a service list. NULL is accepted; freeing twice is undefined behaviour, as with
/// `free` (lists are plain heap objects, not handles). Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_service_list_free(list: *mut astranet_service_list) {
    crate::guard_value((), || {
        if !list.is_null() {
            // SAFETY: the pointer came from Box::into_raw in astranet_services.
            drop(unsafe { Box::from_raw(list) });
        }
    })
}

/// How this node reaches another host (see `astranet_routes`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct astranet_route {
    /// The host reached.
    pub host: u64,
    /// The neighbour frames for it go to (the host itself when direct).
    pub via: u64,
    /// 1 for a link to the host itself, 0 through a relay.
    pub direct: u32,
}

/// Writes up to `capacity` routes (the node's neighbours, and hosts whose services a
/// neighbour relays) to `routes` and their total number to `*count` (which may exceed
/// `capacity`: call again with a larger array). `routes` may be NULL when `capacity` is 0.
///
/// Errors: `ASTRANET_ERR_INVALID_ARGUMENT`, `ASTRANET_ERR_BAD_HANDLE`. Thread-safety: any thread.
#[no_mangle]
pub extern "C" fn astranet_routes(
    node: *mut astranet_node,
    routes: *mut astranet_route,
    capacity: usize,
    count: *mut usize,
    err: *mut *mut astranet_error,
) -> astranet_result {
    ffi!(err, {
        let count = out(count, "count")?;
        let list = node_of(node)?.node.routes();
        let items = list.iter().map(|r| astranet_route { host: r.host.0, via: r.via.0, direct: r.direct as u32 });
        fill_array(routes, capacity, "routes", items, count)?;
        Ok(astranet_result::ASTRANET_OK)
    })
}
