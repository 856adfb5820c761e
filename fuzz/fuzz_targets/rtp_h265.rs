//! The H.265 depacketizer alone (single NAL units, aggregation packets, fragmentation units).
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::rtp_h265(data));
