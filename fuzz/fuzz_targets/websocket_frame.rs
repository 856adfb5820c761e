//! A WebSocket client's bytes as the HTTP-FLV session decodes them, fed in pieces whose size
//! the first byte picks. Must never panic, never take more bytes than given, and an incomplete
//! frame must decode the same once the rest arrives.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::websocket::{self, FrameError};

fuzz_target!(|data: &[u8]| {
    let Some((&piece, wire)) = data.split_first() else { return };
    let mut pending = Vec::new();
    for chunk in wire.chunks(usize::from(piece).max(1)) {
        pending.extend_from_slice(chunk);
        loop {
            match websocket::decode(&pending) {
                Ok((_, used)) => {
                    assert!(used > 0 && used <= pending.len());
                    pending.drain(..used);
                }
                Err(FrameError::Incomplete) => break,
                Err(_) => return,
            }
        }
    }
});
