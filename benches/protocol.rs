//! Protocol codecs: RTMP chunk decode/encode, AMF0, FLV tag classification and parsing, the
//! server connection state machine fed a publisher's media, and RTSP's media path: packetizing
//! hub packets into RTP (once per stream and packet, shared by every player), depacketizing a
//! publisher's RTP back into FLV bodies, and a player's RTSP requests.
//!
//! The media is shaped like one second of a typical ffmpeg/OBS publish: 30 fps H.264 frames of
//! ~9 KB (a keyframe every 60 frames) and AAC-LC frames of ~370 bytes at 44.1 kHz (43 a second),
//! interleaved in timestamp order, sent at chunk size 4096 and read 64 KiB at a time.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringcast::protocol::amf0::{self, Amf0Value};
use ringcast::protocol::flv::{self, FlvReader, MediaKind};
use ringcast::protocol::rtmp::chunk::{self, ChunkDecoder, RawMessageRef};
use ringcast::protocol::rtmp::client::{ClientConnection, Goal};
use ringcast::protocol::rtmp::message::{TYPE_AUDIO, TYPE_VIDEO};
use ringcast::protocol::rtmp::server::{Event, ServerConnection, ServerSettings};
use ringcast::protocol::rtp::{
    DEFAULT_MTU, Depacketizer, MediaFrame, PacketList, Packetizer, PacketizerSettings, RtpCodec, RtpPacket,
};
use ringcast::protocol::rtsp;
use ringcast::protocol::sdp::Track;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CHUNK_SIZE: u32 = 4096;
const READ_SIZE: usize = 64 * 1024;
const VIDEO_FRAME_LEN: usize = 9_000;
const AUDIO_FRAME_LEN: usize = 370;

/// The sequence header ffmpeg 5.1 + libx264 writes for 1280x720 High (from src/protocol/fixtures.rs).
const AVC_720P_HIGH: &str =
    "17000000000164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f800";

/// The AAC-LC 48 kHz stereo sequence header ffmpeg 5.1 writes (from src/protocol/fixtures.rs).
const AAC_48K_STEREO_LC: &str = "af00119056e500";

fn hex(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex")).collect()
}

/// An AVC NALU tag body: frame type + codec, packet type 1, composition time 0, then data.
fn video_frame(keyframe: bool, len: usize) -> Vec<u8> {
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    body.extend((0..len - body.len()).map(|i| (i * 7) as u8));
    body
}

/// A raw AAC frame tag body.
fn audio_frame(len: usize) -> Vec<u8> {
    let mut body = vec![0xAF, 1];
    body.extend((0..len - body.len()).map(|i| (i * 13) as u8));
    body
}

/// One second of media as (type id, timestamp, body), in timestamp order.
fn one_second() -> Vec<(u8, u32, Vec<u8>)> {
    let mut media = Vec::new();
    for i in 0..30u32 {
        media.push((TYPE_VIDEO, i * 1000 / 30, video_frame(i == 0, VIDEO_FRAME_LEN)));
    }
    for i in 0..43u32 {
        media.push((TYPE_AUDIO, i * 1024 * 1000 / 44_100, audio_frame(AUDIO_FRAME_LEN)));
    }
    media.sort_by_key(|(_, ts, _)| *ts);
    media
}

