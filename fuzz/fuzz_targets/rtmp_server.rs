//! The whole server-side RTMP state machine: a valid simple handshake, then the fuzzer's
//! bytes as the chunk stream, fed in pieces whose size the first byte picks. Every request is
//! accepted, so publish and play paths are reached too.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::rtmp_server(data));
