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
    let min_window = if first & 8 == 0 { 0 } else { 1 << 20 };
    let tuning = Tuning { max_window: 1 << 22, min_window, eager: first & 4 == 0 };
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
                let n = (arg as usize).min(s.recv.window.buffered() as usize);
                s.recv.read(n, |_| {}, || now, tuning, &mut budget);
            }
            4 => {
                let n = arg.min(s.write_credit());
                s.send.on_send(n);
            }
            5 => {
                s.close_window_over();
            }
            6 => {
                s.take_owed_fins();
            }
            code => {
                if let Some(cmd) = Command::from_u8(code).filter(|c| c.is_stream_frame()) {
                    let arg = if cmd == Command::Data { arg % 70_000 } else { arg };
                    if let Ok(fx) = s.on_frame(cmd, arg) {
                        if fx.keep_data {
                            s.recv.push(bytes::Bytes::from(vec![0u8; arg as usize]));
                        }
                    }
                }
            }
        }
        assert!(s.recv.window.buffered() <= s.recv.window.window());
        assert!(budget.used <= budget.limit);
    }
});
