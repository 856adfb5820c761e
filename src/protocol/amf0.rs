//! AMF0, the value encoding of RTMP commands (`connect`, `publish`, `onStatus`...) and of
//! script data such as `onMetaData`.
//!
//! Reference: Adobe, "Action Message Format -- AMF 0", December 2007, section 2. Every value is a
//! one-byte type marker followed by a big-endian payload:
//!
//! | marker | type          | payload                                                        |
//! |--------|---------------|----------------------------------------------------------------|
//! | 0x00   | number        | IEEE 754 double                                                |
//! | 0x01   | boolean       | u8, non-zero is true                                           |
//! | 0x02   | string        | u16 length + UTF-8                                             |
//! | 0x03   | object        | properties (u16-length key + value) until `00 00 09`           |
//! | 0x05   | null          | -                                                              |
//! | 0x06   | undefined     | -                                                              |
//! | 0x07   | reference     | u16 index of an earlier complex value                          |
//! | 0x08   | ECMA array    | u32 count + properties until `00 00 09`                        |
//! | 0x0A   | strict array  | u32 count + that many values                                   |
//! | 0x0B   | date          | double (ms since epoch) + s16 time zone (reserved, 0)          |
//! | 0x0C   | long string   | u32 length + UTF-8                                             |
//! | 0x0D   | unsupported   | -                                                              |
//! | 0x0F   | XML document  | u32 length + UTF-8                                             |
//! | 0x10   | typed object  | u16-length class name + properties until `00 00 09`            |
//!
//! Movie clip (0x04) and record set (0x0E) are reserved by the spec and never sent; the AVM+
//! marker (0x11, switch to AMF3) is not supported. All three decode to
//! [`Amf0Error::UnknownMarker`].
//!
//! Decisions, made for real-world encoders rather than the letter of the spec:
//! - Strings that are not valid UTF-8 are converted lossily (U+FFFD) instead of failing: some
//!   encoders put Latin-1 stream titles in metadata, and refusing a whole `connect` for that helps
//!   nobody. There is therefore no "invalid UTF-8" error.
//! - The ECMA array count is only a hint: properties are read until the end marker, because
//!   several encoders write 0 there. An ECMA array whose end marker is missing is accepted when
//!   the input ends right after at least `count` properties (some encoders omit it); anywhere
//!   else, missing bytes are [`Amf0Error::Incomplete`].
//! - References (0x07) are kept as [`Amf0Value::Reference`] and not resolved: nobody sends them
//!   in RTMP commands, and resolving them would allow cycles.
//! - Nesting is limited to [`MAX_DEPTH`] containers, so hostile input cannot overflow the stack.

use std::fmt;

/// Deepest container nesting accepted by [`decode`]; real commands and metadata nest 2 or 3
/// levels, so this only stops hostile input from exhausting the stack.
pub const MAX_DEPTH: usize = 64;

const MARKER_NUMBER: u8 = 0x00;
const MARKER_BOOLEAN: u8 = 0x01;
const MARKER_STRING: u8 = 0x02;
const MARKER_OBJECT: u8 = 0x03;
const MARKER_NULL: u8 = 0x05;
const MARKER_UNDEFINED: u8 = 0x06;
const MARKER_REFERENCE: u8 = 0x07;
const MARKER_ECMA_ARRAY: u8 = 0x08;
const MARKER_OBJECT_END: u8 = 0x09;
const MARKER_STRICT_ARRAY: u8 = 0x0A;
const MARKER_DATE: u8 = 0x0B;
const MARKER_LONG_STRING: u8 = 0x0C;
const MARKER_UNSUPPORTED: u8 = 0x0D;
const MARKER_XML_DOCUMENT: u8 = 0x0F;
const MARKER_TYPED_OBJECT: u8 = 0x10;

