//! Bytes real encoders wrote, shared by the unit tests of `codec` and `flv`.

/// Bytes from a hex dump; whitespace and line breaks are ignored.
pub(crate) fn hex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("ascii");
            u8::from_str_radix(pair, 16).expect("hex digit pair")
        })
        .collect()
}

/// A small deterministic generator, so the tests that mutate fixtures need no extra crate.
pub(crate) fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Length of the legacy FLV video tag header (frame type/codec, AVCPacketType, CompositionTime)
/// before the `AVCDecoderConfigurationRecord` in the `AVC_*` bodies.
pub(crate) const FLV_AVC_HEADER_LEN: usize = 5;

// Sequence-header tag bodies as ffmpeg 5.1 + libx264 write them to FLV
// (`ffmpeg -f lavfi -i testsrc=size=WxH:rate=30 -t 1 -pix_fmt yuv420p -c:v libx264 -f flv`),
// cut from the files byte for byte.
pub(crate) const AVC_720P_HIGH: &str =
    "17000000000164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f800";
pub(crate) const AVC_240P_BASELINE: &str =
    "17000000000142c00dffe100186742c00dd90141fb0110000003001000000303c0f142a48001000568cb83cb20";
/// 1920x1080 is coded as 1088 rows and cropped by 8.
pub(crate) const AVC_1080P_MAIN: &str =
    "1700000000014d4028ffe1001a674d4028eca03c0113f2e022000003000200000300781e30632c01000568ebe3cb20";
/// 720x576 interlaced (`-flags +ildct+ilme`): frame_mbs_only_flag = 0.
pub(crate) const AVC_576I_HIGH: &str =
    "17000000000164001effe100186764001eacd940b424d8088000000300800000190f8a14cb01000668fba3cb22c0fdf8f800";
/// 426x240: coded 432 wide, cropped by 6 columns (3 chroma units at 4:2:0).
pub(crate) const AVC_426X240_HIGH: &str =
    "170000000001640015ffe1001a67640015acd941b1fe4f0110000003001000000303c0f162d96001000668ebe3cb22c0fdf8f800";
/// 426x240 at 4:4:4 (`-pix_fmt yuv444p`): crop unit of 1, scaling-matrix profile path.
pub(crate) const AVC_426X240_444: &str =
    "170000000001f40015ffe1001a67f40015919b28363fcfe022000003000200000300781e2c5b2c01000668ebe3c44844fff8f800";

// hvcC records written by ffmpeg 5.1 + libx265 into MP4, with the SEI array dropped.
pub(crate) const HVCC_720P_MAIN: &str = "0101600000009000000000005df000fcfdf8f800000f03a00001001840010c01ffff01600000030090000003000003005d959809a10001002b42010101600000030090000003000003005da00280802d165959a4932bc05a020000030002000003003c10a2000100074401c172b46240";
pub(crate) const HVCC_1080P_MAIN10: &str = "01022000000090000000000078f000fcfdfafa00000f03200001001840010c01ffff022000000300900000030000030078959809210001002c420101022000000300900000030000030078a003c08010e4d96566924caf016808000003000800000300f04022000100074401c172b46240";
/// 426x240: coded 432 wide with a conformance window.
pub(crate) const HVCC_426X240_MAIN: &str = "0101600000009000000000003cf000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003003c959809210001002b42010101600000030090000003000003003ca00d880f1c9e5959a4932bc05a020000030002000003003c1022000100074401c172b46240";

/// The AAC sequence-header tag body ffmpeg 5.1's `aac` encoder writes to FLV for 48 kHz stereo
/// (`-f lavfi -i sine=sample_rate=48000 -ac 2 -c:a aac -f flv`): flags, AACPacketType 0, then
/// an LC `AudioSpecificConfig` with the backward-compatible SBR extension saying "no SBR".
pub(crate) const AAC_48K_STEREO_LC: &str = "af00119056e500";
