//! IoT Hub device API over HTTPS (what the SDKs' HTTP transports use, e.g. Node's
//! `azure-iot-device-http` and the C SDK's `HTTP_Protocol`), authenticated with the device's
//! SAS token in `Authorization`:
//!
//! - `POST /devices/{id}/messages/events`: telemetry. The body is the message; system
//!   properties come from `iothub-messageid`, `iothub-correlationid`, `iothub-userid`,
//!   `iothub-contenttype` (else `Content-Type`, unless it is the transports' default
//!   `application/octet-stream`), `iothub-contentencoding`, `iothub-expiry`,
//!   `iothub-creationtimeutc`; application properties from `iothub-app-{name}` headers (HTTP
//!   header names are case-insensitive: names arrive lower-cased). With
//!   `Content-Type: application/vnd.microsoft.iothub.json` the body is a batch: a JSON array of
//!   `{"body": "<base64>", "base64Encoded"?: bool, "properties"?: {..}}`.
//! - `GET /devices/{id}/messages/deviceBound`: receive one cloud-to-device message, locked for
//!   a minute (204 when there is none). The lock token is the `ETag`.
//! - `DELETE /devices/{id}/messages/deviceBound/{lockToken}[?reject]`: complete (or reject).
//! - `POST /devices/{id}/messages/deviceBound/{lockToken}/abandon`: give it back.
//!
//! SDKs spell the keyword `devicebound`; the router's case-insensitive fallback maps it.

use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use fleethub_services::hub::c2d::{LockedC2d, Settle, iso_utc};
use fleethub_services::{AuthContext, HubPrincipal, Operation, TelemetryIn};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::HttpState;
use crate::body::{Peer, authorization, query_param, require_json};
use crate::error::{ApiError, HubResult, empty};

const TRANSPORT: &str = "https";
/// Prefix of application-property headers.
const APP_PREFIX: &str = "iothub-app-";
/// `Content-Type` of a telemetry batch.
const BATCH_CONTENT_TYPE: &str = "application/vnd.microsoft.iothub.json";
/// Most messages in one batch.
pub(crate) const MAX_BATCH: usize = 500;

/// Authenticates the device named in the path with its `Authorization` SAS token. A token of
/// another device is `401`, like a bad one (the reason goes to the auth-failure log).
async fn authenticate(
    state: &HttpState,
    device_id: &str,
    headers: &HeaderMap,
    peer: &Peer,
) -> HubResult<HubPrincipal> {
    let Some(token) = authorization(headers) else {
        state.auth_failures.record(
            "hub",
            TRANSPORT,
            device_id,
            peer.0.clone(),
            "no Authorization header: send a SharedAccessSignature for {hub}/devices/{deviceId}",
        );
        return Err(ApiError::unauthorized().into());
    };
    let ctx = AuthContext {
        transport: TRANSPORT,
        peer: peer.as_deref(),
    };
    Ok(state
        .hub
        .authenticate_device(device_id, None, token, ctx)
        .await?)
}

/// The system-property name a request header carries, if it carries one.
fn system_property(header: &str) -> Option<&'static str> {
    Some(match header {
        "iothub-messageid" => "message-id",
        "iothub-correlationid" => "correlation-id",
        "iothub-userid" => "user-id",
        "iothub-contenttype" => "content-type",
        "iothub-contentencoding" => "content-encoding",
        "iothub-expiry" => "absolute-expiry-time",
        "iothub-creationtimeutc" | "iothub-creation-time-utc" => "iothub-creation-time-utc",
        "iothub-interface-id" => "iothub-interface-id",
        _ => return None,
    })
}

/// Sorts one `name: value` into system or application properties (ignores other names).
fn add_property(
    name: &str,
    value: String,
    system: &mut BTreeMap<String, String>,
    app: &mut BTreeMap<String, String>,
) {
    let lower = name.to_ascii_lowercase();
    if let Some(key) = system_property(&lower) {
        system.insert(key.to_string(), value);
    } else if lower.starts_with(APP_PREFIX) && name.len() > APP_PREFIX.len() {
        // (ASCII lower-casing keeps byte offsets)
        app.insert(name[APP_PREFIX.len()..].to_string(), value);
    }
}

