//! `astranet.Node` and `astranet.Listener`, and the callback bridge used by asyncio.

use crate::runtime::{check_fork, check_timeout, err, failure, forked, rt, seconds, wait, wait_of, wait_spawned, Wait};
use crate::stream::{wrap, Stream};
use astranet::{Addr, HostId, Reach, Target};
use astranet_embed::config::FlatConfig;
use pyo3::exceptions::{PyOSError, PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt, PyString, PyTuple};
use std::future::Future;
use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex};

/// A dial target: a service name, ``"<16 hex digits>:<port>"``, or ``(host_id,
/// port)``; with a ``key``, a name picks its instance by consistent hashing.
fn target(t: &Bound<'_, PyAny>, key: Option<String>) -> PyResult<Target> {
    let target = if let Ok(s) = t.cast::<PyString>() {
        s.extract::<String>()?.parse::<Target>().map_err(err)?
    } else if let Some((host, port)) = int_pair(t) {
        let host = int_in::<u64>(&host, "host id", "0-18446744073709551615")?;
        Target::from(Addr::new(HostId(host), port_in(&port)?))
    } else {
        return Err(PyTypeError::new_err(
            "a dial target is a service name, \"<16 hex digits>:<port>\" or a (host_id, port) tuple of ints",
        ));
    };
    Ok(match key {
        Some(key) => target.with_key(key),
        None => target,
    })
}

/// The two items of a 2-tuple of ints.
fn int_pair<'py>(t: &Bound<'py, PyAny>) -> Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let tuple = t.cast::<PyTuple>().ok()?;
    if tuple.len() != 2 {
        return None;
    }
    let (a, b) = (tuple.get_item(0).ok()?, tuple.get_item(1).ok()?);
    (a.is_instance_of::<PyInt>() && b.is_instance_of::<PyInt>()).then_some((a, b))
}

/// An int in the range of `T`; `OverflowError` outside it, as Python's sockets raise
/// for a port out of range.
fn int_in<'py, T>(v: &Bound<'py, PyAny>, what: &str, range: &str) -> PyResult<T>
where
    T: for<'a> FromPyObject<'a, 'py>,
{
    v.extract::<T>().map_err(|_| PyOverflowError::new_err(format!("{what} must be {range}")))
}

/// A virtual port: an int from 0 to 2**32-1.
fn port_in(v: &Bound<'_, PyAny>) -> PyResult<u32> {
    int_in::<u32>(v, "port", "0-4294967295")
}

/// An environment: ``"prod.eu"`` or ``["prod", "eu"]``.
fn env(e: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = e.cast::<PyString>() {
        return s.extract();
    }
    let parts = e.extract::<Vec<String>>().map_err(|_| PyTypeError::new_err("env is \"a.b\" or a list of strings"))?;
    Ok(parts.join("."))
}

