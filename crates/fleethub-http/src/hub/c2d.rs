//! Hub service API, cloud-to-device messages over REST (the service SDKs send C2D over AMQP;
//! this is fleethub's own equivalent): `POST /devices/{id}/messages/deviceBound` queues a
//! message, `DELETE /devices/{id}/commands` purges the queue (Azure's `PurgeMessageQueueResult`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use base64::Engine;
use fleethub_services::Right;
use fleethub_services::hub::C2dSend;
use fleethub_services::hub::c2d::iso_utc;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

use crate::HttpState;
use crate::auth::hub_service;
use crate::body::{Peer, ok_json, require_json};
use crate::error::{ApiError, HubResult};

/// The request body of `POST /devices/{id}/messages/deviceBound`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SendRequest {
    /// The body as text (sent as its UTF-8 bytes).
    #[serde(default)]
    body: Option<String>,
    /// The body as base64, for binary payloads.
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default)]
    message_id: Option<String>,
    #[serde(default)]
    correlation_id: Option<String>,
    #[serde(default)]
    content_type: Option<String>,
    #[serde(default)]
    content_encoding: Option<String>,
    #[serde(default)]
    ttl_seconds: Option<u64>,
    /// `none|positive|negative|full`
    #[serde(default)]
    ack: Option<String>,
    /// Application properties; numbers and booleans are sent as their JSON text.
    #[serde(default)]
    properties: BTreeMap<String, Value>,
}

/// What was queued.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Queued {
    device_id: String,
    message_id: String,
    sequence_number: u64,
    enqueued_time_utc: String,
    expiry_time_utc: String,
}

/// Azure's `PurgeMessageQueueResult`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct PurgeResult {
    total_messages_purged: u64,
    device_id: String,
}

/// `POST /devices/{id}/messages/deviceBound` (ServiceConnect) -> 200 `{deviceId, messageId,
/// sequenceNumber, enqueuedTimeUtc, expiryTimeUtc}`; 404 DeviceNotFound, 413 (body over
/// 64 KB), 403 DeviceMaximumQueueDepthExceeded (50 messages queued).
pub(crate) async fn send(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::ServiceConnect], &peer)?;
    let req: SendRequest = require_json(&body, "cloud-to-device message")?;
    let msg = c2d_send(req)?;
    let stored = state.hub.send_c2d(&id, msg).await?;
    tracing::debug!(
        device = %id,
        sequence_number = stored.sequence_number,
        "cloud-to-device message queued"
    );
    Ok(ok_json(&Queued {
        expiry_time_utc: iso_utc(stored.expiry_unix),
        device_id: stored.device_id,
        message_id: stored.message_id,
        sequence_number: stored.sequence_number,
        enqueued_time_utc: stored.enqueued_time_utc,
    }))
}

fn c2d_send(req: SendRequest) -> Result<C2dSend, ApiError> {
    let body = match (req.body, req.body_base64) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request(
                "send either body (text) or bodyBase64, not both",
            ));
        }
        (Some(text), None) => text.into_bytes(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| ApiError::bad_request(format!("bodyBase64 is not valid base64: {e}")))?,
        (None, None) => Vec::new(),
    };
    let mut properties = BTreeMap::new();
    for (k, v) in req.properties {
        let v = match v {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "property '{k}' must be a string, number or boolean"
                )));
            }
        };
        properties.insert(k, v);
    }
    let nonempty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(C2dSend {
        body,
        message_id: nonempty(req.message_id),
        correlation_id: nonempty(req.correlation_id),
        content_type: nonempty(req.content_type),
        content_encoding: nonempty(req.content_encoding),
        ttl_secs: req.ttl_seconds,
        ack: nonempty(req.ack).map(|a| a.to_ascii_lowercase()),
        properties,
    })
}

/// `DELETE /devices/{id}/commands` (ServiceConnect) -> 200 `{"totalMessagesPurged": n,
/// "deviceId": id}`; 404 DeviceNotFound.
pub(crate) async fn purge(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    hub_service(&state, &headers, &[Right::ServiceConnect], &peer)?;
    state.hub.get_device(&id).await?;
    let n = state.hub.purge_c2d(&id).await?;
    Ok(ok_json(&PurgeResult {
        total_messages_purged: n,
        device_id: id,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<C2dSend, ApiError> {
        c2d_send(serde_json::from_str(json).map_err(|e| ApiError::bad_request(e.to_string()))?)
    }

    #[test]
    fn send_bodies() {
        let m =
            parse(r#"{"body":"hi","properties":{"a":"x","n":3,"b":true},"ack":"Full"}"#).unwrap();
        assert_eq!(m.body, b"hi");
        assert_eq!(m.properties["n"], "3");
        assert_eq!(m.properties["b"], "true");
        assert_eq!(m.ack.as_deref(), Some("full"));
        assert_eq!(parse(r#"{"bodyBase64":"AAH/"}"#).unwrap().body, [0, 1, 255]);
        assert!(parse(r"{}").unwrap().body.is_empty());
        assert!(parse(r#"{"body":"a","bodyBase64":"AA=="}"#).is_err());
        assert!(parse(r#"{"bodyBase64":"***"}"#).is_err());
        assert!(parse(r#"{"properties":{"o":{}}}"#).is_err());
        assert!(parse(r#"{"bdy":"typo"}"#).is_err());
    }
}
