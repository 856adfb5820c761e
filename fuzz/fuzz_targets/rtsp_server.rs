//! The server-side RTSP state machine: the fuzzer's bytes as what a client sends (requests,
//! interleaved frames, garbage), fed in pieces whose size the first byte picks. Every request
//! is accepted (DESCRIBE with a fixed H.264 + AAC description), so SETUP, PLAY and RECORD
//! paths are reached too.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::rtsp_server(data));