/// A TCP address: ``"host:port"`` or ``(host, port)``.
fn tcp_addr(a: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(s) = a.cast::<PyString>() {
        return s.extract::<String>();
    }
    if let Ok((host, port)) = a.extract::<(String, Bound<'_, PyAny>)>() {
        if port.is_instance_of::<PyInt>() {
            let port = int_in::<u16>(&port, "port", "0-65535")?;
            return Ok(if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") });
        }
    }
    Err(PyTypeError::new_err("a TCP address is \"host:port\" or a (host, port) tuple"))
}

/// A bind target: a port number, ``"name"``, ``"name:port"``, ``":port"``, or
/// ``""``/``None`` for an automatic port.
fn bind_target(p: Option<&Bound<'_, PyAny>>) -> PyResult<String> {
    let Some(p) = p else { return Ok(String::new()) };
    if p.is_none() {
        return Ok(String::new());
    }
    if let Ok(s) = p.cast::<PyString>() {
        return s.extract::<String>();
    }
    if p.is_instance_of::<PyInt>() {
        return Ok(format!(":{}", port_in(p)?));
    }
    Err(PyTypeError::new_err("bind takes a port (int), \"name\", \"name:port\", \":port\" or \"\""))
}

/// Handle of an operation started for asyncio; ``cancel()`` stops it.
#[pyclass(module = "astranet._astranet", name = "_Task", frozen)]
pub struct Task {
    handle: tokio::task::AbortHandle,
}

#[pymethods]
impl Task {
    /// Stops the operation; its callback is not called.
    fn cancel(&self) {
        self.handle.abort();
    }
}

/// Runs `fut` on the runtime, then calls `callback(result, exception)` with the GIL
/// (from a runtime thread: the callback must only hand the result to its event loop,
/// e.g. with ``loop.call_soon_threadsafe``).
fn spawn_cb<T, F>(fut: F, callback: Py<PyAny>, convert: fn(Python<'_>, T) -> PyResult<Py<PyAny>>) -> Task
where
    T: Send + 'static,
    F: Future<Output = PyResult<T>> + Send + 'static,
{
    let handle = rt().spawn(async move {
        let res = fut.await;
        if !crate::runtime::gil_gate() {
            // The interpreter is finalizing: taking the GIL could end this thread.
            std::mem::forget(res);
            return;
        }
        Python::attach(|py| {
            // Passed at the end of this scope, not before: the callback may release the
            // GIL (call_soon_threadsafe writes to the loop's socket), and taking it back
            // while the interpreter finalizes would abort the process. The exit hook
            // waits until then.
            let _passed = crate::runtime::GatePassed;
            let args = match res.and_then(|v| convert(py, v)) {
                Ok(v) => (v, py.None()),
                Err(e) => (py.None(), e.into_value(py).into_any()),
            };
            if let Err(e) = callback.call1(py, args) {
                e.write_unraisable(py, None);
            }
        });
    });
    Task { handle: handle.abort_handle() }
}

/// The descriptor of `sock`, a stream socket, taken over: the socket object is
/// detached (its `fileno()` is -1 from now on).
fn take_stream_socket(sock: &Bound<'_, PyAny>) -> PyResult<OwnedFd> {
    // Its descriptor carries TLS records: a link over it would bypass them (as
    // asyncio, attach refuses it).
    if sock.is_instance(&sock.py().import("ssl")?.getattr("SSLSocket")?)? {
        return Err(PyTypeError::new_err("attach takes a plain socket, not an ssl.SSLSocket"));
    }
    let not_one = || PyValueError::new_err("attach takes a connected stream socket (socket.SOCK_STREAM)");
    let fd: RawFd = sock.call_method0("fileno").map_err(|_| not_one())?.extract().map_err(|_| not_one())?;
    if fd < 0 {
        return Err(not_one());
    }
    // SAFETY: a valid descriptor, borrowed only for the check; `sock` keeps it open.
    if !astranet_embed::socket::is_connected_stream_socket(unsafe { BorrowedFd::borrow_raw(fd) }) {
        return Err(not_one());
    }
    let detached: RawFd = sock.call_method0("detach")?.extract()?;
    // SAFETY: `detach` handed the descriptor over: nothing else closes it.
    Ok(unsafe { OwnedFd::from_raw_fd(detached) })
}

/// Runs a link over the socket `fd` (see `Node.attach`).
async fn attach(node: astranet::Node, fd: OwnedFd) -> astranet::Result<HostId> {
    let io = astranet_embed::socket::Socket::new(fd).map_err(astranet::Error::Io)?;
    node.attach(io).await
}

/// A stream and the `Node` object it keeps alive, as a Python `Stream`.
fn stream_obj(py: Python<'_>, (s, node): (astranet::Stream, Py<PyAny>)) -> PyResult<Py<PyAny>> {
    Ok(wrap(py, s, node)?.into_any())
}

/// PEM text given as ``bytes`` or read from a path (``str`` or ``os.PathLike``).
fn pem(v: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = v.cast::<pyo3::types::PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    let path: std::path::PathBuf =
        v.extract().map_err(|_| PyTypeError::new_err(format!("{what} is a path or PEM bytes")))?;
    std::fs::read(&path)
        .map_err(|e| pyo3::exceptions::PyFileNotFoundError::new_err(format!("{what}: {}: {e}", path.display())))
}

fn tls_pem(
    ca: Option<&Bound<'_, PyAny>>,
    cert: Option<&Bound<'_, PyAny>>,
    key: Option<&Bound<'_, PyAny>>,
    allow_plaintext: bool,
) -> PyResult<Option<astranet_embed::config::TlsPem>> {
    match (ca, cert, key) {
        (Some(ca), Some(cert), Some(key)) => Ok(Some(astranet_embed::config::TlsPem {
            ca: pem(ca, "tls_ca")?,
            cert: pem(cert, "tls_cert")?,
            key: pem(key, "tls_key")?,
            allow_plaintext,
        })),
        (None, None, None) if !allow_plaintext => Ok(None),
        (None, None, None) => {
            Err(pyo3::exceptions::PyValueError::new_err("tls_allow_plaintext goes with tls_ca, tls_cert and tls_key"))
        }
        _ => Err(pyo3::exceptions::PyValueError::new_err("TLS needs all of tls_ca, tls_cert and tls_key")),
    }
}

/// An access policy from a list of dicts with the keys ``peers`` (str), ``announce``
/// and ``dial`` (lists of str) and ``relay`` (bool), as the ``[[access]]`` tables of the
/// command's configuration file.
fn access_policy(rules: &Bound<'_, PyAny>) -> PyResult<astranet::AccessPolicy> {
    let bad = |why: String| pyo3::exceptions::PyValueError::new_err(format!("access: {why}"));
    let mut policy = astranet::AccessPolicy::new();
    for (i, rule) in rules.try_iter()?.enumerate() {
        let rule = rule?;
        let rule = rule.cast::<PyDict>().map_err(|_| bad(format!("rule {i} is not a dict")))?;
        for key in rule.keys() {
            let key: String = key.extract()?;
            if !matches!(key.as_str(), "peers" | "announce" | "dial" | "relay") {
                return Err(bad(format!("rule {i}: unknown key {key:?} (peers, announce, dial, relay)")));
            }
        }
        let peers: String = match rule.get_item("peers")? {
            Some(p) => p.extract().map_err(|_| bad(format!("rule {i}: peers must be a str")))?,
            None => return Err(bad(format!("rule {i} has no peers"))),
        };
        let names = |key: &str| -> PyResult<Vec<String>> {
            match rule.get_item(key)? {
                Some(v) if v.is_instance_of::<PyString>() => Err(bad(format!("rule {i}: {key} must be a list of str"))),
                Some(v) => v.extract().map_err(|_| bad(format!("rule {i}: {key} must be a list of str"))),
                None => Ok(Vec::new()),
            }
        };
        let mut r = astranet::AccessRule::peers(peers);
        for n in names("announce")? {
            r = r.may_announce(n);
        }
        for n in names("dial")? {
            r = r.may_dial(n);
        }
        let relay = match rule.get_item("relay")? {
            Some(v) => v.extract::<bool>().map_err(|_| bad(format!("rule {i}: relay must be a bool")))?,
            None => false,
        };
        policy = policy.allow(if relay { r.may_relay() } else { r });
    }
    Ok(policy)
}

fn node_closed() -> PyErr {
    PyOSError::new_err((libc::ENOTCONN, "node closed"))
}

/// An astranet node: a random 64-bit host id, TCP links to other nodes (``listen``,
/// ``join``), virtual ports (``bind``) and streams (``dial``).
///
/// Keyword arguments configure it (all optional; the defaults are the Go package's):
/// ``role`` (``"peer"`` by default: announces its services and links directly to
/// relayed hosts; ``"client"``, ``"server"``, ``"router"``), ``env`` (``"prod.eu"``
/// or ``["prod", "eu"]``: names get the suffix ``.prod.eu``), ``host_id`` (int, random
/// by default), ``keepalive`` (seconds, 10: PING after half
/// of it without writes, a link is dead after a write stalls that long or nothing
/// arrives for ten times it), ``dial_timeout`` (30 s), ``handshake_timeout`` (10 s),
/// ``linger`` (10 s), ``max_reconnect_delay`` (60 s), ``max_streams_per_link``,
/// ``listener_backlog``, ``max_link_buffer``, ``link_write_queue``,
/// ``max_control_queue``, ``max_stream_window``, ``link_window_budget``,
/// ``min_stream_window`` (bytes every stream's window is raised to with its first
/// credit, 0 by default: throughput rather than room for a link's other streams).
///
/// TLS links: ``tls_ca``, ``tls_cert`` and ``tls_key`` (all three: the mesh CA's
/// certificate, this node's certificate chain and its private key, each a path or
/// PEM ``bytes``; see ``astranet keys`` of the command line) make every link TLS 1.3
/// with both sides authenticated by the mesh CA; the node's host id is then its
/// certificate's. ``tls_allow_plaintext=True`` also accepts plaintext links.
///
/// Access control (with TLS: peers are named by their certificates' common names):
/// ``access=[{"peers": "web-*", "announce": ["web*"], "dial": ["db"], "relay": False},
/// ...]``; the first rule whose ``peers`` pattern (``*`` matches any run) matches a
/// peer applies, and a peer no rule matches may not join. A dial the policy refuses
/// fails at the dialer with ``ConnectionRefusedError``.
///
/// A context manager: ``with astranet.Node() as node: ...`` closes it on exit. A node
/// nobody closed closes when collected, which its streams and listeners prevent: each
/// holds a reference to it.
#[pyclass(module = "astranet", frozen, weakref)]
pub struct Node {
    node: Mutex<Option<astranet::Node>>,
    host: u64,
}

impl Node {
    fn get(&self) -> PyResult<astranet::Node> {
        self.node.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or_else(node_closed)
    }
}

#[pymethods]
impl Node {
    #[new]
    #[pyo3(signature = (*, role = None, env = None, host_id = None, keepalive = None, dial_timeout = None, handshake_timeout = None,
        frame_stall_timeout = None, linger = None, max_reconnect_delay = None, max_streams_per_link = None,
        listener_backlog = None, max_link_buffer = None, link_write_queue = None, max_control_queue = None,
        max_stream_window = None, link_window_budget = None, min_stream_window = None, tls_ca = None, tls_cert = None, tls_key = None,
        tls_allow_plaintext = false, stream_idle_timeout = None, access = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        role: Option<&str>,
        env: Option<&Bound<'_, PyAny>>,
        host_id: Option<u64>,
        keepalive: Option<f64>,
        dial_timeout: Option<f64>,
        handshake_timeout: Option<f64>,
        frame_stall_timeout: Option<f64>,
        linger: Option<f64>,
        max_reconnect_delay: Option<f64>,
        max_streams_per_link: Option<u64>,
        listener_backlog: Option<u64>,
        max_link_buffer: Option<u64>,
        link_write_queue: Option<u64>,
        max_control_queue: Option<u64>,
        max_stream_window: Option<u32>,
        link_window_budget: Option<u64>,
        min_stream_window: Option<u32>,
        tls_ca: Option<&Bound<'_, PyAny>>,
        tls_cert: Option<&Bound<'_, PyAny>>,
        tls_key: Option<&Bound<'_, PyAny>>,
        tls_allow_plaintext: bool,
        stream_idle_timeout: Option<f64>,
        access: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Node> {
        check_fork()?;
        let secs = |name: &str, v: Option<f64>| v.map(|s| seconds(name, s)).transpose();
        let config = FlatConfig {
            role: role.map(str::parse).transpose().map_err(err)?,
            env: env.map(crate::node::env).transpose()?,
            host_id,
            keepalive: secs("keepalive", keepalive)?,
            dial_timeout: secs("dial_timeout", dial_timeout)?,
            handshake_timeout: secs("handshake_timeout", handshake_timeout)?,
            frame_stall_timeout: secs("frame_stall_timeout", frame_stall_timeout)?,
            linger: secs("linger", linger)?,
            max_reconnect_delay: secs("max_reconnect_delay", max_reconnect_delay)?,
            stream_idle_timeout: secs("stream_idle_timeout", stream_idle_timeout)?,
            max_streams_per_link,
            listener_backlog,
            max_link_buffer,
            link_write_queue,
            max_control_queue,
            max_stream_window,
            link_window_budget,
            min_stream_window,
            tls: tls_pem(tls_ca, tls_cert, tls_key, tls_allow_plaintext)?,
            access: access.map(access_policy).transpose()?,
        };
        let node = config.build().map_err(failure)?;
        Ok(Node { host: node.host_id().0, node: Mutex::new(Some(node)) })
    }

    /// This node's host id (an int below 2**63).
    #[getter]
    fn host_id(&self) -> u64 {
        self.host
    }

    /// Accepts links on a TCP address (``"127.0.0.1:0"`` or ``("127.0.0.1", 0)``) in
    /// the background until the node is closed; returns the bound ``(ip, port)``.
    fn listen(&self, py: Python<'_>, addr: &Bound<'_, PyAny>) -> PyResult<(String, u16)> {
        check_fork()?;
        let (node, addr) = (self.get()?, tcp_addr(addr)?);
        let a = wait_spawned(py, Wait::Forever, async move { node.listen(addr).await })?.map_err(err)?;
        Ok((a.ip().to_string(), a.port()))
    }

    /// Opens a TCP link to a node listening at ``addr`` and keeps it up (re-dialing
    /// with back-off when it drops) until the node is closed. Returns the peer's host
    /// id once the handshake is done; raises if the first attempt fails (e.g.
    /// ``ConnectionRefusedError``) or ``timeout`` seconds pass (``TimeoutError``; a
    /// ``timeout`` must be positive, as ``dial``'s).
    #[pyo3(signature = (addr, timeout = None))]
    fn join(&self, py: Python<'_>, addr: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<u64> {
        check_fork()?;
        let (node, addr) = (self.get()?, tcp_addr(addr)?);
        // As dial's: a join cannot be done without waiting, so 0 is refused, not a
        // wait that always times out.
        let how = match timeout {
            Some(t) => Wait::timeout(Some(seconds("timeout", t)?)),
            None => Wait::Forever,
        };
        let id = wait_spawned(py, how, async move { node.join(addr).await })?.map_err(err)?;
        Ok(id.0)
    }

    /// ``join`` for asyncio: ``host_id = await node.join_async(addr)``.
    fn join_async<'py>(slf: &Bound<'py, Self>, addr: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        check_fork()?;
        let py = slf.py();
        py.import("astranet._aio")?.getattr("run")?.call1((slf.getattr("_join_cb")?, addr))
    }

    /// (internal) ``join`` reporting to ``callback(result, exception)``.
    fn _join_cb(&self, addr: &Bound<'_, PyAny>, callback: Py<PyAny>) -> PyResult<Task> {
        check_fork()?;
        let (node, addr) = (self.get()?, tcp_addr(addr)?);
        Ok(spawn_cb(async move { node.join(addr).await.map(|h| h.0).map_err(err) }, callback, |py, h| {
            Ok(h.into_pyobject(py)?.into_any().unbind())
        }))
    }

    /// Runs a link over ``sock``, a connected stream socket of any family (an end of
    /// ``socket.socketpair()``, a connection a program relays), as ``join`` does over
    /// the TCP connection it opens; returns the peer's host id once the handshake is
    /// done. The node takes the socket over: it is detached (as ``ssl`` wrapping
    /// does), and closed when the link ends. The link is not re-established. Raises
    /// ``ValueError`` for anything but a connected stream socket (the socket is then
    /// left as it was), ``TypeError`` for an ``ssl.SSLSocket`` (the link would bypass
    /// its TLS layer), otherwise as ``join``.
    #[pyo3(signature = (sock, timeout = None))]
    fn attach(&self, py: Python<'_>, sock: &Bound<'_, PyAny>, timeout: Option<f64>) -> PyResult<u64> {
        check_fork()?;
        let node = self.get()?;
        let how = match timeout {
            Some(t) => Wait::timeout(Some(seconds("timeout", t)?)),
            None => Wait::Forever,
        };
        let fd = take_stream_socket(sock)?;
        let id = wait_spawned(py, how, attach(node, fd))?.map_err(err)?;
        Ok(id.0)
    }

    /// ``attach`` for asyncio: ``host_id = await node.attach_async(sock)``.
    fn attach_async<'py>(slf: &Bound<'py, Self>, sock: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        check_fork()?;
        let py = slf.py();
        py.import("astranet._aio")?.getattr("run")?.call1((slf.getattr("_attach_cb")?, sock))
    }

    /// (internal) ``attach`` reporting to ``callback(result, exception)``.
    fn _attach_cb(&self, sock: &Bound<'_, PyAny>, callback: Py<PyAny>) -> PyResult<Task> {
        check_fork()?;
        let node = self.get()?;
        let fd = take_stream_socket(sock)?;
        Ok(spawn_cb(async move { attach(node, fd).await.map(|h| h.0).map_err(err) }, callback, |py, h| {
            Ok(h.into_pyobject(py)?.into_any().unbind())
        }))
    }

    /// Binds a listener and returns it: a service name (``"db"``, announced to the
    /// mesh with the node's environment suffix, on an automatic port), ``"db:port"``,
    /// a port number or ``":port"``, or nothing / ``0`` / ``""`` for a free automatic
    /// port. ``OSError`` (EADDRINUSE) when the port is taken; ``ValueError`` for a
    /// malformed name.
    #[pyo3(signature = (port = None))]
    fn bind(slf: &Bound<'_, Self>, port: Option<&Bound<'_, PyAny>>) -> PyResult<Listener> {
        check_fork()?;
        let t = bind_target(port)?;
        let l = slf.get().get()?.bind(&t).map_err(err)?;
        let a = l.local_addr();
        let name = l.name().map(String::from);
        Ok(Listener {
            node: slf.clone().into_any().unbind(),
            inner: Mutex::new(Some(Arc::new(l))),
            timeout: Mutex::new(None),
            addr: (a.host.0, a.port.0),
            name,
        })
    }

    /// Opens a stream to ``target`` and returns it once established: a service name
    /// (waits up to the timeout for it to be announced; ``key`` picks the instance by
    /// consistent hashing, the same on every node), ``"<16 hex digits>:<port>"`` or
    /// ``(host_id, port)``. ``timeout`` in seconds (default: the node's
    /// ``dial_timeout``). Raises ``ConnectionRefusedError`` (nobody listens, backlog
    /// full), ``TimeoutError``, ``FileNotFoundError`` (no such service),
    /// ``OSError`` (EHOSTUNREACH: no link to that host).
    #[pyo3(signature = (target, timeout = None, *, key = None))]
    fn dial(
        slf: &Bound<'_, Self>,
        target: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        key: Option<String>,
    ) -> PyResult<Stream> {
        check_fork()?;
        let py = slf.py();
        let (node, addr) = (slf.get().get()?, crate::node::target(target, key)?);
        let t = match timeout {
            Some(t) => Some(seconds("timeout", t)?),
            None => None,
        };
        let s = wait_spawned(py, Wait::Forever, async move {
            match t {
                Some(t) => node.dial_timeout(addr, t).await,
                None => node.dial(addr).await,
            }
        })?
        .map_err(err)?;
        Ok(Stream::new(s, slf.clone().into_any().unbind()))
    }

    /// ``dial`` for asyncio: ``stream = await node.dial_async(target, timeout, key=…)``.
    /// Works with any event loop (the default one, uvloop).
    #[pyo3(signature = (target, timeout = None, *, key = None))]
    fn dial_async<'py>(
        slf: &Bound<'py, Self>,
        target: &Bound<'py, PyAny>,
        timeout: Option<f64>,
        key: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        check_fork()?;
        let py = slf.py();
        py.import("astranet._aio")?.getattr("run")?.call1((slf.getattr("_dial_cb")?, target, timeout, key))
    }

    /// (internal) ``dial`` reporting to ``callback(result, exception)``.
    fn _dial_cb(
        slf: &Bound<'_, Self>,
        target: &Bound<'_, PyAny>,
        timeout: Option<f64>,
        key: Option<String>,
        callback: Py<PyAny>,
    ) -> PyResult<Task> {
        check_fork()?;
        let (node, addr) = (slf.get().get()?, crate::node::target(target, key)?);
        let owner = slf.clone().into_any().unbind();
        let t = match timeout {
            Some(t) => Some(seconds("timeout", t)?),
            None => None,
        };
        Ok(spawn_cb(
            async move {
                match t {
                    Some(t) => node.dial_timeout(addr, t).await,
                    None => node.dial(addr).await,
                }
                .map(|s| (s, owner))
                .map_err(err)
            },
            callback,
            stream_obj,
        ))
    }

    /// Every service instance this node knows, as dicts: ``name`` (with the
    /// environment suffix), ``host_id``, ``port``, ``via`` (the neighbour's host id the
    /// announcement came through, ``None`` when local) and ``reach`` (``"local"``,
    /// ``"direct"`` or ``"relayed"``).
    fn services<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        check_fork()?;
        self.get()?
            .services()
            .into_iter()
            .map(|s| {
                let d = PyDict::new(py);
                d.set_item("name", s.name)?;
                d.set_item("host_id", s.addr.host.0)?;
                d.set_item("port", s.addr.port.0)?;
                d.set_item("via", s.via.map(|h| h.0))?;
                d.set_item(
                    "reach",
                    match s.reach {
                        Reach::Local => "local",
                        Reach::Direct => "direct",
                        Reach::Relayed => "relayed",
                    },
                )?;
                Ok(d)
            })
            .collect()
    }

    /// The hosts this node reaches, as dicts: ``host_id``, ``via`` (the neighbour
    /// frames go to) and ``direct`` (bool).
    fn routes<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        check_fork()?;
        self.get()?
            .routes()
            .into_iter()
            .map(|r| {
                let d = PyDict::new(py);
                d.set_item("host_id", r.host.0)?;
                d.set_item("via", r.via.0)?;
                d.set_item("direct", r.direct)?;
                Ok(d)
            })
            .collect()
    }

    /// Host ids of the nodes this node has a link to.
    fn peers(&self) -> PyResult<Vec<u64>> {
        check_fork()?;
        Ok(self.get()?.peers().into_iter().map(|h| h.0).collect())
    }

    /// A snapshot of the node's counters: ``links``, ``streams``, ``streams_opened``,
    /// ``bytes_in``, ``bytes_out``, ``frames_in``, ``frames_dropped``, ``pending_dials``
    /// (dials from other nodes waiting in this node's listener backlogs),
    /// ``relayed_streams``.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        check_fork()?;
        let s = self.get()?.stats();
        let d = PyDict::new(py);
        d.set_item("links", s.links)?;
        d.set_item("streams", s.streams)?;
        d.set_item("streams_opened", s.streams_opened)?;
        d.set_item("bytes_in", s.bytes_in)?;
        d.set_item("bytes_out", s.bytes_out)?;
        d.set_item("frames_in", s.frames_in)?;
        d.set_item("frames_dropped", s.frames_dropped)?;
        d.set_item("pending_dials", s.pending_dials)?;
        d.set_item("relayed_streams", s.relayed_streams)?;
        Ok(d)
    }

    /// Closes every listener and link; open streams fail, the node accepts no new
    /// work. Idempotent.
    fn close(&self) {
        if forked() {
            return;
        }
        if let Some(n) = self.node.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _rt = rt().enter();
            n.close();
        }
    }

    /// True once ``close()`` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.node.lock().unwrap_or_else(|p| p.into_inner()).is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!("<astranet.Node host_id={:016x}{}>", self.host, if self.closed() { " closed" } else { "" })
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if !self.closed() && !forked() {
            crate::unclosed::warn(&self.__repr__());
        }
        let n = self.node.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if forked() {
            std::mem::forget(n);
            return;
        }
        if let Some(n) = n {
            let _rt = rt().enter();
            n.close();
        }
    }
}

