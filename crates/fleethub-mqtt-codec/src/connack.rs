//! CONNACK (server -> client), section 3.2.

use bytes::{BufMut, Bytes, BytesMut};

use crate::CodecError;
use crate::primitives::{expect_end, read_u8};

/// CONNACK return code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnectReturnCode {
    Accepted = 0,
    UnacceptableProtocolVersion = 1,
    IdentifierRejected = 2,
    ServerUnavailable = 3,
    BadUserNamePassword = 4,
    NotAuthorized = 5,
}

impl ConnectReturnCode {
    /// The numeric code.
    pub const fn as_u8(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for ConnectReturnCode {
    type Error = CodecError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        Ok(match value {
            0 => Self::Accepted,
            1 => Self::UnacceptableProtocolVersion,
            2 => Self::IdentifierRejected,
            3 => Self::ServerUnavailable,
            4 => Self::BadUserNamePassword,
            5 => Self::NotAuthorized,
            other => return Err(CodecError::InvalidConnectReturnCode(other)),
        })
    }
}

/// CONNACK packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnAck {
    pub session_present: bool,
    pub code: ConnectReturnCode,
}

impl ConnAck {
    pub const BODY_LEN: usize = 2;

    pub fn new(code: ConnectReturnCode, session_present: bool) -> Self {
        Self {
            session_present,
            code,
        }
    }

    pub(crate) fn decode(mut body: Bytes) -> Result<Self, CodecError> {
        let flags = read_u8(&mut body)?;
        if flags & !0x01 != 0 {
            return Err(CodecError::MalformedPacket(
                "CONNACK acknowledge flags reserved bits are set",
            ));
        }
        let code = ConnectReturnCode::try_from(read_u8(&mut body)?)?;
        expect_end(&body)?;
        Ok(Self {
            session_present: flags & 0x01 != 0,
            code,
        })
    }

    pub(crate) fn write_body(self, out: &mut BytesMut) {
        out.put_u8(u8::from(self.session_present));
        out.put_u8(self.code.as_u8());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Packet;
    use crate::test_util::{assert_round_trip, decode_all};

    #[test]
    fn round_trips() {
        assert_round_trip(
            b"\x20\x02\x00\x00",
            &Packet::ConnAck(ConnAck::new(ConnectReturnCode::Accepted, false)),
        );
        assert_round_trip(
            b"\x20\x02\x01\x00",
            &Packet::ConnAck(ConnAck::new(ConnectReturnCode::Accepted, true)),
        );
        assert_round_trip(
            b"\x20\x02\x00\x05",
            &Packet::ConnAck(ConnAck::new(ConnectReturnCode::NotAuthorized, false)),
        );
        for code in 0..=5u8 {
            let c = ConnectReturnCode::try_from(code).unwrap();
            assert_eq!(c.as_u8(), code);
            assert_round_trip(
                &[0x20, 0x02, 0x00, code],
                &Packet::ConnAck(ConnAck::new(c, false)),
            );
        }
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode_all(b"\x20\x02\x00\x06"),
            Err(CodecError::InvalidConnectReturnCode(6))
        );
        assert!(matches!(
            decode_all(b"\x20\x02\x02\x00"),
            Err(CodecError::MalformedPacket(_))
        ));
        assert!(matches!(
            decode_all(b"\x20\x01\x00"),
            Err(CodecError::MalformedPacket(_))
        ));
        assert!(matches!(
            decode_all(b"\x20\x03\x00\x00\x00"),
            Err(CodecError::MalformedPacket(_))
        ));
    }
}
