//! The per-link stream table: a slab of small stream records plus a hash index from
//! the 4-tuple to the slab slot. Every operation is O(1), so opening the millionth
//! stream costs what the first did.

use crate::proto::StreamState;
use bytes::Bytes;
use hashbrown::HashMap;
use slab::Slab;
use std::collections::VecDeque;
use std::task::Waker;

/// A stream's identity on one link, seen from this side: (local port, remote host,
/// remote port). The local host is the node's own id and needs no storing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub local_port: u32,
    pub remote_port: u32,
    pub remote_host: u64,
}

/// Received payloads of one stream, allocated (once, with room for the usual single
/// payload) only while data waits, so an idle stream carries one null pointer.
#[derive(Default)]
pub(crate) struct RecvQueue(Option<Box<Pending>>);

struct Pending {
    head: Bytes,
    rest: VecDeque<Bytes>,
}

impl RecvQueue {
    pub fn push(&mut self, payload: Bytes) {
        match &mut self.0 {
            None => self.0 = Some(Box::new(Pending { head: payload, rest: VecDeque::new() })),
            Some(p) => p.rest.push_back(payload),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Payloads waiting.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |p| 1 + p.rest.len())
    }

    /// Hands up to `max` bytes to `put`, returns how many.
    pub fn pop_into(&mut self, max: usize, mut put: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < max {
            let Some(p) = self.0.as_mut() else { break };
            let take = p.head.len().min(max - n);
            put(&p.head[..take]);
            n += take;
            if take < p.head.len() {
                bytes::Buf::advance(&mut p.head, take);
                break;
            }
            match p.rest.pop_front() {
                Some(next) => p.head = next,
                None => self.0 = None,
            }
        }
        n
    }

    pub fn clear(&mut self) {
        self.0 = None;
    }
}

/// One stream's record. Kept small: this is most of the memory of an idle stream.
pub(crate) struct Slot {
    pub key: Key,
    pub state: StreamState,
    pub queue: RecvQueue,
    pub read_waker: Option<Waker>,
    pub write_waker: Option<Waker>,
    /// A user handle exists.
    pub has_handle: bool,
    /// Queued in the link's list of writers waiting for write-queue space.
    pub waiting_space: bool,
}

/// Memory charged per waiting payload on top of its bytes (its handle and allocation),
/// so that a flood of tiny frames cannot hold much more memory than the link budget.
pub(crate) const PAYLOAD_OVERHEAD: usize = 64;

impl Slot {
    /// What this stream's unread data counts against the link's receive budget.
    pub fn charge(&self) -> usize {
        self.state.recv.buffered() as usize + PAYLOAD_OVERHEAD * self.queue.len()
    }

    pub fn new(key: Key, state: StreamState) -> Slot {
        Slot {
            key,
            state,
            queue: RecvQueue::default(),
            read_waker: None,
            write_waker: None,
            has_handle: true,
            waiting_space: false,
        }
    }

    pub fn take_wakers(&mut self, out: &mut Vec<Waker>) {
        out.extend(self.read_waker.take());
        out.extend(self.write_waker.take());
    }
}

#[derive(Default)]
pub(crate) struct StreamTable {
    slots: Slab<Slot>,
    index: HashMap<Key, u32>,
}

impl StreamTable {
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn contains(&self, key: &Key) -> bool {
        self.index.contains_key(key)
    }

    /// Inserts a new stream; `None` if the key is taken.
    pub fn insert(&mut self, slot: Slot) -> Option<u32> {
        let key = slot.key;
        if self.index.contains_key(&key) {
            return None;
        }
        let id = self.slots.insert(slot) as u32;
        self.index.insert(key, id);
        Some(id)
    }

    pub fn find(&self, key: &Key) -> Option<u32> {
        self.index.get(key).copied()
    }

    pub fn get(&self, id: u32) -> Option<&Slot> {
        self.slots.get(id as usize)
    }

    pub fn get_mut(&mut self, id: u32) -> Option<&mut Slot> {
        self.slots.get_mut(id as usize)
    }

    pub fn remove(&mut self, id: u32) -> Slot {
        let slot = self.slots.remove(id as usize);
        self.index.remove(&slot.key);
        slot
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (u32, &mut Slot)> {
        self.slots.iter_mut().map(|(i, s)| (i as u32, s))
    }

    /// Removes every stream no handle refers to any more.
    pub fn retain_handled(&mut self) -> Vec<Slot> {
        let orphans: Vec<u32> = self.slots.iter().filter(|(_, s)| !s.has_handle).map(|(i, _)| i as u32).collect();
        orphans.into_iter().map(|i| self.remove(i)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(p: u32) -> Key {
        Key { local_port: p, remote_port: 1, remote_host: 2 }
    }

    #[test]
    fn insert_find_remove() {
        let mut t = StreamTable::default();
        let a = t.insert(Slot::new(key(1), StreamState::dialing(false))).unwrap();
        assert!(t.insert(Slot::new(key(1), StreamState::dialing(false))).is_none());
        assert_eq!(t.find(&key(1)), Some(a));
        t.remove(a);
        assert_eq!(t.find(&key(1)), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn queue_is_freed_when_drained() {
        let mut q = RecvQueue::default();
        q.push(Bytes::from_static(b"hello"));
        q.push(Bytes::from_static(b" world"));
        q.push(Bytes::from_static(b"!"));
        let mut out = Vec::new();
        assert_eq!(q.pop_into(7, |c| out.extend_from_slice(c)), 7);
        assert_eq!(&out, b"hello w");
        out.clear();
        assert_eq!(q.pop_into(100, |c| out.extend_from_slice(c)), 5);
        assert_eq!(&out, b"orld!");
        assert!(q.is_empty());
    }

    #[test]
    fn idle_slot_is_small() {
        assert!(std::mem::size_of::<Slot>() <= 96, "slot is {} bytes", std::mem::size_of::<Slot>());
    }
}
