//! Relaying: a frame addressed to another host is passed, unchanged, to the link that
//! leads to that host (a direct neighbour: one relay hop, as in the Go package). Flow
//! control stays end to end, since DATA, REWIND and WND_SIZE pass through untouched.
//! When one side of a relayed pair of hosts goes away, the relay sends RESET down the
//! other side so its streams fail instead of hanging.

use crate::addr::HostId;
use crate::link::Link;
use crate::node::NodeShared;
use crate::proto::{Command, Frame, Header, RstReason};
use hashbrown::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One end of a relayed stream: (host, port).
type End = (u64, u32);

/// A stream this node relays, from the DIAL it passed on until both sides finished
/// (FIN2 each way), one reset it, one side became unreachable, or the dial never
/// completed.
#[derive(Clone, Copy, Debug)]
struct Relayed {
    dialer: u64,
    established: bool,
    /// FIN2 seen from the lower and the higher end of the key.
    fin: [bool; 2],
    /// The window (WND_SIZE) each end granted, lower end first: a Go sender sends DATA
    /// frames that large, which this relay must then carry.
    grant: [u32; 2],
    opened: Instant,
}

/// Streams relayed by this node, keyed by their two ends in order, with counts per
/// dialing host for the limits.
#[derive(Default)]
pub(crate) struct RelayTable {
    streams: HashMap<(End, End), Relayed>,
    per_host: HashMap<u64, usize>,
    swept: Option<Instant>,
}

fn key(h: &Header) -> ((End, End), usize) {
    let (a, b) = ((h.src_host, h.src_port), (h.dst_host, h.dst_port));
    if a <= b {
        ((a, b), 0)
    } else {
        ((b, a), 1)
    }
}

impl RelayTable {
    /// A DIAL passes through: count it, or say which limit refuses it.
    fn open(&mut self, h: &Header, per_host: usize, total: usize, dial_timeout: Duration) -> Result<(), String> {
        let now = Instant::now();
        if self.swept.is_none_or(|t| now.duration_since(t) > Duration::from_secs(1)) {
            self.sweep(now, dial_timeout);
        }
        let (k, _) = key(h);
        if self.streams.contains_key(&k) {
            return Ok(());
        }
        if self.streams.len() >= total {
            return Err(format!("{total} relayed streams in total"));
        }
        let count = self.per_host.entry(h.src_host).or_default();
        if *count >= per_host {
            return Err(format!("{per_host} relayed streams for host {}", HostId(h.src_host)));
        }
        *count += 1;
        let grant = [crate::proto::INITIAL_WINDOW; 2];
        self.streams.insert(k, Relayed { dialer: h.src_host, established: false, fin: [false; 2], grant, opened: now });
        Ok(())
    }

    /// Follows a relayed stream frame's effect on the stream's life (`arg`: the u32
    /// payload of WND_SIZE).
    fn observe(&mut self, h: &Header, arg: u32) {
        let (k, side) = key(h);
        let done = match (h.cmd, self.streams.get_mut(&k)) {
            (Command::WndSize, Some(s)) => {
                s.grant[side] = arg;
                false
            }
            (Command::Syn, Some(s)) => {
                s.established = true;
                false
            }
            (Command::Fin2, Some(s)) => {
                s.fin[side] = true;
                s.fin == [true, true]
            }
            (Command::Rst, Some(_)) => true,
            _ => false,
        };
        if done {
            self.remove(&k);
        }
    }

    fn remove(&mut self, k: &(End, End)) {
        if let Some(s) = self.streams.remove(k) {
            if let Some(c) = self.per_host.get_mut(&s.dialer) {
                *c -= 1;
                if *c == 0 {
                    self.per_host.remove(&s.dialer);
                }
            }
        }
    }

