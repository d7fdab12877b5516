//! Per-stream flow-control accounting (v1 semantics, plus receive-window auto-tuning).
//!
//! A sender may have at most `window` unacknowledged bytes in flight. The receiver hands
//! credit back with REWIND(n) once the application consumed n bytes, and may change the
//! window itself with WND_SIZE(w). Both directions start at [`INITIAL_WINDOW`].
//!
//! Auto-tuning grows a stream's receive window to about twice what the stream moves
//! in one credit loop (REWIND out, the DATA it allowed back in), as TCP's receive
//! buffer auto-tuning does per round trip: enough that the window does not hold back
//! a sender on a clear path, and no more, since a larger window only queues bytes on
//! the way, ahead of the link's other streams.

/// The v1 initial window of every stream, in each direction.
pub const INITIAL_WINDOW: u32 = 65_536;

/// A flow-control rule broken by the peer. Always fatal to the link: the receiver's
/// memory bound depends on it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    /// The peer sent more DATA than the receive window allows.
    #[error("{len} bytes of DATA with {inflight} of a {window}-byte window already in flight")]
    WindowExceeded {
        /// The DATA payload length, in bytes.
        len: u32,
        /// Bytes already received and not yet handed back with REWIND.
        inflight: u32,
        /// The receive window the peer was told, in bytes.
        window: u32,
    },
    /// The peer handed back more credit than we had in flight.
    #[error("REWIND of {n} bytes but only {inflight} are in flight")]
    RewindTooLarge {
        /// The REWIND value, in bytes.
        n: u32,
        /// Bytes sent and not yet handed back.
        inflight: u32,
    },
}

/// The sending half's view: how much the peer lets us send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendWindow {
    window: u32,
    inflight: u32,
}

impl Default for SendWindow {
    fn default() -> Self {
        SendWindow { window: INITIAL_WINDOW, inflight: 0 }
    }
}

impl SendWindow {
    /// Bytes that may be sent now.
    pub fn credit(&self) -> u32 {
        self.window.saturating_sub(self.inflight)
    }

    /// Accounts for `n` bytes of DATA sent; `n` must not exceed [`SendWindow::credit`].
    pub fn on_send(&mut self, n: u32) {
        debug_assert!(n <= self.credit());
        self.inflight += n;
    }

    /// Accounts for a REWIND of `n` bytes: they are no longer in flight. Fails with
    /// [`FlowError::RewindTooLarge`] if fewer than `n` bytes are in flight.
    pub fn on_rewind(&mut self, n: u32) -> Result<(), FlowError> {
        if n > self.inflight {
            return Err(FlowError::RewindTooLarge { n, inflight: self.inflight });
        }
        self.inflight -= n;
        Ok(())
    }

    /// Accounts for a WND_SIZE: the window becomes `window` bytes (it may shrink below
    /// what is in flight; the credit is then 0).
    pub fn on_window(&mut self, window: u32) {
        self.window = window;
    }

    /// The current send window, in bytes.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Bytes sent and not yet handed back by the receiver (REWIND).
    pub fn inflight(&self) -> u32 {
        self.inflight
    }
}

/// Auto-tuning parameters, shared by all streams of a link.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Largest window a stream may be granted.
    pub max_window: u32,
    /// The link's shortest recent credit loop, µs ([`CreditLoop::min_us`]; 0: none
    /// measured yet, and no window grows: no sender has waited for credit).
    pub loop_us: u32,
    /// Hand back every consumed byte at once (REWIND after every read), as a Go reader
    /// does, instead of after a quarter of the window: towards a v1 peer, whose close
    /// waits for it (see [`super::StreamState::shutdown_write`]).
    pub eager: bool,
}

/// The link-wide budget for window growth beyond [`INITIAL_WINDOW`].
#[derive(Clone, Copy, Debug, Default)]
pub struct WindowBudget {
    /// Growth granted so far to the link's streams, in bytes.
    pub used: u64,
    /// Most growth the link may grant, in bytes (0: no auto-tuning).
    pub limit: u64,
}

/// The shortest credit loop recently measured on a link: from a REWIND that let a
/// stalled sender go on to the first DATA it sent (see [`RecvWindow::loop_sample`]).
/// The minimum, as the loop without queueing on the way; it is renewed by the next
/// sample once it is [`CreditLoop::KEPT_US`] old, so that a path that became slower
/// is seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreditLoop {
    min_us: u32,
    /// When `min_us` was measured (link clock, µs, wrapping).
    at_us: u32,
}

impl CreditLoop {
    /// How long a minimum stands before any sample replaces it, µs.
    pub const KEPT_US: u32 = 10_000_000;

