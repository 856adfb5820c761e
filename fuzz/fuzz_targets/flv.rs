//! FLV: media tag classification and codec parsing (sequence headers, SPS, ASC, HEVC records)
//! of arbitrary payloads, and the FLV file reader. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringcast::protocol::flv::{self, FlvReader, MediaKind};

fuzz_target!(|data: &[u8]| {
    for kind in [MediaKind::Audio, MediaKind::Video, MediaKind::Data] {
        let _ = flv::classify(kind, data);
        let _ = flv::parse_codec_info(kind, data);
    }
    let mut reader = FlvReader::new();
    let mut rest = data;
    while let Ok(Some(_)) = reader.read_tag(&mut rest) {}
});
