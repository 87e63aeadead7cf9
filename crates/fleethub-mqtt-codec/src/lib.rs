//! MQTT 3.1.1 codec for both the server and the client side.
//!
//! * [`decode`] takes one complete packet off the front of a receive buffer.
//! * [`encode`] appends one packet to a send buffer.
//! * [`PacketIds`] allocates packet identifiers for QoS 1 exchanges.
//! * With the default feature `tokio`, [`framed`] reads and writes packets on a byte
//!   stream; everything else is pure (no IO, no async).
//!
//! Protocol level 4 ("MQTT") is spoken; level 3 ("MQIsdp", MQTT 3.1) CONNECTs are
//! also accepted and can be encoded. Decoding validates what the 3.1.1 spec requires
//! of the wire format (fixed header flags, QoS values, UTF-8 strings without U+0000,
//! wildcard-free topic names, non-zero packet identifiers, non-empty SUBSCRIBE /
//! UNSUBSCRIBE / SUBACK lists, no trailing bytes). Deliberate leniencies, because
//! real clients rely on them: a CONNECT password without a username, an empty client
//! id (the server decides), the DUP flag on QoS 0 PUBLISH, non-minimal remaining
//! length encodings. Topic filter wildcard syntax is left to the server
//! ([`is_valid_topic_filter`]) so it can answer with a SUBACK failure code.

mod ack;
mod connack;
mod connect;
mod error;
#[cfg(feature = "tokio")]
pub mod framed;
mod header;
mod packet_ids;
mod primitives;
mod publish;
mod qos;
mod suback;
mod subscribe;
mod unsubscribe;

#[cfg(test)]
mod test_util;

use bytes::{Buf, BytesMut};

pub use connack::{ConnAck, ConnectReturnCode};
pub use connect::{Connect, LastWill, PROTOCOL_LEVEL_3_1, PROTOCOL_LEVEL_3_1_1};
pub use error::CodecError;
#[cfg(feature = "tokio")]
pub use framed::{FrameError, Framed, FramedRead, FramedWrite};
pub use header::MAX_REMAINING_LENGTH;
pub use packet_ids::PacketIds;
pub use primitives::{is_valid_topic_filter, is_valid_topic_name};
pub use publish::Publish;
pub use qos::QoS;
pub use suback::{SubAck, SubscribeReturnCode};
pub use subscribe::Subscribe;
pub use unsubscribe::Unsubscribe;

use header::FixedHeader;

/// Any MQTT 3.1.1 control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    Connect(Connect),
    ConnAck(ConnAck),
    Publish(Publish),
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    Subscribe(Subscribe),
    SubAck(SubAck),
    Unsubscribe(Unsubscribe),
    UnsubAck(u16),
    PingReq,
    PingResp,
    Disconnect,
}

impl Packet {
    /// Upper-case packet name as in the spec, e.g. `"PUBLISH"`.
    pub fn name(&self) -> &'static str {
        header::type_name(self.packet_type())
    }

    /// Control packet type number (1..=14).
    fn packet_type(&self) -> u8 {
        match self {
            Self::Connect(_) => header::CONNECT,
            Self::ConnAck(_) => header::CONNACK,
            Self::Publish(_) => header::PUBLISH,
            Self::PubAck(_) => header::PUBACK,
            Self::PubRec(_) => header::PUBREC,
            Self::PubRel(_) => header::PUBREL,
            Self::PubComp(_) => header::PUBCOMP,
            Self::Subscribe(_) => header::SUBSCRIBE,
            Self::SubAck(_) => header::SUBACK,
            Self::Unsubscribe(_) => header::UNSUBSCRIBE,
            Self::UnsubAck(_) => header::UNSUBACK,
            Self::PingReq => header::PINGREQ,
            Self::PingResp => header::PINGRESP,
            Self::Disconnect => header::DISCONNECT,
        }
    }

    /// Fixed header flags nibble.
    fn flags(&self) -> u8 {
        match self {
            Self::Publish(p) => p.flags(),
            Self::PubRel(_) | Self::Subscribe(_) | Self::Unsubscribe(_) => 0b0010,
            _ => 0,
        }
    }

    /// Validate for encoding and return the remaining length.
    fn body_len(&self) -> Result<usize, CodecError> {
        let len = match self {
            Self::Connect(c) => c.body_len()?,
            Self::ConnAck(_) => ConnAck::BODY_LEN,
            Self::Publish(p) => p.body_len()?,
            Self::PubAck(pkid)
            | Self::PubRec(pkid)
            | Self::PubRel(pkid)
            | Self::PubComp(pkid)
            | Self::UnsubAck(pkid) => ack::check(*pkid)?,
            Self::Subscribe(s) => s.body_len()?,
            Self::SubAck(s) => s.body_len()?,
            Self::Unsubscribe(u) => u.body_len()?,
            Self::PingReq | Self::PingResp | Self::Disconnect => 0,
        };
        header::check_remaining_length(len)?;
        Ok(len)
    }

    fn write_body(&self, out: &mut BytesMut) {
        match self {
            Self::Connect(c) => c.write_body(out),
            Self::ConnAck(c) => c.write_body(out),
            Self::Publish(p) => p.write_body(out),
            Self::PubAck(pkid)
            | Self::PubRec(pkid)
            | Self::PubRel(pkid)
            | Self::PubComp(pkid)
            | Self::UnsubAck(pkid) => ack::write_body(*pkid, out),
            Self::Subscribe(s) => s.write_body(out),
            Self::SubAck(s) => s.write_body(out),
            Self::Unsubscribe(u) => u.write_body(out),
            Self::PingReq | Self::PingResp | Self::Disconnect => {}
        }
    }
}

