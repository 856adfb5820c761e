//! What every fuzz target does with its input, one function per target, shared by the
//! cargo-fuzz binaries (`fuzz_targets/*.rs`, nightly) and by `tests/fuzz_regressions.rs`
//! (stable, in CI), which replays every input kept in `tests/fuzz_regressions/<target>/`
//! through the same function. [`ENTRIES`] names them; a target's name is its binary's name.
//!
//! Each entry must never panic on any input; the asserts inside state what else it checks.
//! Inputs that steer the entry (piece sizes, which codec) come first, as the module docs of
//! each entry say.
#![allow(dead_code)]

use ringcast::config::Config;
use ringcast::protocol::codec::hevc::HevcPps;
use ringcast::protocol::codec::poc::PictureOrder;
use ringcast::protocol::codec::{AacConfig, AvcDecoderConfig, Codec, CodecInfo, H264Sps, HevcDecoderConfig, HevcSps};
use ringcast::protocol::flv::{self, FlvReader, MediaKind};
use ringcast::protocol::http::ResponseReader;
use ringcast::protocol::http_server::{self, MAX_REQUEST_HEAD, RequestHead, StreamTarget};
use ringcast::protocol::rtmp::chunk::ChunkDecoder;
use ringcast::protocol::rtmp::client::{ClientConnection, Goal};
use ringcast::protocol::rtmp::handshake::{
    Buffered, ClientHandshake, DigestScheme, PACKET_LEN, RTMP_VERSION, SEED_LEN, ServerHandshake,
};
use ringcast::protocol::rtmp::server::{self as rtmp_server_sm, ServerSettings as RtmpSettings};
use ringcast::protocol::rtp::codec::AacTrack;
use ringcast::protocol::rtp::dts::{DtsExtractor, RESTART_GAP};
use ringcast::protocol::rtp::{Depacketizer, RtpCodec, RtpPacket, interleaved, rtcp};
use ringcast::protocol::rtsp::client::{ClientConnection as RtspClient, ClientSettings as RtspClientSettings};
use ringcast::protocol::rtsp::server::{Event as RtspEvent, ServerConnection as RtspConnection, SetupAnswer};
use ringcast::protocol::rtsp::{RtpInfo, ServerSettings as RtspSettings, auth, message, transport, url};
use ringcast::protocol::sdp::{self, Track};
use ringcast::protocol::{amf0, websocket};

/// What a target does with one input.
pub type Entry = fn(&[u8]);

/// Every target by name, for the regression replay.
pub const ENTRIES: &[(&str, Entry)] = &[
    ("amf0", amf0),
    ("chunk_decoder", chunk_decoder),
    ("codec", codec),
    ("config", config),
    ("flv", flv),
    ("handshake", handshake),
    ("http_request", http_request),
    ("http_response", http_response),
    ("interleaved", interleaved),
    ("picture_order", picture_order),
    ("rtcp", rtcp),
    ("rtmp_client", rtmp_client),
    ("rtmp_server", rtmp_server),
    ("rtp_aac", rtp_aac),
    ("rtp_depacketizer", rtp_depacketizer),
    ("rtp_g711", rtp_g711),
    ("rtp_h264", rtp_h264),
    ("rtp_h265", rtp_h265),
    ("rtsp_client", rtsp_client),
    ("rtsp_headers", rtsp_headers),
    ("rtsp_server", rtsp_server),
    ("sdp", sdp),
    ("websocket_frame", websocket_frame),
];

/// The first byte as a piece size (at least 1) and the rest: how the streaming entries split
/// their input into reads.
fn piece_and_rest(data: &[u8]) -> Option<(usize, &[u8])> {
    let (&piece, rest) = data.split_first()?;
    Some((usize::from(piece).max(1), rest))
}

/// A length byte then that many bytes (fewer at the end).
fn take<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let (&len, tail) = rest.split_first()?;
    let len = usize::from(len).min(tail.len());
    let (taken, tail) = tail.split_at(len);
    *rest = tail;
    Some(taken)
}

