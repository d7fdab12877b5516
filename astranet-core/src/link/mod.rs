//! The I/O shell of a link: it moves bytes and time into the link's protocol state
//! machine ([`proto::link::Link`](crate::proto::link::Link)) and frames, wake-ups and
//! events out of it.
//!
//! Each link runs three tasks and no more, whatever its stream count: a reader that
//! reads large chunks and hands them to the state machine under one lock acquisition,
//! a writer that drains the queued frames with as few writes as possible, and a timer
//! task that sleeps until the state machine's next deadline. Everything the node must
//! know (dials, announcements, frames to relay, the link coming up or going down)
//! leaves as [`Event`]s through [`LinkEvents`]; the link never calls into the node
//! otherwise.

pub(crate) mod driven;
pub(crate) mod reader;
pub(crate) mod records;
pub(crate) use reader::RELAY_BUFFER_HIGH;
pub(crate) mod sink;
mod timer;
mod writer;

use crate::addr::{Addr, HostId, LinkId};
use crate::error::Error;
use crate::proto::link::{CloseReason, DirectWrite, Event, Link, LinkConfig, LinkTimeout, StreamError, StreamKey};
use crate::proto::stream::PeerReading;
use crate::stats::Counters;
use parking_lot::Mutex;
use sink::Sink;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::task::Waker;
use std::time::{Duration, Instant};
use tokio::io::AsyncRead;
use tokio::sync::{watch, Notify};
use tokio::task::AbortHandle;

/// Who hears a link's events: its node.
pub(crate) trait LinkEvents: Send + Sync {
    /// Called outside any lock of the link, in the order the events arose on the thread
    /// that handled them.
    fn on_event(&self, link: &LinkHandle, event: Event);
}

/// What a link needs beyond its protocol configuration.
#[derive(Clone, Debug)]
pub(crate) struct LinkSettings {
    pub link: LinkConfig,
    /// A write that makes no progress for this long closes the link.
    pub write_timeout: Duration,
}

/// Longest a link's reader waits for a congested next hop at a time.
const MAX_HOP_PAUSE: Duration = Duration::from_millis(500);

/// Who reads a link.
pub(crate) enum Reading<R> {
    /// A task of the runtime, from start to end.
    Runtime(R),
    /// A task of the runtime until the handshake is done, then a [`driven::LinkDriver`].
    HandOver(tokio::net::TcpStream, Arc<driven::LinkDriver>),
}

/// A link's life cycle as `attach` and `join` wait for it.
#[derive(Clone, Debug)]
pub(crate) enum LinkState {
    Handshaking,
    Up(HostId),
    Closed(CloseReason),
}

pub(crate) struct Shared {
    pub id: LinkId,
    pub local: HostId,
    pub remote_addr: Option<SocketAddr>,
    inner: Mutex<Inner>,
    wake_writer: Notify,
    /// A stream set a deadline earlier than the timer task sleeps until.
    timer_changed: Notify,
    state: watch::Sender<LinkState>,
    events: Weak<dyn LinkEvents>,
    settings: LinkSettings,
    counters: Arc<Counters>,
    /// DIALs of this link waiting in listener backlogs (count against the stream limit).
    pub pending_dials: AtomicUsize,
    /// Bytes of read buffers the link holds (see [`reader::PIN_SLACK`]).
    pub read_buffers: AtomicUsize,
    /// Who the peer is, as TLS authenticated it (`None`: a plaintext link).
    pub identity: Option<Identity>,
    tasks: Mutex<Vec<AbortHandle>>,
    /// Woken after each batch the writer wrote: readers of other links that wait for
    /// this one to drain (see [`LinkHandle::congested_by`]).
    drained: Notify,
    /// The driver that reads the link since its handshake, and the link's token there.
    read_by: Mutex<Option<(Weak<driven::LinkDriver>, u64)>>,
    /// The driver that writes the link since its handshake, and the writer's token.
    written_by: Mutex<Option<(Weak<driven::LinkDriver>, u64)>>,
    /// A next hop this link's frames were relayed to that holds too much: the reader
    /// waits for it to drain before reading on.
    congested_hop: Mutex<Option<Weak<Shared>>>,
}

/// What the lock of a link guards: the state machine, and the socket that streams
/// write small frames to directly while the writer is idle (until the link closes).
struct Inner {
    link: Link,
    direct: Option<sink::Direct>,
}

