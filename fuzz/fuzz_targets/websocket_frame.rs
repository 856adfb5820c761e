//! A WebSocket client's bytes as the HTTP-FLV session decodes them, fed in pieces whose size
//! the first byte picks. Never takes more bytes than given, and an incomplete frame decodes
//! the same once the rest arrives.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::websocket_frame(data));
