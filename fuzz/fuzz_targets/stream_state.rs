//! Arbitrary sequences of incoming frames and local operations through the stream state
//! machine and its flow-control accounting: no panic, and the windows stay consistent.
#![no_main]

use astranet::proto::{Command, StreamState, Tuning, WindowBudget};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, ops)) = data.split_first() else { return };
    let mut s =
        if first & 1 == 0 { StreamState::dialing(first & 2 == 0) } else { StreamState::accepted(first & 2 == 0) };
    let mut budget = WindowBudget { used: 0, limit: 1 << 24 };
    let tuning = Tuning { max_window: 1 << 22, horizon_us: 1000 };
    let mut now = 0u32;
    for op in ops.chunks_exact(5) {
        let arg = u32::from_be_bytes([op[1], op[2], op[3], op[4]]);
        now = now.wrapping_add(arg % 4096);
        match op[0] {
            0 => {
                s.shutdown_write();
            }
            1 => {
                s.shutdown_read();
            }
            2 => {
                s.abort();
            }
            3 => {
                let n = arg.min(s.recv.buffered());
                s.recv.on_consume(n, || now, tuning, &mut budget);
            }
            4 => {
                let n = arg.min(s.write_credit());
                s.send.on_send(n);
            }
            code => {
                if let Some(cmd) = Command::from_u8(code).filter(|c| c.is_stream_frame()) {
                    let arg = if cmd == Command::Data { arg % 70_000 } else { arg };
                    let _ = s.on_frame(cmd, arg);
                }
            }
        }
        assert!(s.recv.buffered() <= s.recv.window());
        assert!(budget.used <= budget.limit);
    }
});
