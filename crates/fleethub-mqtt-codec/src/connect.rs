//! CONNECT (client -> server), section 3.1.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::primitives::{
    check_topic_name, expect_end, field_len, read_binary, read_string, read_u8, read_u16,
    string_len, write_field,
};
use crate::{CodecError, QoS};

/// Protocol level of MQTT 3.1.1 (protocol name "MQTT").
pub const PROTOCOL_LEVEL_3_1_1: u8 = 4;
/// Protocol level of MQTT 3.1 (protocol name "MQIsdp").
pub const PROTOCOL_LEVEL_3_1: u8 = 3;

const USERNAME: u8 = 0x80;
const PASSWORD: u8 = 0x40;
const WILL_RETAIN: u8 = 0x20;
const WILL_QOS_SHIFT: u8 = 3;
const WILL: u8 = 0x04;
const CLEAN_SESSION: u8 = 0x02;
const RESERVED: u8 = 0x01;

/// CONNECT packet.
///
/// `Debug` redacts the password (it carries SAS tokens).
#[derive(Clone, PartialEq, Eq)]
pub struct Connect {
    /// 4 for MQTT 3.1.1 ("MQTT"), 3 for MQTT 3.1 ("MQIsdp"); selects the protocol name on encode.
    pub protocol_level: u8,
    /// May be empty on decode; the server decides whether to accept it.
    pub client_id: String,
    pub clean_session: bool,
    /// Seconds; 0 disables keep-alive.
    pub keep_alive: u16,
    pub username: Option<String>,
    /// A password without a username is accepted (several clients send it) even
    /// though MQTT-3.1.2-22 forbids it.
    pub password: Option<Vec<u8>>,
    pub will: Option<LastWill>,
}

/// Will message published by the server if the client disconnects ungracefully.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
}

impl Connect {
    /// A CONNECT for MQTT 3.1.1 with no credentials and no will.
    pub fn new(client_id: impl Into<String>, clean_session: bool, keep_alive: u16) -> Self {
        Self {
            protocol_level: PROTOCOL_LEVEL_3_1_1,
            client_id: client_id.into(),
            clean_session,
            keep_alive,
            username: None,
            password: None,
            will: None,
        }
    }

    pub(crate) fn decode(mut body: Bytes) -> Result<Self, CodecError> {
        let name = read_binary(&mut body)?;
        let protocol_level = read_u8(&mut body)?;
        match (&name[..], protocol_level) {
            (b"MQTT", PROTOCOL_LEVEL_3_1_1) | (b"MQIsdp", PROTOCOL_LEVEL_3_1) => {}
            (b"MQTT" | b"MQIsdp", level) => {
                return Err(CodecError::UnsupportedProtocolLevel(level));
            }
            _ => return Err(CodecError::InvalidProtocol),
        }

        let flags = read_u8(&mut body)?;
        if flags & RESERVED != 0 {
            return Err(CodecError::MalformedPacket(
                "CONNECT reserved flag bit is set",
            ));
        }
        let will_qos = (flags >> WILL_QOS_SHIFT) & 0b11;
        let will_retain = flags & WILL_RETAIN != 0;
        let has_will = flags & WILL != 0;
        if !has_will && (will_qos != 0 || will_retain) {
            return Err(CodecError::MalformedPacket(
                "CONNECT will QoS or will retain set without the will flag",
            ));
        }
        let will_qos = QoS::try_from(will_qos)?;
        let keep_alive = read_u16(&mut body)?;

        let client_id = read_string(&mut body)?;
        let will = if has_will {
            let topic = read_string(&mut body)?;
            check_topic_name(&topic)?;
            let payload = read_binary(&mut body)?;
            Some(LastWill {
                topic,
                payload,
                qos: will_qos,
                retain: will_retain,
            })
        } else {
            None
        };
        let username = if flags & USERNAME != 0 {
            Some(read_string(&mut body)?)
        } else {
            None
        };
        let password = if flags & PASSWORD != 0 {
            Some(read_binary(&mut body)?.to_vec())
        } else {
            None
        };
        expect_end(&body)?;

        Ok(Self {
            protocol_level,
            client_id,
            clean_session: flags & CLEAN_SESSION != 0,
            keep_alive,
            username,
            password,
            will,
        })
    }

