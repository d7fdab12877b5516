//! Relaying without I/O: the streams a node passes between other hosts, with the
//! limits on them, flow control checked on the way (a relay must not become the buffer
//! of a sender that ignores its window), and the frames a relay sends in a Go host's
//! name when the host forgets a stream it closed.
//!
//! The node owns one [`RelayTable`]; for every frame it relays it asks
//! [`RelayTable::pass`] first.

use super::flow::SendWindow;
use super::frame::{Command, Header};
use super::stream::V1_CLOSE_WINDOW;
use crate::addr::{HostId, LinkId};
use hashbrown::HashMap;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One end of a relayed stream: (host, port).
type End = (HostId, u32);

/// Limits on what a node relays.
#[derive(Clone, Copy, Debug)]
pub struct RelayLimits {
    /// Streams relayed for one dialing host.
    pub per_host: usize,
    /// Streams relayed in total.
    pub total: usize,
    /// A dial the destination has not answered (SYN) within this time is forgotten: a
    /// v1 node drops dials to closed ports.
    pub dial_timeout: Duration,
}

/// Why a relayed frame is not passed on.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RelayRefusal {
    /// A DIAL over a relay limit: refuse the dial.
    #[error("relay stream limit reached ({0})")]
    Limit(String),
    /// The sender broke flow control on a relayed stream: its link is closed.
    #[error("relayed stream {stream}: {detail}")]
    Violation {
        /// The stream, as "host:port -> host:port".
        stream: String,
        /// The rule broken.
        detail: String,
    },
    /// DATA for a stream this relay did not see opened (or saw end): dropped.
    #[error("DATA for a stream this relay does not carry")]
    Untracked,
}

/// Where a relayed frame waits on the next hop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Queue {
    /// In its place by priority (DIAL, SYN, ACK ahead of DATA).
    ByPriority,
    /// With the DIALs: an RST that gives up a dial not answered yet. A DIAL relayed
    /// after it (a retry) must not overtake it and find the listener's backlog still
    /// holding the dial given up. Nothing else of the stream is queued.
    WithDials,
}

/// A stream this node relays, from the DIAL it passed on until both sides finished
/// (FIN2 each way), one reset it, one side became unreachable, or the dial never
/// completed.
#[derive(Clone, Copy, Debug)]
struct Relayed {
    dialer: HostId,
    /// The link towards the lower and the higher end: a host may have several links to
    /// this node, and each of its streams lives on one of them.
    links: [LinkId; 2],
    established: bool,
    /// FIN2 seen from the lower and the higher end of the key.
    fin: [bool; 2],
    /// What each end may still send: the lower end's sending window first.
    send: [SendWindow; 2],
    opened: Instant,
}

/// Streams relayed by a node, keyed by their two ends in order, with the link towards
/// each end and counts per dialing host for the limits.
#[derive(Debug, Default)]
pub struct RelayTable {
    streams: HashMap<(End, End), Relayed>,
    per_host: HashMap<HostId, usize>,
    swept: Option<Instant>,
    /// FIN1 frames to send in the name of Go hosts once they forget a stream they
    /// closed: (when, frame, link to send it on).
    v1_closes: VecDeque<(Instant, Header, LinkId)>,
}

/// The stream of a relayed frame, and which end (0: the lower) sent it.
fn key(h: &Header) -> ((End, End), usize) {
    let (a, b) = ((HostId(h.src_host), h.src_port), (HostId(h.dst_host), h.dst_port));
    if a <= b {
        ((a, b), 0)
    } else {
        ((b, a), 1)
    }
}

/// A relayed stream cut by the loss of a link: `lost` was reached through it, and
/// `survivor` (through `via`) must be told.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The end behind the lost link.
    pub lost: (HostId, u32),
    /// The other end.
    pub survivor: (HostId, u32),
    /// The link towards `survivor`.
    pub via: LinkId,
}

fn name(h: &Header) -> String {
    format!("{}:{} -> {}:{}", HostId(h.src_host), h.src_port, HostId(h.dst_host), h.dst_port)
}