/// AMF0 decoding of arbitrary bytes (commands and metadata come from clients). Must never
/// panic or recurse without bound.
pub fn amf0(data: &[u8]) {
    let _ = amf0::decode_all(data);
}

/// The RTMP chunk decoder alone, fed in pieces whose size the first byte picks; the second
/// byte sets the peer's chunk size. Never claims more bytes than given.
pub fn chunk_decoder(data: &[u8]) {
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
}

/// Codec configuration records (AVC and HEVC decoder configuration with their SPS, AAC
/// `AudioSpecificConfig`, and through `CodecInfo` the AV1, VP9, Opus and MPEG audio headers):
/// a record that parses is written back to bytes that parse to the same record.
pub fn codec(data: &[u8]) {
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
    let _ = HevcPps::parse(data);
    let _ = AacConfig::parse(data);
    for codec in [Codec::H264, Codec::Hevc, Codec::Av1, Codec::Vp9] {
        let _ = CodecInfo::from_video_config(codec, data);
    }
    for codec in [Codec::Aac, Codec::Opus] {
        let _ = CodecInfo::from_audio_config(codec, data);
    }
    let _ = CodecInfo::from_audio_frame(Codec::Mp3, data);
}

/// The config file: arbitrary text as TOML, merged over the defaults and validated. An error
/// is one line (it names the key), never a panic.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Err(error) = Config::from_toml(text, std::path::Path::new("fuzz.toml")) {
        let _ = error.to_string();
    }
}

/// FLV: media tag classification and codec parsing of arbitrary payloads, and the FLV file
/// reader.
pub fn flv(data: &[u8]) {
    for kind in [MediaKind::Audio, MediaKind::Video, MediaKind::Data] {
        let _ = flv::classify(kind, data);
        let _ = flv::parse_codec_info(kind, data);
    }
    let mut reader = FlvReader::new();
    let mut rest = data;
    while let Ok(Some(_)) = reader.read_tag(&mut rest) {}
}

/// Both RTMP handshakes on hostile input. The first byte's low 7 bits split reads and its top
/// bit picks the digest scheme. Then: the server fed the bytes as C0C1C2; a digest client fed
/// them as S0S1S2; and the server fed a real digest C0C1 of that scheme followed by the bytes
/// as C2. Never a panic, never more bytes claimed than given.
pub fn handshake(data: &[u8]) {
    let Some((&first, wire)) = data.split_first() else { return };
    let piece = usize::from(first & 0x7f).max(1) * 16;
    let digest = if first & 0x80 != 0 { Some(DigestScheme::Scheme1) } else { Some(DigestScheme::Scheme0) };

    let mut server = Buffered::new(ServerHandshake::new([1; SEED_LEN], 0));
    let mut transmit = Vec::new();
    for chunk in wire.chunks(piece) {
        match server.feed(chunk, &mut transmit) {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) => {}
        }
    }

    let mut client = Buffered::new(ClientHandshake::new([2; SEED_LEN], 0, digest));
    let mut transmit = Vec::new();
    for chunk in wire.chunks(piece) {
        match client.feed(chunk, &mut transmit) {
            Ok(Some(_)) | Err(_) => break,
            Ok(None) => {}
        }
    }

    // A digest C1 the server recognizes, so its S2 signing and C2 reading are reached.
    let mut c0c1 = Vec::new();
    ClientHandshake::new([3; SEED_LEN], 0, digest).poll_transmit(&mut c0c1);
    let mut server = ServerHandshake::new([4; SEED_LEN], 0);
    let Ok(used) = server.handle_input(&c0c1) else { return };
    assert!(used <= c0c1.len());
    let mut s0s1s2 = Vec::new();
    server.poll_transmit(&mut s0s1s2);
    assert!(s0s1s2.first() == Some(&RTMP_VERSION) && s0s1s2.len() == 1 + 2 * PACKET_LEN);
    if let Ok(used) = server.handle_input(wire) {
        assert!(used <= wire.len());
    }
}

