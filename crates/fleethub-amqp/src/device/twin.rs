//! The twin links `/devices/{d}[/modules/{m}]/twin`: the client sends requests (message
//! annotations `operation` = `GET` | `PATCH` | `PUT` | `DELETE` and `resource`, a
//! `correlation-id`), the server answers on the client's receiver of the same address with
//! the request's `correlation-id` and annotations `status` (int) and `version` (long), and
//! pushes desired-property patches there (no `correlation-id`) once the client enabled them
//! with `PUT /notifications/twin/properties/desired`. Twin reads and reported patches go
//! through the same `Hub` calls and throttles as MQTT's (see `docs/protocol-notes.md`, "AMQP
//! device links").

use super::grants::DeviceGrant;
use crate::c2d::body_bytes;
use crate::errors;
use crate::links::LinkCtx;
use crate::request::AmqpMessage;
use fe2o3_amqp::{Receiver, Sender};
use fe2o3_amqp_types::messaging::{
    Body, Data, Message, MessageAnnotations, MessageId, Properties, annotations::OwnedKey,
};
use fe2o3_amqp_types::primitives::{Binary, Symbol, Value};
use fleethub_services::Operation;
use fleethub_services::hub::TwinTarget;
use fleethub_services::hub::twin::device_view;
use std::sync::Arc;
use std::time::Duration;

/// The resource of desired-property notifications.
pub const DESIRED_NOTIFICATIONS: &str = "/notifications/twin/properties/desired";
/// How long a reply waits for the client's twin receiver to be attached.
const REPLY_ROUTE_WAIT: Duration = Duration::from_secs(5);

/// A string message annotation.
fn annotation<'a>(m: &'a AmqpMessage, key: &str) -> Option<&'a str> {
    m.message_annotations
        .as_ref()?
        .0
        .iter()
        .find_map(|(k, v)| match (k, v) {
            (OwnedKey::Symbol(s), Value::String(v)) if s.as_str() == key => Some(v.as_str()),
            (OwnedKey::Symbol(s), Value::Symbol(v)) if s.as_str() == key => Some(v.as_str()),
            _ => None,
        })
}

/// A twin request.
#[derive(Debug, Clone, PartialEq)]
pub enum TwinRequest {
    Get,
    PatchReported(serde_json::Value),
    EnableDesired,
    DisableDesired,
}

/// Parses a request; `Err` is the reason for a 400 reply.
pub fn parse_request(m: &AmqpMessage) -> Result<TwinRequest, String> {
    let op = annotation(m, "operation").ok_or("the request has no 'operation' annotation")?;
    let resource = annotation(m, "resource").unwrap_or("");
    match (op.to_ascii_uppercase().as_str(), resource) {
        ("GET", _) => Ok(TwinRequest::Get),
        ("PATCH", "/properties/reported") => serde_json::from_slice(&body_bytes(m))
            .map(TwinRequest::PatchReported)
            .map_err(|e| format!("reported properties patch is not valid JSON: {e}")),
        ("PUT", DESIRED_NOTIFICATIONS) => Ok(TwinRequest::EnableDesired),
        ("DELETE", DESIRED_NOTIFICATIONS) => Ok(TwinRequest::DisableDesired),
        (op, resource) => Err(format!(
            "unsupported twin operation '{op}' on resource '{resource}'"
        )),
    }
}

fn message(
    correlation: Option<MessageId>,
    annotations: MessageAnnotations,
    body: Vec<u8>,
) -> AmqpMessage {
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: Some(annotations),
        properties: Some(Properties {
            correlation_id: correlation,
            ..Properties::default()
        }),
        application_properties: None,
        body: Body::Data(vec![Data(Binary::from(body))].into()),
        footer: None,
    }
}

fn put(a: &mut MessageAnnotations, key: &str, v: Value) {
    a.0.insert(OwnedKey::Symbol(Symbol::from(key)), v);
}

