//! The WebSocket endpoints of IoT Hub and Event Hubs (see `docs/protocol-notes.md`, "Hub MQTT
//! user names and client ids" and "AMQP transport and SASL"): the paths the SDKs dial on the
//! HTTPS port and the subprotocols that tell the transports apart. Subprotocol names compare
//! exactly (RFC 6455 tokens are case-sensitive).

/// The path device SDKs dial (`wss://{hub}/$iothub/websocket`): MQTT and AMQP.
pub const HUB_PATH: &str = "/$iothub/websocket";
/// The path Event Hubs clients dial (`wss://{host}/$servicebus/websocket`): AMQP.
pub const SERVICEBUS_PATH: &str = "/$servicebus/websocket";
/// The MQTT subprotocol names: `mqtt` (most SDKs) and `MQTT` (the C SDK).
pub const MQTT_SUBPROTOCOLS: [&str; 2] = ["mqtt", "MQTT"];
/// The AMQP 1.0 subprotocol name.
pub const AMQP_SUBPROTOCOL: &str = "AMQPWSB10";
