//! The per-link stream table: a slab of small stream records plus a hash index from
//! the stream's key to its slot. Every operation is O(1), so opening the millionth
//! stream costs what the first did.

use crate::addr::{Addr, HostId};
use crate::proto::stream::StreamState;
use hashbrown::HashMap;
use slab::Slab;
use std::task::Waker;

/// A stream's identity on one link, seen from this side: (local port, remote host,
/// remote port). The local host is the node's own id and needs no storing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StreamKey {
    /// The port on this node.
    pub local_port: u32,
    /// The port on the remote host.
    pub remote_port: u32,
    /// The remote host (the neighbour, or a host beyond it).
    pub remote_host: HostId,
}

impl StreamKey {
    /// The remote end as an address.
    pub fn remote(&self) -> Addr {
        Addr::new(self.remote_host, self.remote_port)
    }
}

/// A stream's slot in its link's table.
pub type StreamId = u32;

/// One stream's record. Kept small: this is most of the memory of an idle stream.
#[derive(Debug)]
pub(crate) struct Slot {
    pub key: StreamKey,
    pub state: StreamState,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
}

impl Slot {
    pub fn new(key: StreamKey, state: StreamState) -> Slot {
        Slot { key, state, read_waker: None, write_waker: None }
    }

    /// A user handle exists.
    pub fn has_handle(&self) -> bool {
        self.state.has_handle()
    }

    pub fn take_wakers(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.read_waker.take());
        out.extend(self.write_waker.take());
    }
}

#[derive(Debug, Default)]
pub(crate) struct StreamTable {
    slots: Slab<Slot>,
    index: HashMap<StreamKey, StreamId>,
}

impl StreamTable {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn contains(&self, key: &StreamKey) -> bool {
        self.index.contains_key(key)
    }

    /// Inserts a new stream; `None` if the key is taken.
    pub fn insert(&mut self, slot: Slot) -> Option<StreamId> {
        let key = slot.key;
        if self.index.contains_key(&key) {
            return None;
        }
        let id = self.slots.insert(slot) as StreamId;
        self.index.insert(key, id);
        Some(id)
    }

    pub fn find(&self, key: &StreamKey) -> Option<StreamId> {
        self.index.get(key).copied()
    }

    pub fn get(&self, id: StreamId) -> Option<&Slot> {
        self.slots.get(id as usize)
    }

    pub fn get_mut(&mut self, id: StreamId) -> Option<&mut Slot> {
        self.slots.get_mut(id as usize)
    }

    /// The slot of `id` if it still holds the stream `key` (slots are reused).
    pub fn get_keyed(&mut self, id: StreamId, key: &StreamKey) -> Option<&mut Slot> {
        self.slots.get_mut(id as usize).filter(|s| s.key == *key)
    }

    pub fn remove(&mut self, id: StreamId) -> Slot {
        let slot = self.slots.remove(id as usize);
        self.index.remove(&slot.key);
        slot
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (StreamId, &mut Slot)> {
        self.slots.iter_mut().map(|(i, s)| (i as StreamId, s))
    }

    /// Removes every stream no handle refers to any more; returns how many.
    pub fn retain_handled(&mut self) -> usize {
        let orphans: Vec<StreamId> =
            self.slots.iter().filter(|(_, s)| !s.has_handle()).map(|(i, _)| i as StreamId).collect();
        for &i in &orphans {
            self.remove(i);
        }
        orphans.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: u32) -> StreamKey {
        StreamKey { local_port: p, remote_port: 1, remote_host: HostId(2) }
    }

    #[test]
    fn insert_find_remove() {
        let mut t = StreamTable::default();
        let a = t.insert(Slot::new(key(1), StreamState::dialing(false))).unwrap();
        assert!(t.insert(Slot::new(key(1), StreamState::dialing(false))).is_none());
        assert_eq!(t.find(&key(1)), Some(a));
        assert!(t.get_keyed(a, &key(2)).is_none());
        t.remove(a);
        assert_eq!(t.find(&key(1)), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn idle_slot_is_small() {
        assert!(std::mem::size_of::<Slot>() <= 96, "slot is {} bytes", std::mem::size_of::<Slot>());
    }
}
