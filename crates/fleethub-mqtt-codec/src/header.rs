//! Fixed header: packet type, flags and the variable-length "remaining length".

use bytes::{BufMut, BytesMut};

use crate::CodecError;

/// Largest remaining length MQTT can express (4 length bytes).
pub const MAX_REMAINING_LENGTH: usize = 268_435_455;

pub(crate) const CONNECT: u8 = 1;
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const PUBREC: u8 = 5;
pub(crate) const PUBREL: u8 = 6;
pub(crate) const PUBCOMP: u8 = 7;
pub(crate) const SUBSCRIBE: u8 = 8;
pub(crate) const SUBACK: u8 = 9;
pub(crate) const UNSUBSCRIBE: u8 = 10;
pub(crate) const UNSUBACK: u8 = 11;
pub(crate) const PINGREQ: u8 = 12;
pub(crate) const PINGRESP: u8 = 13;
pub(crate) const DISCONNECT: u8 = 14;

/// Parsed fixed header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FixedHeader {
    /// Packet type (1..=14).
    pub packet_type: u8,
    /// Low nibble of the first byte.
    pub flags: u8,
    /// Bytes taken by the fixed header itself (2..=5).
    pub header_len: usize,
    /// Value of the remaining-length field.
    pub remaining_len: usize,
}

impl FixedHeader {
    /// Total size of the frame (fixed header + body).
    pub fn frame_len(&self) -> usize {
        self.header_len + self.remaining_len
    }

    /// Parse the fixed header at the start of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed. Validates the packet type
    /// and flags as soon as the first byte is present and the size limit as soon
    /// as the (partial) remaining length proves it is exceeded, so an oversized
    /// packet is rejected before its body is buffered.
    pub fn parse(buf: &[u8], max_remaining: usize) -> Result<Option<Self>, CodecError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let packet_type = first >> 4;
        let flags = first & 0x0F;
        validate_flags(packet_type, flags)?;

        let max = max_remaining.min(MAX_REMAINING_LENGTH);
        let mut value: usize = 0;
        for (i, &byte) in buf[1..].iter().take(4).enumerate() {
            value += usize::from(byte & 0x7F) << (7 * i);
            // `value` is a lower bound of the final length even while incomplete.
            if value > max {
                return Err(CodecError::PayloadTooLarge { size: value, max });
            }
            if byte & 0x80 == 0 {
                return Ok(Some(Self {
                    packet_type,
                    flags,
                    header_len: i + 2,
                    remaining_len: value,
                }));
            }
        }
        if buf.len() >= 5 {
            // Four length bytes and the fourth still has its continuation bit set.
            Err(CodecError::MalformedRemainingLength)
        } else {
            Ok(None)
        }
    }
}

/// Human-readable packet name for a packet type number.
pub(crate) fn type_name(packet_type: u8) -> &'static str {
    match packet_type {
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        _ => "RESERVED",
    }
}

fn validate_flags(packet_type: u8, flags: u8) -> Result<(), CodecError> {
    let expected = match packet_type {
        PUBLISH => {
            // DUP, QoS (2 bits), RETAIN are all meaningful; only QoS 3 is invalid.
            let qos = (flags >> 1) & 0b11;
            if qos == 3 {
                return Err(CodecError::InvalidQoS(qos));
            }
            return Ok(());
        }
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0b0010,
        CONNECT | CONNACK | PUBACK | PUBREC | PUBCOMP | SUBACK | UNSUBACK | PINGREQ | PINGRESP
        | DISCONNECT => 0,
        other => return Err(CodecError::InvalidPacketType(other)),
    };
    if flags == expected {
        Ok(())
    } else {
        Err(CodecError::InvalidFlags {
            packet: type_name(packet_type),
            flags,
        })
    }
}