/// A peer as its certificate names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub host: HostId,
    /// The certificate's common name (what access rules match).
    pub name: String,
}

/// A running link. Cheap to clone.
#[derive(Clone)]
pub(crate) struct LinkHandle(Arc<Shared>);

impl std::ops::Deref for LinkHandle {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl LinkHandle {
    /// Starts a link over `reading`/`sink`: our HANDSHAKE is queued and the three tasks
    /// spawned. `events` hears everything from now on.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn spawn<R>(
        id: LinkId,
        local: HostId,
        settings: LinkSettings,
        counters: Arc<Counters>,
        events: Weak<dyn LinkEvents>,
        reading: Reading<R>,
        sink: Sink,
        remote_addr: Option<SocketAddr>,
        identity: Option<Identity>,
    ) -> LinkHandle
    where
        R: AsyncRead + Send + Unpin + 'static,
    {
        let raddr = remote_addr.map(|a| a.to_string()).unwrap_or_default();
        let mut proto = Link::new(local, settings.link.clone(), raddr, Instant::now(), counters.clone());
        if let Some(id) = &identity {
            proto.authenticate(id.host);
        }
        let link = LinkHandle(Arc::new(Shared {
            id,
            local,
            remote_addr,
            inner: Mutex::new(Inner { link: proto, direct: sink.direct() }),
            wake_writer: Notify::new(),
            timer_changed: Notify::new(),
            state: watch::Sender::new(LinkState::Handshaking),
            events,
            settings,
            counters,
            pending_dials: AtomicUsize::new(0),
            read_buffers: AtomicUsize::new(0),
            identity,
            tasks: Mutex::new(Vec::new()),
            drained: Notify::new(),
            congested_hop: Mutex::new(None),
            read_by: Mutex::new(None),
            written_by: Mutex::new(None),
        }));
        let (reader, writer) = match reading {
            Reading::Runtime(io) => {
                (tokio::spawn(reader::run(link.clone(), io)), tokio::spawn(writer::run(link.clone(), sink)))
            }
            Reading::HandOver(io, driver) => {
                let writer = match driver.drive() {
                    driven::Drive::ReadsAndWrites => {
                        tokio::spawn(writer::run_then_hand_over(link.clone(), sink, driver.clone()))
                    }
                    driven::Drive::Reads => tokio::spawn(writer::run(link.clone(), sink)),
                };
                (tokio::spawn(reader::run_then_hand_over(link.clone(), io, driver)), writer)
            }
        };
        let tasks =
            [writer.abort_handle(), reader.abort_handle(), tokio::spawn(timer::run(link.clone())).abort_handle()];
        link.tasks.lock().extend(tasks.iter().cloned());
        if matches!(*link.state.borrow(), LinkState::Closed(_)) {
            // Closed before the handles were stored: nothing aborted the reader.
            for task in &tasks[1..] {
                task.abort();
            }
        }
        link
    }

