//! Reading and writing the primitive field types of MQTT 3.1.1 (section 1.5),
//! plus topic name / filter validation (section 4.7).

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::CodecError;

const TRUNCATED: CodecError = CodecError::MalformedPacket("unexpected end of packet");

pub(crate) fn read_u8(buf: &mut Bytes) -> Result<u8, CodecError> {
    if buf.has_remaining() {
        Ok(buf.get_u8())
    } else {
        Err(TRUNCATED)
    }
}

pub(crate) fn read_u16(buf: &mut Bytes) -> Result<u16, CodecError> {
    if buf.remaining() >= 2 {
        Ok(buf.get_u16())
    } else {
        Err(TRUNCATED)
    }
}

/// A packet identifier, which must be non-zero.
pub(crate) fn read_pkid(buf: &mut Bytes) -> Result<u16, CodecError> {
    match read_u16(buf)? {
        0 => Err(CodecError::ZeroPacketId),
        pkid => Ok(pkid),
    }
}

/// Binary data with a two-byte length prefix (zero-copy).
pub(crate) fn read_binary(buf: &mut Bytes) -> Result<Bytes, CodecError> {
    let len = usize::from(read_u16(buf)?);
    if buf.remaining() < len {
        return Err(TRUNCATED);
    }
    Ok(buf.split_to(len))
}

/// UTF-8 string with a two-byte length prefix, validated per section 1.5.3.
pub(crate) fn read_string(buf: &mut Bytes) -> Result<String, CodecError> {
    let raw = read_binary(buf)?;
    let s = std::str::from_utf8(&raw).map_err(|_| CodecError::Utf8)?;
    if s.contains('\0') {
        return Err(CodecError::NullCharacter);
    }
    Ok(s.to_owned())
}

/// Fail if the body has bytes left over.
pub(crate) fn expect_end(buf: &Bytes) -> Result<(), CodecError> {
    if buf.has_remaining() {
        Err(CodecError::MalformedPacket("unexpected trailing bytes"))
    } else {
        Ok(())
    }
}

/// Encoded size of a length-prefixed field, checking the 65535-byte limit.
pub(crate) fn field_len(data: &[u8]) -> Result<usize, CodecError> {
    if data.len() > usize::from(u16::MAX) {
        Err(CodecError::FieldTooLong(data.len()))
    } else {
        Ok(2 + data.len())
    }
}

/// Encoded size of a string field; also rejects U+0000 so that what we encode decodes.
pub(crate) fn string_len(s: &str) -> Result<usize, CodecError> {
    if s.contains('\0') {
        return Err(CodecError::NullCharacter);
    }
    field_len(s.as_bytes())
}

/// Write a length-prefixed field. The length must have been checked with [`field_len`].
pub(crate) fn write_field(out: &mut BytesMut, data: &[u8]) {
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    debug_assert_eq!(usize::from(len), data.len(), "field length not validated");
    out.put_u16(len);
    out.put_slice(data);
}

/// Check a topic name (PUBLISH / will topic): non-empty, no wildcard characters.
pub(crate) fn check_topic_name(topic: &str) -> Result<(), CodecError> {
    if topic.is_empty() {
        Err(CodecError::InvalidTopicName("topic name is empty"))
    } else if topic.contains(['+', '#']) {
        Err(CodecError::InvalidTopicName(
            "topic name contains a wildcard character",
        ))
    } else {
        Ok(())
    }
}

/// Whether `topic` is a valid MQTT topic *name* (as used in PUBLISH): at least one
/// character, no `+` or `#`, no U+0000.
pub fn is_valid_topic_name(topic: &str) -> bool {
    check_topic_name(topic).is_ok() && !topic.contains('\0')
}

/// Whether `filter` is a valid MQTT topic *filter* (as used in SUBSCRIBE): at least
/// one character, no U+0000, `+` only as a whole level, `#` only as the whole last level.
///
/// The decoder only requires filters to be non-empty so that a server can answer a
/// syntactically bad filter with a SUBACK failure (0x80) instead of disconnecting;
/// use this to decide.
pub fn is_valid_topic_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        let mut b = Bytes::from_static(b"\x00\x03abc\x00\x00\xFF");
        assert_eq!(read_string(&mut b).unwrap(), "abc");
        assert_eq!(read_string(&mut b).unwrap(), "");
        assert_eq!(read_u8(&mut b).unwrap(), 0xFF);
        assert_eq!(read_u8(&mut b), Err(TRUNCATED));
        expect_end(&b).unwrap();

        let mut b = Bytes::from_static(b"\x00\x02\xC3\x28");
        assert_eq!(read_string(&mut b), Err(CodecError::Utf8));
        let mut b = Bytes::from_static(b"\x00\x02a\x00");
        assert_eq!(read_string(&mut b), Err(CodecError::NullCharacter));
        let mut b = Bytes::from_static(b"\x00\x05abc");
        assert_eq!(read_string(&mut b), Err(TRUNCATED));
        let mut b = Bytes::from_static(b"\x00");
        assert_eq!(read_u16(&mut b), Err(TRUNCATED));
        let mut b = Bytes::from_static(b"\x00\x00");
        assert_eq!(read_pkid(&mut b), Err(CodecError::ZeroPacketId));
        // Multi-byte UTF-8 (length counts bytes).
        let mut b = Bytes::from_static("\x00\x03\u{20AC}".as_bytes());
        assert_eq!(read_string(&mut b).unwrap(), "\u{20AC}");
    }

    #[test]
    fn writing() {
        let mut out = BytesMut::new();
        assert_eq!(string_len("hi").unwrap(), 4);
        write_field(&mut out, b"hi");
        assert_eq!(&out[..], b"\x00\x02hi");
        assert_eq!(string_len("a\0"), Err(CodecError::NullCharacter));
        let long = vec![0u8; 65_536];
        assert_eq!(field_len(&long), Err(CodecError::FieldTooLong(65_536)));
        assert_eq!(field_len(&long[..65_535]).unwrap(), 65_537);
    }

    #[test]
    fn topic_names() {
        assert!(is_valid_topic_name("devices/d1/messages/events/"));
        assert!(is_valid_topic_name("/"));
        assert!(!is_valid_topic_name(""));
        assert!(!is_valid_topic_name("a/+/b"));
        assert!(!is_valid_topic_name("a/#"));
        assert!(!is_valid_topic_name("a\0"));
    }

    #[test]
    fn topic_filters() {
        for ok in [
            "#",
            "+",
            "/",
            "a/b",
            "a/+/b",
            "+/+",
            "a/#",
            "$iothub/twin/res/#",
            "devices/d1/messages/devicebound/#",
            "a//b",
        ] {
            assert!(is_valid_topic_filter(ok), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a/b#", "a+/b", "a/+b", "##", "x\0"] {
            assert!(!is_valid_topic_filter(bad), "{bad}");
        }
    }
}
