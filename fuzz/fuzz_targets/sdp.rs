//! SDP as an ANNOUNCE carries it, parsed from arbitrary bytes: the tracks of a description that
//! parses describe themselves again (built and re-parsed) as the same tracks.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::sdp(data));