/// The telemetry message of a single-message request.
fn message_from_headers(headers: &HeaderMap, body: Bytes) -> TelemetryIn {
    let mut system = BTreeMap::new();
    let mut app = BTreeMap::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        add_property(name.as_str(), value, &mut system, &mut app);
    }
    if !system.contains_key("content-type")
        && let Some(ct) = content_type(headers)
        && !ct.eq_ignore_ascii_case("application/octet-stream")
    {
        system.insert("content-type".into(), ct.to_string());
    }
    TelemetryIn {
        system_properties: system,
        properties: app,
        body: body.into(),
    }
}

fn content_type(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// One item of a batch (Node: `{"body": b64, "properties": {"iothub-app-k": v}}`; C adds
/// `"base64Encoded": true`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchItem {
    #[serde(default)]
    body: String,
    #[serde(default)]
    base64_encoded: Option<bool>,
    #[serde(default)]
    properties: BTreeMap<String, Value>,
}

fn batch_messages(body: &[u8]) -> Result<Vec<TelemetryIn>, ApiError> {
    let items: Vec<BatchItem> = require_json(body, "telemetry batch")?;
    if items.len() > MAX_BATCH {
        return Err(ApiError::bad_request(format!(
            "a batch holds at most {MAX_BATCH} messages, not {}",
            items.len()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let body = if item.base64_encoded == Some(false) {
            item.body.into_bytes()
        } else {
            base64::engine::general_purpose::STANDARD
                .decode(item.body.trim())
                .map_err(|e| {
                    ApiError::bad_request(format!(
                        "message {i} of the batch: body is not valid base64: {e}"
                    ))
                })?
        };
        let mut system = BTreeMap::new();
        let mut app = BTreeMap::new();
        for (k, v) in item.properties {
            let v = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            if system_property(&k.to_ascii_lowercase()).is_some()
                || k.to_ascii_lowercase().starts_with(APP_PREFIX)
            {
                add_property(&k, v, &mut system, &mut app);
            } else {
                app.insert(k, v);
            }
        }
        out.push(TelemetryIn {
            system_properties: system,
            properties: app,
            body,
        });
    }
    Ok(out)
}

/// `POST /devices/{id}/messages/events` -> 204 once stored (413 over 256 KB).
pub(crate) async fn send_event(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
    body: Bytes,
) -> HubResult<Response> {
    let principal = authenticate(&state, &id, &headers, &peer).await?;
    // One send operation, also for a batch.
    state.hub.admit_for(
        Operation::DeviceToCloud,
        &principal.device_id,
        principal.module_id.as_deref(),
    )?;
    let batch = content_type(&headers)
        .is_some_and(|ct| ct.to_ascii_lowercase().starts_with(BATCH_CONTENT_TYPE));
    let messages = if batch {
        batch_messages(&body)?
    } else {
        vec![message_from_headers(&headers, body)]
    };
    for m in messages {
        state.hub.send_telemetry(&principal, m).await?;
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `GET /devices/{id}/messages/deviceBound` -> 204 when nothing is deliverable, else 200 with
/// the message body and its properties as headers; the message stays locked (not delivered
/// again by any transport) until settled or a minute has passed.
pub(crate) async fn receive(
    State(state): State<HttpState>,
    Path(id): Path<String>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    let principal = authenticate(&state, &id, &headers, &peer).await?;
    match state.hub.receive_c2d(&principal.device_id).await? {
        None => Ok(empty(StatusCode::NO_CONTENT)),
        Some(locked) => Ok(c2d_response(locked)),
    }
}

/// 200 + body + `ETag: "<lockToken>"` (Node strips the quotes) + `iothub-*` headers.
fn c2d_response(locked: LockedC2d) -> Response {
    let LockedC2d {
        message: m,
        lock_token,
    } = locked;
    let mut h = HeaderMap::new();
    let mut put = |name: &str, value: &str| {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            h.insert(n, v);
        } else {
            // e.g. a property name with a space or a value with a line break
            tracing::debug!(
                header = name,
                "cloud-to-device property not representable as an HTTP header: left out"
            );
        }
    };
    put("etag", &format!("\"{lock_token}\""));
    put("iothub-messageid", &m.message_id);
    put(
        "iothub-to",
        &format!("/devices/{}/messages/deviceBound", m.device_id),
    );
    put("iothub-expiry", &iso_utc(m.expiry_unix));
    put("iothub-enqueuedtime", &m.enqueued_time_utc);
    put("iothub-deliverycount", &m.delivery_count.to_string());
    put("iothub-sequencenumber", &m.sequence_number.to_string());
    if let Some(c) = &m.correlation_id {
        put("iothub-correlationid", c);
    }
    if let Some(a) = &m.ack {
        put("iothub-ack", a);
    }
    if let Some(ct) = &m.content_type {
        put("iothub-contenttype", ct);
    }
    if let Some(ce) = &m.content_encoding {
        put("iothub-contentencoding", ce);
    }
    for (k, v) in &m.properties {
        put(&format!("{APP_PREFIX}{k}"), v);
    }
    let content_type = m
        .content_type
        .as_deref()
        .and_then(|ct| HeaderValue::from_str(ct).ok())
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    let mut resp = Response::new(Body::from(m.body));
    *resp.headers_mut() = h;
    resp
}

/// The lock token of the path (quotes, if a client kept the ETag's, are dropped).
fn lock_token(raw: &str) -> &str {
    raw.trim().trim_matches('"')
}

/// `DELETE /devices/{id}/messages/deviceBound/{lockToken}` -> 204 (completed);
/// with `?reject` (Node sends a bare `&reject`) or `?reject=true` -> 204 (rejected:
/// removed and dead-lettered). 412 DeviceMessageLockLost when the lock expired or is unknown.
pub(crate) async fn complete(
    State(state): State<HttpState>,
    Path((id, token)): Path<(String, String)>,
    RawQuery(raw): RawQuery,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    let principal = authenticate(&state, &id, &headers, &peer).await?;
    let reject = query_param(raw.as_deref(), "reject")
        .is_some_and(|v| !(v.eq_ignore_ascii_case("false") || v == "0"));
    let how = if reject {
        Settle::Reject
    } else {
        Settle::Complete
    };
    state
        .hub
        .settle_c2d(&principal.device_id, lock_token(&token), how)
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

/// `POST /devices/{id}/messages/deviceBound/{lockToken}/abandon` -> 204: unlocked, delivered
/// again (its delivery count rises with the next delivery).
pub(crate) async fn abandon(
    State(state): State<HttpState>,
    Path((id, token)): Path<(String, String)>,
    peer: Peer,
    headers: HeaderMap,
) -> HubResult<Response> {
    let principal = authenticate(&state, &id, &headers, &peer).await?;
    state
        .hub
        .settle_c2d(&principal.device_id, lock_token(&token), Settle::Abandon)
        .await?;
    Ok(empty(StatusCode::NO_CONTENT))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_to_properties() {
        let mut h = HeaderMap::new();
        h.insert("IoTHub-MessageId", HeaderValue::from_static("m1"));
        h.insert("iothub-app-Temp-Alert", HeaderValue::from_static("true"));
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert(
            "iothub-to",
            HeaderValue::from_static("/devices/d/messages/events"),
        );
        let m = message_from_headers(&h, Bytes::from_static(b"x"));
        assert_eq!(m.system_properties["message-id"], "m1");
        assert_eq!(m.system_properties["content-type"], "application/json");
        assert_eq!(m.properties["temp-alert"], "true");
        assert_eq!(m.properties.len(), 1);

        h.insert(
            "content-type",
            HeaderValue::from_static("application/octet-stream"),
        );
        let m = message_from_headers(&h, Bytes::new());
        assert!(!m.system_properties.contains_key("content-type"));
    }

    #[test]
    fn batches() {
        let b = br#"[{"body":"aGk=","properties":{"iothub-app-A":"1","iothub-messageid":"m"}},
                    {"body":"plain","base64Encoded":false,"properties":{"b":2}}]"#;
        let ms = batch_messages(b).unwrap();
        assert_eq!(ms[0].body, b"hi");
        assert_eq!(ms[0].properties["A"], "1");
        assert_eq!(ms[0].system_properties["message-id"], "m");
        assert_eq!(ms[1].body, b"plain");
        assert_eq!(ms[1].properties["b"], "2");
        assert!(batch_messages(br#"[{"body":"***"}]"#).is_err());
        assert!(batch_messages(br"{}").is_err());
    }

    #[test]
    fn lock_tokens() {
        assert_eq!(lock_token("\"abc\""), "abc");
        assert_eq!(lock_token("abc"), "abc");
    }
}
