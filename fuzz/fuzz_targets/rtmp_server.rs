//! The whole server-side RTMP state machine: a valid simple handshake, then the fuzzer's
//! bytes as the chunk stream, fed in pieces whose size the first byte picks. Every request is
//! accepted, so publish and play paths are reached too. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::rtmp::handshake::SEED_LEN;
use ringcast::protocol::rtmp::server::{Event, ServerConnection, ServerSettings};

fuzz_target!(|data: &[u8]| {
    let Some((&piece, stream)) = data.split_first() else { return };
    let piece = usize::from(piece).max(1);
    let mut conn = ServerConnection::new(ServerSettings::default(), [7; SEED_LEN], 0);
    let mut out = Vec::new();
    // C0 (version 3), C1 and C2 of a simple handshake: zero time, zero version, any random.
    let mut handshake = vec![3u8];
    handshake.resize(1 + 2 * 1536, 0);
    if conn.handle_input(&handshake).is_err() {
        return;
    }
    for chunk in stream.chunks(piece) {
        if conn.handle_input(chunk).is_err() {
            return;
        }
        while let Some(event) = conn.poll_event() {
            if matches!(event, Event::Connect(_) | Event::Publish(_) | Event::Play(_)) {
                conn.accept();
            }
        }
        out.clear();
        conn.poll_transmit(&mut out);
    }
});
