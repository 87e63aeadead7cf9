//! Direct methods over MQTT (docs/protocol-notes.md, "Direct methods"): requests on
//! `$iothub/methods/POST/{name}/?$rid={rid}`, responses on
//! `$iothub/methods/res/{status}/?$rid={rid}`.

use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use fleethub_mqtt_codec::QoS;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::connection::Feature;
use super::{DeviceClient, DeviceError, Shared, Sink, lock};
use fleethub_iot_protocol::hub;

/// A direct-method invocation.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodRequest {
    /// Method name (percent-decoded).
    pub name: String,
    /// Request ID, to pass to [`DeviceClient::respond`] unchanged.
    pub rid: String,
    /// The JSON payload (`null` when the request had no body; a JSON string holding the
    /// text when the body is not JSON).
    pub payload: Value,
}

/// The answer to a [`MethodRequest`].
#[derive(Debug, Clone, PartialEq)]
pub struct MethodResponse {
    /// Status reported to the caller (e.g. 200; any value the application chooses).
    pub status: u16,
    pub payload: Value,
}

impl MethodResponse {
    pub fn new(status: u16, payload: Value) -> Self {
        MethodResponse { status, payload }
    }

    /// Status 200.
    pub fn ok(payload: Value) -> Self {
        MethodResponse::new(200, payload)
    }
}

/// Python parses `json.loads(body or 'null')`; a non-JSON body is kept as text.
pub(crate) fn parse_payload(body: &[u8]) -> Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

impl Shared {
    pub(crate) fn on_method_request(&self, name: String, rid: String, payload: &[u8]) {
        let request = MethodRequest {
            name,
            rid,
            payload: parse_payload(payload),
        };
        let sinks = lock(&self.sinks);
        let undelivered = match &sinks.methods {
            Some(sink) => sink.deliver(request, None).err().map(|(r, _)| r),
            None => Some(request),
        };
        if let Some(r) = undelivered {
            tracing::info!(
                method = %r.name,
                rid = %r.rid,
                "direct method request ignored: no handler (call method_requests() or on_method())"
            );
        }
    }

    pub(crate) async fn respond(
        &self,
        rid: &str,
        status: u16,
        payload: &Value,
    ) -> Result<(), DeviceError> {
        if rid.is_empty() || rid.contains(['/', '#', '+']) {
            return Err(DeviceError::Config(format!(
                "invalid method request ID '{rid}'"
            )));
        }
        let topic = hub::method_response_topic(status, rid);
        let body = Bytes::from(payload.to_string());
        self.bounded("answering a method request", async {
            let lease = self.lease().await?;
            lease
                .mqtt
                .publish(topic, QoS::AtLeastOnce, body)
                .await
                .map_err(DeviceError::from_mqtt)
        })
        .await
    }
}

impl DeviceClient {
    /// Direct-method requests, from now on. Subscribes `$iothub/methods/POST/#` once. Answer
    /// each with [`DeviceClient::respond`] (the caller waits for it, up to its response
    /// timeout). Calling it again (or [`DeviceClient::on_method`]) replaces the receiver.
    pub async fn method_requests(&self) -> Result<mpsc::Receiver<MethodRequest>, DeviceError> {
        let (sink, rx) = Sink::new(self.shared.options.channel_capacity);
        lock(&self.shared.sinks).methods = Some(sink);
        self.shared
            .bounded("subscribing to direct methods", async {
                self.shared.ensure_subscribed(Feature::Methods).await
            })
            .await?;
        Ok(rx)
    }

    /// Answers a method request: publishes `payload` (JSON) on
    /// `$iothub/methods/res/{status}/?$rid={rid}`.
    pub async fn respond(&self, rid: &str, status: u16, payload: Value) -> Result<(), DeviceError> {
        self.shared.respond(rid, status, &payload).await
    }

    /// Runs `handler` for every method request (each in its own task) and publishes its
    /// response. The returned task ends when the client closes; aborting it stops handling.
    pub async fn on_method<F, Fut>(&self, handler: F) -> Result<JoinHandle<()>, DeviceError>
    where
        F: Fn(MethodRequest) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = MethodResponse> + Send + 'static,
    {
        let mut requests = self.method_requests().await?;
        // The task holds the shared state, not a client handle: it does not keep the
        // connection open by itself.
        let shared = self.shared.clone();
        let handler = Arc::new(handler);
        Ok(tokio::spawn(async move {
            while let Some(request) = requests.recv().await {
                let shared = shared.clone();
                let handler = handler.clone();
                tokio::spawn(async move {
                    let rid = request.rid.clone();
                    let name = request.name.clone();
                    let response = handler(request).await;
                    if let Err(e) = shared
                        .respond(&rid, response.status, &response.payload)
                        .await
                    {
                        tracing::warn!(method = %name, rid, "cannot answer the method request: {e}");
                    }
                });
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_parsing() {
        assert_eq!(parse_payload(b""), Value::Null);
        assert_eq!(parse_payload(b" "), Value::Null);
        assert_eq!(
            parse_payload(br#"{"delay":5}"#),
            serde_json::json!({"delay": 5})
        );
        assert_eq!(parse_payload(b"5"), serde_json::json!(5));
        assert_eq!(parse_payload(b"not json"), Value::String("not json".into()));
    }
}
