//! Slice headers and decode times: the input is an SPS and a PPS (each a length byte then that
//! many bytes), then access units, each a flags byte (bit 0: keyframe, bit 1: H.265), a signed
//! presentation step in milliseconds and a length-prefixed first slice. The slices go through
//! `PictureOrder` and the times through `DtsExtractor`: decode times never go back but on a
//! restarted time line.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::picture_order(data));
