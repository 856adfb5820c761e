//! What publishers send: generated H.264/AAC-shaped frames, or the tags of an FLV file,
//! each with the time it is due relative to the start of the publish.
//!
//! Generated frames are valid FLV tag bodies (AVC `NALU` packets with a length-prefixed NAL
//! unit, raw AAC frames) so the server classifies keyframes and sequence headers as it would
//! for a real encoder; they are not decodable pictures. Right after the tag header each frame
//! carries a [`Probe`]: the publisher's id, a sequence number over all its frames, and the
//! wall-clock time it was sent. A player that finds a probe measures true end-to-end lag and
//! counts lost frames exactly; for other streams it falls back to timestamps.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use ringcast::protocol::amf0::{self, Amf0Value};
use ringcast::protocol::flv::{self, FlvReader, MediaKind, PacketType};

use crate::cli::MediaArgs;

pub const TYPE_AUDIO: u8 = 8;
pub const TYPE_VIDEO: u8 = 9;
pub const TYPE_DATA: u8 = 18;

/// An `AVCDecoderConfigurationRecord` for 1280x720 High@3.1, as libx264 writes it: a real one,
/// so the server's codec parsing sees a plausible stream.
const AVC_SEQUENCE_HEADER: &[u8] = &[
    0x17, 0x00, 0x00, 0x00, 0x00, 0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9,
    0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19,
    0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8, 0xf8, 0x00,
];
/// AAC-LC, 44.1 kHz, stereo.
const AAC_SEQUENCE_HEADER: &[u8] = &[0xaf, 0x00, 0x12, 0x10];
const AAC_SAMPLE_RATE: u64 = 44_100;
const AAC_FRAME_SAMPLES: u64 = 1024;
/// A keyframe is this many times the size of an inter frame, roughly what x264 produces for
/// a talking-head stream; it makes the GOP burst a new player gets realistic.
const KEYFRAME_WEIGHT: u64 = 5;

const PROBE_MAGIC: [u8; 4] = *b"RcLp";
/// Magic, publisher id (u32), sequence (u64), send time in microseconds since the epoch (u64).
pub const PROBE_LEN: usize = 4 + 4 + 8 + 8;
/// Video: 5-byte AVC tag header, 4-byte NAL unit length, 1-byte NAL unit header.
const VIDEO_PROBE_AT: usize = 10;
/// Audio: 2-byte AAC tag header.
const AUDIO_PROBE_AT: usize = 2;
/// Smallest generated frames, so the probe always fits.
const MIN_VIDEO_FRAME: usize = VIDEO_PROBE_AT + PROBE_LEN;
const MIN_AUDIO_FRAME: usize = AUDIO_PROBE_AT + PROBE_LEN;

/// What a generated frame says about itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probe {
    pub publisher: u32,
    pub seq: u64,
    pub sent_us: u64,
}

/// The probe of a media message, if a ringcast-load publisher made it.
pub fn find_probe(type_id: u8, payload: &[u8]) -> Option<Probe> {
    let at = match (type_id, payload.first()) {
        (TYPE_VIDEO, Some(0x17 | 0x27)) if payload.get(1) == Some(&1) => VIDEO_PROBE_AT,
        (TYPE_AUDIO, Some(0xaf)) if payload.get(1) == Some(&1) => AUDIO_PROBE_AT,
        _ => return None,
    };
    let probe = payload.get(at..at + PROBE_LEN)?;
    let (magic, rest) = probe.split_at(4);
    if magic != PROBE_MAGIC {
        return None;
    }
    let (publisher, rest) = rest.split_at(4);
    let (seq, sent) = rest.split_at(8);
    Some(Probe {
        publisher: u32::from_be_bytes(publisher.try_into().ok()?),
        seq: u64::from_be_bytes(seq.try_into().ok()?),
        sent_us: u64::from_be_bytes(sent.try_into().ok()?),
    })
}

/// Wall-clock microseconds since the Unix epoch: comparable across processes on one host.
pub fn wall_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// One frame to send: its RTMP message type, timestamp, and when it is due (milliseconds after
/// the publish started; equal to the timestamp for generated media).
#[derive(Debug, Clone, Copy)]
pub struct Due {
    pub type_id: u8,
    pub timestamp: u32,
    pub due_ms: u64,
    pub keyframe: bool,
}