/// The bytes a publisher sends for `media` (every message with a format 0 header, as our
/// encoder writes it; audio on chunk stream 4, video on 6, message stream 1).
fn encode_stream(media: &[(u8, u32, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (type_id, timestamp, body) in media {
        let csid = if *type_id == TYPE_VIDEO { 6 } else { 4 };
        let message = RawMessageRef { timestamp: *timestamp, type_id: *type_id, stream_id: 1, payload: body };
        chunk::encode_message(&mut out, csid, &message, CHUNK_SIZE);
    }
    out
}

fn chunk_benches(c: &mut Criterion) {
    let media = one_second();
    let stream = encode_stream(&media);
    let mut group = c.benchmark_group("chunk");

    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("decode_1s_publish_64k_reads", |b| {
        b.iter(|| {
            let mut decoder = ChunkDecoder::new();
            decoder.set_chunk_size(CHUNK_SIZE).expect("valid chunk size");
            let mut messages = 0usize;
            for read in stream.chunks(READ_SIZE) {
                let mut input = read;
                while !input.is_empty() {
                    let (used, message) = decoder.decode(input).expect("valid stream");
                    input = &input[used..];
                    if let Some(message) = message {
                        messages += 1;
                        black_box(message);
                    }
                }
            }
            assert_eq!(messages, media.len());
        })
    });
    group.bench_function("encode_1s_publish", |b| {
        let mut out = Vec::with_capacity(stream.len());
        b.iter(|| {
            out.clear();
            for (type_id, timestamp, body) in &media {
                let csid = if *type_id == TYPE_VIDEO { 6 } else { 4 };
                let message = RawMessageRef { timestamp: *timestamp, type_id: *type_id, stream_id: 1, payload: body };
                chunk::encode_message(&mut out, csid, &message, CHUNK_SIZE);
            }
            black_box(&out);
        })
    });

    let frame = video_frame(false, VIDEO_FRAME_LEN);
    group.throughput(Throughput::Bytes(frame.len() as u64));
    group.bench_function("encode_video_frame_9k", |b| {
        let mut out = Vec::with_capacity(frame.len() + 64);
        b.iter(|| {
            out.clear();
            let message = RawMessageRef { timestamp: 40, type_id: TYPE_VIDEO, stream_id: 1, payload: &frame };
            chunk::encode_message(&mut out, 6, &message, CHUNK_SIZE);
            black_box(&out);
        })
    });
    // What the hub does once per packet: the shared chunked form every player gets.
    group.bench_function("chunked_payload_9k", |b| b.iter(|| chunk::chunked_payload(6, black_box(&frame), CHUNK_SIZE)));

    group.throughput(Throughput::Elements(1));
    // What a player's writer does per packet: its own 12-byte message header.
    group.bench_function("put_message_header", |b| {
        b.iter(|| {
            let mut header = [0u8; 16];
            let mut out = &mut header[..];
            chunk::put_message_header(&mut out, 6, black_box(123_456), 9_000, TYPE_VIDEO, 1);
            black_box(header)
        })
    });
    group.finish();
}

/// The `connect` command as OBS sends it.
fn connect_command() -> Vec<Amf0Value> {
    vec![
        "connect".into(),
        Amf0Value::Number(1.0),
        Amf0Value::object([
            ("app", "live".into()),
            ("type", "nonprivate".into()),
            ("flashVer", "FMLE/3.0 (compatible; FMSc/1.0)".into()),
            ("swfUrl", "rtmp://live.example.com/live".into()),
            ("tcUrl", "rtmp://live.example.com/live".into()),
            ("fpad", Amf0Value::Boolean(false)),
            ("capabilities", Amf0Value::Number(15.0)),
            ("audioCodecs", Amf0Value::Number(4071.0)),
            ("videoCodecs", Amf0Value::Number(252.0)),
            ("videoFunction", Amf0Value::Number(1.0)),
            ("objectEncoding", Amf0Value::Number(0.0)),
        ]),
    ]
}

/// `@setDataFrame onMetaData {...}` as ffmpeg writes it.
fn metadata() -> Vec<Amf0Value> {
    vec![
        "@setDataFrame".into(),
        "onMetaData".into(),
        Amf0Value::ecma_array([
            ("duration", Amf0Value::Number(0.0)),
            ("width", Amf0Value::Number(1280.0)),
            ("height", Amf0Value::Number(720.0)),
            ("videodatarate", Amf0Value::Number(2500.0)),
            ("framerate", Amf0Value::Number(30.0)),
            ("videocodecid", Amf0Value::Number(7.0)),
            ("audiodatarate", Amf0Value::Number(128.0)),
            ("audiosamplerate", Amf0Value::Number(44_100.0)),
            ("audiosamplesize", Amf0Value::Number(16.0)),
            ("stereo", Amf0Value::Boolean(true)),
            ("audiocodecid", Amf0Value::Number(10.0)),
            ("encoder", "Lavf59.27.100".into()),
            ("filesize", Amf0Value::Number(0.0)),
        ]),
    ]
}

fn amf0_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("amf0");
    for (name, values) in [("connect", connect_command()), ("onmetadata", metadata())] {
        let mut bytes = Vec::new();
        for value in &values {
            amf0::encode(value, &mut bytes);
        }
        group.throughput(Throughput::Bytes(bytes.len() as u64));
        group.bench_function(BenchmarkId::new("decode_all", name), |b| {
            b.iter(|| amf0::decode_all(black_box(&bytes)).expect("valid AMF0"))
        });
        group.bench_function(BenchmarkId::new("encode", name), |b| {
            let mut out = Vec::with_capacity(bytes.len());
            b.iter(|| {
                out.clear();
                for value in &values {
                    amf0::encode(black_box(value), &mut out);
                }
                black_box(&out);
            })
        });
    }
    group.finish();
}

fn flv_benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("flv");
    let inter = video_frame(false, VIDEO_FRAME_LEN);
    let key = video_frame(true, VIDEO_FRAME_LEN);
    let audio = audio_frame(AUDIO_FRAME_LEN);
    let avc_header = hex(AVC_720P_HIGH);
    let aac_header = [0xAF, 0x00, 0x12, 0x10];

    group.throughput(Throughput::Elements(1));
    for (name, kind, body) in [
        ("video_inter", MediaKind::Video, &inter[..]),
        ("video_key", MediaKind::Video, &key[..]),
        ("audio_aac", MediaKind::Audio, &audio[..]),
    ] {
        group.bench_function(BenchmarkId::new("classify", name), |b| {
            b.iter(|| flv::classify(kind, black_box(body)).expect("valid tag"))
        });
    }
    group.bench_function("parse_codec_info/avc_720p_high", |b| {
        b.iter(|| flv::parse_codec_info(MediaKind::Video, black_box(&avc_header)).expect("valid AVC header"))
    });
    group.bench_function("parse_codec_info/aac_lc", |b| {
        b.iter(|| flv::parse_codec_info(MediaKind::Audio, black_box(&aac_header)).expect("valid AAC header"))
    });

    // One second of the stream as an FLV file, read tag by tag.
    let mut file = Vec::new();
    flv::write_file_header(true, true, &mut file);
    flv::write_tag(9, 0, &avc_header, &mut file).expect("fits");
    flv::write_tag(8, 0, &aac_header, &mut file).expect("fits");
    let media = one_second();
    for (type_id, timestamp, body) in &media {
        flv::write_tag(*type_id, *timestamp, body, &mut file).expect("fits");
    }
    // The reader borrows bodies, never copies them: tags per second is what it costs.
    group.throughput(Throughput::Elements(media.len() as u64 + 2));
    group.bench_function("reader_1s_file", |b| {
        b.iter(|| {
            let mut reader = FlvReader::new();
            let mut buf = &file[..];
            let mut tags = 0;
            while let Some(tag) = reader.read_tag(&mut buf).expect("valid file") {
                black_box(tag);
                tags += 1;
            }
            assert_eq!(tags, media.len() + 2);
        })
    });
    group.finish();
}

