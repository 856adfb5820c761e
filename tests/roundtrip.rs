//! proptest round trips of every encoder/decoder pair in `protocol/`: what one side writes, the
//! other reads back the same, whatever the sizes, chunk sizes, MTUs and read splits.
//!
//! Layout: one module per pair (AMF0, RTMP chunks, FLV tags, RTP per codec, interleaved
//! framing, WebSocket frames, HTTP heads both ways, SDP, codec records). `feed_in_pieces`
//! splits a byte stream the way socket reads would.

use proptest::collection::vec;
use proptest::prelude::*;

/// Cuts `wire` into consecutive pieces of the given sizes (cycled; each at least 1 byte).
fn pieces<'a>(wire: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut at = 0;
    let mut size = sizes.iter().cycle();
    std::iter::from_fn(move || {
        if at >= wire.len() {
            return None;
        }
        let len = size.next().copied().unwrap_or(wire.len()).max(1).min(wire.len() - at);
        at += len;
        Some(&wire[at - len..at])
    })
}

mod amf0 {
    use super::*;
    use ringcast::protocol::amf0::{self, Amf0Value};

    fn key() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_]{1,12}"
    }

    fn value() -> impl Strategy<Value = Amf0Value> {
        let leaf = prop_oneof![
            any::<f64>().prop_filter("NaN is never equal to itself", |n| !n.is_nan()).prop_map(Amf0Value::Number),
            any::<bool>().prop_map(Amf0Value::Boolean),
            ".{0,40}".prop_map(Amf0Value::String),
            ".{0,40}".prop_map(Amf0Value::LongString),
            ".{0,40}".prop_map(Amf0Value::XmlDocument),
            Just(Amf0Value::Null),
            Just(Amf0Value::Undefined),
            Just(Amf0Value::Unsupported),
            any::<u16>().prop_map(Amf0Value::Reference),
            (any::<i64>(), any::<i16>())
                .prop_map(|(millis, timezone)| Amf0Value::Date { millis: millis as f64, timezone }),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            let properties = vec((key(), inner.clone()), 0..8).boxed();
            prop_oneof![
                properties.clone().prop_map(Amf0Value::Object),
                properties.clone().prop_map(Amf0Value::EcmaArray),
                vec(inner, 0..8).prop_map(Amf0Value::StrictArray),
                (key(), properties)
                    .prop_map(|(class_name, properties)| Amf0Value::TypedObject { class_name, properties }),
            ]
        })
    }

    proptest! {
        #[test]
        fn values_decode_to_what_was_encoded(values in vec(value(), 1..6)) {
            let mut wire = Vec::new();
            amf0::encode_all(&values, &mut wire);
            prop_assert_eq!(amf0::decode_all(&wire), Ok(values));
        }
    }
}

mod chunk {
    use super::*;
    use ringcast::protocol::rtmp::chunk::{ChunkDecoder, RawMessageRef, encode_message};

    #[derive(Debug, Clone)]
    struct Message {
        csid: u32,
        timestamp: u32,
        type_id: u8,
        stream_id: u32,
        payload: Vec<u8>,
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            prop_oneof![2u32..64, 64u32..320, 320u32..65600],
            prop_oneof![0u32..0x00FF_FFFF, Just(0x00FF_FFFF), any::<u32>()],
            8u8..=22,
            any::<u32>(),
            vec(any::<u8>(), 0..6000),
        )
            .prop_map(|(csid, timestamp, type_id, stream_id, payload)| Message {
                csid,
                timestamp,
                type_id,
                stream_id,
                payload,
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn messages_survive_any_chunk_size_and_read_split(
            messages in vec(message(), 1..6),
            chunk_size in prop_oneof![1u32..256, 256u32..0x7FFF_FFFF],
            splits in vec(1usize..3000, 1..8),
        ) {
            let mut wire = Vec::new();
            for m in &messages {
                let raw = RawMessageRef { timestamp: m.timestamp, type_id: m.type_id, stream_id: m.stream_id, payload: &m.payload };
                encode_message(&mut wire, m.csid, &raw, chunk_size);
            }
            let mut decoder = ChunkDecoder::new();
            decoder.set_chunk_size(chunk_size).expect("a chunk size the encoder used");
            let mut decoded = Vec::new();
            let mut pending = Vec::new();
            for piece in pieces(&wire, &splits) {
                pending.extend_from_slice(piece);
                loop {
                    let (used, message) = decoder.decode(&pending).expect("the encoder's chunks decode");
                    pending.drain(..used);
                    match message {
                        Some(message) => decoded.push(message),
                        None if used == 0 => break,
                        None => {}
                    }
                }
            }
            prop_assert!(pending.is_empty());
            prop_assert_eq!(decoded.len(), messages.len());
            for (got, sent) in decoded.iter().zip(&messages) {
                prop_assert_eq!(
                    (got.csid, got.timestamp, got.type_id, got.stream_id, &got.payload[..]),
                    (sent.csid, sent.timestamp, sent.type_id, sent.stream_id, &sent.payload[..])
                );
            }
        }
    }
}

mod flv_file {
    use super::*;
    use ringcast::protocol::flv::{FlvError, FlvReader, write_file_header, write_tag};