/// A bound virtual port, like a listening socket. ``accept()`` returns the next
/// incoming ``Stream``; iterating yields streams until the listener is closed. A
/// context manager; closing it (or the node) unbinds the port.
#[pyclass(module = "astranet", frozen, weakref)]
pub struct Listener {
    /// The `Node` object: kept alive by the listener and handed to its streams.
    node: Py<PyAny>,
    inner: Mutex<Option<Arc<astranet::Listener>>>,
    timeout: Mutex<Option<f64>>,
    addr: (u64, u32),
    name: Option<String>,
}

impl Listener {
    /// `accept`, with the library's error kept apart from Python's (signals, timeout).
    fn accept_raw(&self, py: Python<'_>) -> PyResult<Result<astranet::Stream, astranet::Error>> {
        check_fork()?;
        let l = self.get()?;
        let how = wait_of(*self.timeout.lock().unwrap_or_else(|p| p.into_inner()));
        wait(py, how, std::future::poll_fn(|cx| l.poll_accept(cx)))
    }

    fn get(&self) -> PyResult<Arc<astranet::Listener>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone().ok_or_else(listener_closed)
    }
}

/// A closed listener's error, as a closed socket's: EBADF.
fn listener_closed() -> PyErr {
    PyOSError::new_err((libc::EBADF, "Bad file descriptor (the listener is closed)"))
}

