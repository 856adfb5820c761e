//! Every RTP depacketizer (H.264, H.265, AAC-hbr, G.711) fed the same packets: the input is a
//! sequence of packets, each a length byte then that many bytes, parsed as RTP (the parser is
//! fuzzed too) and handed to each. Never a panic, and no frame beyond the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::rtp::codec::AacTrack;
use ringcast::protocol::rtp::{Depacketizer, RtpCodec, RtpPacket};

const MAX_FRAME: usize = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut codecs = vec![RtpCodec::H264 { config: None }, RtpCodec::H265 { config: None }, RtpCodec::Pcma { channels: 1 }];
    if let Ok(aac) = AacTrack::from_config(&[0x11, 0x90]) {
        codecs.push(RtpCodec::Aac(aac));
    }
    let mut depacketizers: Vec<Depacketizer> = codecs.iter().map(|codec| Depacketizer::new(codec, MAX_FRAME)).collect();
    let mut frames = Vec::new();
    let mut rest = data;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (packet, tail) = tail.split_at(len);
        rest = tail;
        let Ok(packet) = RtpPacket::parse(packet) else { continue };
        for depacketizer in &mut depacketizers {
            frames.clear();
            let _ = depacketizer.depacketize(&packet, &mut frames);
            assert!(frames.iter().all(|frame| frame.body.len() <= MAX_FRAME + 16));
        }
    }
});
