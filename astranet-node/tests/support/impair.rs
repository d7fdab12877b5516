//! A bad network between two namespaces, in userspace (this kernel has no `tc netem`).
//!
//! Each end of the link is a TUN device in its namespace; threads of the test carry
//! the IP packets from one device to the other and apply, per direction: random loss,
//! delay with jitter (which reorders), explicit reordering, a rate limit with a
//! bounded queue (tail drop), and a cut that drops everything (a silent partition:
//! no RST, no ICMP). Settings change at run time, so a test can flap the link.

use super::hosts::Hosts;
use std::collections::BinaryHeap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What the link does to each packet, in each direction.
#[derive(Clone, Debug, Default)]
pub struct Impairment {
    /// Probability that a packet is dropped.
    pub loss: f64,
    /// One-way delay.
    pub delay: Duration,
    /// The delay varies uniformly by up to this much either way.
    pub jitter: Duration,
    /// Probability that a packet is held back by `reorder_gap`, so later ones overtake it.
    pub reorder: f64,
    pub reorder_gap: Duration,
    /// Bits per second; 0 is unlimited.
    pub rate_bps: u64,
    /// Bytes that may wait for the rate limit; more are dropped at the tail.
    pub queue_bytes: usize,
    /// Drop everything.
    pub cut: bool,
}

/// Packets carried and dropped, both directions together.
#[derive(Default, Debug)]
pub struct Counters {
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
}

/// An impaired link; the forwarding stops and the TUN devices vanish on drop.
pub struct Link {
    settings: Arc<Mutex<Impairment>>,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    pub counters: Arc<Counters>,
}

const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

