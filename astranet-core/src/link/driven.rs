//! Link reads (and writes) driven by the embedder's thread instead of the runtime's
//! workers.
//!
//! A runtime thread that reads a link's socket must then wake the thread that consumes
//! the stream: two thread wake-ups per message where a program with its own event loop
//! (Go's netpoller, a C program's `epoll`) would pay one if it read the socket itself.
//! A [`LinkDriver`] lets it: the node hands it each plaintext TCP link once its
//! handshake is done, and the embedder watches one descriptor ([`LinkDriver::fd`], an
//! epoll instance holding the link sockets) and calls [`LinkDriver::run`] whenever it
//! is readable. The reading itself is the link's usual reader, polled there.
//!
//! With [`Drive::ReadsAndWrites`] the link's writer is polled there too. The runtime's
//! threads then take no part in moving a link's bytes, and an embedder whose own
//! scheduler runs its threads (Go's) keeps the work on them: with many streams, the
//! runtime's writer thread and the embedder's threads took turns at two cores, each
//! turn a sleep and a wake-up.

use super::reader::{ReadBuffers, DRIVEN_BUSY_READS};
use super::LinkHandle;
use crate::proto::link::CloseReason;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll, Wake, Waker};
use tokio::io::{AsyncRead, ReadBuf};

/// epoll data of the driver's own eventfd (a reader or writer asked to be polled).
const WOKEN: u64 = 0;
/// epoll data of descriptors watched for the embedder ([`LinkDriver::watch`]).
const WATCHED: u64 = u64::MAX;

/// A link's reader or writer, as the driver polls it.
type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a [`LinkDriver`] does for the links the node gives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Drive {
    /// Reads them; the runtime writes them.
    Reads,
    /// Reads and writes them (writes once the link's handshake is done, as reads).
    /// Frames queued on a link leave only when someone calls [`LinkDriver::run`], or
    /// once the link is closed locally (its writer then returns to the runtime to
    /// flush them).
    ReadsAndWrites,
}

/// Reads (and, with [`Drive::ReadsAndWrites`], writes) a node's links on the threads
/// that call [`LinkDriver::run`].
///
/// Give it to [`NodeBuilder::link_driver`](crate::NodeBuilder::link_driver). Each
/// plaintext TCP link is read and written by the runtime until its handshake is done
/// (so that [`Node::join`](crate::Node::join) completes without help), then by `run`.
/// TLS links and links over other byte pipes are always served by the runtime.
///
/// The embedder must call `run` whenever [`fd`](LinkDriver::fd) is readable: an
/// unread link answers no keep-alive and is closed by its peer.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use astranet::{Drive, LinkDriver};
/// let driver = LinkDriver::new(Drive::ReadsAndWrites)?;
/// let node = astranet::Node::builder().link_driver(driver.clone()).build();
/// // In the embedder's event loop: when `driver.fd()` is readable,
/// driver.run();
/// # drop(node); Ok(()) }
/// ```
pub struct LinkDriver {
    epoll: OwnedFd,
    /// Written when a reader asks to be polled again (it yielded, or waits for a
    /// congested next hop to drain) or a writer has frames to write; makes `epoll`
    /// readable.
    wake: OwnedFd,
    entries: Mutex<Entries>,
    woken: Mutex<Vec<u64>>,
    drive: Drive,
    me: Weak<LinkDriver>,
}

struct Entries {
    next: u64,
    by_token: HashMap<u64, Entry>,
    /// How many entries have a socket (read links).
    sockets: usize,
}

impl Entries {
    fn insert(&mut self, token: u64, entry: Entry) {
        self.sockets += usize::from(entry.socket.is_some());
        self.by_token.insert(token, entry);
    }

    fn remove(&mut self, token: u64) -> Option<Entry> {
        let entry = self.by_token.remove(&token)?;
        self.sockets -= usize::from(entry.socket.is_some());
        Some(entry)
    }

    /// With no link or one, its token (`Some(None)`: none); `None` with more.
    fn lone_socket(&self) -> Option<Option<u64>> {
        match self.sockets {
            0 => Some(None),
            1 => Some(self.by_token.iter().find(|(_, e)| e.socket.is_some()).map(|(t, _)| *t)),
            _ => None,
        }
    }
}

struct Entry {
    /// The socket a reader reads (`None`: a writer, woken by its link alone).
    socket: Option<Socket>,
    /// `None` while a thread polls it.
    polling: Option<Polling>,
    waker: Arc<EntryWaker>,
    /// Woken while being polled: poll again.
    rewake: bool,
    /// The link closed while being polled: drop the task afterwards.
    gone: bool,
    /// The link closed locally while being polled: hand the writer back to the
    /// runtime afterwards, to flush what was queued.
    release: bool,
}

