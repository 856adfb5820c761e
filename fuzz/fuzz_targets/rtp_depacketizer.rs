//! Every RTP depacketizer (H.264, H.265, AAC-hbr, G.711) fed the same packets.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::rtp_depacketizer(data));
