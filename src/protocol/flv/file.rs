//! FLV file framing (Adobe FLV specification v10.1, annex E.2-E.3): the file header, the tag
//! header and `PreviousTagSize` around every tag body, a writer that frames shared bodies
//! without copying them, and a streaming reader.

use super::FlvError;
use super::tag::MediaKind;
use crate::protocol::cursor::Cursor;

/// Length of the FLV file header, not counting the `PreviousTagSize0` that follows it.
pub const FILE_HEADER_LEN: usize = 9;
/// Length of an FLV tag header.
pub const TAG_HEADER_LEN: usize = 11;
/// Length of the `PreviousTagSize` field after the header and after every tag.
pub const PREVIOUS_TAG_SIZE_LEN: usize = 4;
/// Largest tag body the 24-bit `DataSize` field can describe.
pub const MAX_TAG_BODY_LEN: usize = 0x00FF_FFFF;

/// A `DataOffset` beyond this is not an FLV file anyone writes (version 1 says 9); refusing it
/// keeps the reader from waiting for gigabytes of "header".
const MAX_FILE_HEADER_DATA_OFFSET: u32 = 4096;

/// Appends the 9-byte FLV header and `PreviousTagSize0`.
pub fn write_file_header(has_audio: bool, has_video: bool, out: &mut Vec<u8>) {
    let flags = (u8::from(has_audio) << 2) | u8::from(has_video);
    out.extend_from_slice(b"FLV");
    out.push(1);
    out.push(flags);
    out.extend_from_slice(&(FILE_HEADER_LEN as u32).to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
}

/// The bytes that frame a tag body: the 11-byte tag header before it and the `PreviousTagSize`
/// after it. Separate from the body so a writer can send header, shared body and trailer in one
/// vectored write without copying the body.
pub fn tag_framing(
    tag_type: u8,
    timestamp_ms: u32,
    body_len: usize,
) -> Result<([u8; TAG_HEADER_LEN], [u8; PREVIOUS_TAG_SIZE_LEN]), FlvError> {
    if body_len > MAX_TAG_BODY_LEN {
        return Err(FlvError::BodyTooLarge(body_len));
    }
    let [_, len_hi, len_mid, len_lo] = (body_len as u32).to_be_bytes();
    // The low 24 bits come first and the top 8 bits last ("TimestampExtended").
    let [ts_top, ts_hi, ts_mid, ts_lo] = timestamp_ms.to_be_bytes();
    let header = [tag_type, len_hi, len_mid, len_lo, ts_hi, ts_mid, ts_lo, ts_top, 0, 0, 0];
    let previous_tag_size = ((TAG_HEADER_LEN + body_len) as u32).to_be_bytes();
    Ok((header, previous_tag_size))
}

/// Appends one complete tag: header, body and `PreviousTagSize`.
pub fn write_tag(tag_type: u8, timestamp_ms: u32, body: &[u8], out: &mut Vec<u8>) -> Result<(), FlvError> {
    let (header, previous_tag_size) = tag_framing(tag_type, timestamp_ms, body.len())?;
    out.reserve(TAG_HEADER_LEN + body.len() + PREVIOUS_TAG_SIZE_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out.extend_from_slice(&previous_tag_size);
    Ok(())
}

/// The FLV file header's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvFileHeader {
    pub version: u8,
    pub has_audio: bool,
    pub has_video: bool,
}

/// One tag read from an FLV file, borrowing its body from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlvTag<'a> {
    /// 8 audio, 9 video, 18 script data; other values are passed through.
    pub tag_type: u8,
    pub timestamp_ms: u32,
    /// The tag is encrypted (the `Filter` bit); its body is not a plain media body.
    pub filtered: bool,
    pub body: &'a [u8],
}

impl FlvTag<'_> {
    pub fn media_kind(&self) -> Option<MediaKind> {
        MediaKind::from_tag_type(self.tag_type)
    }
}

/// Streaming FLV file reader: the header first, then one tag per call.
#[derive(Debug, Default, Clone)]
pub struct FlvReader {
    header: Option<FlvFileHeader>,
}