/// A reader's socket as the driver's epoll watches it.
struct Socket {
    fd: RawFd,
    edges: Arc<Edges>,
}

/// What the driver and the reader's [`Driven`] socket know of the socket's bytes.
struct Edges {
    /// Readiness edges reported for the socket (by the epoll, or assumed by
    /// [`LinkDriver::run_lone`]).
    reported: AtomicU64,
    /// `reported` as it was before a read that emptied the socket ([`NOT_DRAINED`]:
    /// none since the last read that may have left bytes): while it is unchanged,
    /// nothing arrived since, and a read would only return `EAGAIN`.
    drained_at: AtomicU64,
}

const NOT_DRAINED: u64 = u64::MAX;

impl Edges {
    fn drained(&self) -> bool {
        self.drained_at.load(Ordering::Acquire) == self.reported.load(Ordering::Acquire)
    }
}

/// What polling a link's reader or writer takes: out of its entry while a thread
/// polls it.
struct Polling {
    task: Task,
    /// Made of the entry's waker once, not per poll.
    waker: Waker,
    /// The task's timers, yields and writability waits need the runtime's context.
    runtime: tokio::runtime::Handle,
}

struct EntryWaker {
    token: u64,
    queued: AtomicBool,
    driver: Weak<LinkDriver>,
}

impl Wake for EntryWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref()
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue();
        }
    }
}

impl EntryWaker {
    /// Puts the reader on the list `run` polls, whatever `queued` says.
    fn queue(&self) {
        if let Some(driver) = self.driver.upgrade() {
            driver.push_woken(self.token);
        }
    }
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl LinkDriver {
    /// A driver with no links yet: an epoll instance and an eventfd.
    pub fn new(drive: Drive) -> io::Result<Arc<LinkDriver>> {
        // SAFETY: plain syscalls; each fd is owned at once.
        let epoll = unsafe { OwnedFd::from_raw_fd(cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?) };
        let wake = unsafe { OwnedFd::from_raw_fd(cvt(libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))?) };
        // Non-blocking, so that event loops that insist (Go's) can watch it.
        unsafe { cvt(libc::fcntl(epoll.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK))? };
        let driver = Arc::new_cyclic(|me| LinkDriver {
            epoll,
            wake,
            entries: Mutex::new(Entries { next: WOKEN + 1, by_token: HashMap::new(), sockets: 0 }),
            woken: Mutex::new(Vec::new()),
            drive,
            me: me.clone(),
        });
        driver.add(driver.wake.as_raw_fd(), WOKEN, libc::EPOLLIN as u32)?;
        Ok(driver)
    }

    /// What the driver does for its links.
    pub fn drive(&self) -> Drive {
        self.drive
    }

    /// The descriptor to watch for reading (level-triggered): readable while a link
    /// has bytes to read, a read asked to be continued, a writer has frames to write
    /// or a watched descriptor is readable. Valid as long as the driver.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Makes [`fd`](LinkDriver::fd) readable also while `fd` is: an embedder with a
    /// readiness descriptor of its own then watches one. `fd` must stay open as long
    /// as the driver.
    pub fn watch(&self, fd: RawFd) -> io::Result<()> {
        self.add(fd, WATCHED, libc::EPOLLIN as u32)
    }

