//! The AAC-hbr depacketizer alone; the first byte picks the AudioSpecificConfig's sample rate
//! index and channels, so AU headers of several configurations are read.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::rtp_aac(data));
