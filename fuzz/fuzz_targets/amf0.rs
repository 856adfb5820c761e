//! AMF0 decoding of arbitrary bytes (commands and metadata come from clients). Must never
//! panic or recurse without bound.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::amf0(data));
