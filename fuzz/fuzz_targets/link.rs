//! A whole link driven by arbitrary bytes from its peer, after a valid handshake (v1 or
//! with extensions), with every dial accepted and every stream echoing, and time moving
//! on: the state machine never panics, its accounting stays within its limits, and
//! its next deadline is always in the future after it handled the present. No runtime
//! and no socket: the link is the sans-I/O `proto::link::Link`.
#![no_main]

use astranet::proto::link::{Batch, Event, Link, LinkConfig, StreamId};
use astranet::proto::{Command, Handshake, Header};
use astranet::HostId;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

/// The node's host id; inputs address stream frames to it (dst host 1, src host 2).
const NODE: u64 = 1;
const PEER: u64 = 2;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, input)) = data.split_first() else { return };
    let start = Instant::now();
    let cfg = LinkConfig { max_stream_window: 1 << 20, max_streams: 256, ..LinkConfig::default() };
    let mut link = Link::new(HostId(NODE), cfg, String::new(), start, Default::default());
    let hs = if flags & 1 == 1 { Handshake::ours(String::new()) } else { Handshake::default() };
    let payload = hs.encode();
    let mut buf = BytesMut::new();
    Header { cmd: Command::Handshake, dst_host: 0, src_host: PEER, dst_port: 0, src_port: 0, len: payload.len() as u32 }
        .put(&mut buf);
    buf.extend_from_slice(&payload);
    let waker = Waker::noop();
    let mut wakers = Vec::new();
    let mut streams: Vec<StreamId> = Vec::new();
    let mut batch = Batch::default();
    let mut now = start;
    // The peer's bytes arrive in chunks whose sizes the input's first byte chooses.
    let chunk = 1 + (flags as usize >> 1) * 7;
    for piece in std::iter::once(&[][..]).chain(input.chunks(chunk)) {
        buf.extend_from_slice(piece);
        now += Duration::from_millis(u64::from(flags % 7) * 3);
        if link.handle_input(now, &mut buf, &mut wakers).is_err() {
            break;
        }
        while let Some(event) = link.poll_event() {
            if let Event::Dial(key) = event {
                if let Ok(id) = link.accept_stream(key, now) {
                    streams.push(id);
                }
            }
        }
        // Every stream echoes what it can.
        for &id in &streams {
            let mut echo = Vec::new();
            if let Poll::Ready(Ok(n)) = link.poll_read(id, waker, 4096, 0, |c| echo.extend_from_slice(c), now) {
                if n > 0 {
                    let _ = link.poll_write(id, waker, &echo, None, now);
                }
            }
        }
        let _ = link.poll_transmit(&mut batch, &mut wakers);
        let written = batch.len();
        batch.clear();
        link.on_written(now, written);
        link.handle_timeout(now, &mut wakers);
        if let Some(next) = link.poll_timeout() {
            assert!(next > now || link.close_reason().is_some(), "a deadline stays due after it was handled");
        }
        wakers.clear();
    }
    // Time runs out: the link closes by itself, and streams can still be released.
    for _ in 0..3 {
        now += Duration::from_secs(60);
        link.handle_timeout(now, &mut wakers);
    }
    for id in streams {
        link.release(id, now);
    }
    assert!(link.close_reason().is_some(), "a silent peer's link is closed by its timers");
});
