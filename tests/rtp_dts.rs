//! Decode times through the RTP round trip, on real encodes: ffmpeg encodes H.264 (libx264)
//! and H.265 (libx265) with and without B-frames, ffprobe gives each packet's bytes and true
//! presentation and decode times, and the packets go FLV body -> RTP packetizer -> RTP
//! depacketizer -> FLV body, as an RTMP-published stream goes to an RTSP player and an RTSP
//! publisher's comes back. The depacketizer only has the RTP presentation times; the decode
//! times it rebuilds must be non-decreasing, never after the presentation time, and, once its
//! reorder buffer is full, ffprobe's decode times up to a constant. Needs ffmpeg and ffprobe
//! with libx264 and libx265 (`bash .ci/run` installs them).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use ringcast::protocol::codec::{AvcDecoderConfig, HevcDecoderConfig};
use ringcast::protocol::flv::{self, PacketType};
use ringcast::protocol::rtp::{
    DEFAULT_MAX_FRAME, Depacketizer, MediaFrame, PacketList, Packetizer, PacketizerSettings, RtpCodec, RtpPacket,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Video {
    H264,
    H265,
}

/// One coded frame as ffprobe reports it, times in milliseconds.
#[derive(Debug, Clone)]
struct Coded {
    pts: i64,
    dts: i64,
    keyframe: bool,
    /// Length-prefixed NAL units, as MP4 and FLV carry them.
    data: Vec<u8>,
}

struct Encode {
    video: Video,
    /// The `avcC` or `hvcC` record.
    record: Vec<u8>,
    frames: Vec<Coded>,
}

/// Encodes `frames` frames of a 25 fps test pattern with `args`, into an MP4 whose track
/// counts milliseconds, and reads it back with ffprobe.
fn encode(name: &str, video: Video, frames: u32, args: &[&str]) -> Encode {
    common::require_tool("ffmpeg");
    common::require_tool("ffprobe");
    let dir = std::env::temp_dir().join(format!("ringcast-rtp-dts-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("{name}.mp4"));
    let encoder = match video {
        Video::H264 => "libx264",
        Video::H265 => "libx265",
    };
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=160x96:rate=25", "-frames:v"])
        .arg(frames.to_string())
        .args(["-c:v", encoder, "-g", "24"])
        .args(args)
        .args(["-video_track_timescale", "1000", "-tag:v", if video == Video::H265 { "hvc1" } else { "avc1" }])
        .arg(&file)
        .stdin(Stdio::null())
        .status()
        .expect("ffmpeg runs");
    assert!(status.success(), "ffmpeg {encoder} {args:?} failed (is {encoder} in this ffmpeg?)");
    let encode = probe(video, &file);
    let _ = std::fs::remove_file(&file);
    encode
}

fn probe(video: Video, file: &Path) -> Encode {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v", "-show_streams", "-show_packets", "-show_data", "-of", "json"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .expect("ffprobe runs");
    assert!(out.status.success(), "ffprobe: {}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ffprobe JSON");
    let record = hexdump(json["streams"][0]["extradata"].as_str().expect("extradata"));
    let frames = json["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .map(|packet| Coded {
            pts: packet["pts"].as_i64().expect("pts"),
            dts: packet["dts"].as_i64().expect("dts"),
            keyframe: packet["flags"].as_str().is_some_and(|flags| flags.starts_with('K')),
            data: hexdump(packet["data"].as_str().expect("data")),
        })
        .collect();
    Encode { video, record, frames }
}

/// The bytes of ffprobe's `-show_data` dump: "offset: hex groups  ascii" lines.
fn hexdump(dump: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    for line in dump.lines().filter(|line| !line.trim().is_empty()) {
        let hex = line.split_once(": ").map_or("", |(_, rest)| rest);
        // The hex part is 8 groups of up to 4 digits; the ASCII column follows two spaces.
        let hex = hex.split("  ").next().unwrap_or("");
        let digits: String = hex.chars().filter(char::is_ascii_hexdigit).collect();
        for pair in digits.as_bytes().chunks(2) {
            bytes.push(u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap());
        }
    }
    bytes
}

impl Encode {
    fn codec(&self, with_config: bool) -> RtpCodec {
        match self.video {
            Video::H264 => {
                RtpCodec::H264 { config: with_config.then(|| AvcDecoderConfig::parse(&self.record).expect("avcC")) }
            }
            Video::H265 => {
                RtpCodec::H265 { config: with_config.then(|| HevcDecoderConfig::parse(&self.record).expect("hvcC")) }
            }
        }
    }

    /// The FLV tag body of the sequence header.
    fn sequence_header(&self) -> Vec<u8> {
        match self.video {
            Video::H264 => [&[0x17, 0, 0, 0, 0][..], &self.record].concat(),
            Video::H265 => [&[0x80 | (1 << 4)][..], b"hvc1", &self.record].concat(),
        }
    }

    /// The FLV tag body an RTMP publisher sends for `frame` (E-RTMP for H.265).
    fn body(&self, frame: &Coded) -> Vec<u8> {
        let cts = i32::try_from(frame.pts - frame.dts).expect("cts").to_be_bytes();
        let mut body = match self.video {
            Video::H264 => vec![if frame.keyframe { 0x17 } else { 0x27 }, 1],
            Video::H265 => [&[0x80 | (if frame.keyframe { 1 } else { 2 } << 4) | 1][..], b"hvc1"].concat(),
        };
        body.extend_from_slice(&cts[1..]);
        body.extend_from_slice(&frame.data);
        body
    }

    /// The RTP packets of every frame, frame by frame, as an RTSP player receives them: FLV
    /// timestamps are the decode times shifted to start at 0.
    fn packetize(&self) -> Vec<Vec<Vec<u8>>> {
        let settings = PacketizerSettings {
            payload_type: 96,
            ssrc: 7,
            first_sequence: 65_000,
            first_timestamp: 4_000_000_000,
            mtu: 1200,
        };
        let mut packetizer = Packetizer::new(&self.codec(true), settings);
        let shift = -self.frames.iter().map(|frame| frame.dts).min().unwrap_or(0).min(0);
        let mut none = Vec::new();
        assert_eq!(packetizer.packetize(0, &self.sequence_header(), &mut none).expect("sequence header"), 0);
        self.frames
            .iter()
            .map(|frame| {
                let mut list = Vec::new();
                let timestamp = u32::try_from(frame.dts + shift).expect("timestamp");
                packetizer.packetize(timestamp, &self.body(frame), &mut list).expect("packetizes");
                PacketList(list.into()).packets().map(|packet| packet.to_vec()).collect()
            })
            .collect()
    }
}

/// A frame the depacketizer emitted: decode and presentation time, keyframe, NAL units.
#[derive(Debug)]
struct Rebuilt {
    dts: i64,
    pts: i64,
    keyframe: bool,
    data: Vec<u8>,
}

fn depacketize(codec: &RtpCodec, packets: impl IntoIterator<Item = Vec<u8>>) -> Vec<Rebuilt> {
    let mut depacketizer = Depacketizer::new(codec, DEFAULT_MAX_FRAME);
    let mut frames: Vec<MediaFrame> = Vec::new();
    for packet in packets {
        let packet = RtpPacket::parse(&packet).expect("RTP packet");
        depacketizer.depacketize(&packet, &mut frames).expect("depacketizes");
    }
    frames
        .iter()
        .filter_map(|frame| {
            let tag = flv::parse_video_tag(&frame.body).expect("FLV video body");
            (tag.packet_type == PacketType::CodedFrames).then(|| Rebuilt {
                dts: i64::from(frame.timestamp),
                pts: i64::from(frame.timestamp) + i64::from(tag.composition_time_ms),
                keyframe: tag.frame_type == flv::VideoFrameType::Key,
                data: tag.payload.to_vec(),
            })
        })
        .collect()
}

/// Decode times never go back and are never after the presentation time.
fn assert_valid(name: &str, frames: &[Rebuilt]) {
    for (index, pair) in frames.windows(2).enumerate() {
        assert!(pair[0].dts <= pair[1].dts, "{name}: decode time goes back at frame {}: {frames:#?}", index + 1);
    }
    for (index, frame) in frames.iter().enumerate() {
        assert!(frame.dts <= frame.pts, "{name}: frame {index} decoded after it is shown: {frame:?}");
    }
}

/// The full round trip: every frame comes back with its bytes, keyframe flag and presentation
/// time, and decode times that are ffprobe's up to a constant once the buffer is full.
fn round_trip(name: &str, encode: &Encode, reorders: bool) {
    let packets: Vec<Vec<u8>> = encode.packetize().into_iter().flatten().collect();
    for with_config in [true, false] {
        let rebuilt = depacketize(&encode.codec(with_config), packets.clone());
        assert_eq!(rebuilt.len(), encode.frames.len(), "{name}: every frame comes back");
        assert_valid(name, &rebuilt);
        let first_pts = encode.frames[0].pts;
        for (index, (original, back)) in encode.frames.iter().zip(&rebuilt).enumerate() {
            assert_eq!(back.data, original.data, "{name}: frame {index} bytes");
            // IDR and IRAP pictures are keyframes; ffprobe also flags open-GOP I-frames.
            assert!(!back.keyframe || original.keyframe, "{name}: frame {index} keyframe");
            assert_eq!(back.pts, original.pts - first_pts, "{name}: frame {index} presentation time");
        }
        let composition: Vec<i64> = rebuilt.iter().map(|frame| frame.pts - frame.dts).collect();
        if !reorders {
            assert!(composition.iter().all(|&cts| cts == 0), "{name}: no B-frames, no offsets: {composition:?}");
            continue;
        }
        assert!(composition.iter().any(|&cts| cts > 0), "{name}: B-frames need offsets: {composition:?}");
        // ffprobe's decode times up to a constant once the reorder buffer is full: the last
        // frame's difference holds for all but the first few.
        let offset = rebuilt.last().unwrap().dts - encode.frames.last().unwrap().dts;
        let differing: Vec<usize> =
            (0..rebuilt.len()).filter(|&index| rebuilt[index].dts - encode.frames[index].dts != offset).collect();
        assert!(
            differing.iter().all(|&index| index < 4),
            "{name}: decode times differ from ffprobe's (offset {offset}) at {differing:?}: {:?} vs {:?}",
            rebuilt.iter().map(|frame| frame.dts).collect::<Vec<_>>(),
            encode.frames.iter().map(|frame| frame.dts - first_pts).collect::<Vec<_>>(),
        );
    }
}

/// Losses and a mid-GOP start: no panic, decode times valid throughout, and from the next
/// keyframe on equal to the undisturbed stream's up to a constant.
fn disturbed(name: &str, encode: &Encode) {
    let per_frame = encode.packetize();
    let undisturbed = depacketize(&encode.codec(true), per_frame.iter().flatten().cloned());
    // The first intra picture after the join: a keyframe, or an open GOP's I-frame.
    let second_key = encode.frames.iter().skip(5).position(|frame| frame.keyframe).expect("a second keyframe") + 5;

    // A lost packet in frame 3 (a frame others refer to or not, it is dropped either way).
    let mut lossy: Vec<Vec<u8>> = per_frame.iter().flatten().cloned().collect();
    let lost_at: usize = per_frame[..3].iter().map(Vec::len).sum();
    lossy.remove(lost_at);
    let rebuilt = depacketize(&encode.codec(true), lossy);
    // The frame hit is dropped, and the next too when the lost packet was a whole frame: the
    // gap shows only in the next packet, which cannot tell which frame it belonged to.
    let dropped = encode.frames.len() - rebuilt.len();
    assert!((1..=2).contains(&dropped), "{name}: {dropped} frames lost for one packet");
    assert_valid(&format!("{name} with a loss"), &rebuilt);

    // Joined at frame 5, mid-GOP: frames before the next intra picture are passed on,
    // monotonic; the leading pictures of an open GOP there (shown before it, referring to
    // what came before the join) are dropped; from the intra picture on, decode times are the
    // undisturbed ones up to a constant. Times compare by presentation time, the joined time
    // line starting at frame 5's.
    let joined = depacketize(&encode.codec(true), per_frame[5..].iter().flatten().cloned());
    for pair in joined.windows(2) {
        assert!(pair[0].dts <= pair[1].dts, "{name} joined mid-GOP: decode time goes back");
    }
    let join_pts = encode.frames[5].pts - encode.frames[0].pts;
    let key_pts = encode.frames[second_key].pts - encode.frames[0].pts - join_pts;
    let from_key_at = joined.iter().position(|frame| frame.pts == key_pts).expect("the intra picture comes through");
    let from_key = &joined[from_key_at..];
    assert_valid(&format!("{name} from the intra picture after a mid-GOP join"), from_key);
    let skipped = encode.frames.len() - second_key - from_key.len();
    assert!(skipped <= 4, "{name}: {skipped} leading pictures dropped after the join");
    let undisturbed_dts = |pts: i64| {
        undisturbed.iter().find(|frame| frame.pts == pts + join_pts).map(|frame| frame.dts).expect("same frame")
    };
    let offset = from_key.last().unwrap().dts - undisturbed_dts(from_key.last().unwrap().pts);
    let differing: Vec<usize> = (0..from_key.len())
        .filter(|&index| from_key[index].dts - undisturbed_dts(from_key[index].pts) != offset)
        .collect();
    assert!(differing.iter().all(|&index| index < 4), "{name}: not recovered at the intra picture: {differing:?}");
}

#[test]
fn h264_without_b_frames_keeps_presentation_times() {
    let encode = encode("h264-bf0", Video::H264, 60, &["-bf", "0"]);
    round_trip("H.264 -bf 0", &encode, false);
    disturbed("H.264 -bf 0", &encode);
}

#[test]
fn h264_b_frames_get_ffprobes_decode_order() {
    for (name, args) in [
        ("h264-bf2", &["-bf", "2"][..]),
        ("h264-bf3-adapt2", &["-bf", "3", "-x264-params", "b-adapt=2:b-pyramid=normal"][..]),
        ("h264-bf3-nopyramid", &["-bf", "3", "-x264-params", "b-pyramid=none"][..]),
        ("h264-open-gop", &["-bf", "3", "-x264-params", "open-gop=1"][..]),
        ("h264-main", &["-bf", "2", "-profile:v", "main"][..]),
    ] {
        let encode = encode(name, Video::H264, 80, args);
        round_trip(name, &encode, true);
        disturbed(name, &encode);
    }
}

#[test]
fn h265_b_frames_get_ffprobes_decode_order() {
    for (name, args, reorders) in [
        ("h265-bf0", &["-x265-params", "log-level=error:bframes=0"][..], false),
        ("h265-bf3-open-gop", &["-x265-params", "log-level=error:bframes=3:open-gop=1"][..], true),
        ("h265-bf4-pyramid", &["-x265-params", "log-level=error:bframes=4:b-pyramid=1:open-gop=0"][..], true),
    ] {
        let encode = encode(name, Video::H265, 80, args);
        round_trip(name, &encode, reorders);
        disturbed(name, &encode);
    }
}
