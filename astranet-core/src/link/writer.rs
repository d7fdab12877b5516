//! The link writer: takes everything queued (the rest of a frame a stream began writing
//! directly, then priority frames, then data) in one swap of buffers under the lock and
//! writes it with as few syscalls as possible. While it writes, streams fill the other
//! set of buffers.

use super::sink::Sink;
use super::{CloseReason, Link};
use crate::proto::MAX_PAYLOAD;
use bytes::BytesMut;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;

/// What the writer does next.
enum Next {
    /// Nothing queued: sleep until notified.
    Idle,
    /// The buffers were filled: write them.
    Write,
    /// The link is closed and everything was flushed.
    Exit,
}

/// The writer's side of the double buffering.
#[derive(Default)]
struct Batch {
    partial: BytesMut,
    ctrl: BytesMut,
    data: BytesMut,
}

pub(super) async fn run(link: Arc<Link>, mut sink: Sink) {
    let mut batch = Batch::default();
    let mut wakers: Vec<Waker> = Vec::new();
    let write_timeout = link.config.keepalive.write_timeout;
    loop {
        let next = take_batch(&link, &mut batch, &mut wakers);
        wakers.drain(..).for_each(Waker::wake);
        if matches!(next, Next::Write) {
            link.drained.notify_waiters();
        }
        match next {
            Next::Exit => break,
            Next::Idle => {
                link.wake_writer.notified().await;
                continue;
            }
            Next::Write => {}
        }
        let parts = [&batch.partial[..], &batch.ctrl[..], &batch.data[..]];
        let bytes = parts.iter().map(|p| p.len() as u64).sum();
        match sink.write_all(&parts, write_timeout).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return link.close(CloseReason::Timeout(e.to_string()))
            }
            Err(e) => return link.close(CloseReason::Io(e.to_string())),
        }
        link.wrote(bytes);
        batch.partial.clear();
        batch.ctrl.clear();
        batch.data.clear();
    }
    // A local close flushes what was queued before it, then ends the connection.
    link.state.lock().direct = None;
    let _ = tokio::time::timeout(write_timeout, sink.shutdown()).await;
}

/// Swaps the link's queues with the writer's (empty) buffers and picks the writers
/// waiting for queue space to wake.
fn take_batch(link: &Link, batch: &mut Batch, wakers: &mut Vec<Waker>) -> Next {
    let mut st = link.state.lock();
    if st.partial.is_empty() && st.ctrl.is_empty() && st.data.is_empty() {
        if st.closed.is_some() {
            return Next::Exit;
        }
        // Writers that were woken for space but never wrote must not starve the rest:
        // with the queue empty, let everyone try again.
        while let Some(id) = st.waiting_space.pop_front() {
            if let Some(slot) = st.table.get_mut(id) {
                slot.waiting_space = false;
                wakers.extend(slot.write_waker.take());
            }
        }
        st.writer_idle = true;
        return Next::Idle;
    }
    std::mem::swap(&mut st.partial, &mut batch.partial);
    std::mem::swap(&mut st.ctrl, &mut batch.ctrl);
    std::mem::swap(&mut st.data, &mut batch.data);
    // The data queue is empty again: wake as many waiting writers as can fill it.
    let mut room = link.config.limits.link_write_queue as isize;
    while room > 0 {
        let Some(id) = st.waiting_space.pop_front() else { break };
        if let Some(slot) = st.table.get_mut(id) {
            slot.waiting_space = false;
            wakers.extend(slot.write_waker.take());
            room -= MAX_PAYLOAD as isize;
        }
    }
    Next::Write
}

impl Link {
    /// Accounts for bytes that reached the socket.
    pub(crate) fn wrote(&self, bytes: u64) {
        self.last_tx_ms.store(self.coarse_ms(), Ordering::Relaxed);
        self.counters.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }
}
