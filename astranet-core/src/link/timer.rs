//! The link's one timer task: sleeps until the state machine's next deadline (or a
//! tick, so that the link's own deadlines set meanwhile are seen in time; a stream
//! that sets an earlier one wakes it) and lets it act.

use super::LinkHandle;
use std::time::{Duration, Instant};

pub(super) async fn run(link: LinkHandle) {
    let cfg = &link.settings.link;
    // Deadlines set between two wake-ups are noticed within a tick.
    let tick = (cfg.ping_after / 2)
        .min(cfg.idle_timeout / 4)
        .min(cfg.linger / 2)
        .min(cfg.handshake_timeout / 4)
        .min(cfg.frame_stall_timeout / 4)
        .clamp(Duration::from_millis(5), Duration::from_secs(1));
    loop {
        let Some(next) = link.with(|l, _| l.poll_timeout()) else { return };
        let now = Instant::now();
        if next > now {
            tokio::select! {
                _ = tokio::time::sleep((next - now).min(tick)) => {}
                _ = link.timer_changed.notified() => {}
            }
        }
        link.with(|l, wakers| l.handle_timeout(Instant::now(), wakers));
    }
}
