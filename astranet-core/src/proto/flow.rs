//! Per-stream flow-control accounting (v1 semantics, plus receive-window auto-tuning).
//!
//! A sender may have at most `window` unacknowledged bytes in flight. The receiver hands
//! credit back with REWIND(n) once the application consumed n bytes, and may change the
//! window itself with WND_SIZE(w). Both directions start at [`INITIAL_WINDOW`].
//!
//! Auto-tuning grows a stream's receive window to about twice what the stream moves
//! in one credit loop (REWIND out, the DATA it allowed back in and read), as TCP's receive
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

/// Auto-tuning parameters: the link's, and what the reading call asks for.
#[derive(Clone, Copy, Debug)]
pub struct Tuning {
    /// Largest window a stream may be granted.
    pub max_window: u32,
    /// A window the reader asks for whatever its credit loop says (0: none), within
    /// `max_window` and the link's budget: a reader that passes what it reads on in
    /// bursts (into a socket whose buffer holds that much) waits through loops much
    /// longer than the shortest, which alone sizes a window.
    pub min_window: u32,
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

/// `timing` when no credit loop is being timed.
const NOT_TIMING: i16 = i16::MIN;

/// `timing` of a loop whose REWIND went `since_start` µs after the epoch's start
/// (negative: before), in 4 µs steps; the low bit says whether DATA came since.
/// [`NOT_TIMING`] beyond ±65 ms.
fn timing(since_start: i64, arrived: bool) -> i16 {
    i16::try_from(since_start.div_euclid(4))
        .ok()
        .filter(|steps| (-(1 << 14) + 1..1 << 14).contains(steps))
        .map_or(NOT_TIMING, |steps| steps << 1 | i16::from(arrived))
}

/// When the REWIND of a `timing` went, µs from the epoch's start.
fn rewound_since_start(timing: i16) -> i64 {
    i64::from(timing >> 1) * 4
}

/// Whether DATA arrived since the REWIND of a `timing`.
fn data_arrived(timing: i16) -> bool {
    timing & 1 == 1
}

/// A duration of µs in 16 bits, rounded down: a 12-bit mantissa shifted left by a
/// 4-bit exponent (exact below 4,096 µs, within 1/2,048 of the value up to 134 s, and
/// 134 s beyond).
fn pack_us(us: u32) -> u16 {
    let shift = (u32::BITS - us.leading_zeros()).saturating_sub(12);
    if shift > 15 {
        return u16::MAX;
    }
    ((shift as u16) << 12) | (us >> shift) as u16
}

/// The µs that [`pack_us`] packed.
fn unpack_us(packed: u16) -> u32 {
    u32::from(packed & 0xfff) << (packed >> 12)
}

/// A measurement epoch lasts at least this long, µs: on a short path, what a reader
/// takes in one go (a window's worth it found waiting) is then averaged with the rest.
/// On a long path it lasts three quarters of a loop at least: the REWINDs of a stream
/// held back by its window come in a burst per loop, and each burst ends an epoch, so
/// that its window doubles about once a loop, as in TCP's slow start.
const MIN_EPOCH_US: u32 = 2_000;

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
    /// A credit loop being timed ([`timing`]; [`NOT_TIMING`]: none): a REWIND went to
    /// a sender that had no credit left; the loop ends with the first REWIND after its
    /// DATA arrived. 16 bits, as `shortest_loop`: an idle stream's slot stays small.
    timing: i16,
    /// The stream's shortest credit loop so far ([`pack_us`]; 0: none measured, and the
    /// window does not grow: its sender never waited for credit). Per stream: a stream
    /// keeps its path, and the streams of one link may be relayed over paths of any
    /// length.
    shortest_loop: u16,
}