    proptest! {
        #[test]
        fn tags_read_back_as_written(
            has_audio in any::<bool>(),
            has_video in any::<bool>(),
            tags in vec((prop_oneof![Just(8u8), Just(9), Just(18)], any::<u32>(), vec(any::<u8>(), 0..3000)), 0..8),
            splits in vec(1usize..2000, 1..6),
        ) {
            let mut wire = Vec::new();
            write_file_header(has_audio, has_video, &mut wire);
            for (tag_type, timestamp, body) in &tags {
                write_tag(*tag_type, *timestamp, body, &mut wire).expect("a body under 16 MiB");
            }
            // Fed as a socket would deliver it: an incomplete tag consumes nothing.
            let mut reader = FlvReader::new();
            let mut read = Vec::new();
            let mut pending = Vec::new();
            for piece in pieces(&wire, &splits) {
                pending.extend_from_slice(piece);
                let mut rest = &pending[..];
                loop {
                    match reader.read_tag(&mut rest) {
                        Ok(Some(tag)) => read.push((tag.tag_type, tag.timestamp_ms, tag.body.to_vec())),
                        Ok(None) | Err(FlvError::Incomplete) => break,
                        Err(other) => return Err(TestCaseError::fail(format!("{other}"))),
                    }
                }
                let used = pending.len() - rest.len();
                pending.drain(..used);
            }
            prop_assert!(pending.is_empty());
            let header = reader.header().expect("the header was read");
            prop_assert_eq!((header.has_audio, header.has_video), (has_audio, has_video));
            prop_assert_eq!(read, tags);
        }
    }
}

mod rtp {
    use super::*;
    use bytes::Bytes;
    use ringcast::protocol::codec::{AvcDecoderConfig, HevcDecoderConfig};
    use ringcast::protocol::flv;
    use ringcast::protocol::rtp::codec::AacTrack;
    use ringcast::protocol::rtp::{
        Depacketizer, MediaFrame, PacketList, Packetizer, PacketizerSettings, RtpCodec, RtpPacket,
    };

    fn settings(mtu: usize, first_sequence: u16, first_timestamp: u32) -> PacketizerSettings {
        PacketizerSettings { payload_type: 96, ssrc: 7, first_sequence, first_timestamp, mtu }
    }

    /// Packetizes each (timestamp, FLV body) and depacketizes every packet, as a relay would.
    fn relay(codec: &RtpCodec, settings: PacketizerSettings, bodies: &[(u32, Vec<u8>)]) -> Vec<MediaFrame> {
        let mut packetizer = Packetizer::new(codec, settings);
        let mut depacketizer = Depacketizer::new(codec, 1 << 20);
        let mut frames = Vec::new();
        for (timestamp, body) in bodies {
            let mut list = Vec::new();
            packetizer.packetize(*timestamp, body, &mut list).expect("a well-formed body packetizes");
            for packet in PacketList(Bytes::from(list)).packets() {
                let packet = RtpPacket::parse(&packet).expect("a packet the packetizer built parses");
                assert!(packet.payload.len() + 12 <= settings.mtu.max(ringcast::protocol::rtp::MIN_MTU));
                depacketizer.depacketize(&packet, &mut frames).expect("a packet the packetizer built depacketizes");
            }
        }
        frames
    }

    /// An FLV keyframe body (legacy AVC or enhanced HEVC) of length-prefixed NAL units.
    fn video_body(hevc: bool, units: &[Vec<u8>]) -> Vec<u8> {
        let mut body = if hevc { [&[0x90 | 1][..], b"hvc1", &[0, 0, 0]].concat() } else { vec![0x17, 1, 0, 0, 0] };
        for unit in units {
            body.extend_from_slice(&(unit.len() as u32).to_be_bytes());
            body.extend_from_slice(unit);
        }
        body
    }

