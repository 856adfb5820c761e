//! Both RTMP handshakes on hostile input. The first byte splits reads (its low 7 bits) and
//! picks the client's digest scheme. Then: the server fed the bytes as C0C1C2; the client fed
//! them as S0S1S2; and the server fed a real digest C0C1 (each scheme) followed by the bytes
//! as C2. Never a panic, never more bytes claimed than given.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::handshake(data));
