//! Device twin over MQTT (docs/protocol-notes.md, "Twin"): GET, reported-properties PATCH, desired-property
//! updates.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use fleethub_mqtt_codec::QoS;
use serde_json::Value;
use tokio::sync::mpsc;

use super::connection::Feature;
use super::{DeviceClient, DeviceError, Shared, Sink, TwinReply, lock};
use fleethub_iot_protocol::hub;

/// Removes a pending request when its caller gives up (timeout, cancellation).
struct PendingGuard<'a> {
    shared: &'a Shared,
    rid: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        lock(&self.shared.twin_pending).remove(&self.rid);
    }
}

/// The error of a non-2xx twin response: the JSON body's `message` and `errorCode`.
pub(crate) fn twin_error(status: u16, body: &[u8]) -> DeviceError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let field = |names: &[&str]| -> Option<&Value> {
        let obj = json.as_ref()?.as_object()?;
        names.iter().find_map(|n| obj.get(*n))
    };
    let message = field(&["message", "Message"])
        .and_then(Value::as_str)
        .map_or_else(
            || {
                if body.is_empty() {
                    "(empty body)".to_string()
                } else {
                    String::from_utf8_lossy(body).chars().take(200).collect()
                }
            },
            str::to_string,
        );
    let error_code = field(&["errorCode", "ErrorCode"]).and_then(|v| match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    });
    DeviceError::Twin {
        status,
        error_code,
        message,
    }
}

fn desired_version(twin: &Value) -> Option<u64> {
    twin.get("desired")?.get("$version")?.as_u64()
}

impl Shared {
    /// Publishes a twin request and waits for the response with the same `$rid`.
    async fn twin_request(
        &self,
        topic_for: fn(&str) -> String,
        body: Vec<u8>,
    ) -> Result<TwinReply, DeviceError> {
        self.ensure_subscribed(Feature::TwinResponses).await?;
        let lease = self.lease().await?;
        let rid = self.next_rid.fetch_add(1, Ordering::Relaxed).to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        lock(&self.twin_pending).insert(rid.clone(), tx);
        let _guard = PendingGuard {
            shared: self,
            rid: rid.clone(),
        };
        lease
            .mqtt
            .publish(topic_for(&rid), QoS::AtLeastOnce, body)
            .await
            .map_err(DeviceError::from_mqtt)?;
        let reply = rx
            .await
            .map_err(|_| DeviceError::ConnectionLost("twin request abandoned".into()))??;
        if !(200..300).contains(&reply.status) {
            return Err(twin_error(reply.status, &reply.body));
        }
        Ok(reply)
    }

    pub(crate) async fn get_twin(&self) -> Result<Value, DeviceError> {
        self.bounded("getting the twin", async {
            // Python and Node send a single space as the GET body.
            let reply = self
                .twin_request(hub::twin_get_topic, b" ".to_vec())
                .await?;
            let twin: Value = serde_json::from_slice(&reply.body)
                .map_err(|e| DeviceError::InvalidResponse(format!("twin document: {e}")))?;
            if let Some(v) = desired_version(&twin) {
                self.last_desired_version.fetch_max(v, Ordering::Relaxed);
            }
            Ok(twin)
        })
        .await
    }

    pub(crate) async fn patch_reported(&self, patch: &Value) -> Result<u64, DeviceError> {
        if !patch.is_object() {
            return Err(DeviceError::Config(
                "a reported-properties patch must be a JSON object".into(),
            ));
        }
        let body = patch.to_string().into_bytes();
        self.bounded("patching reported properties", async {
            let reply = self
                .twin_request(hub::twin_patch_reported_topic, body)
                .await?;
            reply.version.ok_or_else(|| {
                DeviceError::InvalidResponse(format!(
                    "status {} without $version in the response topic",
                    reply.status
                ))
            })
        })
        .await
    }

    /// A desired-properties patch from the hub.
    pub(crate) fn on_desired_patch(&self, version: Option<u64>, payload: &[u8]) {
        let patch: Value = match serde_json::from_slice(payload) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!("ignoring a desired-properties patch that is not JSON: {e}");
                return;
            }
        };
        let version = version.or_else(|| patch.get("$version").and_then(Value::as_u64));
        if let Some(v) = version {
            self.last_desired_version.fetch_max(v, Ordering::Relaxed);
        }
        let sinks = lock(&self.sinks);
        if let Some(sink) = &sinks.desired {
            if sink.deliver(patch, None).is_err() {
                tracing::debug!("desired-properties patch dropped: receiver gone");
            }
        } else {
            tracing::debug!("desired-properties patch without a receiver");
        }
    }

    /// After a reconnection: patches sent while the device was away are lost, so (like the
    /// Python SDK) GET the twin and hand over the whole desired document when its version
    /// moved on.
    pub(crate) fn resync_desired(self: &Arc<Self>) {
        if lock(&self.sinks).desired.is_none() {
            return;
        }
        let shared = self.clone();
        tokio::spawn(async move {
            let before = shared.last_desired_version.load(Ordering::Relaxed);
            let twin = match shared.get_twin().await {
                Ok(t) => t,
                Err(e) => {
                    tracing::debug!("cannot re-read the twin after reconnecting: {e}");
                    return;
                }
            };
            let Some(desired) = twin.get("desired").cloned() else {
                return;
            };
            if desired_version(&twin).is_some_and(|v| v > before) {
                let sinks = lock(&shared.sinks);
                if let Some(sink) = &sinks.desired {
                    let _ = sink.deliver(desired, None);
                }
            }
        });
    }
}

impl DeviceClient {
    /// The device's twin as the hub sends it over MQTT:
    /// `{"desired": {..., "$version": n}, "reported": {..., "$version": m}}`.
    pub async fn get_twin(&self) -> Result<Value, DeviceError> {
        self.shared.get_twin().await
    }

    /// Merges `patch` (a JSON object; `null` deletes a property) into the reported
    /// properties; returns their new `$version`.
    pub async fn patch_reported(&self, patch: Value) -> Result<u64, DeviceError> {
        self.shared.patch_reported(&patch).await
    }

    /// Desired-property patches (each with its `"$version"`), from now on. Subscribes
    /// `$iothub/twin/PATCH/properties/desired/#` once. After a reconnection, if the desired
    /// properties changed meanwhile, the whole desired document is delivered as one patch.
    /// Calling it again replaces the previous receiver.
    pub async fn desired_updates(&self) -> Result<mpsc::Receiver<Value>, DeviceError> {
        let (sink, rx) = Sink::new(self.shared.options.channel_capacity);
        lock(&self.shared.sinks).desired = Some(sink);
        self.shared
            .bounded("subscribing to desired properties", async {
                self.shared.ensure_subscribed(Feature::Desired).await
            })
            .await?;
        Ok(rx)
    }
}