impl FlvReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The file header, once it has been read.
    pub fn header(&self) -> Option<&FlvFileHeader> {
        self.header.as_ref()
    }

    /// Reads the next tag from the front of `buf` (the file header first, on the first call
    /// that has it) and advances `buf` past what was consumed.
    ///
    /// - `Ok(Some(tag))`: a whole tag and its `PreviousTagSize` were consumed.
    /// - `Ok(None)`: `buf` is empty at a tag boundary; at end of file, a clean end.
    /// - `Err(FlvError::Incomplete)`: `buf` holds part of a header or tag; nothing was consumed.
    ///   Call again with more bytes appended (at end of file: a truncated file).
    ///
    /// `PreviousTagSize` is skipped, not checked: writers get it wrong and it is redundant.
    pub fn read_tag<'a>(&mut self, buf: &mut &'a [u8]) -> Result<Option<FlvTag<'a>>, FlvError> {
        if self.header.is_none() {
            if buf.is_empty() {
                return Ok(None);
            }
            let (header, rest) = parse_file_header(buf)?;
            self.header = Some(header);
            *buf = rest;
        }
        if buf.is_empty() {
            return Ok(None);
        }
        let mut cursor = Cursor::new(buf, FlvError::Incomplete);
        let type_byte = cursor.u8()?;
        let body_len = usize::try_from(cursor.u24()?).map_err(|_| FlvError::Incomplete)?;
        let [ts_hi, ts_mid, ts_lo, ts_top] = cursor.array()?;
        let _stream_id = cursor.u24()?;
        let body = cursor.take(body_len)?;
        let _previous_tag_size = cursor.u32()?;
        *buf = cursor.rest;
        Ok(Some(FlvTag {
            tag_type: type_byte & 0x1f,
            timestamp_ms: u32::from_be_bytes([ts_top, ts_hi, ts_mid, ts_lo]),
            filtered: type_byte & 0x20 != 0,
            body,
        }))
    }
}

