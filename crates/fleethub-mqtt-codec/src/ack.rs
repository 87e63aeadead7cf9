//! Packets whose body is just a packet identifier: PUBACK, PUBREC, PUBREL, PUBCOMP
//! (sections 3.4-3.7) and UNSUBACK (section 3.11).

use bytes::{BufMut, Bytes, BytesMut};

use crate::CodecError;
use crate::primitives::{expect_end, read_pkid};

pub(crate) const BODY_LEN: usize = 2;

pub(crate) fn decode(mut body: Bytes) -> Result<u16, CodecError> {
    let pkid = read_pkid(&mut body)?;
    expect_end(&body)?;
    Ok(pkid)
}

pub(crate) fn check(pkid: u16) -> Result<usize, CodecError> {
    if pkid == 0 {
        Err(CodecError::ZeroPacketId)
    } else {
        Ok(BODY_LEN)
    }
}

pub(crate) fn write_body(pkid: u16, out: &mut BytesMut) {
    out.put_u16(pkid);
}

#[cfg(test)]
mod tests {
    use crate::test_util::{assert_round_trip, decode_all};
    use crate::{CodecError, Packet, encode};
    use bytes::BytesMut;

    #[test]
    fn round_trips() {
        assert_round_trip(b"\x40\x02\x00\x01", &Packet::PubAck(1));
        assert_round_trip(b"\x50\x02\x12\x34", &Packet::PubRec(0x1234));
        assert_round_trip(b"\x62\x02\xff\xff", &Packet::PubRel(0xFFFF));
        assert_round_trip(b"\x70\x02\x00\x0a", &Packet::PubComp(10));
        assert_round_trip(b"\xb0\x02\x00\x07", &Packet::UnsubAck(7));
    }

    #[test]
    fn errors() {
        // PUBREL must have flags 0b0010.
        assert_eq!(
            decode_all(b"\x60\x02\x00\x01"),
            Err(CodecError::InvalidFlags {
                packet: "PUBREL",
                flags: 0
            })
        );
        assert_eq!(
            decode_all(b"\x42\x02\x00\x01"),
            Err(CodecError::InvalidFlags {
                packet: "PUBACK",
                flags: 2
            })
        );
        assert_eq!(
            decode_all(b"\x40\x02\x00\x00"),
            Err(CodecError::ZeroPacketId)
        );
        assert_eq!(
            decode_all(b"\x40\x01\x01"),
            Err(CodecError::MalformedPacket("unexpected end of packet"))
        );
        assert_eq!(
            decode_all(b"\x40\x03\x00\x01\x00"),
            Err(CodecError::MalformedPacket("unexpected trailing bytes"))
        );
        let mut out = BytesMut::new();
        assert_eq!(
            encode(&Packet::PubAck(0), &mut out),
            Err(CodecError::ZeroPacketId)
        );
        assert!(out.is_empty());
    }
}
