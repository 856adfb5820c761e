//! RTSP's media path: packetizing a stream's hub packets into RTP (done once per stream and
//! packet, shared by every player) and depacketizing a publisher's RTP back into FLV bodies;
//! and an RTSP request through the connection state machine.
//!
//! The media is one second of a typical publish, as in `benches/protocol.rs`: 30 fps H.264
//! frames of ~9 KB in one slice NAL unit each (a keyframe every 60 frames, parameter sets
//! before it) and AAC-LC frames of ~370 bytes at 44.1 kHz, at the default MTU of 1400.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringcast::protocol::flv::MediaKind;
use ringcast::protocol::rtp::{
    DEFAULT_MTU, Depacketizer, MediaFrame, PacketList, Packetizer, PacketizerSettings, RtpCodec, RtpPacket,
};
use ringcast::protocol::rtsp::{Event, ServerConnection, ServerSettings, SetupAnswer};
use ringcast::protocol::sdp::Track;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const VIDEO_FRAME_LEN: usize = 9_000;
const AUDIO_FRAME_LEN: usize = 370;

/// The sequence headers ffmpeg 5.1 writes for 1280x720 High and 48 kHz stereo AAC-LC (from
/// src/protocol/fixtures.rs).
const AVC_720P_HIGH: &str =
    "17000000000164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f800";
const AAC_48K_STEREO_LC: &str = "af00119056e500";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

/// An AVCC frame body with one slice NAL unit (IDR or not) filling `len` bytes.
fn video_frame(keyframe: bool, len: usize) -> Vec<u8> {
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    let nal_len = len - body.len() - 4;
    body.extend_from_slice(&(nal_len as u32).to_be_bytes());
    body.push(if keyframe { 0x65 } else { 0x41 });
    body.extend((1..nal_len).map(|i| (i * 7) as u8));
    body
}

fn audio_frame(len: usize) -> Vec<u8> {
    let mut body = vec![0xaf, 1];
    body.extend((0..len - body.len()).map(|i| (i * 13) as u8));
    body
}

fn settings(payload_type: u8) -> PacketizerSettings {
    PacketizerSettings { payload_type, ssrc: 1, first_sequence: 0, first_timestamp: 0, mtu: DEFAULT_MTU }
}

fn codecs() -> (RtpCodec, RtpCodec) {
    let video = RtpCodec::from_flv(MediaKind::Video, &hex(AVC_720P_HIGH)).expect("valid").expect("H.264");
    let audio = RtpCodec::from_flv(MediaKind::Audio, &hex(AAC_48K_STEREO_LC)).expect("valid").expect("AAC");
    (video, audio)
}

/// One second of media: (video?, timestamp, body), in timestamp order.
fn one_second() -> Vec<(bool, u32, Vec<u8>)> {
    let video = (0..30u32).map(|i| (true, i * 1000 / 30, video_frame(i == 0, VIDEO_FRAME_LEN)));
    let audio = (0..43u32).map(|i| (false, i * 1024 * 1000 / 44_100, audio_frame(AUDIO_FRAME_LEN)));
    let mut media: Vec<_> = video.chain(audio).collect();
    media.sort_by_key(|(_, ts, _)| *ts);
    media
}

fn packetize(media: &[(bool, u32, Vec<u8>)], video: &mut Packetizer, audio: &mut Packetizer) -> Vec<(bool, Vec<u8>)> {
    media
        .iter()
        .map(|(is_video, ts, body)| {
            let mut out = Vec::new();
            let packetizer = if *is_video { &mut *video } else { &mut *audio };
            packetizer.packetize(*ts, body, &mut out).expect("packetizes");
            (*is_video, out)
        })
        .collect()
}