/// Where a publisher's media comes from. Built once per run and shared by every publisher.
pub enum MediaPlan {
    Generated(GeneratedPlan),
    File(Arc<FileMedia>),
}

impl MediaPlan {
    pub fn new(args: &MediaArgs) -> Result<MediaPlan, String> {
        match &args.flv {
            Some(path) => Ok(MediaPlan::File(Arc::new(FileMedia::load(path)?))),
            None => Ok(MediaPlan::Generated(GeneratedPlan::new(args))),
        }
    }

    /// A source for one publisher.
    pub fn source(&self, publisher: u32) -> Source {
        match self {
            MediaPlan::Generated(plan) => Source::Generated(Generator::new(plan.clone(), publisher)),
            MediaPlan::File(file) => Source::File(FileSource { file: file.clone(), next: 0, lap: 0 }),
        }
    }

    pub fn describe(&self) -> String {
        match self {
            MediaPlan::Generated(p) => format!(
                "generated: video {} kbit/s {} fps gop {}, audio {} kbit/s",
                p.video_bps / 1000,
                p.fps,
                p.gop,
                p.audio_bps / 1000
            ),
            MediaPlan::File(f) => {
                format!("{} ({} tags, {:.1} s per loop)", f.path, f.tags.len(), f.loop_ms as f64 / 1000.0)
            }
        }
    }
}

#[derive(Debug, Clone)]
pub struct GeneratedPlan {
    fps: u64,
    gop: u64,
    video_bps: u64,
    audio_bps: u64,
    /// Pseudo-random filler copied into frames (compressed video looks random).
    filler: Arc<[u8]>,
}

impl GeneratedPlan {
    fn new(args: &MediaArgs) -> GeneratedPlan {
        let video_bps = u64::from(args.bitrate) * 1000;
        let fps = u64::from(args.fps.max(1));
        let gop = u64::from(args.gop.max(1));
        let plan = GeneratedPlan {
            fps,
            gop,
            video_bps,
            audio_bps: u64::from(args.audio_bitrate) * 1000,
            filler: Arc::from(Vec::new()),
        };
        let largest = plan.video_frame_len(true).max(plan.audio_frame_len());
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let filler: Vec<u8> = (0..largest)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        GeneratedPlan { filler: Arc::from(filler), ..plan }
    }

    /// Frame sizes that give the requested bitrate over a GOP, keyframes weighted.
    fn video_frame_len(&self, keyframe: bool) -> usize {
        let gop_bytes = self.video_bps / 8 * self.gop / self.fps;
        let inter = gop_bytes / (self.gop - 1 + KEYFRAME_WEIGHT);
        let len = if keyframe { inter * KEYFRAME_WEIGHT } else { inter };
        (len as usize).max(MIN_VIDEO_FRAME)
    }

    fn audio_frame_len(&self) -> usize {
        let frames_per_sec = AAC_SAMPLE_RATE as f64 / AAC_FRAME_SAMPLES as f64;
        ((self.audio_bps as f64 / 8.0 / frames_per_sec) as usize).max(MIN_AUDIO_FRAME)
    }
}

/// Generated media for one publisher.
pub struct Generator {
    plan: GeneratedPlan,
    publisher: u32,
    video_frames: u64,
    audio_frames: u64,
    seq: u64,
}

impl Generator {
    fn new(plan: GeneratedPlan, publisher: u32) -> Generator {
        Generator { plan, publisher, video_frames: 0, audio_frames: 0, seq: 0 }
    }

    fn video_due_ms(&self) -> u64 {
        self.video_frames * 1000 / self.plan.fps
    }

    fn audio_due_ms(&self) -> Option<u64> {
        (self.plan.audio_bps > 0).then(|| self.audio_frames * AAC_FRAME_SAMPLES * 1000 / AAC_SAMPLE_RATE)
    }