    /// Runs `f` on the state machine, then wakes the writer if it has work, wakes the
    /// tasks `f` made ready and hands the events that arose to the node, all outside
    /// the lock.
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut Link, &mut Vec<Waker>) -> R) -> R {
        self.with_direct(|link, _, wakers| f(link, wakers))
    }

    /// [`LinkHandle::with`], also handing `f` a way to write a small frame straight to
    /// the socket without blocking: `(header, payload)` → the bytes the socket took
    /// (`None`: none; not a TCP link, or it would block).
    pub(crate) fn with_direct<R>(&self, f: impl FnOnce(&mut Link, Option<DirectWrite<'_>>, &mut Vec<Waker>) -> R) -> R {
        let mut wakers = Vec::new();
        let mut events = Vec::new();
        let (result, kick) = {
            let mut inner = self.inner.lock();
            let Inner { link, direct } = &mut *inner;
            let wake_writer = &self.wake_writer;
            let mut write = direct.as_ref().map(|direct| {
                move |h: &[u8], p: &[u8]| {
                    let (written, kick) = direct.write(h, p);
                    if kick {
                        wake_writer.notify_one();
                    }
                    written
                }
            });
            let result = f(link, write.as_mut().map(|w| w as DirectWrite<'_>), &mut wakers);
            while let Some(ev) = link.poll_event() {
                events.push(ev);
            }
            (result, (link.take_writer_wakeup(), link.take_timer_wakeup()))
        };
        if kick.0 {
            self.wake_writer.notify_one();
        }
        if kick.1 {
            self.timer_changed.notify_one();
        }
        for w in wakers {
            w.wake();
        }
        for ev in events {
            self.deliver(ev);
        }
        result
    }

    fn deliver(&self, event: Event) {
        match &event {
            Event::Closed(reason) => self.closed(reason.clone()),
            Event::Up { peer, .. } => {
                let node = self.events.upgrade();
                // The route exists before anyone waiting for the handshake hears of it.
                if let Some(node) = &node {
                    node.on_event(self, event.clone());
                }
                let peer = *peer;
                // A close that raced in keeps its Closed state: waiters must see it.
                self.state.send_if_modified(|s| match s {
                    LinkState::Handshaking => {
                        *s = LinkState::Up(peer);
                        true
                    }
                    _ => false,
                });
                return;
            }
            _ => {}
        }
        if let Some(node) = self.events.upgrade() {
            node.on_event(self, event);
        }
    }

    /// The state machine closed: stop the tasks (the writer flushes a local close by
    /// itself), and let waiters know.
    fn closed(&self, reason: CloseReason) {
        // Once the writer lets go of the socket too, dropping it ends the connection.
        self.inner.lock().direct = None;
        self.state.send_replace(LinkState::Closed(reason.clone()));
        if let Some((driver, token)) = self.read_by.lock().take() {
            if let Some(driver) = driver.upgrade() {
                driver.forget(token);
            }
        }
        if let Some((driver, token)) = self.written_by.lock().take() {
            if let Some(driver) = driver.upgrade() {
                driver.let_writer_go(token, &reason);
            }
        }
        let tasks = std::mem::take(&mut *self.tasks.lock());
        if let Some(reader) = tasks.get(1) {
            reader.abort();
        }
        if let Some(timer) = tasks.get(2) {
            timer.abort();
        }
        if reason != CloseReason::Local {
            if let Some(writer) = tasks.first() {
                writer.abort();
            }
        }
        self.wake_writer.notify_one();
    }

    /// `driver` reads the link from now on (see [`reader::run_then_hand_over`]).
    pub(crate) fn read_by(&self, driver: &Arc<driven::LinkDriver>, token: u64) {
        *self.read_by.lock() = Some((Arc::downgrade(driver), token));
        // A close before the line above did not see the token.
        if self.is_closed() {
            self.read_by.lock().take();
            driver.forget(token);
        }
    }

    /// `driver` writes the link from now on (see [`writer::run_then_hand_over`]).
    pub(crate) fn written_by(&self, driver: &Arc<driven::LinkDriver>, token: u64) {
        *self.written_by.lock() = Some((Arc::downgrade(driver), token));
        // A close before the line above did not see the token. (The reason is copied
        // out: the state's lock is not held while the writer is let go.)
        let closed = match &*self.state.borrow() {
            LinkState::Closed(reason) => Some(reason.clone()),
            _ => None,
        };
        if let Some(reason) = closed {
            if self.written_by.lock().take().is_some() {
                driver.let_writer_go(token, &reason);
            }
        }
    }

    /// Closes the link (see [`Link::close`]). Idempotent.
    pub(crate) fn close(&self, reason: CloseReason) {
        self.with(|l, w| l.close(reason, w));
    }

    /// The neighbour's host id, once the handshake completed.
    pub(crate) fn peer(&self) -> Option<HostId> {
        match *self.state.borrow() {
            LinkState::Up(host) => Some(host),
            _ => None,
        }
    }

    /// Whether the link is closed.
    pub(crate) fn is_closed(&self) -> bool {
        matches!(*self.state.borrow(), LinkState::Closed(_))
    }

    /// Bytes queued for writing.
    pub(crate) fn queued(&self) -> usize {
        self.inner.lock().link.queued()
    }

    /// Frames read from this link were relayed to `hop`, which holds more than a relay
    /// should buffer: this link's reader pauses until `hop` drained (see
    /// [`reader`](self::reader)).
    pub(crate) fn congested_by(&self, hop: &LinkHandle) {
        *self.congested_hop.lock() = Some(Arc::downgrade(&hop.0));
    }

    /// Waits until the next hop that congested this link (if any) holds at most `low`
    /// bytes, or closed, or [`MAX_HOP_PAUSE`] passed: relays that pause each other in a
    /// ring (each waiting for a hop that waits for the next) must not deadlock, so a
    /// pause slows a link down but never stops it.
    pub(crate) async fn wait_for_hop(&self, low: usize) {
        let Some(hop) = self.congested_hop.lock().take().and_then(|w| w.upgrade()) else { return };
        let hop = LinkHandle(hop);
        tracing::debug!("reads from {} pause until {} drains", self.peer_name(), hop.peer_name());
        let until = tokio::time::Instant::now() + MAX_HOP_PAUSE;
        loop {
            let drained = hop.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if hop.is_closed() || hop.queued() <= low || tokio::time::Instant::now() >= until {
                return;
            }
            // The writer wakes us after each batch; the period only guards a close.
            let _ = tokio::time::timeout(Duration::from_millis(50), drained).await;
        }
    }

    /// The link's rules (v1 before the handshake).
    pub(crate) fn policy(&self) -> crate::proto::link::Policy {
        self.inner.lock().link.policy()
    }

    /// Streams on the link, and DIALs of it waiting in backlogs.
    pub(crate) fn load(&self) -> usize {
        self.inner.lock().link.stream_count() + self.pending_dials.load(Ordering::Relaxed)
    }

    /// Waits until the handshake completed; returns the peer's host id.
    pub(crate) async fn wait_up(&self) -> Result<HostId, Error> {
        let mut rx = self.state.subscribe();
        let state = rx.wait_for(|s| !matches!(s, LinkState::Handshaking)).await.map(|s| s.clone());
        match state {
            Ok(LinkState::Up(host)) => Ok(host),
            // A peer that never answers is a timeout, with or without a caller's own.
            Ok(LinkState::Closed(CloseReason::Timeout(LinkTimeout::Handshake(after)))) => {
                Err(Error::TimedOut { what: format!("handshake with {}", self.peer_name()), after })
            }
            Ok(LinkState::Closed(reason)) => Err(self.closed_error(reason)),
            _ => Err(Error::NodeClosed),
        }
    }

    /// Waits until the link is closed.
    pub(crate) async fn wait_closed(&self) -> CloseReason {
        let mut rx = self.state.subscribe();
        match rx.wait_for(|s| matches!(s, LinkState::Closed(_))).await.map(|s| s.clone()) {
            Ok(LinkState::Closed(reason)) => reason,
            _ => CloseReason::Local,
        }
    }

    /// The peer as people name it: host id and/or socket address.
    pub(crate) fn peer_name(&self) -> String {
        match (self.peer(), self.remote_addr) {
            (Some(p), Some(a)) => format!("{p} ({a})"),
            (Some(p), None) => p.to_string(),
            (None, Some(a)) => a.to_string(),
            (None, None) => self.id.to_string(),
        }
    }

    /// The error for a link that closed for `reason`.
    pub(crate) fn closed_error(&self, reason: CloseReason) -> Error {
        match reason {
            CloseReason::Protocol(detail) => Error::Protocol { peer: self.peer_name(), detail },
            reason => Error::LinkClosed { peer: self.peer_name(), reason },
        }
    }

    /// The error for a failed operation on stream `key`.
    pub(crate) fn stream_error(&self, e: StreamError, key: &StreamKey) -> Error {
        match e {
            StreamError::LinkClosed(reason) => self.closed_error(reason),
            StreamError::Refused(reason) => Error::Refused { addr: key.remote(), reason },
            StreamError::Reset(reason) => Error::Reset(reason),
            StreamError::Aborted => Error::Aborted,
            StreamError::RouteLost => Error::RouteLost { host: key.remote_host, relay: self.peer_name() },
            StreamError::WriteClosed => Error::BrokenPipe,
            StreamError::IdleTimeout(after) => Error::TimedOut { what: "stream idle".into(), after },
            StreamError::WriteTimeout(after) => Error::TimedOut { what: "write".into(), after },
            StreamError::DialTimeout(after) => Error::TimedOut { what: format!("dial to {}", key.remote()), after },
            StreamError::PeerNotReading(PeerReading::Forgot) => {
                Error::PeerClosed("it closed the stream and forgot it (v1 close window over)")
            }
            StreamError::PeerNotReading(_) => Error::PeerClosed("it closed its reading half (FIN1)"),
        }
    }

    /// This node's address of a stream (its host id and local port).
    pub(crate) fn local_addr(&self, key: &StreamKey) -> Addr {
        Addr::new(self.local, key.local_port)
    }
}

impl std::fmt::Debug for LinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("id", &self.id).field("peer", &self.peer_name()).finish()
    }
}