    fn protocol_name(&self) -> Result<&'static [u8], CodecError> {
        match self.protocol_level {
            PROTOCOL_LEVEL_3_1_1 => Ok(b"MQTT"),
            PROTOCOL_LEVEL_3_1 => Ok(b"MQIsdp"),
            other => Err(CodecError::UnsupportedProtocolLevel(other)),
        }
    }

    /// Validate and compute the remaining length.
    pub(crate) fn body_len(&self) -> Result<usize, CodecError> {
        // name + level + flags + keep alive
        let mut len = field_len(self.protocol_name()?)? + 1 + 1 + 2;
        len += string_len(&self.client_id)?;
        if let Some(will) = &self.will {
            check_topic_name(&will.topic)?;
            len += string_len(&will.topic)? + field_len(&will.payload)?;
        }
        if let Some(username) = &self.username {
            len += string_len(username)?;
        }
        if let Some(password) = &self.password {
            len += field_len(password)?;
        }
        Ok(len)
    }

    /// Write the body; [`Self::body_len`] must have succeeded.
    pub(crate) fn write_body(&self, out: &mut BytesMut) {
        write_field(out, self.protocol_name().unwrap_or(b"MQTT"));
        out.put_u8(self.protocol_level);
        let mut flags = 0;
        if self.clean_session {
            flags |= CLEAN_SESSION;
        }
        if let Some(will) = &self.will {
            flags |= WILL | (will.qos.as_u8() << WILL_QOS_SHIFT);
            if will.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        out.put_u8(flags);
        out.put_u16(self.keep_alive);
        write_field(out, self.client_id.as_bytes());
        if let Some(will) = &self.will {
            write_field(out, will.topic.as_bytes());
            write_field(out, &will.payload);
        }
        if let Some(username) = &self.username {
            write_field(out, username.as_bytes());
        }
        if let Some(password) = &self.password {
            write_field(out, password);
        }
    }
}