impl RelayTable {
    /// The link towards the destination of `h`, if it belongs to a stream this node
    /// relays: answers go back on the link their stream came from.
    pub fn next_hop(&self, h: &Header) -> Option<LinkId> {
        let (k, side) = key(h);
        self.streams.get(&k).map(|s| s.links[1 - side])
    }

    /// Whether the frame `h` (with `arg`: the u32 payload of WND_SIZE or REWIND, the
    /// length of DATA), which came on link `from` and goes on link `to`, may be relayed,
    /// following its effect on the stream's life and flow control; `Ok` says where it
    /// queues.
    pub fn pass(
        &mut self,
        h: &Header,
        arg: u32,
        (from, to): (LinkId, LinkId),
        limits: &RelayLimits,
        now: Instant,
    ) -> Result<Queue, RelayRefusal> {
        let (k, side) = key(h);
        if h.cmd == Command::Dial {
            let mut links = [from; 2];
            links[1 - side] = to;
            return self.open(h, links, limits, now).map(|()| Queue::ByPriority);
        }
        let Some(s) = self.streams.get_mut(&k) else {
            return match h.cmd {
                Command::Data => Err(RelayRefusal::Untracked),
                _ => Ok(Queue::ByPriority),
            };
        };
        let queue = if h.cmd == Command::Rst && !s.established { Queue::WithDials } else { Queue::ByPriority };
        let violation = |detail: String| RelayRefusal::Violation { stream: name(h), detail };
        let mut done = false;
        match h.cmd {
            Command::Syn => s.established = true,
            Command::Fin2 => {
                s.fin[side] = true;
                done = s.fin == [true, true];
            }
            Command::Rst => done = true,
            Command::Data => {
                let window = &mut s.send[side];
                if arg > window.credit() {
                    return Err(violation(format!(
                        "{arg} bytes of DATA with {} of a {}-byte window in flight",
                        window.inflight(),
                        window.window()
                    )));
                }
                window.on_send(arg);
            }
            // Credit and windows from one end are for what the other end sends.
            Command::Rewind => s.send[1 - side].on_rewind(arg).map_err(|e| violation(e.to_string()))?,
            Command::WndSize => s.send[1 - side].on_window(arg),
            _ => {}
        }
        if done {
            self.remove(&k);
        }
        Ok(queue)
    }

    /// A DIAL passes through: count it, or say which limit refuses it.
    fn open(&mut self, h: &Header, links: [LinkId; 2], limits: &RelayLimits, now: Instant) -> Result<(), RelayRefusal> {
        if self.swept.is_none_or(|t| now.duration_since(t) > Duration::from_secs(1)) {
            self.sweep(now, limits.dial_timeout);
        }
        let (k, _) = key(h);
        if self.streams.contains_key(&k) {
            return Ok(());
        }
        if self.streams.len() >= limits.total {
            return Err(RelayRefusal::Limit(format!("{} relayed streams in total", limits.total)));
        }
        let dialer = HostId(h.src_host);
        let count = self.per_host.entry(dialer).or_default();
        if *count >= limits.per_host {
            return Err(RelayRefusal::Limit(format!("{} relayed streams for host {dialer}", limits.per_host)));
        }
        *count += 1;
        let relayed = Relayed {
            dialer,
            links,
            established: false,
            fin: [false; 2],
            send: [SendWindow::default(); 2],
            opened: now,
        };
        self.streams.insert(k, relayed);
        Ok(())
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

    /// Forgets every stream carried by `link`, and says whom to tell.
    pub fn link_lost(&mut self, link: LinkId) -> Vec<Cut> {
        let mut cuts = Vec::new();
        for (&(a, b), s) in &self.streams {
            if s.links[0] == link {
                cuts.push(Cut { lost: a, survivor: b, via: s.links[1] });
            } else if s.links[1] == link {
                cuts.push(Cut { lost: b, survivor: a, via: s.links[0] });
            }
        }
        for c in &cuts {
            let k = if c.lost <= c.survivor { (c.lost, c.survivor) } else { (c.survivor, c.lost) };
            self.remove(&k);
        }
        cuts
    }

    /// Streams relayed now.
    pub fn len(&self) -> usize {
        self.streams.len()
    }

    /// No stream is relayed.
    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// A Go host closed a stream (`fin2`, passed on through `to`) whose other end is a
    /// node of this project, which takes FIN2 as a half-close. When the Go host forgets
    /// the stream, that end must hear (FIN1, in the Go host's name) that nobody reads
    /// any more, or its writes would wait forever for credit.
    pub fn after_v1_close(&mut self, fin2: &Header, to: LinkId, now: Instant) {
        let fin1 = Header { cmd: Command::Fin1, len: 0, ..*fin2 };
        self.v1_closes.push_back((now + V1_CLOSE_WINDOW, fin1, to));
    }

    /// When [`RelayTable::due`] has frames to send next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.v1_closes.front().map(|c| c.0)
    }