impl Default for RecvWindow {
    fn default() -> Self {
        RecvWindow {
            window: INITIAL_WINDOW,
            inflight: 0,
            buffered: 0,
            epoch_start: 0,
            epoch_consumed: NO_EPOCH,
            timing: NOT_TIMING,
            shortest_loop: 0,
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
    /// measured over an epoch of 2 ms or three quarters of a loop, whichever is longer.
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
        self.end_loop(now_us);
        credit.window = self.tune(unacked, now_us, tuning, budget).or_else(|| self.raise(tuning, budget));
        if sender_stalled {
            // Timed from the epoch's start, in 16 bits: a REWIND more than 65 ms into a
            // long epoch is not timed (there are others).
            self.timing = timing(i64::from(now_us.wrapping_sub(self.epoch_start)), false);
        }
        credit
    }

    /// A REWIND at `now_us` ends the loop being timed if its DATA arrived: the loop
    /// took the sender's turn and the reader's, the time both need a window to cover.
    fn end_loop(&mut self, now_us: u32) {
        if self.timing == NOT_TIMING || !data_arrived(self.timing) {
            return;
        }
        let rewound_at = self.epoch_start.wrapping_add_signed(rewound_since_start(self.timing) as i32);
        let sample = pack_us(now_us.wrapping_sub(rewound_at).max(1));
        self.timing = NOT_TIMING;
        if self.shortest_loop == 0 || unpack_us(sample) < self.loop_us() {
            self.shortest_loop = sample;
        }
    }

    /// Counts `consumed` bytes towards the measurement epoch; at its end, the window
    /// to grant if the stream moved more than a window per two credit loops.
    fn tune(&mut self, consumed: u32, now_us: u32, tuning: Tuning, budget: &mut WindowBudget) -> Option<u32> {
        if self.epoch_consumed == NO_EPOCH {
            // This REWIND opens the first measurement epoch; consumption after it counts.
            self.begin_epoch(now_us);
            return None;
        }
        self.epoch_consumed = self.epoch_consumed.saturating_add(consumed);
        let loop_us = self.loop_us();
        let elapsed = now_us.wrapping_sub(self.epoch_start);
        if loop_us == 0 || elapsed < (loop_us / 4 * 3).max(MIN_EPOCH_US) {
            return None;
        }
        // What the stream moves per two loops, measured over the whole epoch.
        let two_loops = loop_us.saturating_mul(2);
        let wanted = u64::from(self.epoch_consumed) * u64::from(two_loops) / u64::from(elapsed);
        self.begin_epoch(now_us);
        // The window doubles while below that, within the cap and the link's budget.
        if wanted <= u64::from(self.window) || self.window >= tuning.max_window {
            return None;
        }
        let grown = self.window.saturating_mul(2).min(tuning.max_window);
        let delta = u64::from(grown - self.window);
        if budget.used + delta > budget.limit {
            return None;
        }
        budget.used += delta;
        self.window = grown;
        Some(grown)
    }

    /// The window to grant if it is below what the reader asked for
    /// ([`Tuning::min_window`]): all of it at once, within the cap and the budget.
    fn raise(&mut self, tuning: Tuning, budget: &mut WindowBudget) -> Option<u32> {
        let wanted = tuning.min_window.min(tuning.max_window);
        if wanted <= self.window {
            return None;
        }
        let delta = u64::from(wanted - self.window);
        if budget.used + delta > budget.limit {
            return None;
        }
        budget.used += delta;
        self.window = wanted;
        Some(wanted)
    }

    fn begin_epoch(&mut self, now_us: u32) {
        if self.timing != NOT_TIMING {
            // A loop being timed: from the new start, its REWIND lies in the past.
            let moved = i64::from(now_us.wrapping_sub(self.epoch_start));
            self.timing = timing(rewound_since_start(self.timing) - moved, data_arrived(self.timing));
        }
        self.epoch_start = now_us;
        self.epoch_consumed = 0;
    }

    /// Called for each DATA that arrives: the first since a REWIND that let a stalled
    /// sender go on marks the loop being timed (the sender had no credit, so this DATA
    /// left after the REWIND arrived); the next REWIND ends it.
    pub fn on_arrival(&mut self) {
        if self.timing != NOT_TIMING {
            self.timing |= 1; // see `data_arrived`
        }
    }

    /// The stream's shortest credit loop so far, µs (0: none measured).
    pub fn loop_us(&self) -> u32 {
        unpack_us(self.shortest_loop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUNE: Tuning = Tuning { max_window: 1 << 20, min_window: 0, eager: false };

    /// A stream whose credit loop measured `loop_us`.
    fn measured(loop_us: u32) -> RecvWindow {
        RecvWindow { shortest_loop: pack_us(loop_us), ..RecvWindow::default() }
    }

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
    fn a_reader_that_asks_for_a_window_gets_it_within_the_limits() {
        let mut b = WindowBudget { used: 0, limit: 2 << 20 };
        let ask = |min_window| Tuning { min_window, ..TUNE };
        let mut r = RecvWindow::default();
        r.on_data(20_000).unwrap();
        let c = r.on_consume(20_000, || 0, ask(512 << 10), &mut b);
        assert_eq!(c.window, Some(512 << 10), "with the first credit, no loop measured");
        assert_eq!(b.used, (512 << 10) - 65_536);
        r.on_data(200_000).unwrap();
        assert_eq!(r.on_consume(200_000, || 10, ask(512 << 10), &mut b).window, None, "granted once");
        // At most `max_window` (1 MiB here)…
        let mut capped = RecvWindow::default();
        capped.on_data(20_000).unwrap();
        assert_eq!(capped.on_consume(20_000, || 0, ask(4 << 20), &mut b).window, Some(1 << 20));
        // …and within the link's budget.
        let mut refused = RecvWindow::default();
        refused.on_data(20_000).unwrap();
        assert_eq!(refused.on_consume(20_000, || 0, ask(1 << 20), &mut b).window, None);
        assert_eq!(refused.window(), INITIAL_WINDOW);
        assert_eq!(b.used, (512 << 10) - 65_536 + (1 << 20) - 65_536);
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
        let mut r = measured(100);
        assert_eq!(run(&mut r, 1024, 16 << 10, 100_000, TUNE, &mut b), 256 << 10);
        assert_eq!(b.used, u64::from((256 << 10) - INITIAL_WINDOW));
        // Loops ten times as long need ten times the window: the cap stops it.
        let mut r = measured(1000);
        assert_eq!(run(&mut r, 1024, 16 << 10, 100_000, TUNE, &mut b), 1 << 20);
    }

    #[test]
    fn a_stream_held_by_its_window_on_a_long_path_doubles_it_about_once_a_loop() {
        let mut b = WindowBudget { used: 0, limit: 1 << 30 };
        let big = Tuning { max_window: 16 << 20, ..TUNE };
        let mut r = measured(40_000);
        // Every 40 ms loop brings the whole window, read a quarter at a time.
        let mut loops = 0;
        while r.window() < 16 << 20 {
            let n = r.window() - r.inflight;
            r.on_data(n).unwrap();
            for q in 0..4 {
                r.on_consume(n / 4, || loops * 40_000 + q * 10_000, big, &mut b);
            }
            loops += 1;
            assert!(loops <= 9, "64 KiB to 16 MiB is 8 doublings; {loops} loops gave {}", r.window());
        }
    }

    #[test]
    fn a_slow_reader_a_spent_budget_or_no_measured_loop_keep_the_window() {
        let mut b = WindowBudget { used: 0, limit: 1 << 30 };
        // 32 KiB every 5 ms.
        let mut slow = measured(100);
        assert_eq!(run(&mut slow, 1, 32 << 10, 1_000_000, TUNE, &mut b), INITIAL_WINDOW);
        let mut unmeasured = RecvWindow::default();
        assert_eq!(run(&mut unmeasured, 1024, 16 << 10, 100_000, TUNE, &mut b), INITIAL_WINDOW);
        let mut spent = WindowBudget { used: 0, limit: 100 << 10 };
        let mut fast = measured(100);
        assert_eq!(run(&mut fast, 1024, 16 << 10, 100_000, TUNE, &mut spent), 128 << 10, "one doubling fits");
        assert_eq!(fast.extra(), 64 << 10);
    }

    #[test]
    fn a_reader_that_consumes_in_bursts_is_measured_over_the_epoch() {
        // A window's worth every 4 ms, read in four quick reads: 16 bytes per µs, 1.6 KB
        // per 100 µs loop. The reads alone would look like an endless rate.
        let mut b = WindowBudget { used: 0, limit: 1 << 30 };
        let mut r = measured(100);
        for i in 0..100u32 {
            r.on_data(r.window - r.inflight).unwrap();
            for k in 0..4 {
                r.on_consume(INITIAL_WINDOW / 4, || i * 4000 + k, TUNE, &mut b);
            }
        }
        assert_eq!(r.window(), INITIAL_WINDOW);
    }

    #[test]
    fn loops_pack_into_16_bits() {
        for us in [0, 1, 70, 4095] {
            assert_eq!(unpack_us(pack_us(us)), us, "exact below 4,096 µs");
        }
        for us in [4096, 4097, 150_000, 600_000, 9_999_999, 134_000_000] {
            let back = unpack_us(pack_us(us));
            assert!(back <= us && us - back <= us / 2048, "{us} µs came back as {back}");
        }
        assert_eq!(unpack_us(pack_us(u32::MAX)), 4095 << 15);
    }

    #[test]
    fn a_loop_runs_from_a_rewind_to_a_stalled_sender_to_the_rewind_after_its_data() {
        let mut b = WindowBudget::default();
        let mut r = RecvWindow::default();
        // The sender sent its whole window: the REWIND at 1 ms lets it go on.
        r.on_data(65_536).unwrap();
        assert_eq!(r.on_consume(65_536, || 1000, TUNE, &mut b).rewind, Some(65_536));
        // Its DATA arrives, the reader takes a quarter: REWIND at 1.3 ms.
        r.on_data(65_536).unwrap();
        r.on_arrival();
        r.on_consume(16_384, || 1300, TUNE, &mut b);
        assert_eq!(r.loop_us(), 300);
        // That REWIND found the sender stalled again: the next loop takes 100 µs.
        r.on_data(16_384).unwrap();
        r.on_arrival();
        r.on_consume(16_384, || 1400, TUNE, &mut b);
        assert_eq!(r.loop_us(), 100);
        // A REWIND before any DATA came does not end a loop; a longer loop leaves the
        // shortest.
        r.on_consume(16_384, || 1500, TUNE, &mut b);
        r.on_data(16_384).unwrap();
        r.on_arrival();
        r.on_consume(16_384, || 2000, TUNE, &mut b);
        assert_eq!(r.loop_us(), 100);
        // A sender with credit left was not waiting for the REWIND: nothing is timed.
        let mut r = RecvWindow::default();
        r.on_data(30_000).unwrap();
        assert!(r.on_consume(30_000, || 0, TUNE, &mut b).rewind.is_some());
        r.on_data(30_000).unwrap();
        r.on_arrival();
        r.on_consume(30_000, || 10, TUNE, &mut b);
        assert_eq!(r.loop_us(), 0);
    }

    #[test]
    fn a_long_loop_is_timed_exactly_and_across_epochs() {
        let mut b = WindowBudget::default();
        let mut r = RecvWindow::default();
        // The first epoch opens with a REWIND to a sender that still had credit.
        r.on_data(32_768).unwrap();
        r.on_consume(16_384, || 0, TUNE, &mut b);
        // 60 ms later, one to a stalled sender; the REWIND after its DATA 290 ms later.
        r.on_data(49_152).unwrap();
        r.on_consume(65_536, || 60_000, TUNE, &mut b);
        r.on_data(16_384).unwrap();
        r.on_arrival();
        r.on_consume(16_384, || 350_000, TUNE, &mut b);
        let loop_us = r.loop_us();
        assert!(loop_us <= 290_000 && 290_000 - loop_us <= 290_000 / 2048, "{loop_us}");

        // A stalled sender's REWIND, then an epoch that begins before its DATA comes.
        let mut r = measured(10_000);
        r.on_data(32_768).unwrap();
        r.on_consume(16_384, || 0, TUNE, &mut b);
        r.on_data(49_152).unwrap();
        r.on_consume(16_384, || 7_000, TUNE, &mut b);
        r.on_consume(16_384, || 8_000, TUNE, &mut b);
        assert_eq!(r.epoch_start, 8_000, "a new epoch");
        r.on_data(16_384).unwrap();
        r.on_arrival();
        r.on_consume(16_384, || 9_000, TUNE, &mut b);
        assert_eq!(r.loop_us(), 2_000, "timed from the REWIND at 7 ms");
    }

    #[test]
    fn discard_counts_against_window() {
        let mut r = RecvWindow::default();
        r.on_discard(65_536).unwrap();
        assert_eq!(r.buffered(), 0);
        assert!(r.on_discard(1).is_err());
    }
}
