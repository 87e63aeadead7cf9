//! What `monitor-events` prints for one message of the telemetry API, `az iot hub
//! monitor-events` style: `{"event": {"origin", "module", "payload", "sequenceNumber"[,
//! "properties"]}}`, keys in that order.

use crate::output::OutputFormat;
use serde::Serialize;
use serde_json::{Map, Value, json};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Shaped {
    pub event: EventOut,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct EventOut {
    /// Device ID.
    pub origin: String,
    /// Module ID; empty for a device's own messages (as `az` prints it).
    pub module: String,
    /// The body: parsed JSON when it is JSON, else its text, or base64 for binary bodies.
    pub payload: Value,
    /// `base64` when the body is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_encoding: Option<String>,
    pub sequence_number: Value,
    /// `{"system": {...}, "application": {...}}` with `--properties`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<Value>,
}

/// `message` is a message as `GET /messages/events` and the live stream show it
/// (`sequenceNumber`, `deviceId`, `moduleId`, `enqueuedTimeUtc`, `systemProperties`,
/// `properties`, `body`, `bodyEncoding`).
pub(crate) fn shape(message: &Value, with_properties: bool) -> Shaped {
    let text = |k: &str| message.get(k).and_then(Value::as_str).unwrap_or("");
    let body = text("body");
    let base64 = text("bodyEncoding").eq_ignore_ascii_case("base64");
    let properties = with_properties.then(|| {
        let mut system = match message.get("systemProperties") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        if let Some(t) = message.get("enqueuedTimeUtc").filter(|t| !t.is_null()) {
            system.insert("iothub-enqueuedtime".into(), t.clone());
        }
        let application = match message.get("properties") {
            Some(Value::Object(m)) => Value::Object(m.clone()),
            _ => json!({}),
        };
        json!({ "system": system, "application": application })
    });
    Shaped {
        event: EventOut {
            origin: text("deviceId").to_string(),
            module: text("moduleId").to_string(),
            payload: if base64 {
                Value::String(body.to_string())
            } else {
                payload(body)
            },
            payload_encoding: base64.then(|| "base64".to_string()),
            sequence_number: message
                .get("sequenceNumber")
                .cloned()
                .unwrap_or(Value::Null),
            properties,
        },
    }
}

/// The body parsed as JSON when it is JSON, else the text itself.
pub(crate) fn payload(body: &str) -> Value {
    match serde_json::from_str::<Value>(body) {
        Ok(v) if !body.trim().is_empty() => v,
        _ => Value::String(body.to_string()),
    }
}

/// One event for stdout: a compact JSON line (scripts: one object per line), indented
/// JSON for people (`--output table`), or a YAML document starting with `---`.
pub(crate) fn render(event: &Shaped, format: OutputFormat) -> String {
    let text = match format {
        OutputFormat::Json => serde_json::to_string(event),
        OutputFormat::Table => serde_json::to_string_pretty(event),
        OutputFormat::Yaml => serde_json::to_value(event)
            .map(|v| crate::yaml::to_yaml_document(&v).trim_end().to_string()),
    };
    let mut s = text.unwrap_or_else(|e| format!("{{\"error\":\"cannot render an event: {e}\"}}"));
    s.push('\n');
    s
}