    fn peek(&self) -> Due {
        let video = self.video_due_ms();
        match self.audio_due_ms() {
            Some(audio) if audio < video => {
                Due { type_id: TYPE_AUDIO, timestamp: audio as u32, due_ms: audio, keyframe: false }
            }
            _ => Due {
                type_id: TYPE_VIDEO,
                timestamp: video as u32,
                due_ms: video,
                keyframe: self.video_frames.is_multiple_of(self.plan.gop),
            },
        }
    }

    fn emit(&mut self, out: &mut Vec<u8>) -> Due {
        let due = self.peek();
        out.clear();
        let len = if due.type_id == TYPE_VIDEO {
            let len = self.plan.video_frame_len(due.keyframe);
            out.push(if due.keyframe { 0x17 } else { 0x27 });
            // AVC NALU packet, composition time 0.
            out.extend_from_slice(&[0x01, 0, 0, 0]);
            let nal_len = (len - VIDEO_PROBE_AT + 1) as u32;
            out.extend_from_slice(&nal_len.to_be_bytes());
            // IDR slice or non-IDR slice, nal_ref_idc 3 / 2.
            out.push(if due.keyframe { 0x65 } else { 0x41 });
            self.video_frames += 1;
            len
        } else {
            out.extend_from_slice(&[0xaf, 0x01]);
            self.audio_frames += 1;
            self.plan.audio_frame_len()
        };
        out.extend_from_slice(&PROBE_MAGIC);
        out.extend_from_slice(&self.publisher.to_be_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&wall_us().to_be_bytes());
        self.seq += 1;
        let rest = len.saturating_sub(out.len());
        let filler = &self.plan.filler[..rest.min(self.plan.filler.len())];
        out.extend_from_slice(filler);
        due
    }

    fn headers(&self) -> Vec<(u8, Bytes)> {
        let plan = &self.plan;
        let mut properties = vec![
            ("duration", Amf0Value::Number(0.0)),
            ("width", Amf0Value::Number(1280.0)),
            ("height", Amf0Value::Number(720.0)),
            ("videodatarate", Amf0Value::Number(plan.video_bps as f64 / 1000.0)),
            ("framerate", Amf0Value::Number(plan.fps as f64)),
            ("videocodecid", Amf0Value::Number(7.0)),
            ("encoder", Amf0Value::String("ringcast-load".into())),
        ];
        if plan.audio_bps > 0 {
            properties.extend([
                ("audiodatarate", Amf0Value::Number(plan.audio_bps as f64 / 1000.0)),
                ("audiosamplerate", Amf0Value::Number(AAC_SAMPLE_RATE as f64)),
                ("audiocodecid", Amf0Value::Number(10.0)),
                ("stereo", Amf0Value::Boolean(true)),
            ]);
        }
        let mut metadata = Vec::new();
        amf0::encode_all(
            &[
                Amf0Value::String("@setDataFrame".into()),
                Amf0Value::String("onMetaData".into()),
                Amf0Value::ecma_array(properties),
            ],
            &mut metadata,
        );
        let mut headers =
            vec![(TYPE_DATA, Bytes::from(metadata)), (TYPE_VIDEO, Bytes::from_static(AVC_SEQUENCE_HEADER))];
        if plan.audio_bps > 0 {
            headers.push((TYPE_AUDIO, Bytes::from_static(AAC_SEQUENCE_HEADER)));
        }
        headers
    }
}

/// One tag of an FLV file, timestamps made relative to the file's first media tag.
struct FileTag {
    type_id: u8,
    timestamp_ms: u64,
    /// When to send it: the timestamp, but never before the tag ahead of it in the file
    /// (muxers interleave tracks loosely; pacing must not go backwards).
    due_ms: u64,
    keyframe: bool,
    body: Bytes,
}

/// An FLV file loaded for publishing: headers (metadata and sequence headers, sent once)
/// and the tags looped in real time.
pub struct FileMedia {
    path: String,
    headers: Vec<(u8, Bytes)>,
    tags: Vec<FileTag>,
    /// One loop's length: last timestamp plus one frame interval.
    loop_ms: u64,
}

/// Files are read whole before the run: a bound keeps a wrong path (a disk image, say) from
/// eating the machine's memory.
const MAX_FLV_FILE: u64 = 2 << 30;

