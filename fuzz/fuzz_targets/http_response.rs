//! A hook endpoint's reply as the callback client reads it, fed in pieces whose size the first
//! byte picks. Must never panic, and never claim more bytes than given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::http::ResponseReader;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, wire)) = data.split_first() else { return };
    let mut reader = ResponseReader::new(if piece & 1 == 0 { "POST" } else { "HEAD" });
    let mut pending = Vec::new();
    for chunk in wire.chunks(usize::from(piece).max(1)) {
        pending.extend_from_slice(chunk);
        match reader.handle_input(&pending) {
            Ok(used) => {
                assert!(used <= pending.len());
                pending.drain(..used);
            }
            Err(_) => return,
        }
        if reader.response().is_some() {
            return;
        }
    }
    let _ = reader.handle_eof();
});