/// Number of bytes needed to encode `len` as a remaining length.
pub(crate) fn remaining_length_len(len: usize) -> usize {
    match len {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Check `remaining_len` against the protocol maximum.
pub(crate) fn check_remaining_length(remaining_len: usize) -> Result<(), CodecError> {
    if remaining_len > MAX_REMAINING_LENGTH {
        Err(CodecError::PayloadTooLarge {
            size: remaining_len,
            max: MAX_REMAINING_LENGTH,
        })
    } else {
        Ok(())
    }
}

/// Write the fixed header. `remaining_len` must already be checked.
pub(crate) fn write_fixed_header(
    out: &mut BytesMut,
    packet_type: u8,
    flags: u8,
    remaining_len: usize,
) {
    debug_assert!(remaining_len <= MAX_REMAINING_LENGTH);
    out.reserve(1 + remaining_length_len(remaining_len) + remaining_len);
    out.put_u8((packet_type << 4) | (flags & 0x0F));
    let mut x = remaining_len;
    loop {
        // Truncation intended: the low seven bits of `x`.
        let mut byte = (x & 0x7F) as u8;
        x >>= 7;
        if x > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if x == 0 {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(len: usize) -> Vec<u8> {
        let mut out = BytesMut::new();
        write_fixed_header(&mut out, PUBLISH, 0, len);
        out[1..].to_vec()
    }

    #[test]
    fn remaining_length_boundaries() {
        let cases: &[(usize, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7F]),
            (128, &[0x80, 0x01]),
            (16_383, &[0xFF, 0x7F]),
            (16_384, &[0x80, 0x80, 0x01]),
            (2_097_151, &[0xFF, 0xFF, 0x7F]),
            (2_097_152, &[0x80, 0x80, 0x80, 0x01]),
            (268_435_455, &[0xFF, 0xFF, 0xFF, 0x7F]),
        ];
        for &(len, bytes) in cases {
            assert_eq!(encoded(len), bytes, "encode {len}");
            assert_eq!(remaining_length_len(len), bytes.len());
            let mut frame = vec![0x30];
            frame.extend_from_slice(bytes);
            let h = FixedHeader::parse(&frame, usize::MAX).unwrap().unwrap();
            assert_eq!(h.remaining_len, len, "decode {len}");
            assert_eq!(h.header_len, 1 + bytes.len());
            // Any proper prefix needs more bytes.
            for cut in 0..frame.len() {
                assert_eq!(FixedHeader::parse(&frame[..cut], usize::MAX), Ok(None));
            }
        }
    }

    #[test]
    fn five_length_bytes_are_malformed() {
        assert_eq!(
            FixedHeader::parse(&[0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F], usize::MAX),
            Err(CodecError::MalformedRemainingLength)
        );
        assert_eq!(
            FixedHeader::parse(&[0x30, 0x80, 0x80, 0x80, 0x80], usize::MAX),
            Err(CodecError::MalformedRemainingLength)
        );
    }

    #[test]
    fn non_minimal_length_is_accepted() {
        let h = FixedHeader::parse(&[0xC0, 0x80, 0x00], 10)
            .unwrap()
            .unwrap();
        assert_eq!((h.header_len, h.remaining_len), (3, 0));
    }

    #[test]
    fn too_large_detected_from_partial_length() {
        // 0xFF with continuation: at least 127 bytes, already above a max of 100.
        assert_eq!(
            FixedHeader::parse(&[0x30, 0xFF], 100),
            Err(CodecError::PayloadTooLarge {
                size: 127,
                max: 100
            })
        );
        assert_eq!(
            FixedHeader::parse(&[0x30, 0x65], 100),
            Err(CodecError::PayloadTooLarge {
                size: 101,
                max: 100
            })
        );
        assert!(FixedHeader::parse(&[0x30, 0x64], 100).unwrap().is_some());
    }

    #[test]
    fn flags_and_types() {
        assert_eq!(
            FixedHeader::parse(&[0x00], 10),
            Err(CodecError::InvalidPacketType(0))
        );
        assert_eq!(
            FixedHeader::parse(&[0xF0], 10),
            Err(CodecError::InvalidPacketType(15))
        );
        assert_eq!(
            FixedHeader::parse(&[0x80], 10),
            Err(CodecError::InvalidFlags {
                packet: "SUBSCRIBE",
                flags: 0
            })
        );
        assert_eq!(
            FixedHeader::parse(&[0x11], 10),
            Err(CodecError::InvalidFlags {
                packet: "CONNECT",
                flags: 1
            })
        );
        assert_eq!(
            FixedHeader::parse(&[0x36], 10),
            Err(CodecError::InvalidQoS(3))
        );
        assert_eq!(FixedHeader::parse(&[0x62], 10), Ok(None));
        assert_eq!(
            FixedHeader::parse(&[0x3F], 10),
            Err(CodecError::InvalidQoS(3))
        );
        assert_eq!(FixedHeader::parse(&[0x3D], 10), Ok(None));
    }
}
