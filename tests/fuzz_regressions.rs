//! Replays every input kept in `tests/fuzz_regressions/<target>/` (the crashes fuzzing found,
//! kept by `scripts/fuzz.sh`) through the same entry point its cargo-fuzz target runs
//! (`fuzz/entries.rs`), on stable, so CI runs them. Each target's directory may be empty.

mod common;
#[path = "../fuzz/entries.rs"]
mod entries;

use std::panic;
use std::path::{Path, PathBuf};

fn regressions() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions")
}

/// Every kept input of `target`, sorted so a failure names the same file each time.
fn kept_inputs(target: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir(regressions().join(target)) else { return Vec::new() };
    let mut inputs: Vec<PathBuf> =
        dir.map(|entry| entry.expect("a readable directory entry").path()).filter(|path| path.is_file()).collect();
    inputs.sort();
    inputs
}

#[test]
fn every_kept_input_runs_through_its_target_without_a_panic() {
    let mut failed = Vec::new();
    let mut replayed = 0;
    for (target, entry) in entries::ENTRIES {
        for input in kept_inputs(target) {
            let data = std::fs::read(&input).expect("a readable input");
            replayed += 1;
            if panic::catch_unwind(|| entry(&data)).is_err() {
                failed.push(input.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "{} of {replayed} kept inputs panic: {failed:#?}", failed.len());
}

/// Every entry on the inputs a fuzzer starts from (empty, each single byte) and on pseudo-random
/// buffers up to 4 KiB, so each entry runs here even while no crash is kept for it.
#[test]
fn every_entry_takes_short_and_random_inputs() {
    let mut inputs: Vec<Vec<u8>> = vec![Vec::new()];
    inputs.extend((0..=255u8).map(|byte| vec![byte]));
    inputs.extend((1..=64u64).map(|seed| common::pseudo_random_bytes(seed, (seed as usize * 997) % 4096)));
    for (target, entry) in entries::ENTRIES {
        for input in &inputs {
            let outcome = panic::catch_unwind(|| entry(input));
            assert!(
                outcome.is_ok(),
                "{target} panics on {} bytes: {:02x?}",
                input.len(),
                &input[..input.len().min(64)]
            );
        }
    }
}

/// A directory named for no target would be silently skipped: its inputs would never run.
#[test]
fn every_regression_directory_names_a_target() {
    let names: Vec<&str> = entries::ENTRIES.iter().map(|(name, _)| *name).collect();
    for dir in std::fs::read_dir(regressions()).expect("tests/fuzz_regressions exists") {
        let dir = dir.expect("a readable directory entry");
        if dir.path().is_dir() {
            let name = dir.file_name().to_string_lossy().into_owned();
            assert!(names.contains(&name.as_str()), "tests/fuzz_regressions/{name} names no entry in fuzz/entries.rs");
        }
    }
}

/// The replay covers exactly the cargo-fuzz binaries: a target added to `fuzz/Cargo.toml`
/// without an entry here (or the other way round) would fuzz what CI never replays.
#[test]
fn the_entries_are_the_fuzz_targets() {
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
        .expect("fuzz/Cargo.toml");
    let mut binaries: Vec<&str> = manifest
        .split("[[bin]]")
        .skip(1)
        .filter_map(|bin| bin.lines().find_map(|line| line.strip_prefix("name = \"")?.strip_suffix('"')))
        .collect();
    binaries.sort_unstable();
    let mut names: Vec<&str> = entries::ENTRIES.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    assert_eq!(binaries, names);
    for name in names {
        let target = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("fuzz/fuzz_targets/{name}.rs"));
        let source = std::fs::read_to_string(&target).expect("each target has its file");
        assert!(source.contains(&format!("entries::{name}(data)")), "{} runs another entry", target.display());
    }
}