macro_rules! impl_from {
    ($($ty:ident),*) => {$(
        impl From<$ty> for Packet {
            fn from(p: $ty) -> Self {
                Self::$ty(p)
            }
        }
    )*};
}
impl_from!(Connect, ConnAck, Publish, Subscribe, SubAck, Unsubscribe);

/// Decode one packet from the front of `buf` if a complete one is present.
///
/// * `Ok(None)`: more bytes are needed; `buf` is untouched.
/// * `Ok(Some(packet))`: the packet's bytes have been removed from `buf`. A PUBLISH
///   payload is a zero-copy slice of the original buffer.
/// * `Err(_)`: protocol violation; close the connection. Errors found in the fixed
///   header (type, flags, remaining length, size) leave `buf` untouched; errors in a
///   complete packet's body occur after that packet's bytes have been removed.
///
/// `max_packet_size` bounds the remaining length (the size after the fixed header).
/// It is enforced from the fixed header alone, before the body is buffered, and as
/// early as the first length byte when that already proves it is exceeded.
pub fn decode(buf: &mut BytesMut, max_packet_size: usize) -> Result<Option<Packet>, CodecError> {
    let Some(header) = FixedHeader::parse(buf, max_packet_size)? else {
        return Ok(None);
    };
    if buf.len() < header.frame_len() {
        return Ok(None);
    }
    let mut body = buf.split_to(header.frame_len()).freeze();
    body.advance(header.header_len);

    let packet = match header.packet_type {
        header::CONNECT => Packet::Connect(Connect::decode(body)?),
        header::CONNACK => Packet::ConnAck(ConnAck::decode(body)?),
        header::PUBLISH => Packet::Publish(Publish::decode(header.flags, body)?),
        header::PUBACK => Packet::PubAck(ack::decode(body)?),
        header::PUBREC => Packet::PubRec(ack::decode(body)?),
        header::PUBREL => Packet::PubRel(ack::decode(body)?),
        header::PUBCOMP => Packet::PubComp(ack::decode(body)?),
        header::SUBSCRIBE => Packet::Subscribe(Subscribe::decode(body)?),
        header::SUBACK => Packet::SubAck(SubAck::decode(body)?),
        header::UNSUBSCRIBE => Packet::Unsubscribe(Unsubscribe::decode(body)?),
        header::UNSUBACK => Packet::UnsubAck(ack::decode(body)?),
        header::PINGREQ | header::PINGRESP | header::DISCONNECT => {
            primitives::expect_end(&body)?;
            match header.packet_type {
                header::PINGREQ => Packet::PingReq,
                header::PINGRESP => Packet::PingResp,
                _ => Packet::Disconnect,
            }
        }
        // FixedHeader::parse only returns known packet types.
        other => return Err(CodecError::InvalidPacketType(other)),
    };
    Ok(Some(packet))
}

