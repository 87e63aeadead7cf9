//! PUBLISH (both directions), section 3.3.

use bytes::{BufMut, Bytes, BytesMut};

use crate::primitives::{check_topic_name, read_pkid, read_string, string_len, write_field};
use crate::{CodecError, QoS};

const DUP: u8 = 0b1000;
const RETAIN: u8 = 0b0001;

/// PUBLISH packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Redelivery flag. Accepted with QoS 0 on decode (MQTT-3.3.1-2 forbids it, but it
    /// is harmless); never encoded for QoS 0.
    pub dup: bool,
    pub qos: QoS,
    pub retain: bool,
    /// Topic name: non-empty, no wildcards.
    pub topic: String,
    /// Packet identifier: 0 for QoS 0 (ignored on encode), non-zero otherwise.
    pub pkid: u16,
    /// Application payload; on decode a zero-copy slice of the receive buffer.
    pub payload: Bytes,
}

impl Publish {
    /// A non-retained, non-duplicate PUBLISH.
    pub fn new(topic: impl Into<String>, qos: QoS, pkid: u16, payload: impl Into<Bytes>) -> Self {
        Self {
            dup: false,
            qos,
            retain: false,
            topic: topic.into(),
            pkid: if qos == QoS::AtMostOnce { 0 } else { pkid },
            payload: payload.into(),
        }
    }

    pub(crate) fn decode(flags: u8, mut body: Bytes) -> Result<Self, CodecError> {
        let qos = QoS::try_from((flags >> 1) & 0b11)?;
        let topic = read_string(&mut body)?;
        check_topic_name(&topic)?;
        let pkid = if qos == QoS::AtMostOnce {
            0
        } else {
            read_pkid(&mut body)?
        };
        Ok(Self {
            dup: flags & DUP != 0,
            qos,
            retain: flags & RETAIN != 0,
            topic,
            pkid,
            payload: body,
        })
    }

    pub(crate) fn flags(&self) -> u8 {
        let mut flags = self.qos.as_u8() << 1;
        if self.dup && self.qos != QoS::AtMostOnce {
            flags |= DUP;
        }
        if self.retain {
            flags |= RETAIN;
        }
        flags
    }

    pub(crate) fn body_len(&self) -> Result<usize, CodecError> {
        check_topic_name(&self.topic)?;
        let mut len = string_len(&self.topic)? + self.payload.len();
        if self.qos != QoS::AtMostOnce {
            if self.pkid == 0 {
                return Err(CodecError::ZeroPacketId);
            }
            len += 2;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) {
        write_field(out, self.topic.as_bytes());
        if self.qos != QoS::AtMostOnce {
            out.put_u16(self.pkid);
        }
        out.put_slice(&self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_round_trip, decode_all};
    use crate::{Packet, decode, encode};

    #[test]
    fn qos0() {
        let bytes = b"\x30\x0a\x00\x03a/bhello";
        let p = Publish::new("a/b", QoS::AtMostOnce, 0, &b"hello"[..]);
        assert_round_trip(bytes, &Packet::Publish(p));
    }

    #[test]
    fn qos1_captured_from_paho() {
        let bytes = b"\x32\x24\x00\x1bdevices/d1/messages/events/\x00\x02hello";
        let p = Publish::new(
            "devices/d1/messages/events/",
            QoS::AtLeastOnce,
            2,
            &b"hello"[..],
        );
        assert_round_trip(bytes, &Packet::Publish(p));
    }

    #[test]
    fn qos2_dup_retain_empty_payload() {
        let bytes = b"\x3d\x05\x00\x01t\x12\x34";
        let p = Publish {
            dup: true,
            retain: true,
            ..Publish::new("t", QoS::ExactlyOnce, 0x1234, Bytes::new())
        };
        assert_round_trip(bytes, &Packet::Publish(p));
    }

    #[test]
    fn large_payload_uses_multi_byte_length() {
        let payload = vec![0xAB; 200];
        let mut bytes = vec![0x30, 0xCD, 0x01, 0x00, 0x03, b'x', b'/', b'y'];
        bytes.extend_from_slice(&payload);
        assert_eq!(bytes.len() - 3, 205);
        assert_round_trip(
            &bytes,
            &Packet::Publish(Publish::new("x/y", QoS::AtMostOnce, 0, payload)),
        );
    }

    #[test]
    fn payload_is_zero_copy() {
        let mut buf = BytesMut::from(&b"\x30\x0a\x00\x03a/bhello"[..]);
        let base = buf.as_ptr() as usize;
        let Some(Packet::Publish(p)) = decode(&mut buf, 1024).unwrap() else {
            panic!("expected PUBLISH")
        };
        assert_eq!(p.payload.as_ptr() as usize, base + 7);
    }

    #[test]
    fn dup_with_qos0_is_accepted_but_not_encoded() {
        let p = decode_all(b"\x38\x03\x00\x01t").unwrap();
        let Packet::Publish(ref publish) = p else {
            panic!()
        };
        assert!(publish.dup);
        let mut out = BytesMut::new();
        encode(&p, &mut out).unwrap();
        assert_eq!(&out[..], b"\x30\x03\x00\x01t");
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode_all(b"\x30\x05\x00\x03a/#"),
            Err(CodecError::InvalidTopicName(
                "topic name contains a wildcard character"
            ))
        );
        assert_eq!(
            decode_all(b"\x30\x05\x00\x03+/b"),
            Err(CodecError::InvalidTopicName(
                "topic name contains a wildcard character"
            ))
        );
        assert_eq!(
            decode_all(b"\x30\x02\x00\x00"),
            Err(CodecError::InvalidTopicName("topic name is empty"))
        );
        assert_eq!(
            decode_all(b"\x32\x05\x00\x01t\x00\x00"),
            Err(CodecError::ZeroPacketId)
        );
        assert_eq!(
            decode_all(b"\x32\x04\x00\x01t\x00"),
            Err(CodecError::MalformedPacket("unexpected end of packet"))
        );
        assert_eq!(decode_all(b"\x36\x00"), Err(CodecError::InvalidQoS(3)));
        assert_eq!(decode_all(b"\x30\x03\x00\x01\xff"), Err(CodecError::Utf8));

        let mut out = BytesMut::new();
        let zero = Packet::Publish(Publish::new("t", QoS::AtLeastOnce, 0, Bytes::new()));
        assert_eq!(encode(&zero, &mut out), Err(CodecError::ZeroPacketId));
        let wild = Packet::Publish(Publish::new("t/#", QoS::AtMostOnce, 0, Bytes::new()));
        assert!(matches!(
            encode(&wild, &mut out),
            Err(CodecError::InvalidTopicName(_))
        ));
        assert!(out.is_empty());
    }
}