    /// The NAL units of a frame body's payload, each behind a 4-byte length.
    fn nal_units(mut payload: &[u8]) -> Vec<&[u8]> {
        let mut units = Vec::new();
        while let Some((len, rest)) = payload.split_first_chunk::<4>() {
            let (unit, rest) = rest.split_at(u32::from_be_bytes(*len) as usize);
            units.push(unit);
            payload = rest;
        }
        units
    }

    /// IDR slices (H.264 type 5, one header byte; H.265 IDR_W_RADL, two) with random payloads:
    /// every access unit a sync point, so each one's decode time is its presentation time
    /// whatever its slice header says, and the depacketizer emits every one.
    fn slices(hevc: bool) -> impl Strategy<Value = Vec<Vec<u8>>> {
        let header: &'static [u8] = if hevc { &[19 << 1, 1] } else { &[0x65] };
        vec(vec(any::<u8>(), 1..4000).prop_map(move |payload| [header, &payload[..]].concat()), 1..4)
    }

    /// H.264 from a Baseline SPS built here; H.265 from the `hvcC` libx265 wrote for 426x240.
    fn configured(hevc: bool) -> RtpCodec {
        if hevc {
            let hex = "0101600000009000000000003cf000fcfdf8f800000f03200001001840010c01ffff01600000030090000003000003003c959809210001002b42010101600000030090000003000003003ca00d880f1c9e5959a4932bc05a020000030002000003003c1022000100074401c172b46240";
            let record: Vec<u8> =
                (0..hex.len()).step_by(2).map(|at| u8::from_str_radix(&hex[at..at + 2], 16).expect("hex")).collect();
            RtpCodec::H265 { config: Some(HevcDecoderConfig::parse(&record).expect("a real hvcC")) }
        } else {
            let sps = super::codec_records::baseline_sps(30, 20, 15, 1);
            let config = AvcDecoderConfig::from_parameter_sets(vec![sps], vec![vec![0x68, 0xce, 0x38, 0x80]]);
            RtpCodec::H264 { config: Some(config.expect("a Baseline SPS")) }
        }
    }