/// Opens a TUN device named `dev` inside namespace `ns`. The calling thread must not
/// change namespace, so a short-lived thread does: the device stays in the namespace
/// it was created in.
fn open_tun(ns: &str, dev: &str) -> Result<OwnedFd, String> {
    let (ns, dev) = (ns.to_string(), dev.to_string());
    std::thread::spawn(move || -> Result<OwnedFd, String> {
        let os = |what: &str| format!("{what}: {}", std::io::Error::last_os_error());
        let netns = std::fs::File::open(format!("/var/run/netns/{ns}")).map_err(|e| format!("{ns}: {e}"))?;
        // SAFETY: plain system calls on descriptors this thread owns; `ifr` outlives
        // the ioctl and is laid out as `struct ifreq` (name, flags, padding).
        unsafe {
            if libc::setns(netns.as_raw_fd(), libc::CLONE_NEWNET) != 0 {
                return Err(os("setns"));
            }
            let fd = libc::open(c"/dev/net/tun".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(os("/dev/net/tun"));
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut ifr = [0u8; 40];
            ifr[..dev.len()].copy_from_slice(dev.as_bytes());
            let flags = (libc::IFF_TUN | libc::IFF_NO_PI) as i16;
            ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
            if libc::ioctl(fd.as_raw_fd(), TUNSETIFF, ifr.as_mut_ptr()) != 0 {
                return Err(os("TUNSETIFF"));
            }
            Ok(fd)
        }
    })
    .join()
    .map_err(|_| "the TUN thread panicked".to_string())?
}

/// A packet waiting for its release time.
struct Queued {
    at: Instant,
    seq: u64,
    packet: Vec<u8>,
}

impl PartialEq for Queued {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Queued {
    /// Earliest first in the (max-)heap.
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

/// One direction's delay line, shared by its reader and its writer thread.
#[derive(Default)]
struct Line {
    queue: Mutex<BinaryHeap<Queued>>,
    ready: Condvar,
}

/// xorshift64: enough randomness for loss and jitter, reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Link {
    /// TUN devices between host `x` (`net`.2) and host `y` (`net`.1) on `net`.0/24,
    /// carried unimpaired until [`Link::set`] says otherwise.
    pub fn new(hosts: &Hosts, x: &str, y: &str, net: &str) -> Result<Link, String> {
        let (dx, dy) = (format!("{}{x}{y}", hosts.prefix), format!("{}{y}{x}", hosts.prefix));
        let fx = Arc::new(open_tun(&hosts.ns(x), &dx)?);
        let fy = Arc::new(open_tun(&hosts.ns(y), &dy)?);
        hosts.address(x, &dx, &format!("{net}.2"))?;
        hosts.address(y, &dy, &format!("{net}.1"))?;
        let mut link =
            Link { settings: Arc::default(), stop: Arc::default(), threads: Vec::new(), counters: Arc::default() };
        link.direction(fx.clone(), fy.clone(), 0x2545_F491_4F6C_DD1D);
        link.direction(fy, fx, 0x9E37_79B9_7F4A_7C15);
        Ok(link)
    }

    /// Changes the impairment (both directions).
    pub fn set(&self, change: impl FnOnce(&mut Impairment)) {
        change(&mut self.settings.lock().unwrap());
    }

    /// Cuts the link (`true`) or restores it.
    pub fn cut(&self, cut: bool) {
        self.set(|s| s.cut = cut);
    }

    /// Starts carrying packets from `from` to `to`.
    fn direction(&mut self, from: Arc<OwnedFd>, to: Arc<OwnedFd>, seed: u64) {
        let line = Arc::new(Line::default());
        let (settings, stop, counters) = (self.settings.clone(), self.stop.clone(), self.counters.clone());
        let l = line.clone();
        self.threads.push(std::thread::spawn(move || {
            let (mut rng, mut seq, mut next_free) = (Rng(seed), 0u64, Instant::now());
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let Some(n) = read_packet(from.as_raw_fd(), &mut buf) else { continue };
                let now = Instant::now();
                let s = settings.lock().unwrap().clone();
                if s.cut || rng.unit() < s.loss {
                    counters.dropped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let mut depart = now;
                if s.rate_bps > 0 {
                    // A serial line: the packet waits for those ahead of it, unless
                    // the queue is full.
                    let start = next_free.max(now);
                    let queued = (start - now).as_secs_f64() * s.rate_bps as f64 / 8.0;
                    if queued > s.queue_bytes as f64 {
                        counters.dropped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    next_free = start + Duration::from_secs_f64(n as f64 * 8.0 / s.rate_bps as f64);
                    depart = next_free;
                }
                let jitter = s.jitter.as_secs_f64() * (2.0 * rng.unit() - 1.0);
                let mut at = depart + Duration::from_secs_f64((s.delay.as_secs_f64() + jitter).max(0.0));
                if rng.unit() < s.reorder {
                    at += s.reorder_gap;
                }
                seq += 1;
                l.queue.lock().unwrap().push(Queued { at, seq, packet: buf[..n].to_vec() });
                l.ready.notify_one();
            }
        }));
        let (settings, stop, counters) = (self.settings.clone(), self.stop.clone(), self.counters.clone());
        self.threads.push(std::thread::spawn(move || {
            let mut queue = line.queue.lock().unwrap();
            while !stop.load(Ordering::Relaxed) {
                let now = Instant::now();
                let wait = match queue.peek() {
                    Some(q) if q.at <= now => {
                        let q = queue.pop().expect("peeked");
                        drop(queue);
                        // A cut also swallows what was already on the wire.
                        if settings.lock().unwrap().cut {
                            counters.dropped.fetch_add(1, Ordering::Relaxed);
                        } else {
                            // SAFETY: writes a buffer we own to a descriptor we hold.
                            unsafe { libc::write(to.as_raw_fd(), q.packet.as_ptr().cast(), q.packet.len()) };
                            counters.delivered.fetch_add(1, Ordering::Relaxed);
                        }
                        queue = line.queue.lock().unwrap();
                        continue;
                    }
                    Some(q) => (q.at - now).min(Duration::from_millis(100)),
                    None => Duration::from_millis(100),
                };
                queue = line.ready.wait_timeout(queue, wait).unwrap().0;
            }
        }));
    }
}

/// One packet from the TUN device, waiting at most 100 ms (so that the thread sees
/// the stop flag).
fn read_packet(fd: RawFd, buf: &mut [u8]) -> Option<usize> {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll and read on a descriptor we hold, into a buffer we own.
    unsafe {
        if libc::poll(&mut pfd, 1, 100) <= 0 {
            return None;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        (n > 0).then_some(n as usize)
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}
