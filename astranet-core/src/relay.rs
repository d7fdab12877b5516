//! Relaying: a frame addressed to another host is passed, unchanged, to the link that
//! leads to that host (a direct neighbour: one relay hop, as in the Go package). Flow
//! control stays end to end, since DATA, REWIND and WND_SIZE pass through untouched.
//! When one side of a relayed pair of hosts goes away, the relay sends RESET down the
//! other side so its streams fail instead of hanging.

use crate::addr::HostId;
use crate::link::Link;
use crate::node::NodeShared;
use crate::proto::{Command, Frame, Header};
use std::sync::atomic::Ordering;
use std::sync::Arc;

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
        let Some(to) = self.route(HostId(h.dst_host)).filter(|to| to.id != from.id) else {
            self.counters.frames_dropped.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(link = from.id, cmd = %h.cmd, dst = %HostId(h.dst_host), "no route: frame dropped");
            return None;
        };
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
        Some(to)
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
        for (link_id, lost, to) in resets {
            let Some(link) = self.link(link_id) else { continue };
            let mut st = link.state.lock();
            if st.closed.is_none() {
                let h = Header { cmd: Command::Reset, dst_host: to, src_host: lost, dst_port: 0, src_port: 0, len: 0 };
                st.push(h, &[]);
                link.kick(&mut st);
            }
        }
    }
}
