//! Codec configuration records (AVC and HEVC decoder configuration with their SPS, AAC
//! `AudioSpecificConfig`, and through `CodecInfo` the AV1, VP9, Opus and MPEG audio headers):
//! a record that parses is written back to bytes that parse to the same record.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::codec(data));
