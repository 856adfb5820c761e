//! AAC: the `AudioSpecificConfig` (ISO/IEC 14496-3, 1.6.2.1), its object type, sample rate
//! and channels, and the SBR/PS extensions that change both.

use super::bits::BitReader;
use super::{CodecError, malformed};

/// What an AAC `AudioSpecificConfig` says. The config's bytes themselves are the payload of an
/// AAC sequence header (FLV, RTMP), the `DecoderSpecificInfo` of an MP4 `esds`, and RFC 3640's
/// `config=` hex-encoded: a caller keeps the bytes it parsed, this keeps what they mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// The signalled audio object type: 2 for LC, 5 for SBR (HE-AAC), 29 for PS (HE-AACv2)...
    pub object_type: u8,
    /// Output sample rate: for HE-AAC the SBR rate, twice the core's.
    pub sample_rate: u32,
    /// Output channels; 0 when the layout is in a program config element this does not parse.
    /// Parametric stereo decodes to 2 channels from a mono core.
    pub channels: u8,
    /// Spectral band replication is present (explicitly or by backward-compatible signalling).
    pub sbr: bool,
    /// Parametric stereo is present.
    pub ps: bool,
}

const AOT_SBR: u32 = 5;
const AOT_PS: u32 = 29;
/// `syncExtensionType` values of backward-compatible SBR/PS signalling (14496-3, 1.6.5.2).
const SYNC_EXTENSION_SBR: u32 = 0x2b7;
const SYNC_EXTENSION_PS: u32 = 0x548;

impl AacConfig {
    const WHAT: &'static str = "AudioSpecificConfig";
    const SAMPLE_RATES: [u32; 13] =
        [96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000, 7_350];

    pub fn parse(asc: &[u8]) -> Result<Self, CodecError> {
        let mut bits = BitReader::new(asc, malformed(Self::WHAT, "truncated"));
        let mut object_type = read_audio_object_type(&mut bits)?;
        let signalled_object_type = object_type;
        let core_rate = Self::read_sample_rate(&mut bits)?;
        let channel_config = bits.bits(4)?;
        let mut sample_rate = core_rate;
        let mut sbr = false;
        let mut ps = false;
        if object_type == AOT_SBR || object_type == AOT_PS {
            // Explicit hierarchical signalling: the extension rate, then the core object type.
            sbr = true;
            ps = object_type == AOT_PS;
            sample_rate = Self::read_sample_rate(&mut bits)?;
            object_type = read_audio_object_type(&mut bits)?;
        }
        if !sbr
            && channel_config != 0
            && let Some(extension) = Self::backward_compatible_extension(&mut bits, object_type)
        {
            sbr = extension.sbr;
            ps = extension.ps;
            if let Some(rate) = extension.sample_rate {
                sample_rate = rate;
            }
        }
        let channels = match channel_config {
            1 if ps => 2,
            1..=6 => channel_config,
            7 | 12 | 14 => 8,
            11 => 7,
            13 => 24,
            _ => 0,
        };
        Ok(AacConfig {
            object_type: u8::try_from(signalled_object_type).unwrap_or(u8::MAX),
            sample_rate,
            channels: u8::try_from(channels).unwrap_or(0),
            sbr,
            ps,
        })
    }

    /// The profile as ffprobe names it.
    pub fn profile_name(&self) -> &'static str {
        if self.ps {
            return "HE-AACv2";
        }
        if self.sbr {
            return "HE-AAC";
        }
        match self.object_type {
            1 => "Main",
            2 => "LC",
            3 => "SSR",
            4 => "LTP",
            23 => "LD",
            39 => "ELD",
            42 => "xHE-AAC",
            _ => "unknown",
        }
    }

    fn read_sample_rate(bits: &mut BitReader<'_>) -> Result<u32, CodecError> {
        match bits.bits(4)? {
            0x0f => bits.bits(24),
            index => Self::SAMPLE_RATES
                .get(index as usize)
                .copied()
                .ok_or(malformed(Self::WHAT, "reserved sampling frequency index")),
        }
    }

    /// Looks past the `GASpecificConfig` for the SBR/PS sync extensions some encoders append to
    /// a plain LC config. Anything unexpected means "no extension": it is optional data.
    fn backward_compatible_extension(bits: &mut BitReader<'_>, object_type: u32) -> Option<SbrExtension> {
        // GASpecificConfig (14496-3, 4.4.1) for the object types that have one.
        if !matches!(object_type, 1..=4 | 6 | 7 | 17 | 19..=23) {
            return None;
        }
        let _frame_length_flag = bits.flag().ok()?;
        if bits.flag().ok()? {
            let _core_coder_delay = bits.bits(14).ok()?;
        }
        let extension_flag = bits.flag().ok()?;
        if matches!(object_type, 6 | 20) {
            let _layer_nr = bits.bits(3).ok()?;
        }
        if extension_flag {
            if object_type == 22 {
                bits.skip(5 + 11).ok()?;
            }
            if matches!(object_type, 17 | 19 | 20 | 23) {
                bits.skip(3).ok()?;
            }
            let _extension_flag3 = bits.flag().ok()?;
        }
        if bits.bits_left() < 16 || bits.bits(11).ok()? != SYNC_EXTENSION_SBR {
            return None;
        }
        if read_audio_object_type(bits).ok()? != AOT_SBR {
            return None;
        }
        let mut extension = SbrExtension { sbr: bits.flag().ok()?, ps: false, sample_rate: None };
        if extension.sbr {
            extension.sample_rate = Some(Self::read_sample_rate(bits).ok()?);
            if bits.bits_left() >= 12 && bits.bits(11).ok()? == SYNC_EXTENSION_PS {
                extension.ps = bits.flag().ok()?;
            }
        }
        Some(extension)
    }
}