/// A player's request head as the HTTP-FLV session reads it: the cheap end-of-head scan, then
/// the parse, then the stream path. A head `check` accepts is within the size limit, and its
/// length never exceeds the input.
pub fn http_request(data: &[u8]) {
    let Ok(len) = http_server::check(data, MAX_REQUEST_HEAD) else { return };
    assert!(len <= data.len() && len <= MAX_REQUEST_HEAD);
    if let Ok(head) = RequestHead::parse(&data[..len]) {
        let _ = StreamTarget::parse(&head.path, &head.query);
    }
}

/// A hook endpoint's reply as the callback client reads it, fed in pieces whose size the first
/// byte picks. Never claims more bytes than given.
pub fn http_response(data: &[u8]) {
    let Some((&piece, wire)) = data.split_first() else { return };
    let mut reader = ResponseReader::new(if piece & 1 == 0 { "POST" } else { "HEAD" });
    let mut pending = Vec::new();
    for chunk in wire.chunks(usize::from(piece).max(1)) {
        pending.extend_from_slice(chunk);
        match reader.handle_input(&pending) {
            Ok(used) => {
                assert!(used <= pending.len());
                pending.drain(..used);
            }
            Err(_) => return,
        }
        if reader.response().is_some() {
            return;
        }
    }
    let _ = reader.handle_eof();
}

/// RTSP's interleaved framing as the RTSP session splits its input: frames at the front, each
/// packet handed on as RTP or RTCP by its channel's parity. A frame's header never claims
/// bytes it has not got, and what it says round-trips through `header`.
pub fn interleaved(data: &[u8]) {
    let mut rest = data;
    while let Some(&first) = rest.first() {
        if first != interleaved::MAGIC {
            rest = &rest[1..];
            continue;
        }
        let Some(frame) = interleaved::check(rest) else { return };
        let Ok(len) = u16::try_from(frame.len) else { panic!("a 16-bit length read as {}", frame.len) };
        assert_eq!(interleaved::header(frame.channel, len), rest[..interleaved::HEADER_LEN]);
        let Some(packet) = rest.get(interleaved::HEADER_LEN..frame.total_len()) else { return };
        if frame.channel % 2 == 0 {
            let _ = RtpPacket::parse(packet);
        } else {
            let _ = rtcp::check_compound(packet);
        }
        rest = &rest[frame.total_len()..];
    }
}

/// Slice headers and decode times: the input is an SPS and a PPS (each a length byte then that
/// many bytes), then access units, each a flags byte (bit 0: keyframe, bit 1: H.265), a signed
/// presentation step in milliseconds and a length-prefixed first slice. The slices go through
/// `PictureOrder` and the times through `DtsExtractor`: decode times never go back but on a
/// restarted time line.
pub fn picture_order(data: &[u8]) {
    let mut rest = data;
    let (Some(sps), Some(pps)) = (take(&mut rest), take(&mut rest)) else { return };
    let mut h264 = PictureOrder::default();
    if let Ok(sps) = H264Sps::parse(sps) {
        h264.set_h264(sps);
    }
    let mut h265 = PictureOrder::default();
    if let (Ok(sps), Ok(pps)) = (HevcSps::parse(sps), HevcPps::parse(pps)) {
        h265.set_h265(sps, pps);
    }
    let mut extractor = DtsExtractor::new(usize::from(sps.first().copied().unwrap_or(0) % 20), 2);
    let (mut pts, mut last_dts): (i64, Option<i64>) = (0, None);
    // The lowest presentation time since the last decode time given: a restart shows there.
    let mut lowest_pts = i64::MAX;
    while let Some((&flags, tail)) = rest.split_first() {
        let Some((&step, tail)) = tail.split_first() else { return };
        rest = tail;
        let Some(slice) = take(&mut rest) else { return };
        pts += i64::from(step as i8) * 90;
        lowest_pts = lowest_pts.min(pts);
        let order = if flags & 2 != 0 { &mut h265 } else { &mut h264 };
        let position = order.position(slice);
        let sync_point = flags & 1 != 0 || position.is_some_and(|at| at.intra);
        if let Some(dts) = extractor.decode_time(pts, sync_point, position.map(|at| at.poc)) {
            if let Some(last) = last_dts {
                assert!(dts >= last || lowest_pts < last - RESTART_GAP, "{dts} after {last}");
            }
            last_dts = Some(dts);
            lowest_pts = i64::MAX;
        }
    }
}

