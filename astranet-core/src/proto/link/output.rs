//! What a link has to write: priority frames, data frames, the rest of a frame a
//! stream began writing straight to the socket, and service announcements coalesced
//! until there is room for them.

use crate::addr::Addr;
use crate::proto::frame::{Command, Header, HEADER_LEN};
use bytes::{BufMut, BytesMut};
use hashbrown::HashMap;
use std::collections::VecDeque;

/// The queues of one link.
#[derive(Debug, Default)]
pub(crate) struct Output {
    /// The rest of a frame a stream began writing directly to the socket: goes first.
    pub partial: BytesMut,
    /// Priority frames.
    pub ctrl: BytesMut,
    /// Data (and other non-priority) frames.
    pub data: BytesMut,
    /// The writer sleeps until woken.
    pub writer_idle: bool,
    /// Announcements waiting for room in the data queue.
    pub announcements: Announcements,
    /// Bytes ever queued in `data`, and ever taken by the writer: a position in the
    /// data queue is written once `taken` passed it.
    pub queued_total: u64,
    pub taken_total: u64,
    /// Bytes of `ctrl` and `data` that this node relays for other hosts: bounded by the
    /// windows their receivers granted, not by what the peer of this link reads.
    pub relayed: usize,
}

impl Output {
    /// Appends an encoded frame to the priority or the data queue.
    pub fn push(&mut self, h: Header, payload: &[u8]) {
        if h.cmd.is_priority() {
            put(&mut self.ctrl, h, payload);
        } else {
            self.push_behind_data(h, payload);
        }
    }

    /// Appends a frame to the priority queue whatever its command, so that it keeps its
    /// place among the priority frames (DIALs above all) queued around it.
    pub fn push_ahead_of_data(&mut self, h: Header, payload: &[u8]) {
        put(&mut self.ctrl, h, payload);
    }

    /// Appends a frame to the data queue whatever its priority, so that it follows the
    /// frames queued before it.
    pub fn push_behind_data(&mut self, h: Header, payload: &[u8]) {
        put(&mut self.data, h, payload);
        self.queued_total += (HEADER_LEN + payload.len()) as u64;
    }

    /// Queues a frame relayed for another host, in its place by priority or, when
    /// `with_dials`, among the priority frames whatever its command.
    pub fn push_relayed(&mut self, h: Header, payload: &[u8], with_dials: bool) {
        if with_dials {
            self.push_ahead_of_data(h, payload);
        } else {
            self.push(h, payload);
        }
        self.relayed += HEADER_LEN + payload.len();
    }

    /// Bytes waiting that this link's own traffic queued (not relayed frames): what a
    /// peer that does not read makes grow.
    pub fn own_queued(&self) -> usize {
        self.queued() - self.relayed
    }

    /// Frames wait (or announcements do).
    pub fn has_output(&self) -> bool {
        !(self.partial.is_empty() && self.ctrl.is_empty() && self.data.is_empty() && self.announcements.is_empty())
    }

    /// Bytes waiting in the queues.
    pub fn queued(&self) -> usize {
        self.partial.len() + self.ctrl.len() + self.data.len()
    }

    /// Moves waiting announcements into the data queue while it holds less than
    /// `room` bytes: a peer that toggles names fast costs slow links one frame per name,
    /// not one per change.
    pub fn flush_announcements(&mut self, room: usize) {
        while self.data.len() < room {
            let Some((cmd, name, addr)) = self.announcements.pop() else { break };
            let h = Header {
                cmd,
                dst_host: 0,
                src_host: addr.host.0,
                dst_port: 0,
                src_port: addr.port.0,
                len: name.len() as u32,
            };
            self.push_behind_data(h, name.as_bytes());
        }
    }
}

fn put(q: &mut BytesMut, h: Header, payload: &[u8]) {
    q.reserve(HEADER_LEN + payload.len());
    h.put(q);
    q.put_slice(payload);
}

/// SERVICE / NO_SERVICE frames not written yet, one per (name, instance): a later
/// change replaces an earlier one still waiting (the peer only needs the latest state;
/// a withdrawal of a name it never heard of is harmless, to Go as to us).
#[derive(Debug, Default)]
pub(crate) struct Announcements {
    order: VecDeque<(String, Addr)>,
    latest: HashMap<(String, Addr), Command>,
}

impl Announcements {
    pub fn queue(&mut self, cmd: Command, name: &str, addr: Addr) {
        let key = (name.to_string(), addr);
        if self.latest.insert(key.clone(), cmd).is_none() {
            self.order.push_back(key);
        }
    }

    fn pop(&mut self) -> Option<(Command, String, Addr)> {
        let (name, addr) = self.order.pop_front()?;
        let cmd = self.latest.remove(&(name.clone(), addr))?;
        Some((cmd, name, addr))
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.order.len()
    }
}

/// The writer's side of the double buffering: what [`super::Link::poll_transmit`]
/// hands out, written in this order.
#[derive(Debug, Default)]
pub struct Batch {
    /// The rest of a frame a stream began writing directly.
    pub partial: BytesMut,
    /// Priority frames.
    pub ctrl: BytesMut,
    /// Data frames.
    pub data: BytesMut,
}

impl Batch {
    /// The three parts, in writing order.
    pub fn parts(&self) -> [&[u8]; 3] {
        [&self.partial, &self.ctrl, &self.data]
    }

    /// Bytes in the batch.
    pub fn len(&self) -> usize {
        self.partial.len() + self.ctrl.len() + self.data.len()
    }

    /// Nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Empties the batch once it was written, keeping its buffers.
    pub fn clear(&mut self) {
        self.partial.clear();
        self.ctrl.clear();
        self.data.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addr::HostId;

    #[test]
    fn toggled_announcements_coalesce() {
        let mut out = Output::default();
        let a = Addr::new(HostId(9), 5);
        for _ in 0..1000 {
            out.announcements.queue(Command::Service, "db", a);
            out.announcements.queue(Command::NoService, "db", a);
        }
        out.announcements.queue(Command::Service, "web", a);
        assert_eq!(out.announcements.len(), 2);
        out.flush_announcements(1 << 20);
        assert_eq!(out.data.len(), 2 * HEADER_LEN + 5, "one frame per name: its latest state");
        assert_eq!(out.data[0], Command::NoService as u8);
        assert!(out.announcements.is_empty());
    }

    #[test]
    fn announcements_wait_for_room() {
        let mut out = Output::default();
        out.push(Header::link(Command::Data, 0), &[0; 100]);
        out.announcements.queue(Command::Service, "db", Addr::new(HostId(9), 5));
        out.flush_announcements(50);
        assert_eq!(out.announcements.len(), 1);
        out.flush_announcements(1000);
        assert!(out.announcements.is_empty());
    }
}