struct SbrExtension {
    sbr: bool,
    ps: bool,
    sample_rate: Option<u32>,
}

/// GetAudioObjectType(): 5 bits, with 31 escaping to 32 + 6 more bits.
fn read_audio_object_type(bits: &mut BitReader<'_>) -> Result<u32, CodecError> {
    match bits.bits(5)? {
        31 => Ok(32 + bits.bits(6)?),
        object_type => Ok(object_type),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures::{AAC_48K_STEREO_LC, hex};

    #[test]
    fn aac_configs() {
        let lc_44100_stereo = AacConfig::parse(&[0x12, 0x10]).expect("parses");
        assert_eq!(
            lc_44100_stereo,
            AacConfig { object_type: 2, sample_rate: 44_100, channels: 2, sbr: false, ps: false }
        );
        assert_eq!(lc_44100_stereo.profile_name(), "LC");

        // 00010 0011 0001 000: LC, 48 kHz, mono.
        let lc_48000_mono = AacConfig::parse(&[0x11, 0x88]).expect("parses");
        assert_eq!((lc_48000_mono.sample_rate, lc_48000_mono.channels), (48_000, 1));

        // Explicit HE-AAC: 00101 0110 (24 kHz core) 0010 0011 (48 kHz SBR) 00010 (LC core).
        let he_aac = AacConfig::parse(&[0x2b, 0x11, 0x88, 0x00]).expect("parses");
        assert_eq!(he_aac.profile_name(), "HE-AAC");
        assert_eq!((he_aac.sample_rate, he_aac.channels), (48_000, 2));

        // Explicit HE-AACv2: 11101 0110 0001 (mono core) 0011 00010 -> parametric stereo.
        let he_aac_v2 = AacConfig::parse(&[0xeb, 0x09, 0x88, 0x00]).expect("parses");
        assert_eq!(he_aac_v2.profile_name(), "HE-AACv2");
        assert_eq!((he_aac_v2.sample_rate, he_aac_v2.channels), (48_000, 2));

        // Backward-compatible SBR: LC 24 kHz stereo, GASpecificConfig 000, then sync 0x2b7,
        // AOT 5, sbr 1, rate index 3 (48 kHz): 00010 0110 0010 000 | 01010110111 00101 1 0011
        let implicit = AacConfig::parse(&[0x13, 0x10, 0x56, 0xe5, 0x98]).expect("parses");
        assert!(implicit.sbr);
        assert_eq!(implicit.object_type, 2);
        assert_eq!(implicit.profile_name(), "HE-AAC");
        assert_eq!(implicit.sample_rate, 48_000);

        // Explicit 24-bit rate: 00010 1111 <8000 as 24 bits> 0001 (mono), zero padding.
        let explicit_rate = AacConfig::parse(&[0x17, 0x80, 0x0f, 0xa0, 0x08]).expect("parses");
        assert_eq!((explicit_rate.sample_rate, explicit_rate.channels), (8_000, 1));

        // 7.1 (channel configuration 7 is 8 channels).
        let surround = AacConfig::parse(&[0x11, 0xb8]).expect("parses");
        assert_eq!(surround.channels, 8);

        // Escaped object type 31 -> 32 + 10 = 42 (USAC): 11111 001010 0011 0010 ...
        let usac = AacConfig::parse(&[0xf9, 0x46, 0x40]).expect("parses");
        assert_eq!(usac.object_type, 42);
        assert_eq!(usac.profile_name(), "xHE-AAC");

        assert!(matches!(
            AacConfig::parse(&[0x16, 0x90]), // rate index 13 is reserved
            Err(CodecError::Malformed { .. })
        ));
        assert!(matches!(AacConfig::parse(&[0x12]), Err(CodecError::Malformed { .. })));
    }

    /// What ffmpeg 5.1 wrote into the SDP (`-f rtp -sdp_file`) for the same 48 kHz stereo
    /// encode as `AAC_48K_STEREO_LC`: `a=rtpmap:97 MPEG4-GENERIC/48000/2` and this `config=`.
    const FFMPEG_CONFIG_48K_STEREO: &str = "119056E500";

    #[test]
    fn ffmpeg_config_with_sync_extension_saying_no_sbr() {
        let body = hex(AAC_48K_STEREO_LC);
        // The sequence header's payload (after flags and AACPacketType) is SDP's config=.
        let asc = &body[2..];
        assert_eq!(asc, hex(FFMPEG_CONFIG_48K_STEREO));
        let config = AacConfig::parse(asc).expect("parses");
        assert_eq!(config, AacConfig { object_type: 2, sample_rate: 48_000, channels: 2, sbr: false, ps: false });
        assert_eq!(config.profile_name(), "LC");
    }
}
