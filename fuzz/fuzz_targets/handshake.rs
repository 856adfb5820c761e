//! Both RTMP handshakes on hostile input. The first byte's low 7 bits split reads and its top
//! bit picks the digest scheme. Then: the server fed the bytes as C0C1C2; a digest client fed
//! them as S0S1S2; and the server fed a real digest C0C1 of that scheme followed by the bytes
//! as C2. Never a panic, never more bytes claimed than given.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::handshake(data));
