//! `$cbs` put-token for the device plane: a token whose audience (`name`) or resource (`sr`)
//! is `{host}/devices/{d}[/modules/{m}]` authenticates that identity on this connection
//! through the same `Hub::authenticate_device` as MQTT's CONNECT (device or module key, or a
//! hub policy with DeviceConnect); a later token for the same identity renews it (see
//! `docs/protocol-notes.md`, "AMQP device authentication").

use super::address::identity_of_resource;
use crate::connection::ConnCtx;
use crate::errors;
use crate::request::{self, AmqpMessage};
use fleethub_core::sas::SasToken;
use fleethub_services::AuthContext;

/// The identity a put-token request is for, when it is a device-plane token.
pub fn device_target(req: &AmqpMessage) -> Option<(String, Option<String>)> {
    if request::app_prop(req, "operation") != Some("put-token") {
        return None;
    }
    if let Some(target) = request::app_prop(req, "name").and_then(identity_of_resource) {
        return Some(target);
    }
    let token = request::body_text(req)?;
    let parsed = SasToken::parse(&token).ok()?;
    identity_of_resource(&parsed.sr_raw)
}

/// Handles a device-plane put-token: the status and description of the reply.
pub(crate) async fn put_token(
    ctx: &ConnCtx,
    req: &AmqpMessage,
    (device_id, module_id): (String, Option<String>),
) -> (i32, String) {
    match request::app_prop(req, "type") {
        Some("servicebus.windows.net:sastoken" | "azure-devices.net:sastoken") => {}
        other => {
            return (
                400,
                format!(
                    "unsupported token type {other:?}: send a SAS token (servicebus.windows.net:sastoken)"
                ),
            );
        }
    }
    let Some(token) = request::body_text(req) else {
        return (400, "the request body is not a token string".into());
    };
    let hub = &ctx.service.hub;
    let auth = AuthContext {
        transport: "amqp",
        peer: Some(&ctx.peer),
    };
    let identity = super::address::identity(&device_id, module_id.as_deref());
    match hub
        .authenticate_device(&device_id, module_id.as_deref(), &token, auth)
        .await
    {
        Ok(principal) => match ctx.devices.add(hub, principal) {
            Ok(()) => {
                tracing::debug!(peer = %ctx.peer, identity, "amqp: device token accepted");
                (200, "OK".into())
            }
            Err(e) => {
                tracing::info!(peer = %ctx.peer, identity, "amqp: device token refused: {e}");
                (403, e.to_string())
            }
        },
        Err(e) => {
            tracing::info!(peer = %ctx.peer, identity, "amqp: device token refused: {e}");
            errors::device_auth_status(&e)
        }
    }
}