/// A reply: `status`, `version` when known, the request's `correlation-id`.
pub fn reply(
    correlation: Option<MessageId>,
    status: i32,
    version: Option<u64>,
    body: Vec<u8>,
) -> AmqpMessage {
    let mut a = MessageAnnotations::default();
    put(&mut a, "status", Value::Int(status));
    if let Some(v) = version {
        put(
            &mut a,
            "version",
            Value::Long(i64::try_from(v).unwrap_or(i64::MAX)),
        );
    }
    message(correlation, a, body)
}

/// A desired-property patch (with its `$version`) as the hub pushes it.
pub fn desired_message(patch: &serde_json::Value) -> AmqpMessage {
    let mut a = MessageAnnotations::default();
    if let Some(v) = patch.get("$version").and_then(serde_json::Value::as_i64) {
        put(&mut a, "version", Value::Long(v));
    }
    message(None, a, serde_json::to_vec(patch).unwrap_or_default())
}

/// Answers one request through the hub.
async fn answer(ctx: &LinkCtx, grant: &DeviceGrant, req: &AmqpMessage) -> AmqpMessage {
    let hub = &ctx.conn.service.hub;
    let corr = req
        .properties
        .as_ref()
        .and_then(|p| p.correlation_id.clone());
    let (device, module) = (grant.device_id.as_str(), grant.module_id.as_deref());
    let target = TwinTarget::new(device, module);
    let result = match parse_request(req) {
        Err(why) => Err(fleethub_services::hub::Error::Invalid(why)),
        Ok(TwinRequest::Get) => match hub.admit_for(Operation::TwinRead, device, module) {
            Ok(()) => hub.get_twin(target).await.map(|t| {
                let version = t
                    .properties
                    .reported
                    .get("$version")
                    .and_then(serde_json::Value::as_u64);
                let body = serde_json::to_vec(&device_view(&t)).unwrap_or_default();
                (200, version, body)
            }),
            Err(e) => Err(e),
        },
        Ok(TwinRequest::PatchReported(patch)) => {
            match hub.admit_for(Operation::TwinUpdate, device, module) {
                Ok(()) => hub
                    .patch_reported(target, &patch)
                    .await
                    .map(|v| (204, Some(v), Vec::new())),
                Err(e) => Err(e),
            }
        }
        Ok(TwinRequest::EnableDesired) => {
            grant.set_desired(true);
            Ok((200, None, Vec::new()))
        }
        Ok(TwinRequest::DisableDesired) => {
            grant.set_desired(false);
            Ok((200, None, Vec::new()))
        }
    };
    match result {
        Ok((status, version, body)) => reply(corr, status, version, body),
        Err(e) => {
            tracing::info!(peer = %ctx.conn.peer, identity = %grant.identity(), "amqp: twin request failed: {e}");
            let (status, body) = errors::twin_response(&e);
            reply(corr, status, None, body)
        }
    }
}

/// Serves the client's twin sender (its requests).
pub(crate) async fn serve_requests(link: LinkCtx, mut receiver: Receiver, grant: Arc<DeviceGrant>) {
    let identity = grant.identity();
    let ended = loop {
        let delivery = tokio::select! {
            reason = grant.wait_ended() => break Some(reason),
            d = receiver.recv::<Body<serde_amqp::Value>>() => match d {
                Ok(d) => d,
                Err(e) => {
                    tracing::debug!(peer = %link.conn.peer, identity, "amqp: twin request link ended: {e}");
                    break None;
                }
            },
        };
        let _ = receiver.accept(&delivery).await;
        let out = answer(&link, &grant, delivery.message()).await;
        let tx = wait_route(&grant).await;
        match tx {
            Some(tx) => {
                // Waits while the reply link's queue is full (a client that grants no credit
                // stops its own requests), but not past the grant.
                tokio::select! {
                    sent = tx.send(out) => if sent.is_err() {
                        tracing::debug!(peer = %link.conn.peer, identity, "amqp: twin reply link closed before the reply");
                    },
                    reason = grant.wait_ended() => break Some(reason),
                }
            }
            None => {
                tracing::info!(peer = %link.conn.peer, identity, "amqp: no twin receiver attached: reply dropped");
            }
        }
    };
    super::close_receiver(&link.conn.peer, &identity, receiver, ended).await;
}