    fn add(&self, fd: RawFd, data: u64, events: u32) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: data };
        // SAFETY: valid epoll fd and event struct.
        cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
    }

    /// Puts `token` on the woken list. The eventfd is written when the list stops
    /// being empty and read when it is taken, both under its lock: the eventfd is
    /// readable exactly while the list has tokens, so that a level-triggered wait on
    /// [`fd`](LinkDriver::fd) never returns for nothing.
    fn push_woken(&self, token: u64) {
        let mut woken = self.woken.lock();
        woken.push(token);
        if woken.len() == 1 {
            let one: u64 = 1;
            // SAFETY: 8 bytes to our eventfd, from 0 to 1.
            unsafe { libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8) };
        }
    }

    /// Reads every link that has bytes waiting, continues the reads that asked to be,
    /// and runs the writers that have frames to write, as far as each goes without
    /// blocking (a link that keeps its socket busy yields after a few reads and asks to
    /// be continued). Frames are handled as the runtime's reader handles them: streams
    /// become readable, events reach the node. Safe from any thread, also from several
    /// at once.
    pub fn run(&self) {
        let lone = self.entries.lock().lone_socket();
        match lone {
            Some(socket) => self.run_lone(socket),
            None => self.run_many(),
        }
    }

    /// `run` with one link at most, a client's usual case. Asking the epoll whether
    /// the link or the eventfd made the fd readable costs a syscall; reading the link
    /// costs one only when it has nothing (and then no more than asking would have),
    /// and the woken list says the rest without one. Over a round trip between two
    /// such nodes, that is two syscalls of eight.
    fn run_lone(&self, socket: Option<u64>) {
        self.run_woken();
        let Some(token) = socket else { return };
        self.poll(token, true);
        // A reader that left bytes in the socket (it filled a buffer and yields, or
        // waits for a congested next hop) left the socket's edge on the epoll, whose
        // fd then stays readable: a level-triggered wait would spin. The epoll is
        // asked after all, which takes the edge off (and counts it for the reader).
        let drained =
            self.entries.lock().by_token.get(&token).and_then(|e| e.socket.as_ref()).is_none_or(|s| s.edges.drained());
        if !drained {
            for token in self.ready_sockets() {
                if let Some(socket) = self.entries.lock().by_token.get(&token).and_then(|e| e.socket.as_ref()) {
                    socket.edges.reported.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
    }

    /// Polls the readers and writers that asked to be (see [`push_woken`](Self::push_woken)).
    fn run_woken(&self) {
        let tokens = {
            let mut woken = self.woken.lock();
            if woken.is_empty() {
                return;
            }
            let mut drained: u64 = 0;
            // SAFETY: 8 bytes from our non-blocking eventfd: resets it.
            unsafe { libc::read(self.wake.as_raw_fd(), (&mut drained as *mut u64).cast(), 8) };
            std::mem::take(&mut *woken)
        };
        for token in tokens {
            self.poll(token, false);
        }
    }

    /// `run` with several links: the epoll says which have bytes.
    fn run_many(&self) {
        let readable = self.ready_sockets();
        self.run_woken();
        for token in readable {
            self.poll(token, true);
        }
    }

    /// The tokens of the sockets the epoll reports readable since it was last asked.
    fn ready_sockets(&self) -> Vec<u64> {
        let mut events = [libc::epoll_event { events: 0, u64: 0 }; 64];
        let mut readable = Vec::new();
        loop {
            // SAFETY: valid epoll fd; `events` has room for its length.
            let n = unsafe { libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), events.len() as i32, 0) };
            let n = n.max(0) as usize;
            for e in &events[..n] {
                match e.u64 {
                    WOKEN | WATCHED => {}
                    token => readable.push(token),
                }
            }
            if n < events.len() {
                break;
            }
        }
        readable
    }

    /// Polls the reader or writer of `token`; `edge`: its socket reported new bytes.
    fn poll(&self, token: u64, edge: bool) {
        let mut polling = {
            let mut entries = self.entries.lock();
            let Some(entry) = entries.by_token.get_mut(&token) else { return };
            if edge {
                // Before the reader runs (here or on the thread polling it now).
                if let Some(socket) = &entry.socket {
                    socket.edges.reported.fetch_add(1, Ordering::AcqRel);
                }
            }
            let Some(polling) = entry.polling.take() else {
                entry.rewake = true;
                return;
            };
            entry.waker.queued.store(false, Ordering::Release);
            polling
        };
        let done = {
            let _runtime = polling.runtime.enter();
            polling.task.as_mut().poll(&mut Context::from_waker(&polling.waker)).is_ready()
        };
        let mut entries = self.entries.lock();
        let Some(entry) = entries.by_token.get_mut(&token) else { return };
        if done || entry.gone {
            let release = entry.release && !done;
            let entry = entries.remove(token);
            drop(entries);
            self.remove(entry);
            if release {
                polling.runtime.spawn(polling.task);
            }
            return;
        }
        entry.polling = Some(polling);
        if std::mem::take(&mut entry.rewake) {
            let waker = entry.waker.clone();
            drop(entries);
            // Not `wake_by_ref`: the wake that queued the poll which found this one
            // running may have left `queued` set, and would make it a no-op.
            waker.queued.store(true, Ordering::Release);
            waker.queue();
        }
    }

    fn remove(&self, entry: Option<Entry>) {
        if let Some(entry) = entry {
            if let Some(socket) = &entry.socket {
                // Before the reader (and with it the socket) is dropped.
                // SAFETY: valid epoll fd; the fd is still open (the reader owns it).
                unsafe {
                    libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_DEL, socket.fd, std::ptr::null_mut())
                };
            }
            drop(entry);
        }
    }

    /// Takes over the reading of `link` from the runtime's reader, with the bytes it
    /// read and not yet handled. Returns the token [`forget`](LinkDriver::forget)
    /// takes.
    pub(super) fn adopt(&self, link: LinkHandle, io: TcpStream, buffers: ReadBuffers) -> io::Result<u64> {
        let fd = io.as_raw_fd();
        let edges = Arc::new(Edges { reported: AtomicU64::new(0), drained_at: AtomicU64::new(NOT_DRAINED) });
        let io = Driven { io, edges: edges.clone() };
        let reader = Box::pin(super::reader::read(link, io, buffers, DRIVEN_BUSY_READS));
        let token = self.insert(reader, Some(Socket { fd, edges }));
        let events = (libc::EPOLLIN | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
        if let Err(e) = self.add(fd, token, events) {
            let entry = self.entries.lock().remove(token);
            drop(entry);
            return Err(e);
        }
        // The first poll reads what arrived before the socket was watched.
        self.wake(token);
        Ok(token)
    }

    /// Takes over the writing of a link from the runtime's writer task (see
    /// [`Drive::ReadsAndWrites`]): `writer` is the link's writer, which the runtime's
    /// task stopped between two batches. Returns the token that
    /// [`let_writer_go`](LinkDriver::let_writer_go) takes.
    pub(super) fn adopt_writer(&self, writer: Task) -> u64 {
        let token = self.insert(writer, None);
        // The first poll writes what was queued meanwhile.
        self.wake(token);
        token
    }

    /// Adds an entry for `task`, polled from now on when woken.
    fn insert(&self, task: Task, socket: Option<Socket>) -> u64 {
        let mut entries = self.entries.lock();
        let token = entries.next;
        entries.next += 1;
        let waker = Arc::new(EntryWaker { token, queued: AtomicBool::new(false), driver: self.me.clone() });
        let runtime = tokio::runtime::Handle::current();
        let polling = Polling { task, waker: Waker::from(waker.clone()), runtime };
        let entry = Entry { socket, polling: Some(polling), waker, rewake: false, gone: false, release: false };
        entries.insert(token, entry);
        token
    }

    fn wake(&self, token: u64) {
        if let Some(waker) = self.entries.lock().by_token.get(&token).map(|e| e.waker.clone()) {
            waker.wake_by_ref();
        }
    }

    /// The link of the reader `token` closed: the reader is dropped (now, or when the
    /// thread polling it is done).
    pub(super) fn forget(&self, token: u64) {
        self.let_go(token, false);
    }

    /// The link of the writer `token` closed for `reason`. After a local close the
    /// writer goes back to the runtime (now, or when the thread polling it is done) to
    /// write what was queued before the close, whether or not anyone calls `run` any
    /// more; after any other, nothing more is written and it is dropped.
    pub(super) fn let_writer_go(&self, token: u64, reason: &CloseReason) {
        self.let_go(token, *reason == CloseReason::Local);
    }

    fn let_go(&self, token: u64, release: bool) {
        let mut entries = self.entries.lock();
        let Some(entry) = entries.by_token.get_mut(&token) else { return };
        if entry.polling.is_none() {
            entry.gone = true;
            entry.release = release;
            return;
        }
        let mut entry = entries.remove(token);
        drop(entries);
        let polling = entry.as_mut().and_then(|e| e.polling.take()).filter(|_| release);
        self.remove(entry);
        if let Some(polling) = polling {
            polling.runtime.spawn(polling.task);
        }
    }

    /// Links read by the driver.
    pub fn links(&self) -> usize {
        self.entries.lock().by_token.values().filter(|e| e.socket.is_some()).count()
    }

    /// Links written by the driver.
    pub fn writers(&self) -> usize {
        self.entries.lock().by_token.values().filter(|e| e.socket.is_none()).count()
    }
}

