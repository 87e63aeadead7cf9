//! UNSUBSCRIBE (client -> server), section 3.10.

use bytes::{BufMut, Bytes, BytesMut};

use crate::CodecError;
use crate::primitives::{read_pkid, read_string, string_len, write_field};

/// UNSUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    pub pkid: u16,
    /// Topic filters to remove; never empty.
    pub topics: Vec<String>,
}

impl Unsubscribe {
    pub fn new(pkid: u16, topics: Vec<String>) -> Self {
        Self { pkid, topics }
    }

    pub(crate) fn decode(mut body: Bytes) -> Result<Self, CodecError> {
        let pkid = read_pkid(&mut body)?;
        let mut topics = Vec::new();
        while !body.is_empty() {
            let topic = read_string(&mut body)?;
            if topic.is_empty() {
                return Err(CodecError::MalformedPacket("empty topic filter"));
            }
            topics.push(topic);
        }
        if topics.is_empty() {
            return Err(CodecError::MalformedPacket(
                "UNSUBSCRIBE without any topic filter",
            ));
        }
        Ok(Self { pkid, topics })
    }

    pub(crate) fn body_len(&self) -> Result<usize, CodecError> {
        if self.pkid == 0 {
            return Err(CodecError::ZeroPacketId);
        }
        if self.topics.is_empty() {
            return Err(CodecError::MalformedPacket(
                "UNSUBSCRIBE without any topic filter",
            ));
        }
        let mut len = 2;
        for topic in &self.topics {
            if topic.is_empty() {
                return Err(CodecError::MalformedPacket("empty topic filter"));
            }
            len += string_len(topic)?;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) {
        out.put_u16(self.pkid);
        for topic in &self.topics {
            write_field(out, topic.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_round_trip, decode_all};
    use crate::{Packet, encode};

    #[test]
    fn round_trip() {
        assert_round_trip(
            b"\xa2\x0f\x00\x05\x00\x03a/b\x00\x06$sys/#",
            &Packet::Unsubscribe(Unsubscribe::new(5, vec!["a/b".into(), "$sys/#".into()])),
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            decode_all(b"\xa2\x02\x00\x05"),
            Err(CodecError::MalformedPacket(_))
        ));
        assert_eq!(
            decode_all(b"\xa0\x05\x00\x05\x00\x01a"),
            Err(CodecError::InvalidFlags {
                packet: "UNSUBSCRIBE",
                flags: 0
            })
        );
        assert_eq!(
            decode_all(b"\xa2\x04\x00\x05\x00\x00"),
            Err(CodecError::MalformedPacket("empty topic filter"))
        );
        assert_eq!(
            decode_all(b"\xa2\x04\x00\x05\x00\x01"),
            Err(CodecError::MalformedPacket("unexpected end of packet"))
        );
        let mut out = BytesMut::new();
        assert!(encode(&Packet::Unsubscribe(Unsubscribe::new(5, vec![])), &mut out).is_err());
        assert!(out.is_empty());
    }
}