    /// Takes a loop of `sample_us` measured at `now_us`.
    pub fn observe(&mut self, sample_us: u32, now_us: u32) {
        let stale = now_us.wrapping_sub(self.at_us) > Self::KEPT_US;
        if self.min_us == 0 || sample_us < self.min_us || stale {
            self.min_us = sample_us.max(1);
            self.at_us = now_us;
        }
    }

    /// The shortest loop, µs (0: none measured).
    pub fn min_us(&self) -> u32 {
        self.min_us
    }
}

/// What the receiver should send after the application consumed bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Credit {
    /// Send REWIND with this many bytes.
    pub rewind: Option<u32>,
    /// Send WND_SIZE with this window.
    pub window: Option<u32>,
}

/// `epoch_consumed` before the first measurement epoch.
const NO_EPOCH: u32 = u32::MAX;

/// `rewound_at` when no credit loop is being timed.
const NOT_TIMING: u32 = u32::MAX;

/// Shortest measurement epoch, µs: it should span several reads of the application.
const MIN_EPOCH_US: u32 = 100;

/// The receiving half's view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvWindow {
    /// The window the peer was last told.
    window: u32,
    /// Bytes received and not yet handed back with REWIND.
    inflight: u32,
    /// Bytes received and not yet consumed by the application.
    buffered: u32,
    /// Start of the current measurement epoch (link clock, µs, wrapping).
    epoch_start: u32,
    /// Bytes consumed since `epoch_start` ([`NO_EPOCH`] before the first REWIND).
    epoch_consumed: u32,
    /// When a REWIND went to a sender that had no credit left (link clock, µs;
    /// [`NOT_TIMING`]: none since the last DATA).
    rewound_at: u32,
}

impl Default for RecvWindow {
    fn default() -> Self {
        RecvWindow {
            window: INITIAL_WINDOW,
            inflight: 0,
            buffered: 0,
            epoch_start: 0,
            epoch_consumed: NO_EPOCH,
            rewound_at: NOT_TIMING,
        }
    }
}

impl RecvWindow {
    /// The window the peer was last told, in bytes.
    pub fn window(&self) -> u32 {
        self.window
    }

    /// Bytes received and not yet consumed by the application.
    pub fn buffered(&self) -> u32 {
        self.buffered
    }

    /// Window growth granted to this stream, to give back to the link budget on close.
    pub fn extra(&self) -> u64 {
        u64::from(self.window.saturating_sub(INITIAL_WINDOW))
    }

    /// Accounts for an arriving DATA payload.
    pub fn on_data(&mut self, len: u32) -> Result<(), FlowError> {
        if u64::from(self.inflight) + u64::from(len) > u64::from(self.window) {
            return Err(FlowError::WindowExceeded { len, inflight: self.inflight, window: self.window });
        }
        self.inflight += len;
        self.buffered += len;
        Ok(())
    }

    /// Accounts for a payload that arrived but is dropped unread (reading side closed):
    /// it counts against the window like any other data but is never handed back.
    pub fn on_discard(&mut self, len: u32) -> Result<(), FlowError> {
        self.on_data(len)?;
        self.buffered -= len;
        Ok(())
    }

    /// Drops everything buffered (the reader is gone).
    pub fn clear(&mut self) {
        self.buffered = 0;
    }

    /// The application consumed `n` bytes; `now_us` reads the link clock (µs, wrapping),
    /// only when a REWIND is due. Returns the credit to send:
    /// REWIND once a quarter of the window is consumed (no stall is possible: a sender
    /// without credit means at least three quarters are buffered or in transit), and a
    /// doubled window when the stream moved more than a window per two credit loops,
    /// measured over an epoch of two loops or more.
    pub fn on_consume(
        &mut self,
        n: u32,
        now_us: impl FnOnce() -> u32,
        tuning: Tuning,
        budget: &mut WindowBudget,
    ) -> Credit {
        debug_assert!(n <= self.buffered);
        self.buffered -= n;
        let unacked = self.inflight - self.buffered;
        let mut credit = Credit::default();
        if unacked == 0 || (unacked < self.window / 4 && !tuning.eager) {
            return credit;
        }
        credit.rewind = Some(unacked);
        // Everything the sender could send arrived: it waits for this REWIND.
        let sender_stalled = self.inflight == self.window;
        self.inflight -= unacked;
        let now_us = now_us();
        if sender_stalled {
            self.rewound_at = now_us;
        }

        if self.epoch_consumed == NO_EPOCH {
            // This REWIND opens the first measurement epoch; consumption after it counts.
            self.epoch_start = now_us;
            self.epoch_consumed = 0;
            return credit;
        }
        self.epoch_consumed = self.epoch_consumed.saturating_add(unacked);
        let two_loops = tuning.loop_us.saturating_mul(2);
        let elapsed = now_us.wrapping_sub(self.epoch_start);
        if two_loops == 0 || elapsed < two_loops.max(MIN_EPOCH_US) {
            return credit;
        }
        // What the stream moves per two loops, measured over the whole epoch: a reader
        // that takes a window's worth at once is not mistaken for a fast stream.
        let wanted = u64::from(self.epoch_consumed) * u64::from(two_loops) / u64::from(elapsed);
        // The window doubles while below that, within the cap and the link's budget.
        if wanted > u64::from(self.window) && self.window < tuning.max_window {
            let grown = self.window.saturating_mul(2).min(tuning.max_window);
            let delta = u64::from(grown - self.window);
            if budget.used + delta <= budget.limit {
                budget.used += delta;
                self.window = grown;
                credit.window = Some(grown);
            }
        }
        self.epoch_start = now_us;
        self.epoch_consumed = 0;
        credit
    }