impl FileMedia {
    fn load(path: &Path) -> Result<FileMedia, String> {
        let shown = path.display().to_string();
        let len = std::fs::metadata(path).map_err(|e| format!("--flv {shown}: {e}"))?.len();
        if len > MAX_FLV_FILE {
            return Err(format!("--flv {shown}: {len} bytes is larger than the 2 GiB limit"));
        }
        let data = std::fs::read(path).map_err(|e| format!("--flv {shown}: {e}"))?;
        let data = Bytes::from(data);
        let mut reader = FlvReader::new();
        let mut rest: &[u8] = &data;
        let mut headers = Vec::new();
        let mut tags = Vec::new();
        let mut first_ts = None;
        loop {
            let tag = match reader.read_tag(&mut rest) {
                Ok(Some(tag)) => tag,
                Ok(None) => break,
                // A file cut mid-tag (a recording stopped abruptly) still plays up to there.
                Err(flv::FlvError::Incomplete) if !tags.is_empty() => break,
                Err(e) => return Err(format!("--flv {shown}: {e}")),
            };
            let Some(kind) = tag.media_kind() else {
                continue;
            };
            if tag.filtered || tag.body.is_empty() {
                continue;
            }
            let body = data.slice_ref(tag.body);
            let info = flv::classify(kind, tag.body).ok();
            if kind == MediaKind::Video
                && flv::parse_video_tag(tag.body).is_ok_and(|v| v.packet_type == PacketType::SequenceEnd)
            {
                // An end-of-sequence marker would tell players the stream ended at every loop.
                continue;
            }
            let is_header = info.is_some_and(|i| i.sequence_header) || kind == MediaKind::Data;
            if is_header && tags.is_empty() {
                // Sequence headers and leading metadata go first, once; a mid-file codec
                // change is replayed in place.
                headers.push((kind.tag_type(), body));
                continue;
            }
            let first = *first_ts.get_or_insert(tag.timestamp_ms);
            let timestamp_ms = u64::from(tag.timestamp_ms.saturating_sub(first));
            let due_ms = tags.last().map_or(timestamp_ms, |t: &FileTag| t.due_ms.max(timestamp_ms));
            tags.push(FileTag {
                type_id: kind.tag_type(),
                timestamp_ms,
                due_ms,
                keyframe: info.is_some_and(|i| i.keyframe && kind == MediaKind::Video),
                body,
            });
        }
        // A loop must continue every track seamlessly: its first frame one frame interval
        // after its last. Tracks rarely span the same time (audio often starts late), so the
        // loop lasts as long as the shortest track's span and the longer tracks lose the
        // frames that would otherwise collide with their own next lap.
        let mut spans = Vec::new();
        for type_id in [TYPE_AUDIO, TYPE_VIDEO] {
            let stamps: Vec<u64> = tags.iter().filter(|t| t.type_id == type_id).map(|t| t.timestamp_ms).collect();
            if let [first, .., last] = stamps[..] {
                let interval = (last.saturating_sub(first) / (stamps.len() as u64 - 1)).max(1);
                spans.push((type_id, first, interval, last + interval - first));
            }
        }
        let loop_ms = match spans.iter().map(|s| s.3).min() {
            Some(span) => span,
            // At most one frame per track: loop at 25 fps.
            None => tags.iter().map(|t| t.timestamp_ms).max().unwrap_or(0) + 40,
        };
        tags.retain(|t| match spans.iter().find(|s| s.0 == t.type_id) {
            Some(&(_, first, interval, _)) => t.timestamp_ms + interval / 2 < loop_ms + first,
            None => t.timestamp_ms < loop_ms,
        });
        if tags.is_empty() {
            return Err(format!("--flv {shown}: no audio or video frames in the file"));
        }
        Ok(FileMedia { path: shown, headers, tags, loop_ms })
    }
}

pub struct FileSource {
    file: Arc<FileMedia>,
    next: usize,
    lap: u64,
}

