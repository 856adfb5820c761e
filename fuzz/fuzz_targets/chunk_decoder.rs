//! The RTMP chunk decoder alone, fed in pieces whose size the first byte picks; the second
//! byte sets the peer's chunk size. Must never panic, and never claim more bytes than given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::rtmp::chunk::ChunkDecoder;

fuzz_target!(|data: &[u8]| {
    let [piece, size, stream @ ..] = data else { return };
    let mut decoder = ChunkDecoder::new();
    let _ = decoder.set_chunk_size(u32::from(*size).max(1) * 64);
    let mut pending = Vec::new();
    for chunk in stream.chunks(usize::from(*piece).max(1)) {
        pending.extend_from_slice(chunk);
        loop {
            match decoder.decode(&pending) {
                Ok((used, message)) => {
                    assert!(used <= pending.len());
                    pending.drain(..used);
                    if message.is_none() && used == 0 {
                        break;
                    }
                }
                Err(_) => return,
            }
        }
    }
});
