//! RTSP's header parsers on client text: the input is three length-prefixed fields, a
//! `Transport` value, a request URL and an `Authorization` value, then a request buffer for
//! the framing check. A Digest that parses is verified (the constant-time compare), and a
//! request `check` frames lies inside the buffer.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::rtsp_headers(data));
