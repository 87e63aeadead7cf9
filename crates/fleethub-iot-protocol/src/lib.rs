//! The Azure IoT wire conventions fleethub speaks, in one place, shared by the server
//! (`fleethub-mqtt`, `fleethub-services`), the edge hub (`fleetedge-hub`), the device SDK
//! (`fleethub-device`) and the tools (`fleethub-bench`, `fleethub-cli`):
//!
//! - [`identity`]: MQTT CONNECT user names and client IDs, SAS resource URIs;
//! - [`dps`]: DPS MQTT topics and HTTPS paths, retry-after;
//! - [`hub`]: IoT hub MQTT topics (telemetry, C2D, twin, methods, module inputs) and
//!   subscription filters;
//! - [`property_bag`]: the one property-bag encoder and parser;
//! - [`query`]: the one query/condition language (IoT Hub queries, deployment target
//!   conditions, edge routes): lexer, parser, evaluator over an [`query::Operands`] trait;
//! - [`websocket`]: the WebSocket paths and subprotocols of MQTT and AMQP.
//!
//! Strings in, typed values out (and back): no IO, no async. The facts these modules rely on
//! are written down in `docs/protocol-notes.md`.

pub mod dps;
mod encoding;
pub mod hub;
pub mod identity;
pub mod property_bag;
pub mod query;
pub mod websocket;

pub use encoding::{decode_lossy, encode_component};

/// A topic or user name that does not follow the Azure IoT grammar; the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TopicError(pub String);

impl TopicError {
    pub(crate) fn new(msg: impl Into<String>) -> TopicError {
        TopicError(msg.into())
    }
}
