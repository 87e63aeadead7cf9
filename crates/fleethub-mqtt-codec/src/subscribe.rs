//! SUBSCRIBE (client -> server), section 3.8.

use bytes::{BufMut, Bytes, BytesMut};

use crate::primitives::{read_pkid, read_string, read_u8, string_len, write_field};
use crate::{CodecError, QoS};

/// SUBSCRIBE packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    pub pkid: u16,
    /// Topic filters with their requested QoS; never empty. The decoder checks that
    /// each filter is a non-empty UTF-8 string, not its wildcard syntax: see
    /// [`crate::is_valid_topic_filter`].
    pub filters: Vec<(String, QoS)>,
}

impl Subscribe {
    pub fn new(pkid: u16, filters: Vec<(String, QoS)>) -> Self {
        Self { pkid, filters }
    }

    pub(crate) fn decode(mut body: Bytes) -> Result<Self, CodecError> {
        let pkid = read_pkid(&mut body)?;
        let mut filters = Vec::new();
        while !body.is_empty() {
            let filter = read_string(&mut body)?;
            if filter.is_empty() {
                return Err(CodecError::MalformedPacket("empty topic filter"));
            }
            let options = read_u8(&mut body)?;
            if options & !0b11 != 0 {
                return Err(CodecError::MalformedPacket(
                    "SUBSCRIBE requested QoS reserved bits are set",
                ));
            }
            filters.push((filter, QoS::try_from(options)?));
        }
        if filters.is_empty() {
            return Err(CodecError::MalformedPacket(
                "SUBSCRIBE without any topic filter",
            ));
        }
        Ok(Self { pkid, filters })
    }

    pub(crate) fn body_len(&self) -> Result<usize, CodecError> {
        if self.pkid == 0 {
            return Err(CodecError::ZeroPacketId);
        }
        if self.filters.is_empty() {
            return Err(CodecError::MalformedPacket(
                "SUBSCRIBE without any topic filter",
            ));
        }
        let mut len = 2;
        for (filter, _) in &self.filters {
            if filter.is_empty() {
                return Err(CodecError::MalformedPacket("empty topic filter"));
            }
            len += string_len(filter)? + 1;
        }
        Ok(len)
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) {
        out.put_u16(self.pkid);
        for (filter, qos) in &self.filters {
            write_field(out, filter.as_bytes());
            out.put_u8(qos.as_u8());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_round_trip, decode_all};
    use crate::{Packet, encode};

    /// Captured from paho-mqtt 2.2.0 (Python) subscribing to five filters at once.
    const PAHO_SUBSCRIBE: &[u8] = b"\x82\x86\x01\x00\x01\
\x00!devices/d1/messages/devicebound/#\x01\
\x00\x12$iothub/twin/res/#\x00\
\x00\x16$iothub/methods/POST/#\x00\
\x00'$iothub/twin/PATCH/properties/desired/#\x01\
\x00\x05a/+/b\x02";

    #[test]
    fn five_filters() {
        let expected = Subscribe::new(
            1,
            vec![
                ("devices/d1/messages/devicebound/#".into(), QoS::AtLeastOnce),
                ("$iothub/twin/res/#".into(), QoS::AtMostOnce),
                ("$iothub/methods/POST/#".into(), QoS::AtMostOnce),
                (
                    "$iothub/twin/PATCH/properties/desired/#".into(),
                    QoS::AtLeastOnce,
                ),
                ("a/+/b".into(), QoS::ExactlyOnce),
            ],
        );
        assert_round_trip(PAHO_SUBSCRIBE, &Packet::Subscribe(expected));
    }

    #[test]
    fn single_filter() {
        assert_round_trip(
            b"\x82\x06\x00\x0a\x00\x01#\x02",
            &Packet::Subscribe(Subscribe::new(10, vec![("#".into(), QoS::ExactlyOnce)])),
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode_all(b"\x82\x02\x00\x01"),
            Err(CodecError::MalformedPacket(
                "SUBSCRIBE without any topic filter"
            ))
        );
        assert_eq!(
            decode_all(b"\x80\x06\x00\x0a\x00\x01#\x02"),
            Err(CodecError::InvalidFlags {
                packet: "SUBSCRIBE",
                flags: 0
            })
        );
        assert_eq!(
            decode_all(b"\x82\x06\x00\x0a\x00\x01#\x03"),
            Err(CodecError::InvalidQoS(3))
        );
        assert!(matches!(
            decode_all(b"\x82\x06\x00\x0a\x00\x01#\x05"),
            Err(CodecError::MalformedPacket(_))
        ));
        assert_eq!(
            decode_all(b"\x82\x05\x00\x0a\x00\x00\x00"),
            Err(CodecError::MalformedPacket("empty topic filter"))
        );
        // Filter without its QoS byte.
        assert_eq!(
            decode_all(b"\x82\x05\x00\x0a\x00\x01#"),
            Err(CodecError::MalformedPacket("unexpected end of packet"))
        );
        assert_eq!(
            decode_all(b"\x82\x06\x00\x00\x00\x01#\x00"),
            Err(CodecError::ZeroPacketId)
        );

        let mut out = BytesMut::new();
        assert!(encode(&Packet::Subscribe(Subscribe::new(1, vec![])), &mut out).is_err());
        assert!(out.is_empty());
    }
}
