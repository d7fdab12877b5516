//! Listeners: a virtual port that queues incoming DIALs until the application accepts.

use crate::addr::{Addr, HostId};
use crate::error::{Error, Result};
use crate::link::table::Key;
use crate::link::Link;
use crate::node::NodeShared;
use crate::proto::RstReason;
use crate::stream::Stream;
use hashbrown::HashSet;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

/// A DIAL waiting in a backlog.
struct PendingDial {
    link: Arc<Link>,
    key: Key,
}

struct ListenerState {
    backlog: VecDeque<PendingDial>,
    /// (link id, stream) of every DIAL in the backlog, for O(1) cancellation.
    queued: HashSet<(u64, Key)>,
    /// Backlog entries whose dialer gave up, skipped when they come out.
    cancelled: HashSet<(u64, Key)>,
    wakers: Vec<Waker>,
    closed: bool,
}

pub(crate) struct ListenerShared {
    port: u32,
    /// The service name (environment suffix included), if bound by name.
    name: Option<String>,
    host: HostId,
    backlog_limit: usize,
    node: Weak<NodeShared>,
    state: Mutex<ListenerState>,
}

impl ListenerShared {
    pub(crate) fn new(node: &Arc<NodeShared>, port: u32, name: Option<String>) -> ListenerShared {
        ListenerShared {
            port,
            name,
            host: node.host_id(),
            backlog_limit: node.config.limits.listener_backlog,
            node: Arc::downgrade(node),
            state: Mutex::new(ListenerState {
                backlog: VecDeque::new(),
                queued: HashSet::new(),
                cancelled: HashSet::new(),
                wakers: Vec::new(),
                closed: false,
            }),
        }
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Queues a DIAL for `accept`, or says why it is refused.
    fn offer(&self, link: Arc<Link>, key: Key) -> Result<(), RstReason> {
        let wakers = {
            let mut st = self.state.lock();
            if st.closed {
                return Err(RstReason::NoListener);
            }
            if st.backlog.len() >= self.backlog_limit {
                return Err(RstReason::BacklogFull);
            }
            if !st.queued.insert((link.id, key)) {
                // The same DIAL twice: the first one stands.
                return Ok(());
            }
            link.pending_dials.fetch_add(1, Ordering::Relaxed);
            st.backlog.push_back(PendingDial { link, key });
            std::mem::take(&mut st.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
        Ok(())
    }

    /// The dialer gave up before the DIAL was accepted.
    fn cancel(&self, link_id: u64, key: &Key) {
        let mut st = self.state.lock();
        if st.queued.remove(&(link_id, *key)) {
            st.cancelled.insert((link_id, *key));
        }
    }

    fn poll_accept(&self, cx: &Context<'_>) -> Poll<Result<Stream>> {
        loop {
            let pending = {
                let mut st = self.state.lock();
                match st.backlog.pop_front() {
                    Some(p) => {
                        let id = (p.link.id, p.key);
                        if st.cancelled.remove(&id) {
                            p.link.pending_dials.fetch_sub(1, Ordering::Relaxed);
                            continue;
                        }
                        st.queued.remove(&id);
                        p
                    }
                    None if st.closed => return Poll::Ready(Err(Error::ListenerClosed)),
                    None => {
                        if !st.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                            st.wakers.push(cx.waker().clone());
                        }
                        return Poll::Pending;
                    }
                }
            };
            pending.link.pending_dials.fetch_sub(1, Ordering::Relaxed);
            if let Some(id) = pending.link.accept_stream(pending.key) {
                return Poll::Ready(Ok(Stream::new(pending.link, id)));
            }
        }
    }

    /// Stops accepting: queued dials are refused, waiting accepts fail.
    pub(crate) fn close(&self) {
        let (pending, wakers, cancelled) = {
            let mut st = self.state.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            st.queued.clear();
            let cancelled = std::mem::take(&mut st.cancelled);
            (std::mem::take(&mut st.backlog), std::mem::take(&mut st.wakers), cancelled)
        };
        for p in pending {
            p.link.pending_dials.fetch_sub(1, Ordering::Relaxed);
            if !cancelled.contains(&(p.link.id, p.key)) {
                p.link.refuse(&p.key, RstReason::NoListener);
            }
        }
        wakers.into_iter().for_each(Waker::wake);
    }
}

impl Link {
    /// Hands a DIAL to the listener on its port, or refuses it.
    pub(crate) fn offer_dial(self: &Arc<Self>, key: Key) {
        let Some(node) = self.node.upgrade() else { return };
        let refusal = match node.listener(key.local_port) {
            None => Err(RstReason::NoListener),
            Some(listener) => {
                let streams = self.state.lock().table.len() + self.pending_dials.load(Ordering::Relaxed);
                if streams >= self.config.limits.max_streams_per_link {
                    Err(RstReason::StreamLimit)
                } else {
                    listener.offer(self.clone(), key)
                }
            }
        };
        if let Err(reason) = refusal {
            tracing::debug!(link = self.id, port = key.local_port, %reason, "dial refused");
            self.refuse(&key, reason);
        }
    }

    /// A dialer's RST for a DIAL that may wait in a backlog.
    pub(crate) fn cancel_dial(&self, key: &Key) {
        if let Some(listener) = self.node.upgrade().and_then(|n| n.listener(key.local_port)) {
            listener.cancel(self.id, key);
        }
    }

    fn refuse(&self, key: &Key, reason: RstReason) {
        let mut st = self.state.lock();
        if st.closed.is_none() {
            self.push_reset(&mut st, key, reason, false);
            self.kick(&mut st);
        }
    }
}

/// A bound virtual port. Accepts streams dialed to it, like a TCP listener.
///
/// Dropping it (or [`Listener::close`]) unbinds the port: dials waiting in its backlog
/// are refused.
///
/// ```
/// # async fn demo(node: astranet::Node) -> astranet::Result<()> {
/// let listener = node.bind(":7")?;
/// loop {
///     let stream = listener.accept().await?;
///     tokio::spawn(async move {
///         let (mut r, mut w) = tokio::io::split(stream);
///         let _ = tokio::io::copy(&mut r, &mut w).await;
///     });
/// }
/// # }
/// ```
pub struct Listener {
    shared: Arc<ListenerShared>,
}

impl Listener {
    pub(crate) fn new(shared: Arc<ListenerShared>) -> Listener {
        Listener { shared }
    }

    /// Waits for the next incoming stream.
    pub async fn accept(&self) -> Result<Stream> {
        poll_fn(|cx| self.shared.poll_accept(cx)).await
    }

    /// Poll-based [`Listener::accept`], for hand-written futures and event loops.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<Result<Stream>> {
        self.shared.poll_accept(cx)
    }

    /// The bound address: (this node's host id, port).
    pub fn local_addr(&self) -> Addr {
        Addr::new(self.shared.host, self.shared.port)
    }

    /// The service name, environment suffix included, if bound by name.
    pub fn name(&self) -> Option<&str> {
        self.shared.name()
    }

    /// Unbinds the port. Pending and later `accept` calls fail with
    /// [`Error::ListenerClosed`].
    pub fn close(&self) {
        if let Some(node) = self.shared.node.upgrade() {
            node.unbind(self.shared.port, &self.shared);
        }
        self.shared.close();
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.close();
    }
}

impl fmt::Debug for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Listener").field("addr", &self.local_addr()).finish()
    }
}
