//! SDP (RFC 4566) as RTSP uses it: the description a DESCRIBE answers, built from a stream's
//! sequence headers, and the one an ANNOUNCE carries, parsed into tracks whose sequence headers
//! the hub can carry. `sdp-types` parses and writes the lines; this module knows what the
//! media lines mean for H.264 (RFC 6184), H.265 (RFC 7798), AAC (RFC 3640) and G.711 (RFC 3551).
//!
//! Tracks are named by their `a=control` attribute, `trackID=N` in what this server writes;
//! SETUP URLs end with it (see `rtsp::url`).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sdp_types::{AddrType, Attribute, Connection, Media, NetType, Origin, Session, Time};

use crate::protocol::codec::{AvcDecoderConfig, CodecError, HevcDecoderConfig};
use crate::protocol::rtp::RtpCodec;
use crate::protocol::rtp::codec::AacTrack;

/// The first dynamic payload type (RFC 3551, 6), given to video; audio gets the next one.
pub const DYNAMIC_VIDEO: u8 = 96;
pub const DYNAMIC_AUDIO: u8 = 97;
/// Static payload types of G.711 (RFC 3551, table 4).
pub const PCMU: u8 = 0;
pub const PCMA: u8 = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP: {0}")]
    Syntax(String),
    #[error("SDP media {media}: {reason}")]
    Media { media: usize, reason: String },
    #[error("SDP describes no track this server can carry")]
    NoTracks,
}

/// One media line: its codec, payload type and control URL (relative or absolute).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub codec: RtpCodec,
    pub payload_type: u8,
    pub control: String,
}

impl Track {
    /// A stream's track `index` (its position in the description): `trackID=index`, the
    /// dynamic payload type of its kind or G.711's static one.
    pub fn new(codec: RtpCodec, index: usize) -> Self {
        let payload_type = match codec {
            RtpCodec::H264 { .. } | RtpCodec::H265 { .. } => DYNAMIC_VIDEO,
            RtpCodec::Aac(_) => DYNAMIC_AUDIO,
            RtpCodec::Pcma { .. } => PCMA,
            RtpCodec::Pcmu { .. } => PCMU,
        };
        Track { codec, payload_type, control: format!("trackID={index}") }
    }
}