/// A compound RTCP packet as a peer sends it (over UDP or interleaved): every packet found
/// lies inside the input, and together they cover it.
pub fn rtcp(data: &[u8]) {
    let Ok(packets) = rtcp::check_compound(data) else { return };
    let covered: usize = packets.iter().map(|packet| 4 + packet.body.len()).sum();
    assert_eq!(covered, data.len());
}

/// The client-side RTMP state machine (what ringcast-load runs against a server): a simple
/// S0S1S2, then the fuzzer's bytes as the server's chunk stream, fed in pieces whose size the
/// first byte picks; its low two bits pick play, publish or connect only.
pub fn rtmp_client(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else { return };
    let goal = match first & 3 {
        0 => Goal::Play("fuzz?k=v".into()),
        1 => Goal::Publish("fuzz".into()),
        _ => Goal::Connect,
    };
    let mut conn = ClientConnection::new("live", "rtmp://127.0.0.1/live", goal, [5; SEED_LEN], 0);
    let mut out = Vec::new();
    conn.poll_transmit(&mut out);
    let mut s0s1s2 = vec![RTMP_VERSION];
    s0s1s2.resize(1 + 2 * PACKET_LEN, 0);
    if conn.handle_input(&s0s1s2).is_err() {
        return;
    }
    for chunk in stream.chunks(usize::from(first >> 2).max(1)) {
        if conn.handle_input(chunk).is_err() {
            return;
        }
        while conn.poll_event().is_some() {}
        out.clear();
        conn.poll_transmit(&mut out);
    }
}

/// The whole server-side RTMP state machine: a valid simple handshake, then the fuzzer's
/// bytes as the chunk stream, fed in pieces whose size the first byte picks. Every request is
/// accepted, so publish and play paths are reached too.
pub fn rtmp_server(data: &[u8]) {
    let Some((piece, stream)) = piece_and_rest(data) else { return };
    let mut conn = rtmp_server_sm::ServerConnection::new(RtmpSettings::default(), [7; SEED_LEN], 0);
    let mut out = Vec::new();
    // C0 (version 3), C1 and C2 of a simple handshake: zero time, zero version, any random.
    let mut handshake = vec![RTMP_VERSION];
    handshake.resize(1 + 2 * PACKET_LEN, 0);
    if conn.handle_input(&handshake).is_err() {
        return;
    }
    for chunk in stream.chunks(piece) {
        if conn.handle_input(chunk).is_err() {
            return;
        }
        while let Some(event) = conn.poll_event() {
            if matches!(
                event,
                rtmp_server_sm::Event::Connect(_) | rtmp_server_sm::Event::Publish(_) | rtmp_server_sm::Event::Play(_)
            ) {
                conn.accept();
            }
        }
        out.clear();
        conn.poll_transmit(&mut out);
    }
}

const MAX_FRAME: usize = 64 * 1024;

