//! The link's timers: handshake timeout, PING after a quiet spell, closing a silent
//! link or one whose frame stalls, forgetting closed streams once their linger time is
//! over, the end of v1 peers' close windows, and the streams' own timeouts
//! ([`deadlines`](super::deadlines)). The driver asks
//! [`Link::poll_timeout`] when to call [`Link::handle_timeout`]; nothing is timed per
//! stream in the driver.

use super::table::{StreamId, StreamKey};
use super::{CloseReason, Link, LinkTimeout, Phase};
use crate::proto::frame::{Command, Header};
use std::collections::VecDeque;
use std::task::Waker;
use std::time::Instant;

#[derive(Debug)]
pub(crate) struct Timers {
    /// When the link started: the clock of auto-tuning, and of the handshake timeout.
    pub epoch: Instant,
    pub last_rx: Instant,
    pub last_tx: Instant,
    /// When a PING was last queued (or found not needed): PINGs are spaced by the
    /// quiet time, whatever the writer is doing.
    pub last_ping: Instant,
    /// When the outstanding PING was queued, for the round-trip time.
    pub ping_sent: Option<Instant>,
    /// Smoothed round-trip time from PING/PONG, µs (0 until measured).
    pub rtt_us: u32,
    /// The budget of resets the peer may still send (see
    /// [`LinkConfig::max_resets_per_second`](super::LinkConfig::max_resets_per_second)),
    /// and when it was last refilled.
    pub resets: (f64, Instant),
    /// When the first byte of the incomplete frame at the front of the input arrived,
    /// and the frame's size as far as known.
    pub frame_started: Option<(Instant, usize)>,
    /// Closed streams whose last frames are queued: (slot, stream, position in the data
    /// queue). Their linger time starts once the writer took that position.
    pub linger_queued: VecDeque<(StreamId, StreamKey, u64)>,
    /// Closed streams remembered to absorb frames in flight, until the given time.
    pub linger: VecDeque<(StreamId, StreamKey, Instant)>,
    /// Streams whose v1 peer closed, until it forgets them.
    pub close_windows: VecDeque<(StreamId, StreamKey, Instant)>,
    /// When to wake the next round of writers waiting for space while the writer
    /// idles (see [`Link::recheck_space_later`]).
    pub space_recheck: Option<Instant>,
}

impl Timers {
    pub fn new(now: Instant) -> Timers {
        Timers {
            epoch: now,
            last_rx: now,
            last_tx: now,
            last_ping: now,
            ping_sent: None,
            rtt_us: 0,
            resets: (f64::MAX, now),
            frame_started: None,
            linger_queued: VecDeque::new(),
            linger: VecDeque::new(),
            close_windows: VecDeque::new(),
            space_recheck: None,
        }
    }

    pub fn clear_streams(&mut self) {
        self.linger_queued.clear();
        self.linger.clear();
        self.close_windows.clear();
        self.frame_started = None;
    }
}