/// The session description of `tracks`. `session_id` should be unique per description (NTP
/// time or random, RFC 4566 5.2); `address` is the server's address as the client reached it.
pub fn build(tracks: &[Track], session_name: &str, session_id: u64, address: &str) -> String {
    let addrtype = if address.contains(':') { AddrType::Ip6 } else { AddrType::Ip4 };
    let mut origin = Origin::new(session_id, 1, NetType::In, addrtype.clone(), address);
    origin.username = Some("-".to_owned());
    let mut session = Session::new(origin, if session_name.is_empty() { "ringcast" } else { session_name });
    let unspecified = if addrtype == AddrType::Ip6 { "::" } else { "0.0.0.0" };
    session.connection = Some(Connection::new(NetType::In, addrtype, unspecified));
    session.times.push(Time::new(0, 0));
    session.attributes.push(Attribute::with_value("tool", "ringcast"));
    session.attributes.push(Attribute::with_value("control", "*"));
    for track in tracks {
        session.medias.push(media_of(track));
    }
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = session.write(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn media_of(track: &Track) -> Media {
    let pt = track.payload_type;
    let (media, rtpmap, fmtp) = match &track.codec {
        RtpCodec::H264 { config } => {
            let mut fmtp = vec!["packetization-mode=1".to_owned()];
            if let Some(config) = config {
                let [profile, constraints, level] = config.profile_level_id();
                fmtp.push(format!("profile-level-id={profile:02X}{constraints:02X}{level:02X}"));
                let sets: Vec<String> = config.parameter_sets().map(|set| BASE64.encode(set)).collect();
                fmtp.push(format!("sprop-parameter-sets={}", sets.join(",")));
            }
            ("video", "H264/90000".to_owned(), Some(fmtp.join(";")))
        }
        RtpCodec::H265 { config } => {
            let fmtp = config.as_ref().map(|config| {
                let encode = |sets: &[Vec<u8>]| sets.iter().map(|set| BASE64.encode(set)).collect::<Vec<_>>().join(",");
                format!(
                    "sprop-vps={};sprop-sps={};sprop-pps={}",
                    encode(config.vps()),
                    encode(config.sps()),
                    encode(config.pps())
                )
            });
            ("video", "H265/90000".to_owned(), fmtp)
        }
        RtpCodec::Aac(aac) => {
            let config: String = aac.config.iter().map(|byte| format!("{byte:02x}")).collect();
            let fmtp = format!(
                "profile-level-id=1;mode=AAC-hbr;sizelength={};indexlength={};indexdeltalength={};config={config}",
                aac.size_length, aac.index_length, aac.index_delta_length
            );
            ("audio", format!("MPEG4-GENERIC/{}/{}", aac.clock_rate, aac.channels.max(1)), Some(fmtp))
        }
        RtpCodec::Pcma { channels } => ("audio", g711_rtpmap("PCMA", *channels), None),
        RtpCodec::Pcmu { channels } => ("audio", g711_rtpmap("PCMU", *channels), None),
    };
    let mut attributes = vec![Attribute::with_value("rtpmap", format!("{pt} {rtpmap}"))];
    if let Some(fmtp) = fmtp {
        attributes.push(Attribute::with_value("fmtp", format!("{pt} {fmtp}")));
    }
    attributes.push(Attribute::with_value("control", &track.control));
    Media {
        media: media.to_owned(),
        port: 0,
        num_ports: None,
        proto: "RTP/AVP".to_owned(),
        fmt: pt.to_string(),
        media_title: None,
        connections: Vec::new(),
        bandwidths: Vec::new(),
        key: None,
        attributes,
    }
}

fn g711_rtpmap(name: &str, channels: u8) -> String {
    if channels > 1 { format!("{name}/8000/{channels}") } else { format!("{name}/8000") }
}

/// What an ANNOUNCE described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announced {
    /// The tracks this server can carry, in the description's order.
    pub tracks: Vec<Track>,
    /// Media lines it cannot (another codec, or a malformed line), as "media N: why", so the
    /// driver can log them; the stream goes on with the others.
    pub skipped: Vec<String>,
}

/// Parses an ANNOUNCE's description. A description with no track this server can carry is an
/// error; tracks it cannot carry are skipped and said.
pub fn parse(body: &[u8]) -> Result<Announced, SdpError> {
    let session = Session::parse(body).map_err(|error| SdpError::Syntax(format!("{error:?}")))?;
    let mut announced = Announced { tracks: Vec::new(), skipped: Vec::new() };
    for (index, media) in session.medias.iter().enumerate() {
        match parse_media(media, index) {
            Ok(track) => announced.tracks.push(track),
            Err(error) => announced.skipped.push(error.to_string()),
        }
    }
    if announced.tracks.is_empty() {
        return Err(SdpError::NoTracks);
    }
    Ok(announced)
}

fn parse_media(media: &Media, index: usize) -> Result<Track, SdpError> {
    let fail = |reason: &str| SdpError::Media { media: index, reason: reason.to_owned() };
    let payload_type: u8 = media
        .fmt
        .split_whitespace()
        .next()
        .and_then(|pt| pt.parse().ok())
        .filter(|pt| *pt < 128)
        .ok_or_else(|| fail("no payload type"))?;
    let attribute = |name: &str| {
        media.attributes.iter().find_map(|a| {
            let value = a.value.as_deref()?;
            let (pt, rest) = value.split_once(' ')?;
            (a.attribute.eq_ignore_ascii_case(name) && pt.parse() == Ok(payload_type)).then(|| rest.trim())
        })
    };
    let control = media
        .attributes
        .iter()
        .find(|a| a.attribute == "control")
        .and_then(|a| a.value.clone())
        .unwrap_or_else(|| format!("trackID={index}"));
    let rtpmap = attribute("rtpmap");
    let fmtp = parse_fmtp(attribute("fmtp").unwrap_or(""));
    let param = |key: &str| fmtp.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str());
    let (encoding, clock_rate, channels) = match rtpmap {
        Some(rtpmap) => {
            let mut parts = rtpmap.split('/');
            let encoding = parts.next().unwrap_or_default().to_ascii_uppercase();
            let rate = parts.next().and_then(|rate| rate.trim().parse::<u32>().ok());
            let channels = parts.next().and_then(|channels| channels.trim().parse::<u8>().ok()).unwrap_or(1);
            (encoding, rate, channels)
        }
        None => match payload_type {
            PCMU => ("PCMU".to_owned(), Some(8000), 1),
            PCMA => ("PCMA".to_owned(), Some(8000), 1),
            _ => return Err(fail("dynamic payload type without rtpmap")),
        },
    };
    let codec = match encoding.as_str() {
        "H264" => {
            let config = match param("sprop-parameter-sets") {
                Some(sets) => avc_from_sprop(sets).map_err(|error| fail(&error.to_string()))?,
                None => None,
            };
            RtpCodec::H264 { config }
        }
        "H265" | "HEVC" => {
            let sets = |key| param(key).map(decode_sets).transpose();
            let (vps, sps, pps) = (sets("sprop-vps"), sets("sprop-sps"), sets("sprop-pps"));
            let config = match (vps, sps, pps) {
                (Ok(Some(vps)), Ok(Some(sps)), Ok(Some(pps))) if !sps.is_empty() => Some(
                    HevcDecoderConfig::from_parameter_sets(vps, sps, pps).map_err(|error| fail(&error.to_string()))?,
                ),
                (Err(_), _, _) | (_, Err(_), _) | (_, _, Err(_)) => return Err(fail("sprop sets are not base64")),
                _ => None,
            };
            RtpCodec::H265 { config }
        }
        "MPEG4-GENERIC" => {
            if !param("mode").is_some_and(|mode| mode.eq_ignore_ascii_case("AAC-hbr")) {
                return Err(fail("mpeg4-generic in a mode other than AAC-hbr"));
            }
            let config = param("config").and_then(decode_hex).ok_or_else(|| fail("AAC without a hex config"))?;
            let mut aac = AacTrack::from_config(&config).map_err(|error| fail(&error.to_string()))?;
            let length = |key, default| param(key).map_or(Ok(default), |v| v.parse::<u8>().map_err(|_| fail(key)));
            aac.size_length = length("sizelength", 13)?;
            aac.index_length = length("indexlength", 3)?;
            aac.index_delta_length = length("indexdeltalength", 3)?;
            if aac.size_length == 0 || aac.size_length > 16 || aac.index_length > 16 || aac.index_delta_length > 16 {
                return Err(fail("AU header field lengths out of range"));
            }
            if let Some(rate) = clock_rate.filter(|rate| *rate > 0) {
                // The rtpmap's rate is the RTP clock, whatever the config's core rate.
                aac.clock_rate = rate;
            }
            RtpCodec::Aac(aac)
        }
        "PCMA" if clock_rate == Some(8000) => RtpCodec::Pcma { channels },
        "PCMU" if clock_rate == Some(8000) => RtpCodec::Pcmu { channels },
        other => return Err(fail(&format!("codec {other} is not carried"))),
    };
    let kind_matches = match codec.kind() {
        crate::protocol::flv::MediaKind::Video => media.media == "video",
        _ => media.media == "audio",
    };
    if !kind_matches {
        return Err(fail("codec does not match the media type"));
    }
    Ok(Track { codec, payload_type, control })
}