/// A client and server that went through handshake, connect, createStream and publish.
fn publishing_server() -> (ServerConnection, ClientConnection) {
    let mut client = ClientConnection::new("live", "rtmp://127.0.0.1/live", Goal::Publish("cam1".into()), [7; 32], 0);
    let mut server = ServerConnection::new(ServerSettings::default(), [9; 32], 0);
    loop {
        let mut to_server = Vec::new();
        client.poll_transmit(&mut to_server);
        server.handle_input(&to_server).expect("server accepts client bytes");
        while let Some(event) = server.poll_event() {
            if matches!(event, Event::Connect(_) | Event::Publish(_) | Event::Play(_)) {
                server.accept();
                server.handle_input(&[]).expect("deferred input");
            }
        }
        let mut to_client = Vec::new();
        server.poll_transmit(&mut to_client);
        client.handle_input(&to_client).expect("client accepts server bytes");
        while client.poll_event().is_some() {}
        if to_server.is_empty() && to_client.is_empty() {
            break;
        }
    }
    (server, client)
}

fn server_benches(c: &mut Criterion) {
    let (mut server, mut client) = publishing_server();
    let media = one_second();
    for (type_id, timestamp, body) in &media {
        client.send_media(*type_id, *timestamp, body);
    }
    // Every message starts with a format 0 header, so the same bytes can be fed again and again.
    let mut stream = Vec::new();
    client.poll_transmit(&mut stream);

    let mut group = c.benchmark_group("rtmp_server");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("publisher_handle_input_1s_64k_reads", |b| {
        let mut transmit = Vec::new();
        b.iter(|| {
            let mut media_events = 0;
            for read in stream.chunks(READ_SIZE) {
                server.handle_input(read).expect("valid media");
                while let Some(event) = server.poll_event() {
                    media_events += usize::from(matches!(event, Event::Audio { .. } | Event::Video { .. }));
                    black_box(event);
                }
                // Acknowledgements, as the session would send them.
                transmit.clear();
                server.poll_transmit(&mut transmit);
            }
            assert_eq!(media_events, media.len());
        })
    });
    group.finish();
}

/// An AVCC frame body with one slice NAL unit (IDR or not) filling `len` bytes.
fn avcc_frame(keyframe: bool, len: usize) -> Vec<u8> {
    let mut body = vec![if keyframe { 0x17 } else { 0x27 }, 1, 0, 0, 0];
    let nal_len = len - body.len() - 4;
    body.extend_from_slice(&(nal_len as u32).to_be_bytes());
    body.push(if keyframe { 0x65 } else { 0x41 });
    body.extend((1..nal_len).map(|i| (i * 7) as u8));
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

/// The 1 s publish with each video frame an AVCC body: (video?, timestamp, body).
fn one_second_avcc() -> Vec<(bool, u32, Vec<u8>)> {
    one_second()
        .into_iter()
        .map(|(type_id, ts, body)| match type_id {
            TYPE_VIDEO => (true, ts, avcc_frame(body[0] == 0x17, body.len())),
            _ => (false, ts, body),
        })
        .collect()
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

fn rtsp_benches(c: &mut Criterion) {
    let media = one_second_avcc();
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
            let mut conn = rtsp::ServerConnection::new(rtsp::ServerSettings::default(), 1);
            for request in requests {
                conn.handle_input(request.as_bytes());
                while let Some(event) = conn.poll_event() {
                    match event {
                        rtsp::Event::Describe(_) => conn.accept_describe(
                            vec![Track::new(video_codec.clone(), 0), Track::new(audio_codec.clone(), 1)],
                            1,
                        ),
                        rtsp::Event::Setup { .. } => conn.accept_setup(rtsp::SetupAnswer::default()),
                        rtsp::Event::Play { .. } => conn.accept_play(&[]),
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
    targets = chunk_benches, amf0_benches, flv_benches, server_benches, rtsp_benches
}
criterion_main!(benches);