impl FileSource {
    fn peek(&self) -> Due {
        // `next` is always in range: `emit` wraps it, and a loaded file has at least one tag.
        let tag = &self.file.tags[self.next % self.file.tags.len()];
        let lap = self.lap * self.file.loop_ms;
        Due {
            type_id: tag.type_id,
            timestamp: (lap + tag.timestamp_ms) as u32,
            due_ms: lap + tag.due_ms,
            keyframe: tag.keyframe,
        }
    }

    fn emit(&mut self) -> (Due, Bytes) {
        let due = self.peek();
        let body = self.file.tags[self.next % self.file.tags.len()].body.clone();
        self.next += 1;
        if self.next >= self.file.tags.len() {
            self.next = 0;
            self.lap += 1;
        }
        (due, body)
    }
}

/// One publisher's stream of frames.
pub enum Source {
    Generated(Generator),
    File(FileSource),
}

impl Source {
    /// Metadata and sequence headers, sent once before the first frame with timestamp 0.
    pub fn headers(&self) -> Vec<(u8, Bytes)> {
        match self {
            Source::Generated(g) => g.headers(),
            Source::File(f) => f.file.headers.clone(),
        }
    }

    /// The next frame's type and due time, without producing it.
    pub fn peek(&self) -> Due {
        match self {
            Source::Generated(g) => g.peek(),
            Source::File(f) => f.peek(),
        }
    }

    /// Produces the next frame. Generated frames are written into `scratch` (the probe's
    /// send time is taken now); file frames are shared with the loaded file.
    pub fn emit<'a>(&'a mut self, scratch: &'a mut Vec<u8>) -> (Due, Payload<'a>) {
        match self {
            Source::Generated(g) => {
                let due = g.emit(scratch);
                (due, Payload::Slice(scratch))
            }
            Source::File(f) => {
                let (due, body) = f.emit();
                (due, Payload::Shared(body))
            }
        }
    }
}

pub enum Payload<'a> {
    Slice(&'a [u8]),
    Shared(Bytes),
}

impl Payload<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Slice(s) => s,
            Payload::Shared(b) => b,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringcast::protocol::flv::{classify, parse_codec_info};

    fn args() -> MediaArgs {
        MediaArgs { flv: None, bitrate: 2200, audio_bitrate: 128, fps: 30, gop: 60 }
    }

    #[test]
    fn generated_frames_classify_and_carry_probes() {
        let plan = MediaPlan::new(&args()).expect("generated plan");
        let mut source = plan.source(7);
        let headers = source.headers();
        let video_header = headers.iter().find(|(t, _)| *t == TYPE_VIDEO).expect("avc header");
        let info = parse_codec_info(MediaKind::Video, &video_header.1).expect("valid avcC");
        assert_eq!(info.width, Some(1280));
        let mut scratch = Vec::new();
        let mut bytes = 0usize;
        let mut last_seq = None;
        let mut keyframes = 0;
        loop {
            let (due, payload) = source.emit(&mut scratch);
            if due.due_ms >= 10_000 {
                break;
            }
            let payload = payload.as_slice().to_vec();
            let kind = if due.type_id == TYPE_VIDEO { MediaKind::Video } else { MediaKind::Audio };
            let info = classify(kind, &payload).expect("valid tag body");
            assert_eq!(info.keyframe, due.keyframe || kind == MediaKind::Audio);
            keyframes += usize::from(due.keyframe);
            let probe = find_probe(due.type_id, &payload).expect("probe");
            assert_eq!(probe.publisher, 7);
            assert_eq!(probe.seq, last_seq.map_or(0, |s| s + 1));
            last_seq = Some(probe.seq);
            bytes += payload.len();
        }
        // 10 s at 2200 + 128 kbit/s, within rounding.
        let kbit = bytes as f64 * 8.0 / 10.0 / 1000.0;
        assert!((2250.0..2400.0).contains(&kbit), "{kbit} kbit/s");
        assert_eq!(keyframes, 5);
    }

    #[test]
    fn foreign_payloads_have_no_probe() {
        assert_eq!(find_probe(TYPE_VIDEO, &[0x17, 0x01, 0, 0, 0, 1, 2]), None);
        assert_eq!(find_probe(TYPE_AUDIO, &[]), None);
        assert_eq!(find_probe(TYPE_AUDIO, AAC_SEQUENCE_HEADER), None);
    }
}