/// A sequence of packets, each a length byte then that many bytes, parsed as RTP (the parser
/// is fuzzed too) and handed to a depacketizer of each codec: no frame beyond the cap.
fn depacketize(codecs: &[RtpCodec], data: &[u8]) {
    let mut depacketizers: Vec<Depacketizer> = codecs.iter().map(|codec| Depacketizer::new(codec, MAX_FRAME)).collect();
    let mut frames = Vec::new();
    let mut rest = data;
    while let Some(packet) = take(&mut rest) {
        let Ok(packet) = RtpPacket::parse(packet) else { continue };
        for depacketizer in &mut depacketizers {
            frames.clear();
            let _ = depacketizer.depacketize(&packet, &mut frames);
            assert!(frames.iter().all(|frame| frame.body.len() <= MAX_FRAME + 16));
        }
    }
}

/// Every RTP depacketizer (H.264, H.265, AAC-hbr, G.711) fed the same packets.
pub fn rtp_depacketizer(data: &[u8]) {
    let mut codecs =
        vec![RtpCodec::H264 { config: None }, RtpCodec::H265 { config: None }, RtpCodec::Pcma { channels: 1 }];
    if let Ok(aac) = AacTrack::from_config(&[0x11, 0x90]) {
        codecs.push(RtpCodec::Aac(aac));
    }
    depacketize(&codecs, data);
}

/// The H.264 depacketizer alone (single NAL units, STAP-A, FU-A).
pub fn rtp_h264(data: &[u8]) {
    depacketize(&[RtpCodec::H264 { config: None }], data);
}

/// The H.265 depacketizer alone (single NAL units, aggregation packets, fragmentation units).
pub fn rtp_h265(data: &[u8]) {
    depacketize(&[RtpCodec::H265 { config: None }], data);
}

/// The AAC-hbr depacketizer alone; the first byte picks the AudioSpecificConfig's sample rate
/// index and channels, so AU headers of several configurations are read.
pub fn rtp_aac(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else { return };
    // Object type 2 (AAC LC), then 4 bits of rate index and 4 of channel configuration.
    let config = [0x10 | (first >> 5), ((first & 0x1f) << 3) & 0xf8];
    let Ok(aac) = AacTrack::from_config(&config) else { return };
    depacketize(&[RtpCodec::Aac(aac)], rest);
}

/// The G.711 depacketizers alone (A-law and mu-law), mono and stereo.
pub fn rtp_g711(data: &[u8]) {
    depacketize(
        &[
            RtpCodec::Pcma { channels: 1 },
            RtpCodec::Pcmu { channels: 1 },
            RtpCodec::Pcma { channels: 2 },
            RtpCodec::Pcmu { channels: 2 },
        ],
        data,
    );
}

/// RTSP's header parsers on client text: the input is three length-prefixed fields, a
/// `Transport` value, a request URL and an `Authorization` value, then a request buffer for
/// the framing check. A Digest that parses is verified (the constant-time compare), and a
/// request `check` frames lies inside the buffer.
pub fn rtsp_headers(data: &[u8]) {
    let mut rest = data;
    let (Some(transport_value), Some(url_value), Some(auth_value)) =
        (take(&mut rest), take(&mut rest), take(&mut rest))
    else {
        return;
    };
    let _ = transport::parse(&String::from_utf8_lossy(transport_value));
    let controls = ["trackID=0".to_owned(), "rtsp://host/live/cam/streamid=1".to_owned()];
    if let Ok(target) = url::parse(&String::from_utf8_lossy(url_value), &controls) {
        assert!(target.track.is_none_or(|track| track < controls.len()));
    }
    if let Some(auth::Credentials::Digest(digest)) = auth::parse_authorization(&String::from_utf8_lossy(auth_value)) {
        let _ = digest.verify("DESCRIBE", "secret");
    }
    if let Ok(message::Check::Complete { len }) =
        message::check(rest, &ringcast::protocol::limits::WireLimits::default())
    {
        assert!(len <= rest.len());
        let _ = message::header_value(&rest[..len], "cseq");
    }
}