/// Parses the file header and `PreviousTagSize0`, returning what follows them.
fn parse_file_header(buf: &[u8]) -> Result<(FlvFileHeader, &[u8]), FlvError> {
    // Check the signature on whatever has arrived, so a non-FLV stream fails at once instead of
    // waiting for nine bytes.
    let signature_len = buf.len().min(3);
    if buf.get(..signature_len) != b"FLV".get(..signature_len) {
        return Err(FlvError::BadSignature);
    }
    let mut cursor = Cursor::new(buf, FlvError::Incomplete);
    let [_, _, _, version, flags] = cursor.array()?;
    let data_offset = cursor.u32()?;
    if data_offset < FILE_HEADER_LEN as u32 {
        return Err(FlvError::BadHeader("DataOffset is smaller than the header"));
    }
    if data_offset > MAX_FILE_HEADER_DATA_OFFSET {
        return Err(FlvError::BadHeader("DataOffset is implausibly large"));
    }
    cursor.take(data_offset as usize - FILE_HEADER_LEN)?;
    let _previous_tag_size0 = cursor.u32()?;
    let header = FlvFileHeader { version, has_audio: flags & 0x04 != 0, has_video: flags & 0x01 != 0 };
    Ok((header, cursor.rest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::fixtures::{AVC_720P_HIGH, hex};
    use crate::protocol::flv::tag::{TAG_TYPE_AUDIO, TAG_TYPE_SCRIPT_DATA, TAG_TYPE_VIDEO};

    fn sample_file() -> Vec<u8> {
        let mut file = Vec::new();
        write_file_header(true, true, &mut file);
        write_tag(TAG_TYPE_SCRIPT_DATA, 0, &[0x02, 0x00, 0x00], &mut file).expect("fits");
        write_tag(TAG_TYPE_VIDEO, 0, &hex(AVC_720P_HIGH), &mut file).expect("fits");
        write_tag(TAG_TYPE_AUDIO, 0x0123_4567, &[0xaf, 0x01, 0x21], &mut file).expect("fits");
        file
    }

    #[test]
    fn file_header_and_tag_bytes() {
        let mut header = Vec::new();
        write_file_header(true, true, &mut header);
        assert_eq!(header, b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00");
        let mut video_only = Vec::new();
        write_file_header(false, true, &mut video_only);
        assert_eq!(video_only[4], 0x01);

        let mut tag = Vec::new();
        write_tag(TAG_TYPE_AUDIO, 0x0123_4567, &[0xaf, 0x01, 0x21], &mut tag).expect("fits");
        assert_eq!(
            tag,
            [
                0x08, 0x00, 0x00, 0x03, // type, size
                0x23, 0x45, 0x67, 0x01, // low 24 bits, then the extended byte
                0x00, 0x00, 0x00, // stream id
                0xaf, 0x01, 0x21, // body
                0x00, 0x00, 0x00, 0x0e, // previous tag size 11 + 3
            ]
        );

        assert_eq!(
            tag_framing(TAG_TYPE_VIDEO, 0, MAX_TAG_BODY_LEN + 1),
            Err(FlvError::BodyTooLarge(MAX_TAG_BODY_LEN + 1))
        );
        assert!(tag_framing(TAG_TYPE_VIDEO, 0, MAX_TAG_BODY_LEN).is_ok());
    }

    #[test]
    fn every_header_written_reads_back() {
        for (has_audio, has_video) in [(false, false), (true, false), (false, true), (true, true)] {
            let mut file = Vec::new();
            write_file_header(has_audio, has_video, &mut file);
            let mut reader = FlvReader::new();
            let mut buf = &file[..];
            assert_eq!(reader.read_tag(&mut buf), Ok(None));
            assert!(buf.is_empty());
            assert_eq!(reader.header(), Some(&FlvFileHeader { version: 1, has_audio, has_video }));
        }
    }

    #[test]
    fn every_tag_written_reads_back() {
        // Timestamps on both sides of the 24-bit boundary where TimestampExtended takes over,
        // and bodies from empty to the largest the size field can say.
        let timestamps = [0, 1, 0x00ff_ffff, 0x0100_0000, 0x7fff_ffff, u32::MAX];
        let lengths = [0, 1, TAG_HEADER_LEN, 4096, 0x1_0000];
        let mut written = Vec::new();
        for tag_type in [TAG_TYPE_AUDIO, TAG_TYPE_VIDEO, TAG_TYPE_SCRIPT_DATA] {
            for timestamp_ms in timestamps {
                for len in lengths {
                    let body: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ tag_type).collect();
                    written.push((tag_type, timestamp_ms, body));
                }
            }
        }
        written.push((TAG_TYPE_VIDEO, 40, vec![0x17; MAX_TAG_BODY_LEN]));

        let mut file = Vec::new();
        write_file_header(true, true, &mut file);
        for (tag_type, timestamp_ms, body) in &written {
            let start = file.len();
            write_tag(*tag_type, *timestamp_ms, body, &mut file).expect("fits");
            // The framing a vectored writer sends around a shared body is the same bytes.
            let (header, previous_tag_size) = tag_framing(*tag_type, *timestamp_ms, body.len()).expect("fits");
            let tag = &file[start..];
            assert_eq!(tag[..TAG_HEADER_LEN], header);
            assert_eq!(tag[TAG_HEADER_LEN + body.len()..], previous_tag_size);
            assert_eq!(u32::from_be_bytes(previous_tag_size) as usize, TAG_HEADER_LEN + body.len());
        }

        let mut reader = FlvReader::new();
        let mut buf = &file[..];
        for (tag_type, timestamp_ms, body) in &written {
            let tag = reader.read_tag(&mut buf).expect("reads").expect("a tag");
            assert_eq!(
                (tag.tag_type, tag.timestamp_ms, tag.filtered, tag.body),
                (*tag_type, *timestamp_ms, false, &body[..])
            );
        }
        assert_eq!(reader.read_tag(&mut buf), Ok(None));
    }

    #[test]
    fn reader_round_trip() {
        let file = sample_file();
        let mut reader = FlvReader::new();
        let mut buf = &file[..];
        let mut tags = Vec::new();
        while let Some(tag) = reader.read_tag(&mut buf).expect("reads") {
            tags.push(tag);
        }
        assert_eq!(reader.header(), Some(&FlvFileHeader { version: 1, has_audio: true, has_video: true }));
        assert_eq!(tags.len(), 3);
        assert_eq!(tags[0].media_kind(), Some(MediaKind::Data));
        assert_eq!(tags[1].body, hex(AVC_720P_HIGH));
        assert_eq!(tags[2].timestamp_ms, 0x0123_4567);
        assert_eq!(tags[2].body, &[0xaf, 0x01, 0x21]);
        assert!(!tags[2].filtered);
    }

    #[test]
    fn reader_needs_more_bytes_at_every_cut() {
        let file = sample_file();
        let boundaries = [0, 13, 13 + 11 + 3 + 4, file.len() - (11 + 3 + 4), file.len()];
        for cut in 0..=file.len() {
            // Feed the file in two pieces, as a socket would.
            let mut reader = FlvReader::new();
            let mut first = &file[..cut];
            let mut tags = 0;
            loop {
                match reader.read_tag(&mut first) {
                    Ok(Some(_)) => tags += 1,
                    Ok(None) => {
                        assert!(boundaries.contains(&cut), "clean end at {cut}");
                        break;
                    }
                    Err(FlvError::Incomplete) => {
                        assert!(!boundaries.contains(&cut), "incomplete at {cut}");
                        break;
                    }
                    Err(other) => panic!("cut {cut}: {other}"),
                }
            }
            let mut pending = first.to_vec();
            pending.extend_from_slice(&file[cut..]);
            let mut rest = &pending[..];
            while reader.read_tag(&mut rest).expect("rest reads").is_some() {
                tags += 1;
            }
            assert_eq!(tags, 3, "cut {cut}");
        }
    }

    /// The first 279 bytes of the 1280x720 file ffmpeg wrote: header, `onMetaData`, and the
    /// AVC sequence header.
    const FFMPEG_FLV_START: &str = "
        464c5601010000000900000000120000b80000000000000002000a6f6e4d657461446174610800000008000864757261
        74696f6e003ff1126e978d4fdf000577696474680040940000000000000006686569676874004086800000000000000d
        766964656f646174617261746500000000000000000000096672616d657261746500403e000000000000000c76696465
        6f636f646563696400401c0000000000000007656e636f64657202000d4c61766635392e32372e313030000866696c65
        73697a650040d4a1c000000000000009000000c3090000340000000000000017000000000164001fffe1001a6764001f
        acd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f8000000003f";

    #[test]
    fn reader_reads_what_ffmpeg_writes() {
        use crate::protocol::amf0::{self, Amf0Value};

        let file = hex(FFMPEG_FLV_START);
        let mut reader = FlvReader::new();
        let mut buf = &file[..];
        let metadata = reader.read_tag(&mut buf).expect("reads").expect("a tag");
        assert_eq!(reader.header(), Some(&FlvFileHeader { version: 1, has_audio: false, has_video: true }));
        assert_eq!(metadata.media_kind(), Some(MediaKind::Data));
        let values = amf0::decode_all(metadata.body).expect("AMF0");
        assert_eq!(values.first().and_then(Amf0Value::as_str), Some("onMetaData"));
        let properties = values.get(1).expect("the metadata array");
        assert_eq!(properties.get("width").and_then(Amf0Value::as_f64), Some(1280.0));
        assert_eq!(properties.get("encoder").and_then(Amf0Value::as_str), Some("Lavf59.27.100"));

        let video = reader.read_tag(&mut buf).expect("reads").expect("a tag");
        assert_eq!(video.media_kind(), Some(MediaKind::Video));
        assert_eq!(video.body, hex(AVC_720P_HIGH));
        assert_eq!(reader.read_tag(&mut buf), Ok(None));
    }

    #[test]
    fn reader_rejects_bad_headers() {
        let mut reader = FlvReader::new();
        assert_eq!(reader.read_tag(&mut &b"RTMP"[..]), Err(FlvError::BadSignature));
        assert_eq!(reader.read_tag(&mut &b"FX"[..]), Err(FlvError::BadSignature));
        assert_eq!(reader.read_tag(&mut &b"FL"[..]), Err(FlvError::Incomplete));
        let small_offset = b"FLV\x01\x05\x00\x00\x00\x05\x00\x00\x00\x00";
        assert!(matches!(reader.read_tag(&mut &small_offset[..]), Err(FlvError::BadHeader(_))));
        let huge_offset = b"FLV\x01\x05\xff\xff\xff\xff";
        assert!(matches!(reader.read_tag(&mut &huge_offset[..]), Err(FlvError::BadHeader(_))));
        // A longer header (DataOffset 12) is skipped.
        let mut long_header = b"FLV\x01\x01\x00\x00\x00\x0c\xaa\xbb\xcc\x00\x00\x00\x00".to_vec();
        write_tag(TAG_TYPE_VIDEO, 7, &[0x17, 0x02], &mut long_header).expect("fits");
        let mut buf = &long_header[..];
        let tag = reader.read_tag(&mut buf).expect("reads").expect("a tag");
        assert_eq!(tag.timestamp_ms, 7);
        assert!(buf.is_empty());
    }
}
