//! SUBACK (server -> client), section 3.9.

use bytes::{BufMut, Bytes, BytesMut};

use crate::primitives::read_pkid;
use crate::{CodecError, QoS};

/// Per-filter result in a SUBACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SubscribeReturnCode {
    /// Subscription accepted with this maximum QoS.
    Success(QoS),
    /// Subscription refused (0x80).
    Failure,
}

impl SubscribeReturnCode {
    pub const FAILURE: u8 = 0x80;

    pub const fn as_u8(self) -> u8 {
        match self {
            Self::Success(qos) => qos as u8,
            Self::Failure => Self::FAILURE,
        }
    }
}

impl TryFrom<u8> for SubscribeReturnCode {
    type Error = CodecError;

    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(Self::Success(QoS::AtMostOnce)),
            1 => Ok(Self::Success(QoS::AtLeastOnce)),
            2 => Ok(Self::Success(QoS::ExactlyOnce)),
            Self::FAILURE => Ok(Self::Failure),
            other => Err(CodecError::InvalidSubscribeReturnCode(other)),
        }
    }
}

impl From<QoS> for SubscribeReturnCode {
    fn from(qos: QoS) -> Self {
        Self::Success(qos)
    }
}

/// SUBACK packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    pub pkid: u16,
    /// One per filter of the SUBSCRIBE, in order; never empty.
    pub return_codes: Vec<SubscribeReturnCode>,
}

impl SubAck {
    pub fn new(pkid: u16, return_codes: Vec<SubscribeReturnCode>) -> Self {
        Self { pkid, return_codes }
    }

    pub(crate) fn decode(mut body: Bytes) -> Result<Self, CodecError> {
        let pkid = read_pkid(&mut body)?;
        if body.is_empty() {
            return Err(CodecError::MalformedPacket(
                "SUBACK without any return code",
            ));
        }
        let return_codes = body
            .iter()
            .map(|&b| SubscribeReturnCode::try_from(b))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { pkid, return_codes })
    }

    pub(crate) fn body_len(&self) -> Result<usize, CodecError> {
        if self.pkid == 0 {
            return Err(CodecError::ZeroPacketId);
        }
        if self.return_codes.is_empty() {
            return Err(CodecError::MalformedPacket(
                "SUBACK without any return code",
            ));
        }
        Ok(2 + self.return_codes.len())
    }

    pub(crate) fn write_body(&self, out: &mut BytesMut) {
        out.put_u16(self.pkid);
        for code in &self.return_codes {
            out.put_u8(code.as_u8());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Packet;
    use crate::test_util::{assert_round_trip, decode_all};

    #[test]
    fn with_failure_code() {
        let bytes = b"\x90\x07\x00\x01\x01\x00\x80\x01\x02";
        let expected = SubAck::new(
            1,
            vec![
                SubscribeReturnCode::Success(QoS::AtLeastOnce),
                SubscribeReturnCode::Success(QoS::AtMostOnce),
                SubscribeReturnCode::Failure,
                QoS::AtLeastOnce.into(),
                QoS::ExactlyOnce.into(),
            ],
        );
        assert_round_trip(bytes, &Packet::SubAck(expected));
    }

    #[test]
    fn errors() {
        assert_eq!(
            decode_all(b"\x90\x03\x00\x01\x03"),
            Err(CodecError::InvalidSubscribeReturnCode(3))
        );
        assert_eq!(
            decode_all(b"\x90\x03\x00\x01\x81"),
            Err(CodecError::InvalidSubscribeReturnCode(0x81))
        );
        assert!(matches!(
            decode_all(b"\x90\x02\x00\x01"),
            Err(CodecError::MalformedPacket(_))
        ));
        assert!(matches!(
            decode_all(b"\x92\x03\x00\x01\x00"),
            Err(CodecError::InvalidFlags { .. })
        ));
    }
}