    /// Forgets dials that were never answered (a v1 node drops dials to closed ports).
    fn sweep(&mut self, now: Instant, dial_timeout: Duration) {
        self.swept = Some(now);
        let stale: Vec<_> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.established && now.duration_since(s.opened) > dial_timeout)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.remove(&k);
        }
    }

    /// Forgets every stream with an end on `host`.
    fn host_lost(&mut self, host: u64) {
        let gone: Vec<_> = self.streams.keys().filter(|(a, b)| a.0 == host || b.0 == host).copied().collect();
        for k in gone {
            self.remove(&k);
        }
    }

    /// The largest DATA payload the destination of `h` allows its sender.
    fn grant(&self, h: &Header) -> u32 {
        let (k, side) = key(h);
        self.streams.get(&k).map_or(crate::proto::MAX_PAYLOAD as u32, |s| s.grant[1 - side])
    }

    /// Streams relayed now.
    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }
}

/// A relayed pair: the link towards each of the two hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Pair {
    from_link: u64,
    to_link: u64,
}

impl NodeShared {
    /// Passes `frame` (not for this node) on towards its destination. Returns the link
    /// it was queued on, for backpressure; `None` if it was dropped (no route, or it
    /// would go back where it came from).
    pub(crate) fn forward(&self, from: &Link, frame: &Frame) -> Option<Arc<Link>> {
        let h = frame.header;
        if from.peer.get().map(|p| p.host.0) != Some(h.src_host) {
            // One hop: what a neighbour relays comes from the neighbour itself.
            self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(link = from.id, cmd = %h.cmd, src = %HostId(h.src_host), "relayed frame with a foreign source dropped");
            return None;
        }
        // Answers go back on the link the other host's frames came from (it may have
        // several links to this node), else on any link to it.
        let back = self.relay_pairs.lock().get(&(h.dst_host, h.src_host)).map(|p| p.from_link);
        let to = back.and_then(|id| self.link(id)).or_else(|| self.route(HostId(h.dst_host)));
        let Some(to) = to.filter(|to| to.id != from.id) else {
            self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(link = from.id, cmd = %h.cmd, dst = %HostId(h.dst_host), "no route: frame dropped");
            return None;
        };
        match h.cmd {
            Command::Dial => {
                let limits = &self.config.limits;
                let opened = self.relay_streams.lock().open(
                    &h,
                    limits.max_relayed_streams_per_host,
                    limits.max_relayed_streams,
                    self.config.dial_timeout,
                );
                if let Err(limit) = opened {
                    tracing::warn!(
                        from = %HostId(h.src_host), to = %HostId(h.dst_host),
                        "relay stream limit reached ({limit}): dial refused"
                    );
                    refuse(from, &h);
                    return None;
                }
            }
            Command::Syn | Command::Fin2 | Command::Rst => self.relay_streams.lock().observe(&h, 0),
            Command::WndSize => self.relay_streams.lock().observe(&h, frame.u32_payload()),
            _ => {}
        }
        let pair = Pair { from_link: from.id, to_link: to.id };
        {
            let mut pairs = self.relay_pairs.lock();
            if pairs.get(&(h.src_host, h.dst_host)) != Some(&pair) {
                pairs.insert((h.src_host, h.dst_host), pair);
            }
        }
        let mut st = to.state.lock();
        if st.closed.is_some() {
            return None;
        }
        if h.cmd.is_v1() || !to.is_v1() {
            st.push(h, &frame.payload);
        } else if h.cmd == Command::Rst {
            // A v1 node never sees RST: an abort reaches it as the v1 close.
            for cmd in [Command::Fin2, Command::Fin1] {
                st.push(Header { cmd, len: 0, ..h }, &[]);
            }
        }
        to.kick(&mut st);
        drop(st);
        if h.cmd == Command::Fin2 && from.is_v1() && !to.is_v1() {
            self.after_v1_close(&h, to.id, from.node.clone());
        }
        Some(to)
    }

