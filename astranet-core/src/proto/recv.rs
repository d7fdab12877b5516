//! The receiving half of a stream: the bytes that arrived and are not read yet, held
//! together with their flow-control accounting, so that every change to one is a
//! change to the other.

use super::flow::{Credit, RecvWindow, Tuning, WindowBudget};
use bytes::{Buf, Bytes};
use std::collections::VecDeque;

/// Memory charged per waiting payload on top of its bytes (its handle and allocation),
/// so that a flood of tiny frames cannot hold much more memory than the link budget.
pub const PAYLOAD_OVERHEAD: usize = 64;

/// Received payloads of one stream, allocated (once, with room for the usual single
/// payload) only while data waits, so an idle stream carries one null pointer.
#[derive(Debug, Default)]
struct Queue(Option<Box<Pending>>);

#[derive(Debug)]
struct Pending {
    head: Bytes,
    rest: VecDeque<Bytes>,
}

impl Queue {
    fn push(&mut self, payload: Bytes) {
        match &mut self.0 {
            None => self.0 = Some(Box::new(Pending { head: payload, rest: VecDeque::new() })),
            Some(p) => p.rest.push_back(payload),
        }
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |p| 1 + p.rest.len())
    }

    fn pop_into(&mut self, max: usize, mut put: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while n < max {
            let Some(p) = self.0.as_mut() else { break };
            let take = p.head.len().min(max - n);
            put(&p.head[..take]);
            n += take;
            if take < p.head.len() {
                p.head.advance(take);
                break;
            }
            match p.rest.pop_front() {
                Some(next) => p.head = next,
                None => self.0 = None,
            }
        }
        n
    }

    /// Takes up to `max` bytes of the next payload as they are, without copying.
    fn pop_chunk(&mut self, max: usize) -> Bytes {
        let Some(p) = self.0.as_mut() else { return Bytes::new() };
        if max < p.head.len() {
            return p.head.split_to(max);
        }
        let next = p.rest.pop_front();
        match next {
            Some(next) => std::mem::replace(&mut p.head, next),
            None => self.0.take().map(|p| p.head).unwrap_or_default(),
        }
    }
}

/// The receiving half: unread payloads and the receive window.
#[derive(Debug, Default)]
pub struct Recv {
    /// Flow control of what arrives: window, bytes in flight, bytes buffered.
    pub window: RecvWindow,
    queue: Queue,
}

impl Recv {
    /// What the unread data counts against the link's receive budget: its bytes and
    /// [`PAYLOAD_OVERHEAD`] per payload.
    pub fn charge(&self) -> usize {
        self.window.buffered() as usize + PAYLOAD_OVERHEAD * self.queue.len()
    }

    /// Nothing waits to be read.
    pub fn is_empty(&self) -> bool {
        self.queue.0.is_none()
    }

    /// Keeps a payload the window already accounted for ([`RecvWindow::on_data`]).
    pub fn push(&mut self, payload: Bytes) {
        if !payload.is_empty() {
            self.queue.push(payload);
        }
    }

    /// Hands up to `max` bytes to `put` and says what credit to send back (`now_us`
    /// reads the link clock, only when a REWIND is due).
    pub fn read(
        &mut self,
        max: usize,
        put: impl FnMut(&[u8]),
        now_us: impl FnOnce() -> u32,
        tuning: Tuning,
        budget: &mut WindowBudget,
    ) -> (usize, Credit) {
        let n = self.queue.pop_into(max, put);
        let credit = self.window.on_consume(n as u32, now_us, tuning, budget);
        (n, credit)
    }

    /// Takes up to `max` bytes of the next payload without copying them (a slice of
    /// the buffer they were read into) and says what credit to send back, as
    /// [`Recv::read`] does.
    pub fn read_chunk(
        &mut self,
        max: usize,
        now_us: impl FnOnce() -> u32,
        tuning: Tuning,
        budget: &mut WindowBudget,
    ) -> (Bytes, Credit) {
        let chunk = self.queue.pop_chunk(max);
        let credit = self.window.on_consume(chunk.len() as u32, now_us, tuning, budget);
        (chunk, credit)
    }

    /// Drops everything unread (the reader is gone, or the stream was reset).
    pub fn clear(&mut self) {
        self.queue = Queue::default();
        self.window.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_read_across_boundaries_and_freed_when_drained() {
        let mut r = Recv::default();
        for chunk in [&b"hello"[..], b" world", b"!"] {
            r.window.on_data(chunk.len() as u32).unwrap();
            r.push(Bytes::copy_from_slice(chunk));
        }
        assert_eq!(r.charge(), 12 + 3 * PAYLOAD_OVERHEAD);
        let tune = Tuning { max_window: 1 << 16, min_window: 0, eager: false };
        let mut budget = WindowBudget::default();
        let mut out = Vec::new();
        let (n, _) = r.read(7, |c| out.extend_from_slice(c), || 0, tune, &mut budget);
        assert_eq!((n, &out[..]), (7, &b"hello w"[..]));
        out.clear();
        let (n, _) = r.read(100, |c| out.extend_from_slice(c), || 0, tune, &mut budget);
        assert_eq!((n, &out[..]), (5, &b"orld!"[..]));
        assert!(r.is_empty());
        assert_eq!(r.charge(), 0);
    }

    #[test]
    fn chunks_are_payloads_or_their_fronts_and_count_as_read() {
        let mut r = Recv::default();
        for chunk in [&b"hello"[..], b" world"] {
            r.window.on_data(chunk.len() as u32).unwrap();
            r.push(Bytes::copy_from_slice(chunk));
        }
        let tune = Tuning { max_window: 1 << 16, min_window: 0, eager: false };
        let mut budget = WindowBudget::default();
        let mut read = |r: &mut Recv, max| r.read_chunk(max, || 0, tune, &mut budget).0;
        assert_eq!(read(&mut r, 3), &b"hel"[..]);
        assert_eq!(read(&mut r, 100), &b"lo"[..]);
        assert_eq!(r.charge(), 6 + PAYLOAD_OVERHEAD);
        assert_eq!(read(&mut r, 6), &b" world"[..]);
        assert!(r.is_empty());
        assert_eq!(r.charge(), 0);
        assert!(read(&mut r, 100).is_empty());
    }

    #[test]
    fn clear_drops_bytes_and_their_charge() {
        let mut r = Recv::default();
        r.window.on_data(3).unwrap();
        r.push(Bytes::from_static(b"abc"));
        r.clear();
        assert!(r.is_empty() && r.charge() == 0);
    }
}