async fn wait_route(grant: &DeviceGrant) -> Option<tokio::sync::mpsc::Sender<AmqpMessage>> {
    let deadline = tokio::time::Instant::now() + REPLY_ROUTE_WAIT;
    loop {
        if let Some(tx) = grant.twin_replies() {
            return Some(tx);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves the client's twin receiver: replies and desired-property patches.
pub(crate) async fn serve_replies(link: LinkCtx, mut sender: Sender, grant: Arc<DeviceGrant>) {
    let identity = grant.identity();
    let mut rx = grant.route_twin();
    let ended = loop {
        let out = tokio::select! {
            reason = grant.wait_ended() => break Some(reason),
            _ = sender.on_detach() => break None,
            m = rx.recv() => match m {
                Some(m) => m,
                None => break None,
            },
        };
        // The disposition is not waited on (the client settles as it likes); credit is, but
        // not past the grant.
        let sent = tokio::select! {
            sent = sender.send_batchable(out) => sent,
            reason = grant.wait_ended() => break Some(reason),
        };
        if let Err(e) = sent {
            tracing::debug!(peer = %link.conn.peer, identity, "amqp: twin reply not sent: {e}");
            break None;
        }
    };
    grant.unroute(super::address::DeviceLink::Twin);
    super::close_sender(&link.conn.peer, &identity, sender, ended).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(op: &str, resource: Option<&str>, body: &[u8]) -> AmqpMessage {
        let mut a = MessageAnnotations::default();
        put(&mut a, "operation", Value::String(op.into()));
        if let Some(r) = resource {
            put(&mut a, "resource", Value::String(r.into()));
        }
        message(Some(MessageId::String("c-1".into())), a, body.to_vec())
    }

    #[test]
    fn requests() {
        assert_eq!(
            parse_request(&request("GET", None, b" ")),
            Ok(TwinRequest::Get)
        );
        assert_eq!(
            parse_request(&request(
                "PATCH",
                Some("/properties/reported"),
                b"{\"a\":1}"
            )),
            Ok(TwinRequest::PatchReported(serde_json::json!({"a": 1})))
        );
        assert_eq!(
            parse_request(&request("PUT", Some(DESIRED_NOTIFICATIONS), b" ")),
            Ok(TwinRequest::EnableDesired)
        );
        assert_eq!(
            parse_request(&request("DELETE", Some(DESIRED_NOTIFICATIONS), b" ")),
            Ok(TwinRequest::DisableDesired)
        );
        assert!(parse_request(&request("PATCH", Some("/properties/reported"), b"{")).is_err());
        assert!(parse_request(&request("POST", Some("/x"), b"")).is_err());
    }

    #[test]
    fn replies_and_patches() {
        let r = reply(
            Some(MessageId::String("c-1".into())),
            204,
            Some(5),
            Vec::new(),
        );
        assert_eq!(
            r.properties.as_ref().unwrap().correlation_id,
            Some(MessageId::String("c-1".into()))
        );
        let ann = &r.message_annotations.as_ref().unwrap().0;
        assert_eq!(
            ann.get(&OwnedKey::Symbol(Symbol::from("status"))),
            Some(&Value::Int(204))
        );
        assert_eq!(
            ann.get(&OwnedKey::Symbol(Symbol::from("version"))),
            Some(&Value::Long(5))
        );
        let d = desired_message(&serde_json::json!({"x": 1, "$version": 4}));
        assert_eq!(d.properties.as_ref().unwrap().correlation_id, None);
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&body_bytes(&d)).unwrap(),
            serde_json::json!({"x": 1, "$version": 4})
        );
    }
}
