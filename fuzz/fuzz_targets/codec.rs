//! Codec configuration records (AVC and HEVC decoder configuration with their SPS, AAC
//! `AudioSpecificConfig`) parsed from arbitrary bytes: never a panic, and a record that parses
//! is written back to bytes that parse to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::codec::{AacConfig, AvcDecoderConfig, Codec, CodecInfo, H264Sps, HevcDecoderConfig, HevcSps};

fuzz_target!(|data: &[u8]| {
    if let Ok(config) = AvcDecoderConfig::parse(data) {
        let mut written = Vec::new();
        config.write(&mut written);
        assert_eq!(AvcDecoderConfig::parse(&written).as_ref(), Ok(&config));
    }
    if let Ok(config) = HevcDecoderConfig::parse(data) {
        let mut written = Vec::new();
        config.write(&mut written);
        assert_eq!(HevcDecoderConfig::parse(&written).as_ref(), Ok(&config));
    }
    let _ = H264Sps::parse(data);
    let _ = HevcSps::parse(data);
    let _ = AacConfig::parse(data);
    for codec in [Codec::H264, Codec::Hevc, Codec::Av1, Codec::Vp9] {
        let _ = CodecInfo::from_video_config(codec, data);
    }
    for codec in [Codec::Aac, Codec::Opus] {
        let _ = CodecInfo::from_audio_config(codec, data);
    }
    let _ = CodecInfo::from_audio_frame(Codec::Mp3, data);
});
