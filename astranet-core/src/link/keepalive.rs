//! The link's one timer: handshake timeout, PING after a quiet spell, closing a silent
//! link, and forgetting closed streams once their linger time is over. One task per
//! link replaces any per-stream timer.

use super::{CloseReason, Link};
use crate::proto::Command;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

pub(super) async fn run(link: Arc<Link>) {
    let ka = link.config.keepalive;
    let handshake_ms = link.config.handshake_timeout.as_millis() as u64;
    let tick = (ka.ping_after / 2)
        .min(ka.idle_timeout / 4)
        .min(link.config.linger / 2)
        .min(link.config.handshake_timeout / 4)
        .clamp(Duration::from_millis(5), Duration::from_secs(1));
    let mut next_window: Option<u64> = None;
    loop {
        // A v1 peer's close window ends on time, not on the next tick: writes must stop
        // before the peer forgets the stream.
        let wait = match next_window {
            Some(end) => tick.min(Duration::from_millis(end.saturating_sub(link.now_ms()))),
            None => tick,
        };
        tokio::time::sleep(wait).await;
        let now = link.tick();
        if link.peer.get().is_none() {
            if now >= handshake_ms {
                return link
                    .close(CloseReason::Timeout(format!("no HANDSHAKE within {:?}", link.config.handshake_timeout)));
            }
            continue;
        }
        let silent = now.saturating_sub(link.last_rx_ms.load(Ordering::Relaxed));
        if silent >= ka.idle_timeout.as_millis() as u64 {
            return link.close(CloseReason::Timeout(format!("nothing received for {silent} ms")));
        }
        let mut st = link.state.lock();
        if st.closed.is_some() {
            return;
        }
        let quiet = now.saturating_sub(link.last_tx_ms.load(Ordering::Relaxed));
        if quiet >= ka.ping_after.as_millis() as u64 && st.ctrl.is_empty() && st.data.is_empty() {
            link.ping(&mut st);
            link.kick(&mut st);
        }
        while let Some(&(id, expiry)) = st.linger.front() {
            if expiry > now {
                break;
            }
            st.linger.pop_front();
            // FINs still owed to a v1 peer that did not read everything: it gets its EOF
            // now (and its own close window to read the rest).
            let owed = st.table.get_mut(id).map(|slot| (slot.key, slot.state.take_owed_fins()));
            if let Some((key, (fin2, fin1))) = owed {
                for (owed, cmd) in [(fin2, Command::Fin2), (fin1, Command::Fin1)] {
                    if owed {
                        link.push_stream_frame(&mut st, &key, cmd, &[]);
                    }
                }
                link.kick(&mut st);
            }
            st.free(id, &link.counters);
        }
        let mut wakers = Vec::new();
        while let Some(&(id, key, expiry)) = st.close_windows.front() {
            if expiry > now {
                break;
            }
            st.close_windows.pop_front();
            // The slot may have been freed (and reused by another stream) meanwhile.
            if let Some(slot) = st.table.get_mut(id).filter(|s| s.key == key) {
                if slot.state.close_window_over() {
                    wakers.extend(slot.write_waker.take());
                }
            }
        }
        next_window = st.close_windows.front().map(|w| w.2);
        drop(st);
        wakers.into_iter().for_each(std::task::Waker::wake);
    }
}