/// `a=fmtp`'s parameters, `key=value` separated by `;`.
fn parse_fmtp(fmtp: &str) -> Vec<(String, String)> {
    fmtp.split(';')
        .filter_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            Some((key.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn decode_sets(sets: &str) -> Result<Vec<Vec<u8>>, base64::DecodeError> {
    sets.split(',').filter(|set| !set.is_empty()).map(|set| BASE64.decode(set.trim())).collect()
}

/// `sprop-parameter-sets`: base64 SPS and PPS, split by type. `None` when it holds no SPS.
fn avc_from_sprop(sets: &str) -> Result<Option<AvcDecoderConfig>, CodecError> {
    let decoded =
        decode_sets(sets).map_err(|_| CodecError::Malformed { what: "sprop-parameter-sets", reason: "not base64" })?;
    let (mut sps, mut pps) = (Vec::new(), Vec::new());
    for set in decoded {
        match set.first().map(|header| header & 0x1f) {
            Some(7) => sps.push(set),
            Some(8) => pps.push(set),
            _ => {}
        }
    }
    if sps.is_empty() {
        return Ok(None);
    }
    AvcDecoderConfig::from_parameter_sets(sps, pps).map(Some)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|at| u8::from_str_radix(hex.get(at..at + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures::*;
    use crate::protocol::flv::MediaKind;

    /// The SDP ffmpeg 5.1 sends in ANNOUNCE for `-c:v libx264 -c:a aac -f rtsp` (640x360).
    const FFMPEG_ANNOUNCE: &str = "v=0\r\n\
o=- 0 0 IN IP4 127.0.0.1\r\n\
s=No Name\r\n\
c=IN IP4 127.0.0.1\r\n\
t=0 0\r\n\
a=tool:libavformat 59.27.100\r\n\
m=video 0 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n\
a=fmtp:96 packetization-mode=1; sprop-parameter-sets=Z2QAHqzZQKAv+XARAAADAAEAAAMAMg8WLZY=,aOvjyyLA; profile-level-id=64001E\r\n\
a=control:streamid=0\r\n\
m=audio 0 RTP/AVP 97\r\n\
b=AS:128\r\n\
a=rtpmap:97 MPEG4-GENERIC/44100/2\r\n\
a=fmtp:97 profile-level-id=1;mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3; config=121056E500\r\n\
a=control:streamid=1\r\n";

    #[test]
    fn ffmpeg_announce_parses_into_sequence_headers() {
        let announced = parse(FFMPEG_ANNOUNCE.as_bytes()).unwrap();
        assert!(announced.skipped.is_empty());
        let [video, audio] = announced.tracks.as_slice() else { panic!("{announced:?}") };
        assert_eq!((video.payload_type, video.control.as_str()), (96, "streamid=0"));
        let RtpCodec::H264 { config: Some(config) } = &video.codec else { panic!("{video:?}") };
        assert_eq!(config.profile_level_id(), [0x64, 0, 0x1e]);
        assert_eq!((config.sps_info().width, config.sps_info().height), (640, 360));
        let header = video.codec.sequence_header().unwrap();
        assert_eq!(RtpCodec::from_flv(MediaKind::Video, &header).unwrap().as_ref(), Some(&video.codec));
        let RtpCodec::Aac(aac) = &audio.codec else { panic!("{audio:?}") };
        assert_eq!(
            (aac.clock_rate, aac.channels, aac.config.as_slice()),
            (44_100, 2, &[0x12, 0x10, 0x56, 0xe5, 0][..])
        );
        assert_eq!(audio.codec.sequence_header().unwrap()[..2], [0xaf, 0]);
    }

    #[test]
    fn built_descriptions_parse_back_to_the_same_tracks() {
        let avc = RtpCodec::from_flv(MediaKind::Video, &hex(AVC_720P_HIGH)).unwrap().unwrap();
        let aac = RtpCodec::from_flv(MediaKind::Audio, &hex(AAC_48K_STEREO_LC)).unwrap().unwrap();
        let hevc = RtpCodec::H265 { config: Some(HevcDecoderConfig::parse(&hex(HVCC_720P_MAIN)).unwrap()) };
        for tracks in [
            vec![Track::new(avc.clone(), 0), Track::new(aac, 1)],
            vec![Track::new(hevc, 0), Track::new(RtpCodec::Pcma { channels: 1 }, 1)],
            vec![Track::new(RtpCodec::Pcmu { channels: 2 }, 0)],
        ] {
            let sdp = build(&tracks, "live/cam1", 42, "127.0.0.1");
            assert!(sdp.starts_with("v=0\r\no=- 42 1 IN IP4 127.0.0.1\r\ns=live/cam1\r\n"), "{sdp}");
            assert_eq!(parse(sdp.as_bytes()).unwrap().tracks, tracks, "{sdp}");
        }
        let sdp = build(&[Track::new(avc, 0)], "x", 1, "::1");
        assert!(
            sdp.contains("a=fmtp:96 packetization-mode=1;profile-level-id=64001F;sprop-parameter-sets=Z2QA"),
            "{sdp}"
        );
        assert!(sdp.contains("c=IN IP6 ::\r\n"), "{sdp}");
    }

    #[test]
    fn unsupported_and_malformed_media_are_skipped_or_refused() {
        let sdp = "v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\ns=x\r\nt=0 0\r\n\
m=audio 0 RTP/AVP 98\r\na=rtpmap:98 opus/48000/2\r\n\
m=audio 0 RTP/AVP 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=fmtp:96 sprop-parameter-sets=!!!\r\n";
        let announced = parse(sdp.as_bytes()).unwrap();
        assert_eq!(
            announced.tracks,
            [Track { codec: RtpCodec::Pcmu { channels: 1 }, payload_type: 0, control: "trackID=1".into() }]
        );
        assert_eq!(announced.skipped.len(), 2, "{:?}", announced.skipped);
        assert_eq!(parse(b"v=0\r\nm=audio 0 RTP/AVP 98\r\n"), Err(SdpError::NoTracks));
        assert!(matches!(parse(b"garbage"), Err(SdpError::Syntax(_)) | Err(SdpError::NoTracks)));
        assert!(parse(b"v=0\r\no=- 0 0 IN IP4 1.2.3.4\r\ns=x\r\nm=audio 0 RTP/AVP 97\r\na=rtpmap:97 MPEG4-GENERIC/44100\r\na=fmtp:97 mode=AAC-hbr;config=zz\r\n").is_err());
    }
}