/// The server-side RTSP state machine: the fuzzer's bytes as what a client sends (requests,
/// interleaved frames, garbage), fed in pieces whose size the first byte picks. Every request
/// is accepted (DESCRIBE with a fixed H.264 + AAC description), so SETUP, PLAY and RECORD
/// paths are reached too.
pub fn rtsp_server(data: &[u8]) {
    let Some((piece, stream)) = piece_and_rest(data) else { return };
    let mut conn = RtspConnection::new(RtspSettings::default(), 1);
    let mut out = Vec::new();
    for chunk in stream.chunks(piece) {
        conn.handle_input(chunk);
        while let Some(event) = conn.poll_event() {
            match event {
                RtspEvent::Describe(_) => {
                    let mut tracks = vec![Track::new(RtpCodec::H264 { config: None }, 0)];
                    if let Ok(aac) = AacTrack::from_config(&[0x11, 0x90]) {
                        tracks.push(Track::new(RtpCodec::Aac(aac), 1));
                    }
                    conn.accept_describe(tracks, 1);
                }
                RtspEvent::Announce { .. } | RtspEvent::Record(_) | RtspEvent::Pause(_) => conn.accept(),
                RtspEvent::Setup { .. } => {
                    conn.accept_setup(SetupAnswer { server_port: Some((1000, 1001)), ssrc: Some(5) })
                }
                RtspEvent::Play { .. } => conn.accept_play(&[RtpInfo { track: 0, sequence: 1, rtp_time: 2 }]),
                RtspEvent::Interleaved { channel, .. } => {
                    let _ = conn.track_of_channel(channel);
                }
                RtspEvent::Teardown | RtspEvent::KeepAlive | RtspEvent::Refused(_) => {}
            }
        }
        out.clear();
        conn.poll_transmit(&mut out);
    }
}

/// The client-side RTSP state machine (a camera pull): the fuzzer's bytes as what a camera
/// sends (responses, SDP, interleaved frames, requests of its own, garbage), fed in pieces
/// whose size the first byte picks, the clock a second further at each piece so response
/// deadlines and keep-alives are reached too.
pub fn rtsp_client(data: &[u8]) {
    let Some((piece, stream)) = piece_and_rest(data) else { return };
    let Ok(settings) = RtspClientSettings::for_url("rtsp://cam:pw@127.0.0.1/live/cam1") else { return };
    let mut conn = RtspClient::new(settings, core::time::Duration::ZERO, 1);
    let mut out = Vec::new();
    for (index, chunk) in stream.chunks(piece).enumerate() {
        let now = core::time::Duration::from_secs(index as u64);
        if conn.handle_input(now, chunk).is_err() || conn.handle_timeout(now).is_err() {
            return;
        }
        while conn.poll_event().is_some() {}
        out.clear();
        conn.poll_transmit(&mut out);
    }
}

/// SDP as an ANNOUNCE carries it, parsed from arbitrary bytes: the tracks of a description that
/// parses describe themselves again (built and re-parsed) as the same tracks.
pub fn sdp(data: &[u8]) {
    let Ok(announced) = sdp::parse(data) else { return };
    for track in &announced.tracks {
        let _ = track.codec.sequence_header();
    }
    let built = sdp::build(&announced.tracks, "fuzz", 1, "127.0.0.1");
    let again = sdp::parse(built.as_bytes()).expect("a built description parses");
    assert_eq!(again.tracks.len(), announced.tracks.len());
}

/// A WebSocket client's bytes as the HTTP-FLV session decodes them, fed in pieces whose size
/// the first byte picks. Never takes more bytes than given, and an incomplete frame decodes
/// the same once the rest arrives.
pub fn websocket_frame(data: &[u8]) {
    let Some((piece, wire)) = piece_and_rest(data) else { return };
    let mut pending = Vec::new();
    for chunk in wire.chunks(piece) {
        pending.extend_from_slice(chunk);
        loop {
            match websocket::decode(&pending) {
                Ok((_, used)) => {
                    assert!(used > 0 && used <= pending.len());
                    pending.drain(..used);
                }
                Err(websocket::FrameError::Incomplete) => break,
                Err(_) => return,
            }
        }
    }
}
