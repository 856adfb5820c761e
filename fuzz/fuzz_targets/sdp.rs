//! SDP as an ANNOUNCE carries it, parsed from arbitrary bytes: never a panic, and the tracks
//! of a description that parses describe themselves again (built and re-parsed) as the same
//! tracks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::sdp;

fuzz_target!(|data: &[u8]| {
    let Ok(announced) = sdp::parse(data) else { return };
    for track in &announced.tracks {
        let _ = track.codec.sequence_header();
    }
    let built = sdp::build(&announced.tracks, "fuzz", 1, "127.0.0.1");
    let again = sdp::parse(built.as_bytes()).expect("a built description parses");
    assert_eq!(again.tracks.len(), announced.tracks.len());
});
