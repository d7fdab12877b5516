//! Arbitrary bytes through the frame decoder, fed in arbitrary chunks: it never panics,
//! and every frame it accepts re-encodes to exactly the bytes it was decoded from.
#![no_main]

use astranet::proto::{Decoder, HEADER_LEN, MAX_PAYLOAD};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let decoder = Decoder::new(MAX_PAYLOAD as u32);
    let mut buf = BytesMut::new();
    let mut consumed = 0;
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let mut again = BytesMut::new();
                    frame.encode(&mut again);
                    let len = HEADER_LEN + frame.payload.len();
                    assert_eq!(&again[..], &data[consumed..consumed + len]);
                    consumed += len;
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