impl fmt::Debug for Connect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connect")
            .field("protocol_level", &self.protocol_level)
            .field("client_id", &self.client_id)
            .field("clean_session", &self.clean_session)
            .field("keep_alive", &self.keep_alive)
            .field("username", &self.username)
            .field(
                "password",
                &self
                    .password
                    .as_ref()
                    .map(|p| format!("<redacted, {} bytes>", p.len())),
            )
            .field("will", &self.will)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{assert_round_trip, decode_all};
    use crate::{Packet, decode};

    /// Captured from paho-mqtt 2.2.0 (Python): client_id "paho-dev-1", clean_session=False,
    /// keepalive=60, username + password (an IoT Hub style SAS token).
    const PAHO_CONNECT: &[u8] = b"\x10\xb4\x01\x00\x04MQTT\x04\xc0\x00<\x00\npaho-dev-1\
\x00:myhub.azure-devices.net/paho-dev-1/?api-version=2021-04-12\
\x00`SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fpaho-dev-1&sig=abc%3D&se=1700000000";

    #[test]
    fn paho_connect() {
        let expected = Connect {
            protocol_level: 4,
            client_id: "paho-dev-1".into(),
            clean_session: false,
            keep_alive: 60,
            username: Some("myhub.azure-devices.net/paho-dev-1/?api-version=2021-04-12".into()),
            password: Some(
                b"SharedAccessSignature sr=myhub.azure-devices.net%2Fdevices%2Fpaho-dev-1&sig=abc%3D&se=1700000000"
                    .to_vec(),
            ),
            will: None,
        };
        assert_round_trip(PAHO_CONNECT, &Packet::Connect(expected));
    }

    #[test]
    fn minimal_connect() {
        // Clean session, keep alive 30, client id "d1".
        let bytes = b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x1e\x00\x02d1";
        assert_round_trip(bytes, &Packet::Connect(Connect::new("d1", true, 30)));
    }

    #[test]
    fn connect_with_will_and_empty_client_id() {
        // flags 0x36 = will retain | will QoS 2 | will | clean session. The username flag
        // is not set, so two extra bytes after the will payload are trailing garbage.
        let bytes = b"\x10\x1f\x00\x04MQTT\x04\x36\x00\x00\x00\x00\x00\x06status\x00\x07offline\
\x00\x00";
        assert_eq!(
            decode_all(bytes),
            Err(CodecError::MalformedPacket("unexpected trailing bytes"))
        );

        let bytes = b"\x10\x1d\x00\x04MQTT\x04\x36\x00\x00\x00\x00\x00\x06status\x00\x07offline";
        let packet = Packet::Connect(Connect {
            will: Some(LastWill {
                topic: "status".into(),
                payload: Bytes::from_static(b"offline"),
                qos: QoS::ExactlyOnce,
                retain: true,
            }),
            ..Connect::new("", true, 0)
        });
        assert_round_trip(bytes, &packet);
    }

    #[test]
    fn password_without_username_is_accepted() {
        let bytes = b"\x10\x12\x00\x04MQTT\x04\x42\x00\x0a\x00\x01c\x00\x03pwd";
        let packet = Packet::Connect(Connect {
            password: Some(b"pwd".to_vec()),
            ..Connect::new("c", true, 10)
        });
        assert_round_trip(bytes, &packet);
    }

    #[test]
    fn mqtt_3_1_connect() {
        let bytes = b"\x10\x11\x00\x06MQIsdp\x03\x02\x00\x3c\x00\x03abc";
        let packet = Packet::Connect(Connect {
            protocol_level: 3,
            ..Connect::new("abc", true, 60)
        });
        assert_round_trip(bytes, &packet);
    }

    #[test]
    fn protocol_errors() {
        assert_eq!(
            decode_all(b"\x10\x0c\x00\x04MQTX\x04\x02\x00\x1e\x00\x00"),
            Err(CodecError::InvalidProtocol)
        );
        assert_eq!(
            decode_all(b"\x10\x0c\x00\x04MQTT\x05\x02\x00\x1e\x00\x00"),
            Err(CodecError::UnsupportedProtocolLevel(5))
        );
        assert_eq!(
            decode_all(b"\x10\x0e\x00\x06MQIsdp\x04\x02\x00\x1e\x00\x00"),
            Err(CodecError::UnsupportedProtocolLevel(4))
        );
        let mut out = BytesMut::new();
        let bad = Packet::Connect(Connect {
            protocol_level: 5,
            ..Connect::new("x", true, 0)
        });
        assert_eq!(
            crate::encode(&bad, &mut out),
            Err(CodecError::UnsupportedProtocolLevel(5))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn flag_errors() {
        // Reserved bit.
        assert_eq!(
            decode_all(b"\x10\x0c\x00\x04MQTT\x04\x03\x00\x1e\x00\x00"),
            Err(CodecError::MalformedPacket(
                "CONNECT reserved flag bit is set"
            ))
        );
        // Will QoS without will flag.
        assert_eq!(
            decode_all(b"\x10\x0c\x00\x04MQTT\x04\x0a\x00\x1e\x00\x00"),
            Err(CodecError::MalformedPacket(
                "CONNECT will QoS or will retain set without the will flag"
            ))
        );
        // Will retain without will flag.
        assert!(matches!(
            decode_all(b"\x10\x0c\x00\x04MQTT\x04\x22\x00\x1e\x00\x00"),
            Err(CodecError::MalformedPacket(_))
        ));
        // Will QoS 3.
        assert_eq!(
            decode_all(b"\x10\x11\x00\x04MQTT\x04\x1e\x00\x1e\x00\x00\x00\x01t\x00\x00"),
            Err(CodecError::InvalidQoS(3))
        );
        // Wildcard will topic.
        assert_eq!(
            decode_all(b"\x10\x11\x00\x04MQTT\x04\x06\x00\x1e\x00\x00\x00\x01#\x00\x00"),
            Err(CodecError::InvalidTopicName(
                "topic name contains a wildcard character"
            ))
        );
        // Username flag but body ends.
        assert_eq!(
            decode_all(b"\x10\x0c\x00\x04MQTT\x04\x82\x00\x1e\x00\x00"),
            Err(CodecError::MalformedPacket("unexpected end of packet"))
        );
        // Non-zero flags nibble in the fixed header.
        let mut buf = BytesMut::from(&b"\x12\x00"[..]);
        assert_eq!(
            decode(&mut buf, 1024),
            Err(CodecError::InvalidFlags {
                packet: "CONNECT",
                flags: 2
            })
        );
    }

    #[test]
    fn invalid_utf8_client_id() {
        assert_eq!(
            decode_all(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x1e\x00\x02\xff\xfe"),
            Err(CodecError::Utf8)
        );
        assert_eq!(
            decode_all(b"\x10\x0e\x00\x04MQTT\x04\x02\x00\x1e\x00\x02a\x00"),
            Err(CodecError::NullCharacter)
        );
    }

    #[test]
    fn debug_redacts_password() {
        let c = Connect {
            password: Some(b"secret-token".to_vec()),
            ..Connect::new("c", true, 10)
        };
        let s = format!("{c:?}");
        assert!(!s.contains("secret"), "{s}");
        assert!(s.contains("<redacted, 12 bytes>"), "{s}");
    }
}