impl std::fmt::Debug for LinkDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkDriver")
            .field("fd", &self.fd())
            .field("drive", &self.drive)
            .field("links", &self.links())
            .field("writers", &self.writers())
            .finish()
    }
}

/// A link socket read by `recv` itself: readiness comes from the driver's epoll, not
/// from the runtime's reactor (which may not have seen it yet).
struct Driven {
    io: TcpStream,
    edges: Arc<Edges>,
}

impl AsyncRead for Driven {
    fn poll_read(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let edges = self.edges.reported.load(Ordering::Acquire);
        if self.edges.drained_at.load(Ordering::Acquire) == edges {
            return Poll::Pending;
        }
        let socket = socket2::SockRef::from(&self.io);
        loop {
            // SAFETY: recv writes only initialised bytes, and we mark only those.
            let unfilled = unsafe { buf.unfilled_mut() };
            let room = unfilled.len();
            match socket.recv(unfilled) {
                Ok(n) => {
                    // SAFETY: recv initialised `n` bytes.
                    unsafe { buf.assume_init(n) };
                    buf.advance(n);
                    // A TCP read that returns less than asked for emptied the socket:
                    // the next bytes bring an edge (as tokio's reads assume).
                    let drained = if n > 0 && n < room { edges } else { NOT_DRAINED };
                    self.edges.drained_at.store(drained, Ordering::Release);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                // The driver's epoll reports the next bytes (edge-triggered: this read
                // emptied the socket).
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.edges.drained_at.store(edges, Ordering::Release);
                    return Poll::Pending;
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}