/// An `accept` failure: closed (directly or with the node) reads as EBADF.
fn accept_err(e: astranet::Error) -> PyErr {
    match e {
        astranet::Error::ListenerClosed | astranet::Error::NodeClosed => listener_closed(),
        e => err(e),
    }
}

#[pymethods]
impl Listener {
    /// Waits for the next incoming stream (GIL released, Ctrl-C interrupts), honouring
    /// the listener's timeout (``TimeoutError``; ``BlockingIOError`` when
    /// non-blocking). ``OSError`` once the listener is closed.
    fn accept(&self, py: Python<'_>) -> PyResult<Stream> {
        let s = self.accept_raw(py)?.map_err(accept_err)?;
        Ok(Stream::new(s, self.node.clone_ref(py)))
    }

    /// ``accept`` for asyncio: ``stream = await listener.accept_async()``.
    fn accept_async<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyAny>> {
        check_fork()?;
        let py = slf.py();
        py.import("astranet._aio")?.getattr("run")?.call1((slf.getattr("_accept_cb")?,))
    }

    /// (internal) ``accept`` reporting to ``callback(result, exception)``.
    fn _accept_cb(&self, py: Python<'_>, callback: Py<PyAny>) -> PyResult<Task> {
        check_fork()?;
        let (l, owner) = (self.get()?, self.node.clone_ref(py));
        Ok(spawn_cb(async move { l.accept().await.map(|s| (s, owner)).map_err(accept_err) }, callback, stream_obj))
    }

