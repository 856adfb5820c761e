//! A compound RTCP packet as a peer sends it (over UDP or interleaved): every packet found
//! lies inside the input, and together they cover it.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::rtcp(data));