/// One AMF0 value. Objects keep their properties in wire order (and allow duplicate keys) so a
/// decoded value re-encodes to the same bytes.
#[derive(Debug, Clone, PartialEq)]
pub enum Amf0Value {
    Number(f64),
    Boolean(bool),
    String(String),
    Object(Vec<(String, Amf0Value)>),
    Null,
    Undefined,
    /// Index of an earlier complex value in the same message; kept as is, never resolved.
    Reference(u16),
    EcmaArray(Vec<(String, Amf0Value)>),
    StrictArray(Vec<Amf0Value>),
    Date {
        millis: f64,
        timezone: i16,
    },
    LongString(String),
    Unsupported,
    XmlDocument(String),
    TypedObject {
        class_name: String,
        properties: Vec<(String, Amf0Value)>,
    },
}

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum Amf0Error {
    #[error("incomplete AMF0 value")]
    Incomplete,
    #[error("unknown or unsupported AMF0 type marker 0x{0:02x}")]
    UnknownMarker(u8),
    #[error("AMF0 object-end marker outside an object")]
    UnexpectedObjectEnd,
    #[error("AMF0 value nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

impl Amf0Value {
    /// An anonymous object from `(key, value)` pairs, for terse command replies:
    /// `Amf0Value::object([("level", "status".into()), ("code", "NetStream.Publish.Start".into())])`.
    pub fn object<K: Into<String>>(properties: impl IntoIterator<Item = (K, Amf0Value)>) -> Self {
        Amf0Value::Object(collect_properties(properties))
    }

    /// An ECMA array (the usual container of `onMetaData`) from `(key, value)` pairs.
    pub fn ecma_array<K: Into<String>>(properties: impl IntoIterator<Item = (K, Amf0Value)>) -> Self {
        Amf0Value::EcmaArray(collect_properties(properties))
    }

    /// The text of a string, long string or XML document.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf0Value::String(s) | Amf0Value::LongString(s) | Amf0Value::XmlDocument(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Amf0Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Amf0Value::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    /// The properties of an object, ECMA array or typed object, in wire order.
    pub fn properties(&self) -> Option<&[(String, Amf0Value)]> {
        match self {
            Amf0Value::Object(properties)
            | Amf0Value::EcmaArray(properties)
            | Amf0Value::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// The first property named `key` of an object, ECMA array or typed object.
    pub fn get(&self, key: &str) -> Option<&Amf0Value> {
        self.properties()?.iter().find(|(name, _)| name == key).map(|(_, value)| value)
    }

    /// True for null and undefined, which commands use interchangeably for "no argument".
    pub fn is_null_or_undefined(&self) -> bool {
        matches!(self, Amf0Value::Null | Amf0Value::Undefined)
    }
}

fn collect_properties<K: Into<String>>(
    properties: impl IntoIterator<Item = (K, Amf0Value)>,
) -> Vec<(String, Amf0Value)> {
    properties.into_iter().map(|(key, value)| (key.into(), value)).collect()
}

impl From<&str> for Amf0Value {
    fn from(value: &str) -> Self {
        Amf0Value::String(value.to_owned())
    }
}

impl From<String> for Amf0Value {
    fn from(value: String) -> Self {
        Amf0Value::String(value)
    }
}

impl From<f64> for Amf0Value {
    fn from(value: f64) -> Self {
        Amf0Value::Number(value)
    }
}

/// AMF0 has only doubles; every u32 is exactly representable.
impl From<u32> for Amf0Value {
    fn from(value: u32) -> Self {
        Amf0Value::Number(f64::from(value))
    }
}

impl From<bool> for Amf0Value {
    fn from(value: bool) -> Self {
        Amf0Value::Boolean(value)
    }
}

/// `None` becomes null, the conventional "nothing here" of RTMP command arguments.
impl<T: Into<Amf0Value>> From<Option<T>> for Amf0Value {
    fn from(value: Option<T>) -> Self {
        value.map_or(Amf0Value::Null, Into::into)
    }
}

impl fmt::Display for Amf0Value {
    /// A compact JSON-like rendering for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn properties(f: &mut fmt::Formatter<'_>, props: &[(String, Amf0Value)]) -> fmt::Result {
            f.write_str("{")?;
            for (i, (key, value)) in props.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write!(f, "{key:?}: {value}")?;
            }
            f.write_str("}")
        }
        match self {
            Amf0Value::Number(n) => write!(f, "{n}"),
            Amf0Value::Boolean(b) => write!(f, "{b}"),
            Amf0Value::String(s) | Amf0Value::LongString(s) | Amf0Value::XmlDocument(s) => {
                write!(f, "{s:?}")
            }
            Amf0Value::Object(props) | Amf0Value::EcmaArray(props) => properties(f, props),
            Amf0Value::TypedObject { class_name, properties: props } => {
                write!(f, "{class_name} ")?;
                properties(f, props)
            }
            Amf0Value::Null => f.write_str("null"),
            Amf0Value::Undefined => f.write_str("undefined"),
            Amf0Value::Unsupported => f.write_str("unsupported"),
            Amf0Value::Reference(index) => write!(f, "ref#{index}"),
            Amf0Value::StrictArray(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Amf0Value::Date { millis, .. } => write!(f, "date({millis})"),
        }
    }
}

/// Decodes one value from the front of `buf` and advances `buf` past it. On error `buf` is left
/// untouched, so a caller that gets [`Amf0Error::Incomplete`] can retry with more bytes.
pub fn decode(buf: &mut &[u8]) -> Result<Amf0Value, Amf0Error> {
    let mut reader = Reader { rest: buf };
    let value = reader.value(0)?;
    *buf = reader.rest;
    Ok(value)
}

/// Decodes every value in `buf`, e.g. the command name, transaction id and arguments of an RTMP
/// command message.
pub fn decode_all(mut buf: &[u8]) -> Result<Vec<Amf0Value>, Amf0Error> {
    let mut values = Vec::new();
    while !buf.is_empty() {
        values.push(decode(&mut buf)?);
    }
    Ok(values)
}

struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], Amf0Error> {
        let (head, tail) = self.rest.split_at_checked(len).ok_or(Amf0Error::Incomplete)?;
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Amf0Error> {
        let bytes = self.take(N)?;
        // take(N) returned exactly N bytes, so the conversion cannot fail.
        bytes.try_into().map_err(|_| Amf0Error::Incomplete)
    }

    fn u8(&mut self) -> Result<u8, Amf0Error> {
        let [byte] = self.array::<1>()?;
        Ok(byte)
    }

    fn u16(&mut self) -> Result<u16, Amf0Error> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, Amf0Error> {
        self.array().map(u32::from_be_bytes)
    }

    fn f64(&mut self) -> Result<f64, Amf0Error> {
        self.array().map(f64::from_be_bytes)
    }

    fn utf8(&mut self, len: usize) -> Result<String, Amf0Error> {
        let bytes = self.take(len)?;
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn short_string(&mut self) -> Result<String, Amf0Error> {
        let len = self.u16()?;
        self.utf8(usize::from(len))
    }

    fn long_string(&mut self) -> Result<String, Amf0Error> {
        let len = self.u32()?;
        // A length beyond the address space can never be satisfied by more input either, but
        // Incomplete is still the honest answer for "not enough bytes here".
        let len = usize::try_from(len).map_err(|_| Amf0Error::Incomplete)?;
        self.utf8(len)
    }

    fn value(&mut self, depth: usize) -> Result<Amf0Value, Amf0Error> {
        let marker = self.u8()?;
        Ok(match marker {
            MARKER_NUMBER => Amf0Value::Number(self.f64()?),
            MARKER_BOOLEAN => Amf0Value::Boolean(self.u8()? != 0),
            MARKER_STRING => Amf0Value::String(self.short_string()?),
            MARKER_OBJECT => Amf0Value::Object(self.properties(nested(depth)?, None)?),
            MARKER_NULL => Amf0Value::Null,
            MARKER_UNDEFINED => Amf0Value::Undefined,
            MARKER_REFERENCE => Amf0Value::Reference(self.u16()?),
            MARKER_ECMA_ARRAY => {
                let depth = nested(depth)?;
                let count_hint = self.u32()?;
                Amf0Value::EcmaArray(self.properties(depth, Some(count_hint))?)
            }
            MARKER_OBJECT_END => return Err(Amf0Error::UnexpectedObjectEnd),
            MARKER_STRICT_ARRAY => {
                let depth = nested(depth)?;
                let count = self.u32()?;
                // Every value takes at least one byte, so the remaining input bounds a hostile
                // count before it can drive a huge allocation.
                let capacity = usize::try_from(count).unwrap_or(usize::MAX).min(self.rest.len());
                let mut items = Vec::with_capacity(capacity);
                for _ in 0..count {
                    items.push(self.value(depth)?);
                }
                Amf0Value::StrictArray(items)
            }
            MARKER_DATE => {
                let millis = self.f64()?;
                let timezone = i16::from_be_bytes(self.array()?);
                Amf0Value::Date { millis, timezone }
            }
            MARKER_LONG_STRING => Amf0Value::LongString(self.long_string()?),
            MARKER_UNSUPPORTED => Amf0Value::Unsupported,
            MARKER_XML_DOCUMENT => Amf0Value::XmlDocument(self.long_string()?),
            MARKER_TYPED_OBJECT => {
                let depth = nested(depth)?;
                let class_name = self.short_string()?;
                let properties = self.properties(depth, None)?;
                Amf0Value::TypedObject { class_name, properties }
            }
            other => return Err(Amf0Error::UnknownMarker(other)),
        })
    }

    /// Reads properties up to and including the `00 00 09` end marker. `ecma_count_hint` is the
    /// count an ECMA array announced; it only matters when the end marker is missing.
    fn properties(
        &mut self,
        depth: usize,
        ecma_count_hint: Option<u32>,
    ) -> Result<Vec<(String, Amf0Value)>, Amf0Error> {
        let mut properties = Vec::new();
        loop {
            if self.rest.is_empty()
                && let Some(count) = ecma_count_hint
                && count > 0
                && usize::try_from(count).is_ok_and(|count| properties.len() >= count)
            {
                return Ok(properties);
            }
            let key = self.short_string()?;
            if key.is_empty() && self.rest.first() == Some(&MARKER_OBJECT_END) {
                self.rest = self.rest.get(1..).unwrap_or_default();
                return Ok(properties);
            }
            let value = self.value(depth)?;
            properties.push((key, value));
        }
    }
}

/// The depth of a container's children, or TooDeep.
fn nested(depth: usize) -> Result<usize, Amf0Error> {
    let depth = depth + 1;
    if depth > MAX_DEPTH { Err(Amf0Error::TooDeep) } else { Ok(depth) }
}

/// Appends the encoding of `value` to `out`.
///
/// Encoding cannot fail; the wire format's limits are handled like this: a [`Amf0Value::String`]
/// longer than 65535 bytes is written as a long string (the only way to carry it); a property key
/// or class name longer than 65535 bytes is cut at the last character boundary that fits; a
/// strict array of more than `u32::MAX` items is cut to that many.
pub fn encode(value: &Amf0Value, out: &mut Vec<u8>) {
    match value {
        Amf0Value::Number(n) => {
            out.push(MARKER_NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf0Value::Boolean(b) => out.extend_from_slice(&[MARKER_BOOLEAN, u8::from(*b)]),
        Amf0Value::String(s) => match u16::try_from(s.len()) {
            Ok(len) => {
                out.push(MARKER_STRING);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(s.as_bytes());
            }
            Err(_) => encode_long_string(MARKER_LONG_STRING, s, out),
        },
        Amf0Value::Object(properties) => {
            out.push(MARKER_OBJECT);
            encode_properties(properties, out);
        }
        Amf0Value::Null => out.push(MARKER_NULL),
        Amf0Value::Undefined => out.push(MARKER_UNDEFINED),
        Amf0Value::Reference(index) => {
            out.push(MARKER_REFERENCE);
            out.extend_from_slice(&index.to_be_bytes());
        }
        Amf0Value::EcmaArray(properties) => {
            out.push(MARKER_ECMA_ARRAY);
            let count = u32::try_from(properties.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            encode_properties(properties, out);
        }
        Amf0Value::StrictArray(items) => {
            out.push(MARKER_STRICT_ARRAY);
            let count = u32::try_from(items.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&count.to_be_bytes());
            for item in items.iter().take(count as usize) {
                encode(item, out);
            }
        }
        Amf0Value::Date { millis, timezone } => {
            out.push(MARKER_DATE);
            out.extend_from_slice(&millis.to_be_bytes());
            out.extend_from_slice(&timezone.to_be_bytes());
        }
        Amf0Value::LongString(s) => encode_long_string(MARKER_LONG_STRING, s, out),
        Amf0Value::Unsupported => out.push(MARKER_UNSUPPORTED),
        Amf0Value::XmlDocument(s) => encode_long_string(MARKER_XML_DOCUMENT, s, out),
        Amf0Value::TypedObject { class_name, properties } => {
            out.push(MARKER_TYPED_OBJECT);
            encode_short_string_payload(class_name, out);
            encode_properties(properties, out);
        }
    }
}

/// Appends the encodings of `values` back to back: the body of an RTMP command message.
pub fn encode_all(values: &[Amf0Value], out: &mut Vec<u8>) {
    for value in values {
        encode(value, out);
    }
}

fn encode_properties(properties: &[(String, Amf0Value)], out: &mut Vec<u8>) {
    for (key, value) in properties {
        encode_short_string_payload(key, out);
        encode(value, out);
    }
    out.extend_from_slice(&[0x00, 0x00, MARKER_OBJECT_END]);
}

/// u16 length + bytes, cut at a character boundary if the text does not fit in 65535 bytes.
fn encode_short_string_payload(s: &str, out: &mut Vec<u8>) {
    let mut end = s.len().min(usize::from(u16::MAX));
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let bytes = s.as_bytes().get(..end).unwrap_or_default();
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// Marker + u32 length + bytes; a string cannot exceed u32::MAX bytes in practice, but if it does
/// it is cut rather than written with a lying length.
fn encode_long_string(marker: u8, s: &str, out: &mut Vec<u8>) {
    let len = u32::try_from(s.len()).unwrap_or(u32::MAX);
    let bytes = s.as_bytes().get(..len as usize).unwrap_or_default();
    out.push(marker);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_one(bytes: &[u8]) -> Result<Amf0Value, Amf0Error> {
        let mut buf = bytes;
        let value = decode(&mut buf)?;
        assert!(buf.is_empty(), "trailing bytes after {value:?}: {buf:?}");
        Ok(value)
    }

    fn encoded(value: &Amf0Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode(value, &mut out);
        out
    }

    /// Checks both directions: the bytes decode to the value and the value encodes to the bytes.
    fn assert_fixture(bytes: &[u8], value: Amf0Value) {
        assert_eq!(decode_one(bytes), Ok(value.clone()));
        assert_eq!(encoded(&value), bytes);
    }

    #[test]
    fn number_fixture() {
        assert_fixture(&[0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0], Amf0Value::Number(1.0));
        assert_fixture(&[0x00, 0xc0, 0x45, 0, 0, 0, 0, 0, 0], Amf0Value::Number(-42.0));
    }

    #[test]
    fn boolean_fixture() {
        assert_fixture(&[0x01, 0x01], Amf0Value::Boolean(true));
        assert_fixture(&[0x01, 0x00], Amf0Value::Boolean(false));
        // The spec only says "0 is false": any other byte is true.
        assert_eq!(decode_one(&[0x01, 0x7f]), Ok(Amf0Value::Boolean(true)));
    }

    #[test]
    fn string_fixture() {
        assert_fixture(&[0x02, 0x00, 0x02, b'h', b'i'], "hi".into());
        assert_fixture(&[0x02, 0x00, 0x00], "".into());
        assert_fixture(&[0x02, 0x00, 0x03, 0xe2, 0x82, 0xac], Amf0Value::String("€".into()));
    }

    #[test]
    fn invalid_utf8_is_decoded_lossily() {
        assert_eq!(decode_one(&[0x02, 0x00, 0x03, b'a', 0xe9, b'b']), Ok(Amf0Value::String("a\u{fffd}b".into())));
    }

    #[test]
    fn object_fixture() {
        let bytes = [
            0x03, // object
            0x00, 0x01, b'a', 0x00, 0x40, 0x00, 0, 0, 0, 0, 0, 0, // a: 2.0
            0x00, 0x01, b'b', 0x05, // b: null
            0x00, 0x00, 0x09, // end
        ];
        assert_fixture(&bytes, Amf0Value::object([("a", 2.0.into()), ("b", Amf0Value::Null)]));
        assert_fixture(&[0x03, 0x00, 0x00, 0x09], Amf0Value::Object(Vec::new()));
    }

    #[test]
    fn null_undefined_unsupported_reference_fixtures() {
        assert_fixture(&[0x05], Amf0Value::Null);
        assert_fixture(&[0x06], Amf0Value::Undefined);
        assert_fixture(&[0x0d], Amf0Value::Unsupported);
        assert_fixture(&[0x07, 0x01, 0x02], Amf0Value::Reference(0x0102));
    }

    #[test]
    fn ecma_array_fixture() {
        let bytes = [
            0x08, 0x00, 0x00, 0x00, 0x01, // ECMA array, 1 entry
            0x00, 0x05, b'w', b'i', b'd', b't', b'h', 0x00, 0x40, 0x94, 0, 0, 0, 0, 0, 0, // width: 1280.0
            0x00, 0x00, 0x09,
        ];
        assert_fixture(&bytes, Amf0Value::ecma_array([("width", 1280.0.into())]));
    }

    #[test]
    fn ecma_array_count_is_only_a_hint() {
        let wrong_count = [
            0x08, 0x00, 0x00, 0x00, 0x00, // says 0 entries
            0x00, 0x01, b'x', 0x01, 0x01, // x: true
            0x00, 0x01, b'y', 0x01, 0x00, // y: false
            0x00, 0x00, 0x09,
        ];
        assert_eq!(decode_one(&wrong_count), Ok(Amf0Value::ecma_array([("x", true.into()), ("y", false.into())])));
    }

    #[test]
    fn ecma_array_without_end_marker_is_accepted_at_end_of_input() {
        let no_end_marker = [0x08, 0, 0, 0, 1, 0x00, 0x01, b'x', 0x05];
        assert_eq!(decode_one(&no_end_marker), Ok(Amf0Value::ecma_array([("x", Amf0Value::Null)])));
        // Fewer properties than announced is still a truncation.
        let truncated = [0x08, 0, 0, 0, 2, 0x00, 0x01, b'x', 0x05];
        assert_eq!(decode_one(&truncated), Err(Amf0Error::Incomplete));
    }

    #[test]
    fn strict_array_fixture() {
        let bytes = [
            0x0a, 0x00, 0x00, 0x00, 0x02, // 2 items
            0x01, 0x01, // true
            0x02, 0x00, 0x01, b'z', // "z"
        ];
        assert_fixture(&bytes, Amf0Value::StrictArray(vec![true.into(), "z".into()]));
    }

    #[test]
    fn date_fixture() {
        // 2009-02-13T23:31:30Z = 1234567890000 ms = 0x4271F71FB0450000 as a double.
        let bytes = [0x0b, 0x42, 0x71, 0xf7, 0x1f, 0xb0, 0x45, 0x00, 0x00, 0xff, 0xc4];
        assert_fixture(&bytes, Amf0Value::Date { millis: 1_234_567_890_000.0, timezone: -60 });
    }

    #[test]
    fn long_string_and_xml_fixtures() {
        assert_fixture(&[0x0c, 0x00, 0x00, 0x00, 0x03, b'a', b'b', b'c'], Amf0Value::LongString("abc".into()));
        assert_fixture(&[0x0f, 0x00, 0x00, 0x00, 0x04, b'<', b'a', b'/', b'>'], Amf0Value::XmlDocument("<a/>".into()));
    }

    #[test]
    fn typed_object_fixture() {
        let bytes = [
            0x10, 0x00, 0x02, b'P', b't', // class "Pt"
            0x00, 0x01, b'x', 0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, // x: 1.0
            0x00, 0x00, 0x09,
        ];
        assert_fixture(
            &bytes,
            Amf0Value::TypedObject { class_name: "Pt".into(), properties: vec![("x".into(), 1.0.into())] },
        );
    }

    #[test]
    fn long_text_in_string_is_encoded_as_long_string() {
        let text = "x".repeat(70_000);
        let bytes = encoded(&Amf0Value::String(text.clone()));
        assert_eq!(bytes.get(..5), Some(&[0x0c, 0x00, 0x01, 0x11, 0x70][..]));
        assert_eq!(decode_one(&bytes), Ok(Amf0Value::LongString(text)));
    }

    #[test]
    fn overlong_key_is_cut_at_a_char_boundary() {
        let key = "é".repeat(40_000); // 80,000 bytes
        let bytes = encoded(&Amf0Value::object([(key, Amf0Value::Null)]));
        let decoded = decode_one(&bytes).expect("decodes");
        let (cut_key, _) = decoded.properties().and_then(|p| p.first()).expect("one property");
        assert_eq!(cut_key.len(), 65_534);
        assert!(cut_key.chars().all(|c| c == 'é'));
    }

    #[test]
    fn unknown_and_reserved_markers_are_errors() {
        for marker in [0x04, 0x0e, 0x11, 0x12, 0xff] {
            assert_eq!(decode_one(&[marker]), Err(Amf0Error::UnknownMarker(marker)));
        }
        assert_eq!(decode_one(&[0x09]), Err(Amf0Error::UnexpectedObjectEnd));
    }

    #[test]
    fn error_leaves_the_buffer_untouched() {
        let bytes = [0x02, 0x00, 0x05, b'a'];
        let mut buf = &bytes[..];
        assert_eq!(decode(&mut buf), Err(Amf0Error::Incomplete));
        assert_eq!(buf, &bytes[..]);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut within_limit = [0x0a, 0, 0, 0, 1].repeat(MAX_DEPTH);
        within_limit.push(0x05);
        assert!(decode_one(&within_limit).is_ok());

        let mut too_deep = [0x0a, 0, 0, 0, 1].repeat(MAX_DEPTH + 1);
        too_deep.push(0x05);
        assert_eq!(decode_one(&too_deep), Err(Amf0Error::TooDeep));

        // Far deeper than the stack could take if depth were not checked.
        let hostile = [0x03, 0x00, 0x01, b'k'].repeat(1_000_000);
        assert_eq!(decode_one(&hostile), Err(Amf0Error::TooDeep));
    }

    #[test]
    fn huge_strict_array_count_does_not_allocate_up_front() {
        let bytes = [0x0a, 0xff, 0xff, 0xff, 0xff, 0x05];
        assert_eq!(decode_one(&bytes), Err(Amf0Error::Incomplete));
    }

    /// The `connect` command as ffmpeg's RTMP client sends it (libavformat/rtmpproto.c,
    /// gen_connect), written byte by byte from the spec.
    fn ffmpeg_connect_payload() -> Vec<u8> {
        let mut bytes = Vec::new();
        let short_string = |bytes: &mut Vec<u8>, s: &str| {
            bytes.extend_from_slice(&(s.len() as u16).to_be_bytes());
            bytes.extend_from_slice(s.as_bytes());
        };
        let string_value = |bytes: &mut Vec<u8>, s: &str| {
            bytes.push(0x02);
            bytes.extend_from_slice(&(s.len() as u16).to_be_bytes());
            bytes.extend_from_slice(s.as_bytes());
        };
        string_value(&mut bytes, "connect");
        bytes.extend_from_slice(&[0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]); // transaction id 1.0
        bytes.push(0x03);
        short_string(&mut bytes, "app");
        string_value(&mut bytes, "live");
        short_string(&mut bytes, "type");
        string_value(&mut bytes, "nonprivate");
        short_string(&mut bytes, "flashVer");
        string_value(&mut bytes, "FMLE/3.0 (compatible; FMSc/1.0)");
        short_string(&mut bytes, "tcUrl");
        string_value(&mut bytes, "rtmp://127.0.0.1:1935/live");
        bytes.extend_from_slice(&[0x00, 0x00, 0x09]);
        bytes
    }

    #[test]
    fn ffmpeg_connect_command() {
        let bytes = ffmpeg_connect_payload();
        let values = decode_all(&bytes).expect("connect decodes");
        assert_eq!(values.len(), 3);
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_f64(), Some(1.0));
        let command_object = &values[2];
        assert_eq!(command_object.get("app").and_then(Amf0Value::as_str), Some("live"));
        assert_eq!(command_object.get("flashVer").and_then(Amf0Value::as_str), Some("FMLE/3.0 (compatible; FMSc/1.0)"));
        assert_eq!(command_object.get("tcUrl").and_then(Amf0Value::as_str), Some("rtmp://127.0.0.1:1935/live"));
        assert_eq!(command_object.get("type").and_then(Amf0Value::as_str), Some("nonprivate"));
        assert_eq!(command_object.get("missing"), None);

        let mut reencoded = Vec::new();
        encode_all(&values, &mut reencoded);
        assert_eq!(reencoded, bytes);
    }

    #[test]
    fn every_truncation_of_connect_is_incomplete() {
        let bytes = ffmpeg_connect_payload();
        let mut first_value = &bytes[..];
        decode(&mut first_value).expect("name decodes");
        decode(&mut first_value).expect("transaction id decodes");
        let object_start = bytes.len() - first_value.len();
        let object = &bytes[object_start..];
        for len in 0..object.len() {
            let mut prefix = &object[..len];
            assert_eq!(decode(&mut prefix), Err(Amf0Error::Incomplete), "len {len}");
        }
        for len in 0..bytes.len() {
            // decode_all sees whole leading values, then fails on the cut one (or succeeds
            // exactly at a value boundary).
            let result = decode_all(&bytes[..len]);
            let at_boundary = [0, 10, 19].contains(&len);
            assert_eq!(result.is_ok(), at_boundary, "len {len}");
            if !at_boundary {
                assert_eq!(result, Err(Amf0Error::Incomplete));
            }
        }
    }

    #[test]
    fn command_reply_round_trips() {
        let reply = vec![
            Amf0Value::from("_result"),
            Amf0Value::from(1u32),
            Amf0Value::object([("fmsVer", "FMS/3,0,1,123".into()), ("capabilities", 31.0.into())]),
            Amf0Value::object([
                ("level", "status".into()),
                ("code", "NetConnection.Connect.Success".into()),
                ("description", "Connection succeeded.".into()),
                ("objectEncoding", 0.0.into()),
                ("data", Amf0Value::ecma_array([("version", "3,5,3,888".into())])),
            ]),
            Amf0Value::from(None::<&str>),
            Amf0Value::StrictArray(vec![Amf0Value::Undefined, Amf0Value::Unsupported]),
            Amf0Value::LongString("long".into()),
        ];
        let mut bytes = Vec::new();
        encode_all(&reply, &mut bytes);
        assert_eq!(decode_all(&bytes), Ok(reply));
    }

    #[test]
    fn accessors_reject_other_types() {
        assert_eq!(Amf0Value::Null.as_str(), None);
        assert_eq!(Amf0Value::from("1").as_f64(), None);
        assert_eq!(Amf0Value::from(1.0).as_bool(), None);
        assert_eq!(Amf0Value::from(true).get("x"), None);
        assert!(Amf0Value::Undefined.is_null_or_undefined());
        assert!(!Amf0Value::from(false).is_null_or_undefined());
    }

    #[test]
    fn display_is_compact() {
        let value =
            Amf0Value::object([("a", 1.0.into()), ("b", Amf0Value::StrictArray(vec!["x".into(), Amf0Value::Null]))]);
        assert_eq!(value.to_string(), r#"{"a": 1, "b": ["x", null]}"#);
    }

    /// A small deterministic generator, so the garbage test needs no extra crate.
    fn xorshift(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn garbage_never_panics() {
        let mut state = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            let len = (xorshift(&mut state) % 64) as usize;
            // Bias toward small bytes so markers and short lengths come up often.
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    let r = xorshift(&mut state);
                    if r.is_multiple_of(3) { (r >> 8) as u8 } else { (r >> 8) as u8 % 17 }
                })
                .collect();
            let _ = decode_all(&bytes);
        }
    }
}