    /// Sets the timeout of ``accept`` (see ``Stream.settimeout``).
    #[pyo3(signature = (value, /))]
    fn settimeout(&self, value: Option<f64>) -> PyResult<()> {
        *self.timeout.lock().unwrap_or_else(|p| p.into_inner()) = check_timeout(value)?;
        Ok(())
    }

    /// The timeout of ``accept`` in seconds, or ``None``.
    fn gettimeout(&self) -> Option<f64> {
        *self.timeout.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The bound virtual address ``(host_id, port)``.
    fn getsockname(&self) -> (u64, u32) {
        self.addr
    }

    /// The service name (environment suffix included), or ``None`` for a bare port.
    #[getter]
    fn name(&self) -> Option<String> {
        self.name.clone()
    }

    /// The bound virtual port.
    #[getter]
    fn port(&self) -> u32 {
        self.addr.1
    }

    /// Unbinds the port: dials waiting in the backlog are refused, waiting and later
    /// ``accept`` calls fail. Idempotent.
    fn close(&self) {
        if forked() {
            return;
        }
        if let Some(l) = self.inner.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _rt = rt().enter();
            l.close();
        }
    }

    /// True once the listener is closed: by ``close()``, or with its node.
    #[getter]
    fn closed(&self) -> bool {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).as_ref().is_none_or(|l| l.is_closed())
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<Option<Stream>> {
        if self.closed() {
            return Ok(None);
        }
        match self.accept_raw(py)? {
            Ok(s) => Ok(Some(Stream::new(s, self.node.clone_ref(py)))),
            // Closed, directly or with its node: the iteration ends.
            Err(astranet::Error::ListenerClosed | astranet::Error::NodeClosed) => Ok(None),
            Err(e) => Err(err(e)),
        }
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        format!(
            "<astranet.Listener {:016x}:{}{}>",
            self.addr.0,
            self.addr.1,
            if self.closed() { " closed" } else { "" }
        )
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if !self.closed() && !forked() {
            crate::unclosed::warn(&self.__repr__());
        }
        let l = self.inner.get_mut().unwrap_or_else(|p| p.into_inner()).take();
        if forked() {
            std::mem::forget(l);
            return;
        }
        let _rt = rt().enter();
        drop(l);
    }
}