    /// The frames due at `now`, and the links to send them on.
    pub fn due(&mut self, now: Instant) -> Vec<(LinkId, Header)> {
        let mut out = Vec::new();
        while let Some(&(at, frame, link)) = self.v1_closes.front() {
            if at > now {
                break;
            }
            self.v1_closes.pop_front();
            out.push((link, frame));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: RelayLimits = RelayLimits { per_host: 2, total: 3, dial_timeout: Duration::from_secs(30) };
    /// Frames come on link 1 and go on link 2.
    const AB: (LinkId, LinkId) = (LinkId(1), LinkId(2));

    fn h(cmd: Command, src: u64, sp: u32, dst: u64, dp: u32, len: u32) -> Header {
        Header { cmd, dst_host: dst, src_host: src, dst_port: dp, src_port: sp, len }
    }

    #[test]
    fn limits_per_host_and_in_total() {
        let mut t = RelayTable::default();
        let now = Instant::now();
        assert!(t.pass(&h(Command::Dial, 1, 10, 9, 80, 0), 0, AB, &LIMITS, now).is_ok());
        assert!(t.pass(&h(Command::Dial, 1, 11, 9, 80, 0), 0, AB, &LIMITS, now).is_ok());
        assert!(matches!(t.pass(&h(Command::Dial, 1, 12, 9, 80, 0), 0, AB, &LIMITS, now), Err(RelayRefusal::Limit(_))));
        assert!(t.pass(&h(Command::Dial, 2, 10, 9, 80, 0), 0, AB, &LIMITS, now).is_ok());
        assert!(matches!(t.pass(&h(Command::Dial, 3, 10, 9, 80, 0), 0, AB, &LIMITS, now), Err(RelayRefusal::Limit(_))));
        // Both FIN2s end a stream and free its place.
        t.pass(&h(Command::Fin2, 1, 10, 9, 80, 0), 0, AB, &LIMITS, now).unwrap();
        t.pass(&h(Command::Fin2, 9, 80, 1, 10, 0), 0, AB, &LIMITS, now).unwrap();
        assert_eq!(t.len(), 2);
    }

    /// The RST of a dial given up travels with the DIALs, so a retry relayed after it
    /// cannot overtake it; once the stream is answered, RST keeps its place behind DATA.
    #[test]
    fn an_unanswered_dials_rst_queues_with_the_dials() {
        let mut t = RelayTable::default();
        let now = Instant::now();
        assert_eq!(t.pass(&h(Command::Dial, 1, 10, 9, 80, 0), 0, AB, &LIMITS, now), Ok(Queue::ByPriority));
        assert_eq!(t.pass(&h(Command::Rst, 1, 10, 9, 80, 1), 0, AB, &LIMITS, now), Ok(Queue::WithDials));
        t.pass(&h(Command::Dial, 1, 11, 9, 80, 0), 0, AB, &LIMITS, now).unwrap();
        t.pass(&h(Command::Syn, 9, 80, 1, 11, 0), 0, AB, &LIMITS, now).unwrap();
        assert_eq!(t.pass(&h(Command::Rst, 1, 11, 9, 80, 1), 0, AB, &LIMITS, now), Ok(Queue::ByPriority));
    }

    #[test]
    fn flow_control_holds_through_the_relay() {
        let mut t = RelayTable::default();
        let now = Instant::now();
        t.pass(&h(Command::Dial, 1, 10, 9, 80, 0), 0, AB, &LIMITS, now).unwrap();
        t.pass(&h(Command::Syn, 9, 80, 1, 10, 0), 0, AB, &LIMITS, now).unwrap();
        t.pass(&h(Command::Data, 1, 10, 9, 80, 65_536), 65_536, AB, &LIMITS, now).unwrap();
        let over = t.pass(&h(Command::Data, 1, 10, 9, 80, 1), 1, AB, &LIMITS, now);
        assert!(matches!(over, Err(RelayRefusal::Violation { .. })), "{over:?}");
        // The receiver hands credit back and grows the window.
        t.pass(&h(Command::Rewind, 9, 80, 1, 10, 4), 65_536, AB, &LIMITS, now).unwrap();
        t.pass(&h(Command::WndSize, 9, 80, 1, 10, 4), 1 << 20, AB, &LIMITS, now).unwrap();
        t.pass(&h(Command::Data, 1, 10, 9, 80, 1 << 20), 1 << 20, AB, &LIMITS, now).unwrap();
        // Too much credit is a violation too.
        let rewind = t.pass(&h(Command::Rewind, 9, 80, 1, 10, 4), 2 << 20, AB, &LIMITS, now);
        assert!(matches!(rewind, Err(RelayRefusal::Violation { .. })));
        // DATA of a stream the relay never saw is not carried.
        let stray = t.pass(&h(Command::Data, 5, 1, 9, 80, 10), 10, AB, &LIMITS, now);
        assert_eq!(stray, Err(RelayRefusal::Untracked));
    }

    #[test]
    fn answers_go_back_on_the_link_of_their_stream() {
        let mut t = RelayTable::default();
        let now = Instant::now();
        // Host 1 dials host 9 through two of its links (1 and 3) to this relay.
        t.pass(&h(Command::Dial, 1, 10, 9, 80, 0), 0, (LinkId(1), LinkId(2)), &LIMITS, now).unwrap();
        t.pass(&h(Command::Dial, 1, 11, 9, 80, 0), 0, (LinkId(3), LinkId(2)), &LIMITS, now).unwrap();
        assert_eq!(t.next_hop(&h(Command::Syn, 9, 80, 1, 10, 0)), Some(LinkId(1)));
        assert_eq!(t.next_hop(&h(Command::Syn, 9, 80, 1, 11, 0)), Some(LinkId(3)));
        assert_eq!(t.next_hop(&h(Command::Data, 1, 11, 9, 80, 0)), Some(LinkId(2)));
        assert_eq!(t.next_hop(&h(Command::Data, 1, 12, 9, 80, 0)), None);
        // Link 3 goes down: only its stream is cut, and host 9 hears of it on link 2.
        let cuts = t.link_lost(LinkId(3));
        assert_eq!(cuts, vec![Cut { lost: (HostId(1), 11), survivor: (HostId(9), 80), via: LinkId(2) }]);
        assert_eq!(t.len(), 1);
        let cuts = t.link_lost(LinkId(2));
        assert_eq!(cuts, vec![Cut { lost: (HostId(9), 80), survivor: (HostId(1), 10), via: LinkId(1) }]);
        assert!(t.is_empty());
    }

    #[test]
    fn unanswered_dials_are_swept() {
        let mut t = RelayTable::default();
        let now = Instant::now();
        t.pass(&h(Command::Dial, 1, 10, 9, 80, 0), 0, AB, &LIMITS, now).unwrap();
        let later = now + Duration::from_secs(40);
        t.pass(&h(Command::Dial, 2, 10, 9, 80, 0), 0, AB, &LIMITS, later).unwrap();
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn fin1_for_a_go_host_that_forgot_its_stream() {
        let mut t = RelayTable::default();
        let now = Instant::now();
        t.after_v1_close(&h(Command::Fin2, 7, 80, 1, 10, 0), LinkId(3), now);
        assert_eq!(t.poll_timeout(), Some(now + V1_CLOSE_WINDOW));
        assert!(t.due(now).is_empty());
        let due = t.due(now + V1_CLOSE_WINDOW);
        assert_eq!(due, vec![(LinkId(3), h(Command::Fin1, 7, 80, 1, 10, 0))]);
    }
}