    /// Called for each DATA that arrives: if it is the first since a REWIND that let a
    /// stalled sender go on, the credit loop it took, µs (`now_us` reads the link
    /// clock, only then). The sender had no credit, so this DATA left after the REWIND
    /// arrived.
    pub fn loop_sample(&mut self, now_us: impl FnOnce() -> u32) -> Option<u32> {
        if self.rewound_at == NOT_TIMING {
            return None;
        }
        let sample = now_us().wrapping_sub(self.rewound_at);
        self.rewound_at = NOT_TIMING;
        Some(sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loops of 100 µs: at 1 GB/s (1,024 bytes per µs), 100 KiB in flight.
    const TUNE: Tuning = Tuning { max_window: 1 << 20, loop_us: 100, eager: false };

    #[test]
    fn send_credit() {
        let mut s = SendWindow::default();
        assert_eq!(s.credit(), 65_536);
        s.on_send(65_000);
        assert_eq!(s.credit(), 536);
        s.on_rewind(1000).unwrap();
        assert_eq!(s.credit(), 1536);
        assert_eq!(s.on_rewind(70_000), Err(FlowError::RewindTooLarge { n: 70_000, inflight: 64_000 }));
        s.on_window(200_000);
        assert_eq!(s.credit(), 136_000);
    }

    #[test]
    fn data_beyond_window_is_refused() {
        let mut r = RecvWindow::default();
        r.on_data(65_536).unwrap();
        assert!(r.on_data(1).is_err());
    }

    #[test]
    fn rewind_after_a_quarter() {
        let mut r = RecvWindow::default();
        let mut b = WindowBudget { used: 0, limit: 0 };
        r.on_data(30_000).unwrap();
        assert_eq!(r.on_consume(10_000, || 0, TUNE, &mut b), Credit::default());
        let c = r.on_consume(10_000, || 0, TUNE, &mut b);
        assert_eq!(c.rewind, Some(20_000));
        assert_eq!(c.window, None, "no budget, no growth");
        r.on_data(55_536).unwrap();
        assert!(r.on_data(1).is_err());
    }

    #[test]
    fn eager_credit_goes_back_after_every_read() {
        let mut r = RecvWindow::default();
        let mut b = WindowBudget { used: 0, limit: 0 };
        r.on_data(5000).unwrap();
        let eager = Tuning { eager: true, ..TUNE };
        assert_eq!(r.on_consume(1000, || 0, eager, &mut b).rewind, Some(1000));
        assert_eq!(r.on_consume(4000, || 0, eager, &mut b).rewind, Some(4000));
        assert_eq!(r.on_consume(0, || 0, eager, &mut b).rewind, None);
    }

    /// A stream whose sender sends as the window allows and whose reader consumes
    /// `step` bytes every `step / rate` µs (no faster than the data arrives), for
    /// `for_us`; returns the window it ends with.
    fn run(r: &mut RecvWindow, rate: u32, step: u32, for_us: u32, tuning: Tuning, b: &mut WindowBudget) -> u32 {
        let mut t = 0;
        while t < for_us {
            let fits = step.min(r.window - r.inflight);
            r.on_data(fits).unwrap();
            r.on_consume(fits, || t, tuning, b);
            t += step / rate;
        }
        r.window()
    }

    #[test]
    fn a_window_grows_to_about_twice_what_moves_in_a_loop() {
        // 1,024 bytes per µs over 100 µs loops: 100 KiB per loop, twice that is
        // 200 KiB: 128 KiB is too little, 256 KiB enough.
        let mut b = WindowBudget { used: 0, limit: 1 << 30 };
        let mut r = RecvWindow::default();
        assert_eq!(run(&mut r, 1024, 16 << 10, 100_000, TUNE, &mut b), 256 << 10);
        assert_eq!(b.used, u64::from((256 << 10) - INITIAL_WINDOW));
        // Loops ten times as long need ten times the window: the cap stops it.
        let mut r = RecvWindow::default();
        let long = Tuning { loop_us: 1000, ..TUNE };
        assert_eq!(run(&mut r, 1024, 16 << 10, 100_000, long, &mut b), 1 << 20);
    }

    #[test]
    fn a_stream_held_by_its_window_doubles_it_every_two_loops() {
        let mut b = WindowBudget { used: 0, limit: 1 << 30 };
        let big = Tuning { max_window: 16 << 20, ..TUNE };
        let mut r = RecvWindow::default();
        // Every 100 µs loop brings the whole window, read a quarter at a time.
        let mut loops = 0;
        while r.window() < 16 << 20 {
            let n = r.window() - r.inflight;
            r.on_data(n).unwrap();
            for q in 0..4 {
                r.on_consume(n / 4, || loops * 100 + q * 25, big, &mut b);
            }
            loops += 1;
            assert!(loops <= 17, "64 KiB to 16 MiB is 8 doublings; {loops} loops gave {}", r.window());
        }
    }

    #[test]
    fn a_slow_reader_a_spent_budget_or_no_measured_loop_keep_the_window() {
        let mut b = WindowBudget { used: 0, limit: 1 << 30 };
        // 32 KiB every 5 ms.
        let mut slow = RecvWindow::default();
        assert_eq!(run(&mut slow, 1, 32 << 10, 1_000_000, TUNE, &mut b), INITIAL_WINDOW);
        let mut unmeasured = RecvWindow::default();
        let no_loop = Tuning { loop_us: 0, ..TUNE };
        assert_eq!(run(&mut unmeasured, 1024, 16 << 10, 100_000, no_loop, &mut b), INITIAL_WINDOW);
        let mut spent = WindowBudget { used: 0, limit: 100 << 10 };
        let mut fast = RecvWindow::default();
        assert_eq!(run(&mut fast, 1024, 16 << 10, 100_000, TUNE, &mut spent), 128 << 10, "one doubling fits");
        assert_eq!(fast.extra(), 64 << 10);
    }

    #[test]
    fn a_reader_that_consumes_in_bursts_is_measured_over_the_epoch() {
        // A window's worth every 4 ms, read in four quick reads: 16 bytes per µs, 1.6 KB
        // per 100 µs loop. The reads alone would look like an endless rate.
        let mut b = WindowBudget { used: 0, limit: 1 << 30 };
        let mut r = RecvWindow::default();
        for i in 0..100u32 {
            r.on_data(r.window - r.inflight).unwrap();
            for k in 0..4 {
                r.on_consume(INITIAL_WINDOW / 4, || i * 4000 + k, TUNE, &mut b);
            }
        }
        assert_eq!(r.window(), INITIAL_WINDOW);
    }

    #[test]
    fn a_rewind_to_a_stalled_sender_times_the_loop() {
        let mut b = WindowBudget::default();
        let mut r = RecvWindow::default();
        // The sender sent its whole window: the REWIND lets it go on.
        r.on_data(65_536).unwrap();
        assert_eq!(r.on_consume(65_536, || 1000, TUNE, &mut b).rewind, Some(65_536));
        assert_eq!(r.loop_sample(|| 1300), Some(300));
        assert_eq!(r.loop_sample(|| 1400), None, "one sample per REWIND");
        // A sender with credit left was not waiting for it.
        r.on_data(30_000).unwrap();
        assert!(r.on_consume(30_000, || 2000, TUNE, &mut b).rewind.is_some());
        assert_eq!(r.loop_sample(|| 2100), None);
    }

    #[test]
    fn the_credit_loop_is_the_shortest_recent_one() {
        let mut l = CreditLoop::default();
        assert_eq!(l.min_us(), 0);
        l.observe(300, 0);
        l.observe(80, 10);
        l.observe(500, 20);
        assert_eq!(l.min_us(), 80);
        // Once old, the next sample stands, whatever it is.
        l.observe(500, 10 + CreditLoop::KEPT_US + 1);
        assert_eq!(l.min_us(), 500);
        l.observe(0, 0);
        assert_eq!(l.min_us(), 1, "never 0: 0 means none");
    }

    #[test]
    fn discard_counts_against_window() {
        let mut r = RecvWindow::default();
        r.on_discard(65_536).unwrap();
        assert_eq!(r.buffered(), 0);
        assert!(r.on_discard(1).is_err());
    }
}