    fn video_round_trip(hevc: bool, frames: &[Vec<Vec<u8>>], mtu: usize, sequence: u16) -> Result<(), TestCaseError> {
        let bodies: Vec<(u32, Vec<u8>)> =
            frames.iter().enumerate().map(|(i, units)| (i as u32 * 40, video_body(hevc, units))).collect();
        let out = relay(&configured(hevc), settings(mtu, sequence, 1234), &bodies);
        let mut coded = Vec::new();
        for frame in &out {
            let tag = flv::parse_video_tag(&frame.body).map_err(|e| TestCaseError::fail(e.to_string()))?;
            if tag.packet_type == flv::PacketType::CodedFrames {
                // The decode time may run ahead of the presentation time (a stream that
                // declares reordering), never behind; what is shown when is what was sent.
                prop_assert!(tag.composition_time_ms >= 0);
                coded.push((frame.timestamp + tag.composition_time_ms as u32, nal_units(tag.payload)));
            }
        }
        let sent: Vec<(u32, Vec<&[u8]>)> = bodies
            .iter()
            .zip(frames)
            .map(|((ts, _), units)| (*ts, units.iter().map(Vec::as_slice).collect()))
            .collect();
        prop_assert_eq!(coded, sent);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn h264_access_units_survive_any_mtu(
            frames in vec(slices(false), 1..6), mtu in 64usize..1500, sequence in any::<u16>(),
        ) {
            video_round_trip(false, &frames, mtu, sequence)?;
        }

        #[test]
        fn h265_access_units_survive_any_mtu(
            frames in vec(slices(true), 1..6), mtu in 64usize..1500, sequence in any::<u16>(),
        ) {
            video_round_trip(true, &frames, mtu, sequence)?;
        }

        #[test]
        fn aac_frames_survive_any_mtu(
            frames in vec(vec(any::<u8>(), 1..3000), 1..8), mtu in 64usize..1500, sequence in any::<u16>(),
        ) {
            // LC, 48 kHz, stereo: 1024 samples a frame, 21.33 ms as FLV rounds it.
            let codec = RtpCodec::Aac(AacTrack::from_config(&[0x11, 0x90]).expect("a valid AudioSpecificConfig"));
            let bodies: Vec<(u32, Vec<u8>)> = frames
                .iter()
                .enumerate()
                .map(|(i, frame)| ((i as u32 * 64) / 3, [&[0xaf, 1][..], frame].concat()))
                .collect();
            let out = relay(&codec, settings(mtu, sequence, 0), &bodies);
            let got: Vec<(u32, &[u8])> = out.iter().map(|frame| (frame.timestamp, &frame.body[..])).collect();
            let sent: Vec<(u32, &[u8])> = bodies.iter().map(|(ts, body)| (*ts, &body[..])).collect();
            prop_assert_eq!(got, sent);
        }

        #[test]
        fn g711_samples_survive_any_mtu(
            alaw in any::<bool>(),
            stereo in any::<bool>(),
            frames in vec(vec(any::<u8>(), 1..2000), 1..8),
            mtu in 64usize..1500,
        ) {
            let channels = if stereo { 2 } else { 1 };
            let codec = if alaw { RtpCodec::Pcma { channels } } else { RtpCodec::Pcmu { channels } };
            let flags = (if alaw { 7 << 4 } else { 8 << 4 }) | 0x02 | u8::from(stereo);
            // Whole sample frames: a stereo frame is two bytes.
            let frames: Vec<Vec<u8>> =
                frames.into_iter().map(|mut f| { f.truncate(f.len() / channels as usize * channels as usize); f }).filter(|f| !f.is_empty()).collect();
            let bodies: Vec<(u32, Vec<u8>)> =
                frames.iter().enumerate().map(|(i, samples)| (i as u32 * 250, [&[flags][..], samples].concat())).collect();
            let out = relay(&codec, settings(mtu, 0, 0), &bodies);
            // One frame per packet: the samples, concatenated, are what was sent.
            let got: Vec<u8> = out.iter().flat_map(|frame| {
                assert_eq!(frame.body[0], flags);
                frame.body[1..].to_vec()
            }).collect();
            prop_assert_eq!(got, frames.concat());
        }
    }
}

mod interleaved {
    use super::*;
    use ringcast::protocol::rtp::interleaved::{self, Frame};

    proptest! {
        #[test]
        fn frames_split_back_into_their_channels_and_packets(
            frames in vec((any::<u8>(), vec(any::<u8>(), 0..3000)), 1..8),
            splits in vec(1usize..4000, 1..6),
        ) {
            let mut wire = Vec::new();
            for (channel, packet) in &frames {
                wire.extend_from_slice(&interleaved::header(*channel, packet.len() as u16));
                wire.extend_from_slice(packet);
            }
            let mut read = Vec::new();
            let mut pending = Vec::new();
            for piece in pieces(&wire, &splits) {
                pending.extend_from_slice(piece);
                while let Some(Frame { channel, len }) = interleaved::check(&pending) {
                    let total = interleaved::HEADER_LEN + len;
                    if pending.len() < total {
                        break;
                    }
                    read.push((channel, pending[interleaved::HEADER_LEN..total].to_vec()));
                    pending.drain(..total);
                }
            }
            prop_assert!(pending.is_empty());
            prop_assert_eq!(read, frames);
        }
    }
}

mod websocket {
    use super::*;
    use ringcast::protocol::websocket::{self, ClientFrame, FrameError};