fn rtp_benches(c: &mut Criterion) {
    let media = one_second();
    let bytes: usize = media.iter().map(|(_, _, body)| body.len()).sum();
    let (video_codec, audio_codec) = codecs();
    let mut group = c.benchmark_group("rtp");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("packetize_1s_h264_aac", |b| {
        let mut video = Packetizer::new(&video_codec, settings(96));
        let mut audio = Packetizer::new(&audio_codec, settings(97));
        let mut out = Vec::with_capacity(16 * 1024);
        b.iter(|| {
            for (is_video, ts, body) in &media {
                out.clear();
                let packetizer = if *is_video { &mut video } else { &mut audio };
                black_box(packetizer.packetize(*ts, body, &mut out).expect("packetizes"));
            }
        })
    });

    let mut video = Packetizer::new(&video_codec, settings(96));
    let mut audio = Packetizer::new(&audio_codec, settings(97));
    let lists = packetize(&media, &mut video, &mut audio);
    let packets: Vec<(bool, bytes::Bytes)> = lists
        .into_iter()
        .flat_map(|(is_video, list)| {
            PacketList(bytes::Bytes::from(list)).packets().map(move |packet| (is_video, packet)).collect::<Vec<_>>()
        })
        .collect();
    group.bench_function("depacketize_1s_h264_aac", |b| {
        b.iter(|| {
            let mut video = Depacketizer::new(&video_codec, 8 << 20);
            let mut audio = Depacketizer::new(&audio_codec, 8 << 20);
            let mut frames: Vec<MediaFrame> = Vec::with_capacity(128);
            for (is_video, packet) in &packets {
                let packet = RtpPacket::parse(packet).expect("valid RTP");
                let depacketizer = if *is_video { &mut video } else { &mut audio };
                depacketizer.depacketize(&packet, &mut frames).expect("depacketizes");
            }
            assert_eq!(frames.len(), media.len());
            black_box(frames)
        })
    });
    group.finish();

    // A player's whole request sequence, as ffmpeg sends it, through the state machine.
    let requests = [
        "OPTIONS rtsp://127.0.0.1:8554/live/cam1 RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: Lavf59.27.100\r\n\r\n",
        "DESCRIBE rtsp://127.0.0.1:8554/live/cam1 RTSP/1.0\r\nAccept: application/sdp\r\nCSeq: 2\r\nUser-Agent: Lavf59.27.100\r\n\r\n",
        "SETUP rtsp://127.0.0.1:8554/live/cam1/trackID=0 RTSP/1.0\r\nTransport: RTP/AVP/TCP;unicast;interleaved=0-1\r\nCSeq: 3\r\nUser-Agent: Lavf59.27.100\r\n\r\n",
        "SETUP rtsp://127.0.0.1:8554/live/cam1/trackID=1 RTSP/1.0\r\nTransport: RTP/AVP/TCP;unicast;interleaved=2-3\r\nCSeq: 4\r\nUser-Agent: Lavf59.27.100\r\nSession: 0000000000000001\r\n\r\n",
        "PLAY rtsp://127.0.0.1:8554/live/cam1/ RTSP/1.0\r\nRange: npt=0.000-\r\nCSeq: 5\r\nUser-Agent: Lavf59.27.100\r\nSession: 0000000000000001\r\n\r\n",
    ];
    let (video_codec, audio_codec) = codecs();
    let mut group = c.benchmark_group("rtsp");
    group.throughput(Throughput::Elements(requests.len() as u64));
    group.bench_function("player_requests", |b| {
        let mut out = Vec::with_capacity(4096);
        b.iter(|| {
            let mut conn = ServerConnection::new(ServerSettings::default(), 1);
            for request in requests {
                conn.handle_input(request.as_bytes());
                while let Some(event) = conn.poll_event() {
                    match event {
                        Event::Describe(_) => conn.accept_describe(
                            vec![Track::new(video_codec.clone(), 0), Track::new(audio_codec.clone(), 1)],
                            1,
                        ),
                        Event::Setup { .. } => conn.accept_setup(SetupAnswer::default()),
                        Event::Play { .. } => conn.accept_play(&[]),
                        other => panic!("unexpected {other:?}"),
                    }
                }
                out.clear();
                conn.poll_transmit(&mut out);
            }
            black_box(&out);
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(20)
        .without_plots();
    targets = rtp_benches
}
criterion_main!(benches);
