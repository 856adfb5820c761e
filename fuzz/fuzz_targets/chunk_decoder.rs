//! The RTMP chunk decoder alone, fed in pieces whose size the first byte picks; the second
//! byte sets the peer's chunk size. Never claims more bytes than given.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::chunk_decoder(data));