impl Link {
    /// When [`Link::handle_timeout`] is due next (`None` once the link is closed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let t = &self.timers;
        let cfg = &self.cfg;
        let mut next = match self.phase {
            Phase::Closed(_) => return None,
            Phase::Handshaking => t.epoch + cfg.handshake_timeout,
            Phase::Up { .. } => (t.last_rx + cfg.idle_timeout).min(t.last_tx.max(t.last_ping) + cfg.ping_after),
        };
        let mut consider = |at: Option<Instant>| {
            if let Some(at) = at {
                next = next.min(at);
            }
        };
        consider(t.frame_started.map(|(at, _)| at + cfg.frame_stall_timeout));
        consider(t.linger.front().map(|l| l.2));
        consider(t.close_windows.front().map(|w| w.2));
        consider(t.space_recheck);
        consider(self.deadlines.next());
        Some(next)
    }

    /// Runs every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant, wakers: &mut Vec<Waker>) {
        let cfg = self.cfg.clone();
        let t = &self.timers;
        let expired = match self.phase {
            Phase::Closed(_) => return,
            Phase::Handshaking if now >= t.epoch + cfg.handshake_timeout => {
                Some(LinkTimeout::Handshake(cfg.handshake_timeout))
            }
            Phase::Up { .. } if now >= t.last_rx + cfg.idle_timeout => Some(LinkTimeout::Idle(now - t.last_rx)),
            _ => None,
        };
        let stalled = t.frame_started.filter(|(at, _)| now >= *at + cfg.frame_stall_timeout);
        if let Some(timeout) = expired
            .or(stalled.map(|(at, len)| LinkTimeout::FrameStall { len, after: now.saturating_duration_since(at) }))
        {
            return self.close(CloseReason::Timeout(timeout), wakers);
        }
        if matches!(self.phase, Phase::Up { .. })
            && now >= self.timers.last_tx.max(self.timers.last_ping) + cfg.ping_after
        {
            self.timers.last_ping = now;
            // A link with frames waiting is not quiet: its writer is at work.
            if self.out.queued() == 0 {
                self.ping(now);
            }
        }
        while let Some(&(id, key, expiry)) = self.timers.linger.front() {
            if expiry > now {
                break;
            }
            self.timers.linger.pop_front();
            // The slot may have been freed (and reused by another stream) meanwhile.
            let Some(slot) = self.streams.get_keyed(id, &key) else { continue };
            if slot.has_handle() {
                continue;
            }
            // FINs still owed to a v1 peer that did not read everything: it gets its
            // EOF now (and its own close window to read the rest).
            let (fin2, fin1) = slot.state.take_owed_fins();
            if fin2 {
                self.push_stream_frame(&key, Command::Fin2, &[]);
            }
            if fin1 {
                self.push_stream_frame(&key, Command::Fin1, &[]);
            }
            self.free(id);
        }
        self.handle_stream_deadlines(now, wakers);
        self.recheck_space(now, wakers);
        while let Some(&(id, key, end)) = self.timers.close_windows.front() {
            if end > now {
                break;
            }
            self.timers.close_windows.pop_front();
            if let Some(slot) = self.streams.get_keyed(id, &key) {
                if slot.state.close_window_over() {
                    wakers.extend(slot.write_waker.take());
                }
            }
        }
    }

    /// Queues a PING and starts timing its round trip.
    pub(super) fn ping(&mut self, now: Instant) {
        self.timers.ping_sent = Some(now);
        self.out.push(Header::link(Command::Ping, 0), &[]);
    }

    pub(super) fn on_pong(&mut self, now: Instant) {
        let Some(sent) = self.timers.ping_sent.take() else { return };
        let sample = now.saturating_duration_since(sent).as_micros().min(u32::MAX as u128) as u32;
        let old = self.timers.rtt_us;
        let rtt = if old == 0 { sample } else { (old / 8) * 7 + sample / 8 };
        self.timers.rtt_us = rtt.max(1);
    }

    /// A closed stream is remembered for the linger time, counted from when the writer
    /// took its last frames (a congested link may hold them long).
    pub(super) fn linger(&mut self, id: StreamId, key: StreamKey, now: Instant) {
        let position = self.out.queued_total;
        if position <= self.out.taken_total {
            self.timers.linger.push_back((id, key, now + self.cfg.linger));
        } else {
            self.timers.linger_queued.push_back((id, key, position));
        }
    }

    /// Starts the linger time of streams whose last frames were written.
    pub(super) fn start_lingering(&mut self, now: Instant) {
        while let Some(&(id, key, position)) = self.timers.linger_queued.front() {
            if position > self.out.taken_total {
                break;
            }
            self.timers.linger_queued.pop_front();
            self.timers.linger.push_back((id, key, now + self.cfg.linger));
        }
    }

    /// A v1 peer closed stream `id`: note when it will have forgotten it.
    pub(super) fn start_close_window(&mut self, id: StreamId, key: StreamKey, now: Instant) {
        let end = now + self.close_window();
        self.timers.close_windows.push_back((id, key, end));
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{linked, pump};
    use super::super::{Event, LinkConfig, StreamKey};
    use crate::addr::HostId;
    use std::time::{Duration, Instant};

    /// A closed stream is remembered for the linger time counted from when its last
    /// frames were written, not from when they were queued behind a busy writer.
    #[test]
    fn linger_counts_from_the_write() {
        let t0 = Instant::now();
        let cfg = LinkConfig { linger: Duration::from_secs(10), ..LinkConfig::default() };
        let (mut a, mut b) = linked(cfg, t0);
        let id = a.open_stream(StreamKey { local_port: 10, remote_port: 80, remote_host: HostId(2) }, t0).unwrap();
        pump(&mut a, &mut b, t0);
        let dial = std::iter::from_fn(|| b.poll_event()).find_map(|e| match e {
            Event::Dial(key) => Some(key),
            _ => None,
        });
        b.accept_stream(dial.expect("b got the DIAL"), t0).unwrap();
        pump(&mut b, &mut a, t0);
        pump(&mut a, &mut b, t0);
        pump(&mut b, &mut a, t0);

        a.release(id, t0);
        // The writer is busy for 30 s: the FINs wait, and so does the linger time.
        let late = t0 + Duration::from_secs(30);
        a.handle_timeout(late, &mut Vec::new());
        assert_eq!(a.stream_count(), 1, "forgotten before its FINs were written");
        pump(&mut a, &mut b, late);
        a.handle_timeout(late + Duration::from_secs(9), &mut Vec::new());
        assert_eq!(a.stream_count(), 1, "lingers for 10 s after the write");
        a.handle_timeout(late + Duration::from_secs(11), &mut Vec::new());
        assert_eq!(a.stream_count(), 0);
    }
}
