//! The link writer: takes everything queued in one swap of buffers (the rest of a frame
//! a stream began writing directly, then priority frames, then data) and writes it with
//! as few syscalls as possible, while streams fill the other set of buffers.

use super::driven::LinkDriver;
use super::sink::Sink;
use super::LinkHandle;
use crate::proto::link::{Batch, CloseReason, LinkTimeout, Transmit};
use std::sync::Arc;
use std::time::Instant;

/// Writes the link until it closes.
pub(super) async fn run(link: LinkHandle, sink: Sink) {
    // Told to go on, it stops only when the link closed.
    let _closed = write_while(&link, sink, |_| true).await;
}

/// Writes the link until its handshake is done, then hands the writing over to
/// `driver` (see [`Drive::ReadsAndWrites`](super::driven::Drive::ReadsAndWrites)).
pub(super) async fn run_then_hand_over(link: LinkHandle, sink: Sink, driver: Arc<LinkDriver>) {
    // A link closing goes on here: a local close is flushed by this task anyway.
    let Some(sink) = write_while(&link, sink, |link| link.peer().is_none() || link.is_closed()).await else {
        return;
    };
    let token = driver.adopt_writer(Box::pin(run(link.clone(), sink)));
    link.written_by(&driver, token);
}

/// Writes while `go_on` says so before each batch; returns the sink if it stopped for
/// that (between two batches: nothing is half written), `None` once the link closed.
async fn write_while(link: &LinkHandle, mut sink: Sink, go_on: impl Fn(&LinkHandle) -> bool) -> Option<Sink> {
    let mut batch = Batch::default();
    let write_timeout = link.settings.write_timeout;
    loop {
        if !go_on(link) {
            return Some(sink);
        }
        if let Err(e) = sink.flush_direct(write_timeout).await {
            link.close(close_reason(e, write_timeout));
            return None;
        }
        match link.with(|l, wakers| l.poll_transmit(&mut batch, wakers)) {
            Transmit::Exit => break,
            Transmit::Idle => {
                link.wake_writer.notified().await;
                continue;
            }
            Transmit::Write => {}
        }
        let bytes = batch.len();
        if let Err(e) = sink.write_all(&batch.parts(), write_timeout).await {
            link.close(close_reason(e, write_timeout));
            return None;
        }
        batch.clear();
        link.with(|l, _| l.on_written(Instant::now(), bytes));
        link.drained.notify_waiters();
    }
    // A local close flushes what was queued before it, then ends the connection.
    let _ = tokio::time::timeout(write_timeout, sink.shutdown()).await;
    None
}

fn close_reason(e: std::io::Error, write_timeout: std::time::Duration) -> CloseReason {
    match e.kind() {
        std::io::ErrorKind::TimedOut => CloseReason::Timeout(LinkTimeout::Write(write_timeout)),
        _ => CloseReason::Io(e.to_string()),
    }
}