/// Append the encoding of `packet` to `out`.
///
/// Validates the packet first (field lengths, topic name, non-zero packet
/// identifiers, non-empty lists, protocol level, total size); on error nothing is
/// appended. For a QoS 0 PUBLISH, `pkid` and `dup` are not encoded.
pub fn encode(packet: &Packet, out: &mut BytesMut) -> Result<(), CodecError> {
    let len = packet.body_len()?;
    // Grow once per packet (a fixed header is at most 5 bytes), not once per field.
    out.reserve(5 + len);
    header::write_fixed_header(out, packet.packet_type(), packet.flags(), len);
    let start = out.len();
    packet.write_body(out);
    debug_assert_eq!(
        out.len() - start,
        len,
        "{} body length mismatch",
        packet.name()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_round_trip, decode_all};

    #[test]
    fn empty_packets() {
        assert_round_trip(b"\xc0\x00", &Packet::PingReq);
        assert_round_trip(b"\xd0\x00", &Packet::PingResp);
        assert_round_trip(b"\xe0\x00", &Packet::Disconnect);
        assert_eq!(
            decode_all(b"\xc0\x01\x00"),
            Err(CodecError::MalformedPacket("unexpected trailing bytes"))
        );
        assert_eq!(
            decode_all(b"\xe1\x00"),
            Err(CodecError::InvalidFlags {
                packet: "DISCONNECT",
                flags: 1
            })
        );
    }

    #[test]
    fn names() {
        let cases = [
            (Packet::Connect(Connect::new("c", true, 0)), "CONNECT"),
            (
                Packet::ConnAck(ConnAck::new(ConnectReturnCode::Accepted, false)),
                "CONNACK",
            ),
            (
                Packet::Publish(Publish::new("t", QoS::AtMostOnce, 0, bytes::Bytes::new())),
                "PUBLISH",
            ),
            (Packet::PubAck(1), "PUBACK"),
            (Packet::PubRec(1), "PUBREC"),
            (Packet::PubRel(1), "PUBREL"),
            (Packet::PubComp(1), "PUBCOMP"),
            (
                Packet::Subscribe(Subscribe::new(1, vec![("t".into(), QoS::AtMostOnce)])),
                "SUBSCRIBE",
            ),
            (
                Packet::SubAck(SubAck::new(1, vec![SubscribeReturnCode::Failure])),
                "SUBACK",
            ),
            (
                Packet::Unsubscribe(Unsubscribe::new(1, vec!["t".into()])),
                "UNSUBSCRIBE",
            ),
            (Packet::UnsubAck(1), "UNSUBACK"),
            (Packet::PingReq, "PINGREQ"),
            (Packet::PingResp, "PINGRESP"),
            (Packet::Disconnect, "DISCONNECT"),
        ];
        for (packet, name) in cases {
            assert_eq!(packet.name(), name);
            // Every packet the constructors build encodes and decodes back.
            let mut out = BytesMut::new();
            encode(&packet, &mut out).unwrap();
            assert_eq!(decode(&mut out, usize::MAX).unwrap(), Some(packet));
            assert!(out.is_empty());
        }
    }

    #[test]
    fn encode_appends() {
        let mut out = BytesMut::from(&b"xy"[..]);
        encode(&Packet::PingReq, &mut out).unwrap();
        encode(&Packet::PubAck(3), &mut out).unwrap();
        assert_eq!(&out[..], b"xy\xc0\x00\x40\x02\x00\x03");
    }

    #[test]
    fn oversize_rejected_from_fixed_header_alone() {
        // PUBLISH claiming 2 MiB of body; only the header has arrived.
        let mut buf = BytesMut::from(&b"\x30\x80\x80\x80\x01"[..]);
        assert_eq!(
            decode(&mut buf, 256 * 1024),
            Err(CodecError::PayloadTooLarge {
                size: 2_097_152,
                max: 256 * 1024
            })
        );
        assert_eq!(buf.len(), 5, "buffer untouched on header errors");
        // Exactly at the limit is fine (needs more bytes).
        let mut buf = BytesMut::from(&b"\x30\x0a"[..]);
        assert_eq!(decode(&mut buf, 10), Ok(None));
        let mut buf = BytesMut::from(&b"\x30\x0b"[..]);
        assert_eq!(
            decode(&mut buf, 10),
            Err(CodecError::PayloadTooLarge { size: 11, max: 10 })
        );
    }

    #[test]
    fn malformed_remaining_length() {
        let mut buf = BytesMut::from(&b"\x30\xff\xff\xff\xff\x01"[..]);
        assert_eq!(
            decode(&mut buf, usize::MAX),
            Err(CodecError::MalformedRemainingLength)
        );
    }

    #[test]
    fn encode_rejects_too_large() {
        let payload = bytes::Bytes::from(vec![0u8; MAX_REMAINING_LENGTH]);
        let p = Packet::Publish(Publish::new("t", QoS::AtMostOnce, 0, payload));
        let mut out = BytesMut::new();
        assert_eq!(
            encode(&p, &mut out),
            Err(CodecError::PayloadTooLarge {
                size: MAX_REMAINING_LENGTH + 3,
                max: MAX_REMAINING_LENGTH
            })
        );
        assert!(out.is_empty());
    }

    #[test]
    fn errors_display() {
        assert_eq!(
            CodecError::PayloadTooLarge { size: 11, max: 10 }.to_string(),
            "packet too large: remaining length 11 exceeds the maximum of 10 bytes"
        );
        assert_eq!(
            CodecError::InvalidFlags {
                packet: "SUBSCRIBE",
                flags: 0
            }
            .to_string(),
            "invalid fixed header flags 0b0000 for SUBSCRIBE"
        );
        assert_eq!(
            CodecError::InvalidSubscribeReturnCode(0x81).to_string(),
            "invalid SUBACK return code 0x81"
        );
    }
}
