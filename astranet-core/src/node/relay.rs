//! Relaying: a frame addressed to another host is passed to the link that leads to
//! that host (a direct neighbour: one relay hop, as in the Go package). Flow control
//! stays end to end (DATA, REWIND and WND_SIZE pass through) and is checked on the way
//! ([`RelayTable`]): a stream whose reader is slow stalls only itself, since what it
//! can put in flight is bounded by its window. A next hop whose link is congested
//! (more than [`RELAY_BUFFER_HIGH`](crate::link::RELAY_BUFFER_HIGH) queued) pauses the
//! links that feed it until it drained, as any TCP relay does. When one side of a
//! relayed pair of hosts goes away, the relay sends RESET down the other side so its
//! streams fail instead of hanging.

use super::NodeShared;
use crate::addr::{HostId, LinkId};
use crate::link::LinkHandle;
use crate::proto::frame::{Command, Frame, Header, RstReason};
use crate::proto::link::{CloseReason, Policy};
use crate::proto::relay::{Queue, RelayLimits, RelayRefusal, RelayTable};
use hashbrown::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Everything the node knows about what it relays.
#[derive(Debug, Default)]
pub(crate) struct Relay {
    /// Relayed streams: the links towards their ends, limits, flow control, timers.
    pub table: RelayTable,
    /// A task sends the table's timed frames.
    timer_running: bool,
}

impl NodeShared {
    fn relay_limits(&self) -> RelayLimits {
        let limits = &self.config.limits;
        RelayLimits {
            per_host: limits.max_relayed_streams_per_host,
            total: limits.max_relayed_streams,
            dial_timeout: self.config.dial_timeout,
        }
    }

    /// Passes `frame` (for another host) on towards its destination, or drops it (no
    /// route, it would go back where it came from, a relay limit, or a sender that
    /// broke flow control, whose link is then closed).
    pub(crate) fn forward(&self, from: &LinkHandle, frame: Frame) {
        let h = frame.header;
        if from.peer() != Some(HostId(h.src_host)) {
            // One hop: what a neighbour relays comes from the neighbour itself.
            return self.relay_dropped(from, &h, "relayed frame with a foreign source");
        }
        let (src, dst) = (HostId(h.src_host), HostId(h.dst_host));
        let now = Instant::now();
        let limits = self.relay_limits();
        let (to, queue) = {
            let mut relay = self.relay.lock();
            // A stream's frames go back on the link they came from (its host may have
            // several links to this node); a new stream takes the route to its host.
            let hop = relay.table.next_hop(&h).and_then(|id| self.link(id));
            let to = hop.or_else(|| self.route(dst)).filter(|to| to.id != from.id);
            let Some(to) = to else {
                drop(relay);
                return self.relay_dropped(from, &h, "no route");
            };
            let arg = match h.cmd {
                Command::WndSize | Command::Rewind => frame.u32_payload(),
                Command::Data => h.len,
                _ => 0,
            };
            let queue = match relay.table.pass(&h, arg, (from.id, to.id), &limits, now) {
                Ok(queue) => queue,
                Err(RelayRefusal::Limit(limit)) => {
                    drop(relay);
                    tracing::warn!(from = %src, to = %dst, "relay stream limit reached ({limit}): dial refused");
                    return refuse(from, &h);
                }
                Err(RelayRefusal::Untracked) => {
                    drop(relay);
                    return self.relay_dropped(from, &h, "DATA of a stream this relay does not carry");
                }
                Err(violation @ RelayRefusal::Violation { .. }) => {
                    drop(relay);
                    return from.close(CloseReason::Protocol(violation.to_string()));
                }
            };
            (to, queue)
        };
        let (queued, forwarded) = to.with(|l, _| {
            let forwarded = l.forward(&frame, queue);
            (l.queued(), forwarded)
        });
        if !forwarded {
            return self.relay_dropped(from, &h, "the next hop cannot take it");
        }
        if queued > crate::link::RELAY_BUFFER_HIGH {
            from.congested_by(&to);
        }
        let max = self.config.limits.max_link_buffer;
        if queued > max {
            // The windows its receivers granted bound what piles up; a link that holds
            // more does not read what it asked for.
            to.close(CloseReason::Limit(format!("more than {max} bytes of relayed frames queued")));
        }
        if h.cmd == Command::Fin2 && from.policy() == Policy::V1 && to.policy() == Policy::Extended {
            self.relay_after_v1_close(&h, to.id, now);
        }
    }

