//! A player's request head as the HTTP-FLV session reads it: the cheap end-of-head scan, then
//! the parse, then the stream path. A head `check` accepts is within the size limit, and its
//! length never exceeds the input.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::http_request(data));
