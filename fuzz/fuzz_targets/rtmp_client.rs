//! The client-side RTMP state machine (what ringcast-load runs against a server): a simple
//! S0S1S2, then the fuzzer's bytes as the server's chunk stream, fed in pieces whose size the
//! first byte picks; its low two bits pick play, publish or connect only.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::rtmp_client(data));
