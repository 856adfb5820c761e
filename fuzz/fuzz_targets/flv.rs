//! FLV: media tag classification and codec parsing of arbitrary payloads, and the FLV file
//! reader.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::flv(data));
