//! The config file: arbitrary text as TOML, merged over the defaults and validated. An error
//! is one line (it names the key), never a panic.
//!
//! The entry is shared with the stable replay of kept inputs (`tests/fuzz_regressions.rs`).
#![no_main]

#[path = "../entries.rs"]
mod entries;

libfuzzer_sys::fuzz_target!(|data: &[u8]| entries::config(data));