    /// A client's frame: the server's header encoder with the mask bit set and a masking key
    /// after it, the payload masked.
    fn client_frame(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut frame = Vec::new();
        websocket::encode_header(opcode, payload.len() as u64, &mut frame);
        frame[1] |= 0x80;
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(byte, key)| byte ^ key));
        frame
    }

    fn frame() -> impl Strategy<Value = (u8, Vec<u8>)> {
        prop_oneof![
            vec(any::<u8>(), 0..126).prop_map(|payload| (0x9, payload)),
            (any::<u16>(), vec(any::<u8>(), 0..124))
                .prop_map(|(code, reason)| (0x8, [&code.to_be_bytes()[..], &reason].concat())),
            vec(any::<u8>(), 0..126).prop_map(|payload| (0xA, payload)),
            vec(any::<u8>(), 0..=65_536).prop_map(|payload| (0x2, payload)),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn client_frames_decode_to_what_was_sent(
            frames in vec((frame(), any::<[u8; 4]>()), 1..5),
            splits in vec(1usize..20_000, 1..6),
        ) {
            let wire: Vec<u8> = frames.iter().flat_map(|((opcode, payload), mask)| client_frame(*opcode, payload, *mask)).collect();
            let mut decoded = Vec::new();
            let mut pending = Vec::new();
            for piece in pieces(&wire, &splits) {
                pending.extend_from_slice(piece);
                loop {
                    match websocket::decode(&pending) {
                        Ok((frame, used)) => {
                            decoded.push(frame);
                            pending.drain(..used);
                        }
                        Err(FrameError::Incomplete) => break,
                        Err(other) => return Err(TestCaseError::fail(format!("{other}"))),
                    }
                }
            }
            prop_assert!(pending.is_empty());
            let expected: Vec<ClientFrame> = frames
                .iter()
                .map(|((opcode, payload), _)| match opcode {
                    0x9 => ClientFrame::Ping(payload.clone()),
                    0x8 => ClientFrame::Close { code: Some(u16::from_be_bytes([payload[0], payload[1]])) },
                    _ => ClientFrame::Ignored,
                })
                .collect();
            prop_assert_eq!(decoded, expected);
        }
    }
}

mod http_heads {
    use super::*;
    use ringcast::protocol::http::{Request, ResponseReader};
    use ringcast::protocol::http_server::{self, Method, RequestHead, ResponseHead};

    proptest! {
        /// What the hook client writes, the HTTP-FLV server's head parser reads.
        #[test]
        fn request_heads_parse_as_encoded(
            path in "(/[a-zA-Z0-9._~%-]{1,16}){1,4}",
            query in proptest::option::of("[a-z]{1,6}=[a-zA-Z0-9%]{0,12}(&[a-z]{1,6}=[a-zA-Z0-9]{0,8}){0,3}"),
            host in "[a-z0-9.-]{1,30}(:[0-9]{1,5})?",
            user_agent in "[ -~]{0,60}",
            referer in "https?://[a-z]{1,10}/[a-z/]{0,20}",
        ) {
            let target = match &query { Some(query) => format!("{path}?{query}"), None => path.clone() };
            let headers = [("User-Agent".to_owned(), user_agent.clone()), ("Referer".to_owned(), referer.clone())];
            let mut wire = Vec::new();
            Request { method: "GET", target: &target, host: &host, headers: &headers, body: b"" }.encode(&mut wire);
            prop_assert_eq!(http_server::check(&wire, http_server::MAX_REQUEST_HEAD), Ok(wire.len()));
            let head = RequestHead::parse(&wire).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(head.method, Method::Get);
            prop_assert_eq!(head.path, path);
            prop_assert_eq!(head.query, query.unwrap_or_default());
            prop_assert_eq!(head.host, host);
            prop_assert_eq!(head.user_agent, user_agent.trim());
            prop_assert_eq!(head.referer, referer);
        }

        /// What the HTTP-FLV server writes, the hook client's reply reader reads.
        #[test]
        fn response_heads_read_as_encoded(
            status in prop_oneof![Just(200u16), Just(302), Just(400), Just(403), Just(404), Just(500), Just(503)],
            location in proptest::option::of("http://[a-z]{1,10}/[a-z/?=&]{0,30}"),
            body in vec(any::<u8>(), 0..2000),
            splits in vec(1usize..500, 1..5),
        ) {
            let length = body.len().to_string();
            let mut headers = vec![("Content-Length", length.as_str())];
            if let Some(location) = &location {
                headers.push(("Location", location.as_str()));
            }
            let mut wire = Vec::new();
            ResponseHead { status, headers: &headers }.encode(&mut wire);
            wire.extend_from_slice(&body);
            let mut reader = ResponseReader::new("POST");
            let mut pending = Vec::new();
            for piece in pieces(&wire, &splits) {
                pending.extend_from_slice(piece);
                let used = reader.handle_input(&pending).map_err(|e| TestCaseError::fail(e.to_string()))?;
                pending.drain(..used);
            }
            prop_assert!(pending.is_empty());
            let response = reader.response().expect("the whole response was fed");
            prop_assert_eq!(response.status, status);
            prop_assert_eq!(&response.location, &location);
            prop_assert!(response.reusable);
        }
    }
}

mod sdp {
    use super::*;
    use ringcast::protocol::rtp::RtpCodec;
    use ringcast::protocol::rtp::codec::AacTrack;
    use ringcast::protocol::sdp::{self, Track};

