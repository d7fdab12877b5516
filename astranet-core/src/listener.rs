//! Listeners: a virtual port that queues incoming DIALs until the application accepts.

use crate::addr::{Addr, HostId, LinkId};
use crate::error::{Error, Result};
use crate::link::LinkHandle;
use crate::proto::link::StreamKey;
use crate::proto::RstReason;
use crate::stream::Stream;
use hashbrown::{HashMap, HashSet};
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::fmt;
use std::future::poll_fn;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Waker};

/// Who a listener belongs to: told when it closes, so that its port and name are
/// released.
pub(crate) trait ListenerOwner: Send + Sync {
    fn unbind(&self, port: u32, which: &Arc<ListenerShared>);
}

/// A DIAL waiting in a backlog.
struct PendingDial {
    link: LinkHandle,
    key: StreamKey,
}

struct ListenerState {
    backlog: VecDeque<PendingDial>,
    /// (link, stream) of every DIAL in the backlog that still waits: the backlog's
    /// true length, and O(1) cancellation.
    queued: HashSet<(LinkId, StreamKey)>,
    /// How many of `queued` each link sent (see [`ListenerShared::offer`]).
    per_link: HashMap<LinkId, usize>,
    wakers: Vec<Waker>,
    closed: bool,
}

impl ListenerState {
    fn link_share(&self, link: LinkId) -> usize {
        self.per_link.get(&link).copied().unwrap_or(0)
    }

    fn insert(&mut self, link: LinkId, key: StreamKey) -> bool {
        let new = self.queued.insert((link, key));
        if new {
            *self.per_link.entry(link).or_default() += 1;
        }
        new
    }

    fn remove(&mut self, link: LinkId, key: StreamKey) -> bool {
        let was = self.queued.remove(&(link, key));
        if was {
            self.forget(link, 1);
        }
        was
    }

    /// Takes the newest waiting DIAL of the link that has the most waiting, if it has
    /// more than `than` (its place in `backlog` is skipped when it comes up).
    fn evict_from_biggest(&mut self, than: usize) -> Option<PendingDial> {
        let (&holder, _) = self.per_link.iter().filter(|(_, n)| **n > than).max_by_key(|(_, n)| **n)?;
        let at = self.backlog.iter().rposition(|p| p.link.id == holder && self.queued.contains(&(holder, p.key)))?;
        let p = &self.backlog[at];
        let evicted = PendingDial { link: p.link.clone(), key: p.key };
        self.remove(holder, evicted.key);
        Some(evicted)
    }

    /// Entries that no longer wait (given up, refused) are dropped from the front of
    /// `backlog` as they come; compact when they are most of it.
    fn compact(&mut self) {
        if self.backlog.len() > 2 * self.queued.len() + 16 {
            let ListenerState { backlog, queued, .. } = self;
            backlog.retain(|p| queued.contains(&(p.link.id, p.key)));
        }
    }

    fn forget(&mut self, link: LinkId, n: usize) {
        if let Some(count) = self.per_link.get_mut(&link) {
            *count -= n;
            if *count == 0 {
                self.per_link.remove(&link);
            }
        }
    }
}

pub(crate) struct ListenerShared {
    port: u32,
    /// The service name (environment suffix included), if bound by name.
    name: Option<String>,
    host: HostId,
    backlog_limit: usize,
    owner: Weak<dyn ListenerOwner>,
    state: Mutex<ListenerState>,
}

impl ListenerShared {
    pub(crate) fn new(
        owner: Weak<dyn ListenerOwner>,
        host: HostId,
        port: u32,
        name: Option<String>,
        backlog_limit: usize,
    ) -> ListenerShared {
        ListenerShared {
            port,
            name,
            host,
            backlog_limit,
            owner,
            state: Mutex::new(ListenerState {
                backlog: VecDeque::new(),
                queued: HashSet::new(),
                per_link: HashMap::new(),
                wakers: Vec::new(),
                closed: false,
            }),
        }
    }

