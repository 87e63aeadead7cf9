//! Direct methods: the service invokes, the connected device answers on
//! `$iothub/methods/res/{status}/?$rid={rid}`, the answer goes back to the caller.

use super::{Hub, HubEvent};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::oneshot;

pub const MIN_TIMEOUT_SECS: u64 = 5;
pub const MAX_TIMEOUT_SECS: u64 = 300;

#[derive(Default)]
pub(crate) struct PendingMethods {
    next: AtomicU64,
    waiting: Mutex<HashMap<String, oneshot::Sender<(u16, Value)>>>,
}

/// Why an invocation did not produce a device answer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MethodError {
    #[error("device '{0}' is not connected or has not subscribed to direct methods")]
    NotOnline(String),
    #[error("device '{0}' did not answer within {1} s")]
    Timeout(String, u64),
    #[error("{0}")]
    BadRequest(String),
}

impl Hub {
    /// Invokes `name` on a connected device; returns the device's (status, payload).
    pub async fn invoke_method(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        name: &str,
        payload: &Value,
        timeout_secs: u64,
    ) -> Result<(u16, Value), MethodError> {
        if name.is_empty()
            || name
                .chars()
                .any(|c| !c.is_ascii_graphic() || "$()<>@,;:\\\"/[]?={}".contains(c))
        {
            return Err(MethodError::BadRequest(format!(
                "method name '{name}' is invalid: use printable ASCII without $ ( ) < > @ , ; : \\ \" / [ ] ? = {{ }}"
            )));
        }
        let timeout = timeout_secs.clamp(MIN_TIMEOUT_SECS, MAX_TIMEOUT_SECS);
        crate::metrics::inc(&self.metrics.method_invocations);
        if !self.is_connected(device_id, module_id) && self.cluster_bus().is_some() {
            // Attached to another node, or nowhere (docs/scale-out.md, "Cross-node delivery").
            return self
                .invoke_elsewhere(crate::cluster::PeerMethod {
                    device_id: device_id.to_string(),
                    module_id: module_id.map(str::to_string),
                    name: name.to_string(),
                    payload: payload.clone(),
                    timeout_secs: timeout,
                })
                .await;
        }
        self.invoke_here(device_id, module_id, name, payload, timeout)
            .await
    }

    /// Invokes `name` on a device attached to this node (`timeout` already clamped).
    pub(crate) async fn invoke_here(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        name: &str,
        payload: &Value,
        timeout: u64,
    ) -> Result<(u16, Value), MethodError> {
        let rid = format!(
            "{:x}",
            self.methods.next.fetch_add(1, Ordering::Relaxed) + 1
        );
        let (tx, rx) = oneshot::channel();
        self.methods
            .waiting
            .lock()
            .expect("methods")
            .insert(rid.clone(), tx);
        let body = if payload.is_null() {
            Vec::new()
        } else {
            serde_json::to_vec(payload).unwrap_or_default()
        };
        let who = super::presence::identity(device_id, module_id);
        if !self.notify(
            device_id,
            module_id,
            HubEvent::MethodRequest(Box::new(super::MethodCall {
                rid: rid.clone(),
                name: name.to_string(),
                payload: body,
            })),
        ) {
            self.methods.waiting.lock().expect("methods").remove(&rid);
            return Err(MethodError::NotOnline(who));
        }
        let r = tokio::time::timeout(Duration::from_secs(timeout), rx).await;
        self.methods.waiting.lock().expect("methods").remove(&rid);
        match r {
            Ok(Ok(answer)) => Ok(answer),
            _ => Err(MethodError::Timeout(who, timeout)),
        }
    }

    /// A device's answer to a method request. Unknown or late `rid`s are ignored.
    pub fn method_response(&self, rid: &str, status: u16, payload: &[u8]) {
        let Some(tx) = self.methods.waiting.lock().expect("methods").remove(rid) else {
            tracing::debug!(rid, "method response for an unknown or expired request");
            return;
        };
        let value = if payload.iter().all(u8::is_ascii_whitespace) {
            Value::Null
        } else {
            serde_json::from_slice(payload)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(payload).into_owned()))
        };
        let _ = tx.send((status, value));
    }
}