    fn relay_dropped(&self, from: &LinkHandle, h: &Header, why: &str) {
        self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(link = %from.id, cmd = %h.cmd, dst = %HostId(h.dst_host), "{why}: frame dropped");
    }

    /// Schedules FIN1 in a Go host's name for a node of ours behind this relay (see
    /// [`RelayTable::after_v1_close`]), and runs the task that sends such frames.
    fn relay_after_v1_close(&self, fin2: &Header, to: LinkId, now: Instant) {
        let start = {
            let mut relay = self.relay.lock();
            relay.table.after_v1_close(fin2, to, now);
            !std::mem::replace(&mut relay.timer_running, true)
        };
        if !start {
            return;
        }
        let node = self.weak();
        self.spawn_background(async move {
            loop {
                let next = {
                    let Some(node) = node.upgrade() else { return };
                    let mut relay = node.relay.lock();
                    let next = relay.table.poll_timeout();
                    if next.is_none() {
                        relay.timer_running = false;
                    }
                    next
                };
                let Some(next) = next else { return };
                tokio::time::sleep_until(next.into()).await;
                let Some(node) = node.upgrade() else { return };
                let due = node.relay.lock().table.due(Instant::now());
                for (link, frame) in due {
                    if let Some(link) = node.link(link) {
                        link.with(|l, _| {
                            l.forward(&Frame { header: frame, payload: Default::default() }, Queue::ByPriority)
                        });
                    }
                }
            }
        });
    }

    /// A link went down: every stream relayed through it is cut, and its other end is
    /// told. A host out of reach altogether gets one RESET per host it talked to (Go
    /// fails the streams it dialed to that host; a node of ours fails them all). Each
    /// stream also gets an RST (reason "route lost") in the lost end's name where
    /// RESET does not cover it: towards a Go host, whose RESET leaves the streams it
    /// accepted open (the RST reaches it as FIN2 + FIN1: reads end, writes fail), and
    /// for a host still reachable over another link (only the streams of the lost link
    /// are gone).
    pub(crate) fn relay_link_lost(&self, link_id: LinkId) {
        let cuts = self.relay.lock().table.link_lost(link_id);
        let mut unreachable: HashMap<HostId, bool> = HashMap::new();
        let mut resets: HashSet<(LinkId, HostId, HostId)> = HashSet::new();
        for cut in cuts {
            let Some(via) = self.link(cut.via) else { continue };
            let (lost, survivor) = (cut.lost.0, cut.survivor.0);
            let unreachable = *unreachable.entry(lost).or_insert_with(|| self.route(lost).is_none());
            if unreachable && resets.insert((cut.via, lost, survivor)) {
                via.with(|l, _| l.reset_host(lost, survivor));
            }
            if !unreachable || via.policy() == Policy::V1 {
                let rst = Header {
                    cmd: Command::Rst,
                    src_host: lost.0,
                    src_port: cut.lost.1,
                    dst_host: survivor.0,
                    dst_port: cut.survivor.1,
                    len: 1,
                };
                let frame = Frame { header: rst, payload: vec![RstReason::RouteLost as u8].into() };
                via.with(|l, _| l.forward(&frame, Queue::ByPriority));
            }
        }
    }
}

/// Answers a DIAL the relay will not pass on: RST for a peer that speaks it (the
/// dialer's error names the relay limit); a v1 dialer's dial is dropped, as Go drops
/// dials it cannot serve.
fn refuse(from: &LinkHandle, dial: &Header) {
    let key = crate::proto::link::StreamKey {
        local_port: dial.dst_port,
        remote_port: dial.src_port,
        remote_host: HostId(dial.src_host),
    };
    // Answered in the name of the dialed host, as if it had refused.
    let as_host = HostId(dial.dst_host);
    from.with(|l, _| l.refuse_dial_as(as_host, &key, RstReason::RelayLimit));
}
