//! Codec error type.

/// Everything that can go wrong while decoding or encoding a packet.
///
/// Any decode error is a protocol violation: the connection must be closed
/// (after a CONNACK with [`ConnectReturnCode::UnacceptableProtocolVersion`]
/// for [`CodecError::UnsupportedProtocolLevel`], as MQTT-3.1.2-2 requires).
///
/// [`ConnectReturnCode::UnacceptableProtocolVersion`]: crate::ConnectReturnCode::UnacceptableProtocolVersion
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// The remaining-length field uses more than 4 bytes.
    #[error("malformed remaining length: more than 4 length bytes")]
    MalformedRemainingLength,
    /// The remaining length exceeds the configured (or protocol) maximum.
    #[error("packet too large: remaining length {size} exceeds the maximum of {max} bytes")]
    PayloadTooLarge { size: usize, max: usize },
    /// Packet type 0 or 15 (reserved).
    #[error("invalid packet type {0}")]
    InvalidPacketType(u8),
    /// The low nibble of the fixed header does not match what the packet type requires.
    #[error("invalid fixed header flags {flags:#06b} for {packet}")]
    InvalidFlags { packet: &'static str, flags: u8 },
    /// CONNECT protocol name is neither "MQTT" nor "MQIsdp".
    #[error("invalid protocol name (expected \"MQTT\" or \"MQIsdp\")")]
    InvalidProtocol,
    /// CONNECT protocol level this codec does not speak ("MQTT" must be 4, "MQIsdp" must be 3).
    #[error("unsupported protocol level {0}")]
    UnsupportedProtocolLevel(u8),
    /// QoS value 3 (or any other value above 2).
    #[error("invalid QoS {0}")]
    InvalidQoS(u8),
    /// CONNACK return code above 5.
    #[error("invalid CONNACK return code {0}")]
    InvalidConnectReturnCode(u8),
    /// SUBACK return code other than 0, 1, 2 or 0x80.
    #[error("invalid SUBACK return code {0:#04x}")]
    InvalidSubscribeReturnCode(u8),
    /// A string field is not well-formed UTF-8.
    #[error("string field is not valid UTF-8")]
    Utf8,
    /// A string field contains the null character U+0000 (MQTT-1.5.3-2).
    #[error("string field contains the null character U+0000")]
    NullCharacter,
    /// A string or binary field longer than 65535 bytes (encode only).
    #[error("length-prefixed field too long: {0} bytes (maximum 65535)")]
    FieldTooLong(usize),
    /// A topic name (PUBLISH or will topic) that is empty or contains `+` / `#`.
    #[error("invalid topic name: {0}")]
    InvalidTopicName(&'static str),
    /// A packet identifier of 0 where a non-zero one is required (MQTT-2.3.1-1).
    #[error("packet identifier must be non-zero")]
    ZeroPacketId,
    /// Any other structural violation; the text says which.
    #[error("malformed packet: {0}")]
    MalformedPacket(&'static str),
}
