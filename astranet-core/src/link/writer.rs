//! The link writer: takes everything queued (priority frames first, then data) in one
//! swap of buffers under the lock and writes it with as few syscalls as possible.
//! While it writes, streams fill the other pair of buffers.

use super::{CloseReason, Link};
use crate::proto::MAX_PAYLOAD;
use bytes::BytesMut;
use std::io::IoSlice;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Waker;
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// What the writer does next.
enum Next {
    /// Nothing queued: sleep until notified.
    Idle,
    /// `ctrl` and `data` were filled: write them.
    Write,
    /// The link is closed and everything was flushed.
    Exit,
}

pub(super) async fn run<W: AsyncWrite + Unpin>(link: Arc<Link>, mut io: W) {
    let mut ctrl = BytesMut::with_capacity(4096);
    let mut data = BytesMut::new();
    let mut wakers: Vec<Waker> = Vec::new();
    let write_timeout = link.config.keepalive.write_timeout;
    loop {
        let next = take_batch(&link, &mut ctrl, &mut data, &mut wakers);
        wakers.drain(..).for_each(Waker::wake);
        match next {
            Next::Exit => break,
            Next::Idle => {
                link.wake_writer.notified().await;
                continue;
            }
            Next::Write => {}
        }
        let bytes = (ctrl.len() + data.len()) as u64;
        match tokio::time::timeout(write_timeout, write_both(&mut io, &ctrl, &data)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return link.close(CloseReason::Io(e.to_string())),
            Err(_) => {
                return link.close(CloseReason::Timeout(format!(
                    "a write was pending for more than {write_timeout:?}"
                )))
            }
        }
        link.last_tx_ms.store(link.now_ms(), Ordering::Relaxed);
        link.counters.bytes_out.fetch_add(bytes, Ordering::Relaxed);
        ctrl.clear();
        data.clear();
    }
    // A local close flushes what was queued before it, then ends the connection.
    let _ = tokio::time::timeout(write_timeout, io.shutdown()).await;
}

/// Swaps the link's queues with the writer's (empty) buffers and picks the writers
/// waiting for queue space to wake.
fn take_batch(link: &Link, ctrl: &mut BytesMut, data: &mut BytesMut, wakers: &mut Vec<Waker>) -> Next {
    let mut st = link.state.lock();
    if st.ctrl.is_empty() && st.data.is_empty() {
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
    std::mem::swap(&mut st.ctrl, ctrl);
    std::mem::swap(&mut st.data, data);
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

/// Writes `a` then `b` with vectored writes.
async fn write_both<W: AsyncWrite + Unpin>(io: &mut W, a: &[u8], b: &[u8]) -> std::io::Result<()> {
    let (mut a, mut b) = (a, b);
    while !a.is_empty() || !b.is_empty() {
        let n = if a.is_empty() {
            io.write(b).await?
        } else if b.is_empty() {
            io.write(a).await?
        } else {
            io.write_vectored(&[IoSlice::new(a), IoSlice::new(b)]).await?
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        let from_a = n.min(a.len());
        a = &a[from_a..];
        b = &b[n - from_a..];
    }
    io.flush().await
}
