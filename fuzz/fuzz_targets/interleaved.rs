//! RTSP's interleaved framing as the RTSP session splits its input: frames at the front, each
//! packet handed on as RTP or RTCP by its channel's parity. A frame's header never claims
//! bytes it has not got, and what it says round-trips through `header`.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::interleaved(data));
