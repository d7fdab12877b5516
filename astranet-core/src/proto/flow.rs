//! Per-stream flow-control accounting (v1 semantics, plus receive-window auto-tuning).
//!
//! A sender may have at most `window` unacknowledged bytes in flight. The receiver hands
//! credit back with REWIND(n) once the application consumed n bytes, and may change the
//! window itself with WND_SIZE(w). Both directions start at [`INITIAL_WINDOW`].

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
    /// A window grows when half of it is consumed within this many microseconds
    /// (about two round trips of the link, with a floor).
    pub horizon_us: u32,
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
}

impl Default for RecvWindow {
    fn default() -> Self {
        RecvWindow { window: INITIAL_WINDOW, inflight: 0, buffered: 0, epoch_start: 0, epoch_consumed: NO_EPOCH }
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
    /// doubled window when half the window was consumed within the tuning horizon.
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
        self.inflight -= unacked;
        let now_us = now_us();

        let elapsed = now_us.wrapping_sub(self.epoch_start);
        if self.epoch_consumed == NO_EPOCH || elapsed > tuning.horizon_us {
            // This REWIND opens a measurement epoch; consumption after it counts.
            self.epoch_start = now_us;
            self.epoch_consumed = 0;
            return credit;
        }
        self.epoch_consumed = self.epoch_consumed.saturating_add(unacked);
        if self.epoch_consumed >= self.window / 2 && self.window < tuning.max_window {
            let grown = self.window.saturating_mul(2).min(tuning.max_window);
            let delta = u64::from(grown - self.window);
            if budget.used + delta <= budget.limit {
                budget.used += delta;
                self.window = grown;
                credit.window = Some(grown);
            }
            self.epoch_start = now_us;
            self.epoch_consumed = 0;
        }
        credit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUNE: Tuning = Tuning { max_window: 1 << 20, horizon_us: 1000, eager: false };

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

    #[test]
    fn fast_reader_grows_within_budget_slow_reader_does_not() {
        let mut b = WindowBudget { used: 0, limit: 1 << 20 };
        let mut fast = RecvWindow::default();
        let mut t = 0;
        let mut windows = vec![];
        for _ in 0..64 {
            let w = fast.window();
            fast.on_data(w / 2).unwrap();
            t += 10;
            if let Some(w) = fast.on_consume(w / 2, || t, TUNE, &mut b).window {
                windows.push(w);
            }
        }
        assert_eq!(windows.first(), Some(&131_072));
        assert_eq!(fast.window(), 1 << 20);
        assert_eq!(b.used, u64::from((1u32 << 20) - INITIAL_WINDOW));

        let mut slow = RecvWindow::default();
        for i in 0..64 {
            slow.on_data(32_768).unwrap();
            let c = slow.on_consume(32_768, || i * 5000, TUNE, &mut b);
            assert_eq!(c.window, None);
        }
    }

    #[test]
    fn discard_counts_against_window() {
        let mut r = RecvWindow::default();
        r.on_discard(65_536).unwrap();
        assert_eq!(r.buffered(), 0);
        assert!(r.on_discard(1).is_err());
    }
}
