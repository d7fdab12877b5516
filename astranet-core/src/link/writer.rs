//! The link writer: takes everything queued in one swap of buffers (the rest of a frame
//! a stream began writing directly, then priority frames, then data) and writes it with
//! as few syscalls as possible, while streams fill the other set of buffers.

use super::sink::Sink;
use super::LinkHandle;
use crate::proto::link::{Batch, CloseReason, LinkTimeout, Transmit};
use std::time::Instant;

pub(super) async fn run(link: LinkHandle, mut sink: Sink) {
    let mut batch = Batch::default();
    let write_timeout = link.settings.write_timeout;
    loop {
        if let Err(e) = sink.flush_direct(write_timeout).await {
            return link.close(close_reason(e, write_timeout));
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
            return link.close(close_reason(e, write_timeout));
        }
        batch.clear();
        link.with(|l, _| l.on_written(Instant::now(), bytes));
        link.drained.notify_waiters();
    }
    // A local close flushes what was queued before it, then ends the connection.
    let _ = tokio::time::timeout(write_timeout, sink.shutdown()).await;

    fn close_reason(e: std::io::Error, write_timeout: std::time::Duration) -> CloseReason {
        match e.kind() {
            std::io::ErrorKind::TimedOut => CloseReason::Timeout(LinkTimeout::Write(write_timeout)),
            _ => CloseReason::Io(e.to_string()),
        }
    }
}