    /// A Go host closed a stream whose other end is a node of this project, which takes
    /// FIN2 as a half-close: when the Go host forgets the stream (its close window),
    /// tell that end with FIN1 in the Go host's name, so that its writes fail instead
    /// of waiting for credit that will never come.
    fn after_v1_close(&self, fin2: &Header, to_link: u64, node: std::sync::Weak<NodeShared>) {
        let fin1 = Header { cmd: Command::Fin1, len: 0, ..*fin2 };
        let due = Instant::now() + crate::proto::V1_CLOSE_WINDOW;
        let start = {
            let mut timers = self.relay_v1_closes.lock();
            timers.push_back((due, fin1, to_link));
            timers.len() == 1
        };
        if start {
            self.spawn_background(async move {
                loop {
                    let next = node.upgrade().and_then(|n| n.relay_v1_closes.lock().front().map(|t| t.0));
                    let Some(due) = next else { return };
                    tokio::time::sleep_until(due.into()).await;
                    let Some(node) = node.upgrade() else { return };
                    let (fin1, to_link) = {
                        let mut timers = node.relay_v1_closes.lock();
                        let Some((_, fin1, to_link)) = timers.pop_front() else { return };
                        (fin1, to_link)
                    };
                    if let Some(link) = node.link(to_link) {
                        let mut st = link.state.lock();
                        if st.closed.is_none() {
                            st.push(fin1, &[]);
                            link.kick(&mut st);
                        }
                    }
                    if node.relay_v1_closes.lock().is_empty() {
                        return;
                    }
                }
            });
        }
    }

    /// The largest DATA payload this relay passes on for the stream of `h` (the window
    /// its receiving end granted).
    pub(crate) fn relay_grant(&self, h: &Header) -> u32 {
        self.relay_streams.lock().grant(h)
    }

    /// A link went down: every relayed pair it carried gets a RESET on its other link,
    /// naming the host that is no longer reachable.
    pub(crate) fn relay_link_lost(&self, link_id: u64) {
        let mut resets = Vec::new();
        self.relay_pairs.lock().retain(|&(src, dst), pair| {
            if pair.to_link == link_id {
                // `dst` is gone: tell `src`, on the link it came from.
                resets.push((pair.from_link, dst, src));
            } else if pair.from_link == link_id {
                resets.push((pair.to_link, src, dst));
            } else {
                return true;
            }
            false
        });
        resets.sort_unstable();
        resets.dedup();
        resets.retain(|(_, lost, _)| self.route(HostId(*lost)).is_none());
        {
            let mut streams = self.relay_streams.lock();
            for (_, lost, _) in &resets {
                streams.host_lost(*lost);
            }
        }
        for (link_id, lost, to) in resets {
            if self.route(HostId(lost)).is_some() {
                // Another link still leads to the host: relaying carries on over it.
                continue;
            }
            let Some(link) = self.link(link_id) else { continue };
            let mut st = link.state.lock();
            if st.closed.is_none() {
                // Behind what was already relayed from the lost host, not ahead of it.
                let h = Header { cmd: Command::Reset, dst_host: to, src_host: lost, dst_port: 0, src_port: 0, len: 0 };
                st.push_behind_data(h, &[]);
                link.kick(&mut st);
            }
        }
    }
}

/// Answers a DIAL the relay will not pass on: RST for a peer that speaks it (the
/// dialer's error names the relay limit); a v1 dialer's dial is dropped, as Go drops
/// dials it cannot serve.
fn refuse(from: &Link, dial: &Header) {
    if from.is_v1() {
        return;
    }
    let h = Header {
        cmd: Command::Rst,
        dst_host: dial.src_host,
        src_host: dial.dst_host,
        dst_port: dial.src_port,
        src_port: dial.dst_port,
        len: 1,
    };
    let mut st = from.state.lock();
    if st.closed.is_none() {
        st.push(h, &[RstReason::RelayLimit as u8]);
        from.kick(&mut st);
    }
}
