//! The client-side RTSP state machine (a camera pull): the fuzzer's bytes as what a camera
//! sends, fed in pieces whose size the first byte picks, the clock moving at each piece.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::rtsp_client(data));