    pub(crate) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Queues a DIAL for `accept`, or says why it is refused. A full backlog makes room
    /// for a link that has fewer DIALs waiting than another: that one's newest is
    /// refused instead. One peer's DIAL flood then cannot shut everyone else out
    /// while the acceptor catches up, and a lone dialer still has the whole backlog.
    pub(crate) fn offer(&self, link: &LinkHandle, key: StreamKey) -> Result<(), RstReason> {
        let (wakers, evicted) = {
            let mut st = self.state.lock();
            if st.closed {
                return Err(RstReason::NoListener);
            }
            let mut evicted = None;
            if st.queued.len() >= self.backlog_limit && !st.queued.contains(&(link.id, key)) {
                // Only from a link that keeps more waiting than this one will.
                let after = st.link_share(link.id) + 1;
                evicted = st.evict_from_biggest(after);
                if evicted.is_none() {
                    return Err(RstReason::BacklogFull);
                }
                st.compact();
            }
            if !st.insert(link.id, key) {
                // The same DIAL twice: the first one stands.
                return Ok(());
            }
            link.pending_dials.fetch_add(1, Ordering::Relaxed);
            st.backlog.push_back(PendingDial { link: link.clone(), key });
            (std::mem::take(&mut st.wakers), evicted)
        };
        if let Some(p) = evicted {
            p.link.pending_dials.fetch_sub(1, Ordering::Relaxed);
            p.link.with(|l, _| l.refuse_dial(&p.key, RstReason::BacklogFull));
        }
        wakers.into_iter().for_each(Waker::wake);
        Ok(())
    }

    /// The dialer gave up before the DIAL was accepted: its place in the backlog and
    /// its share of the link's stream limit are free at once.
    pub(crate) fn cancel(&self, link: &LinkHandle, key: &StreamKey) {
        let mut st = self.state.lock();
        if st.remove(link.id, *key) {
            link.pending_dials.fetch_sub(1, Ordering::Relaxed);
            st.compact();
        }
    }

    /// A relay lost its route to `host`: the DIALs it sent over `link` that still wait
    /// are dropped (accepting one would only give a stream that fails at once).
    pub(crate) fn cancel_host(&self, link: &LinkHandle, host: HostId) {
        let mut st = self.state.lock();
        let before = st.queued.len();
        st.queued.retain(|(id, key)| *id != link.id || key.remote_host != host);
        let dropped = before - st.queued.len();
        if dropped > 0 {
            st.forget(link.id, dropped);
            link.pending_dials.fetch_sub(dropped, Ordering::Relaxed);
            let ListenerState { backlog, queued, .. } = &mut *st;
            backlog.retain(|p| queued.contains(&(p.link.id, p.key)));
        }
    }

    fn poll_accept(&self, cx: &Context<'_>) -> Poll<Result<Stream>> {
        loop {
            let pending = {
                let mut st = self.state.lock();
                match st.backlog.pop_front() {
                    Some(p) => {
                        if !st.remove(p.link.id, p.key) {
                            // Cancelled while it waited.
                            continue;
                        }
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
            let key = pending.key;
            if let Ok(id) = pending.link.with(|l, _| l.accept_stream(key, std::time::Instant::now())) {
                return Poll::Ready(Ok(Stream::new(pending.link, id)));
            }
        }
    }

    /// Stops accepting: queued dials are refused, waiting accepts fail.
    pub(crate) fn close(&self) {
        let (pending, wakers, queued) = {
            let mut st = self.state.lock();
            if st.closed {
                return;
            }
            st.closed = true;
            let queued = std::mem::take(&mut st.queued);
            st.per_link.clear();
            (std::mem::take(&mut st.backlog), std::mem::take(&mut st.wakers), queued)
        };
        for p in pending {
            if queued.contains(&(p.link.id, p.key)) {
                p.link.pending_dials.fetch_sub(1, Ordering::Relaxed);
                p.link.with(|l, _| l.refuse_dial(&p.key, RstReason::NoListener));
            }
        }
        wakers.into_iter().for_each(Waker::wake);
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

    /// True once the listener is closed: by [`Listener::close`], or with its node.
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().closed
    }

    /// Unbinds the port. Pending and later `accept` calls fail with
    /// [`Error::ListenerClosed`].
    pub fn close(&self) {
        if let Some(owner) = self.shared.owner.upgrade() {
            owner.unbind(self.shared.port, &self.shared);
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
