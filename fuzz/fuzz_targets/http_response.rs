//! A hook endpoint's reply as the callback client reads it, fed in pieces whose size the first
//! byte picks. Never claims more bytes than given.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::http_response(data));