    fn codec() -> impl Strategy<Value = RtpCodec> {
        prop_oneof![
            Just(RtpCodec::H264 { config: None }),
            Just(RtpCodec::H265 { config: None }),
            (1u8..=2).prop_map(|channels| RtpCodec::Pcma { channels }),
            (1u8..=2).prop_map(|channels| RtpCodec::Pcmu { channels }),
            // AAC LC (object type 2) at rate index 3..=11, one or two channels.
            (3u8..=11, 1u8..=2).prop_filter_map("a valid AudioSpecificConfig", |(rate, channels)| {
                let config = [0x10 | (rate >> 1), (rate << 7) | (channels << 3)];
                AacTrack::from_config(&config).ok().map(RtpCodec::Aac)
            }),
        ]
    }

    proptest! {
        #[test]
        fn tracks_parse_as_built(
            codecs in vec(codec(), 1..4),
            session_id in any::<u64>(),
            address in prop_oneof![Just("127.0.0.1"), Just("::1"), Just("192.0.2.7")],
        ) {
            let tracks: Vec<Track> = codecs.into_iter().enumerate().map(|(i, codec)| Track::new(codec, i)).collect();
            let built = sdp::build(&tracks, "live/cam", session_id, address);
            let announced = sdp::parse(built.as_bytes()).map_err(|e| TestCaseError::fail(format!("{e}\n{built}")))?;
            prop_assert!(announced.skipped.is_empty(), "{:?}", announced.skipped);
            prop_assert_eq!(announced.tracks, tracks);
        }
    }
}

mod codec_records {
    use super::*;
    use ringcast::protocol::codec::AvcDecoderConfig;

    /// Bits, MSB first, with Exp-Golomb for the SPS's ue(v) fields.
    #[derive(Default)]
    struct Bits(Vec<bool>);

    impl Bits {
        fn put(&mut self, value: u32, width: u32) {
            self.0.extend((0..width).rev().map(|bit| value >> bit & 1 == 1));
        }

        fn ue(&mut self, value: u32) {
            let coded = value + 1;
            let width = 32 - coded.leading_zeros();
            self.put(0, width - 1);
            self.put(coded, width);
        }

        fn bytes(mut self) -> Vec<u8> {
            // rbsp_stop_one_bit, then zeros to the byte.
            self.0.push(true);
            self.0
                .chunks(8)
                .map(|byte| byte.iter().enumerate().fold(0, |acc, (i, bit)| acc | u8::from(*bit) << (7 - i)))
                .collect()
        }
    }

    /// A Baseline SPS (POC type 2, no VUI) of the given size in macroblocks.
    pub(super) fn baseline_sps(level: u8, width_mbs: u32, height_mbs: u32, refs: u32) -> Vec<u8> {
        let mut bits = Bits::default();
        bits.ue(0); // seq_parameter_set_id
        bits.ue(0); // log2_max_frame_num_minus4
        bits.ue(2); // pic_order_cnt_type
        bits.ue(refs); // max_num_ref_frames
        bits.put(0, 1); // gaps_in_frame_num_value_allowed_flag
        bits.ue(width_mbs - 1);
        bits.ue(height_mbs - 1);
        bits.put(1, 1); // frame_mbs_only_flag
        bits.put(1, 1); // direct_8x8_inference_flag
        bits.put(0, 1); // frame_cropping_flag
        bits.put(0, 1); // vui_parameters_present_flag
        [&[0x67, 66, 0xC0, level][..], &bits.bytes()].concat()
    }

    proptest! {
        #[test]
        fn avc_records_parse_as_written(
            level in 10u8..=52,
            width_mbs in 1u32..=256,
            height_mbs in 1u32..=256,
            refs in 0u32..=16,
            pps in vec(vec(any::<u8>(), 1..40), 1..4),
        ) {
            let sps = baseline_sps(level, width_mbs, height_mbs, refs);
            let config = AvcDecoderConfig::from_parameter_sets(vec![sps], pps)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!((config.sps_info().width, config.sps_info().height), (16 * width_mbs, 16 * height_mbs));
            prop_assert_eq!(config.profile_indication(), (66, 0xC0, level));
            let mut written = Vec::new();
            config.write(&mut written);
            prop_assert_eq!(AvcDecoderConfig::parse(&written), Ok(config));
        }
    }
}
