//! The DPS request and reply links on `{idScope}/registrations/{registrationId}` (see the
//! module documentation).

use super::{DpsConn, Registration};
use crate::c2d::body_bytes;
use crate::connection::ConnCtx;
use crate::errors;
use crate::links::{self, LinkCtx, LinkTask};
use crate::request::{self, AmqpMessage};
use fe2o3_amqp::acceptor::ListenerSessionHandle;
use fe2o3_amqp::{Receiver, Sender};
use fe2o3_amqp_types::definitions::{Error as AmqpErrorFrame, Role};
use fe2o3_amqp_types::messaging::{ApplicationProperties, Body, Data, Message, Properties};
use fe2o3_amqp_types::performatives::Attach;
use fe2o3_amqp_types::primitives::{Binary, SimpleValue, Value};
use fleethub_api::{DeviceRegistration, RegistrationOperationStatus};
use fleethub_services::{AuthContext, Dps, DpsPrincipal, dps};
use std::sync::Arc;
use std::time::Duration;

/// The operation-type application property and its values.
pub const OPERATION_TYPE: &str = "iotdps-operation-type";
pub const REGISTER: &str = "iotdps-register";
pub const OPERATION_STATUS: &str = "iotdps-get-operationstatus";
pub const OPERATION_ID: &str = "iotdps-operation-id";
pub const RETRY_AFTER: &str = "retry-after";
/// How long a reply waits for the client's reply link.
const REPLY_ROUTE_WAIT: Duration = Duration::from_secs(5);

/// A DPS request.
#[derive(Debug, PartialEq)]
pub enum DpsRequest {
    Register(DeviceRegistration),
    OperationStatus(String),
}

/// Parses a request; `Err` is a `dps::Error::Invalid`.
pub fn parse_request(m: &AmqpMessage) -> Result<DpsRequest, dps::Error> {
    match request::app_prop(m, OPERATION_TYPE) {
        Some(REGISTER) => {
            let body = body_bytes(m);
            if body.iter().all(u8::is_ascii_whitespace) {
                return Ok(DpsRequest::Register(DeviceRegistration::default()));
            }
            serde_json::from_slice(&body)
                .map(DpsRequest::Register)
                .map_err(|e| dps::Error::Invalid(format!("register body is not valid JSON: {e}")))
        }
        Some(OPERATION_STATUS) => request::app_prop(m, OPERATION_ID)
            .map(|id| DpsRequest::OperationStatus(id.to_string()))
            .ok_or_else(|| {
                dps::Error::Invalid(format!(
                    "{OPERATION_STATUS} needs the {OPERATION_ID} property"
                ))
            }),
        other => Err(dps::Error::Invalid(format!(
            "unsupported {OPERATION_TYPE} {other:?}: use {REGISTER} or {OPERATION_STATUS}"
        ))),
    }
}

/// The reply to `req` with an operation status: `retry-after` while it is assigning.
pub fn reply(req: &AmqpMessage, op: &RegistrationOperationStatus, retry_after: u32) -> AmqpMessage {
    let mut app = ApplicationProperties::default();
    if op.status == "assigning" {
        app.0.insert(
            RETRY_AFTER.into(),
            SimpleValue::String(retry_after.max(1).to_string()),
        );
    }
    Message {
        header: None,
        delivery_annotations: None,
        message_annotations: None,
        properties: Some(Properties {
            correlation_id: req
                .properties
                .as_ref()
                .and_then(|p| p.correlation_id.clone()),
            content_type: Some("application/json".into()),
            ..Properties::default()
        }),
        application_properties: Some(app),
        body: Body::Data(
            vec![Data(Binary::from(
                serde_json::to_vec(op).unwrap_or_default(),
            ))]
            .into(),
        ),
        footer: None,
    }
}

impl DpsConn {
    /// The connection's authenticated registration for `reg`: the SASL PLAIN login checked
    /// with `Dps::authenticate` the first time (the real reason of a refusal goes to the
    /// auth-failure log).
    async fn principal(
        &self,
        dps: &Dps,
        reg: &Registration,
        peer: &str,
    ) -> Result<DpsPrincipal, AmqpErrorFrame> {
        let mut cached = self.principal.lock().await;
        if let Some(p) = cached.as_ref() {
            return if p.registration_id.eq_ignore_ascii_case(&reg.registration_id) {
                Ok(p.clone())
            } else {
                Err(errors::unauthorized(format!(
                    "this connection registers '{}', not '{}'",
                    p.registration_id, reg.registration_id
                )))
            };
        }
        let Some(login) = self.take_login() else {
            return Err(errors::unauthorized(
                "DPS over AMQP needs SASL PLAIN with user name {idScope}/registrations/{registrationId} and a SAS token as password",
            ));
        };
        if login.registration != *reg {
            dps.auth_failures().record(
                "dps",
                "amqp",
                &reg.registration_id,
                Some(peer.to_string()),
                &format!(
                    "the link names '{}/registrations/{}' but SASL authenticated '{}/registrations/{}'",
                    reg.id_scope,
                    reg.registration_id,
                    login.registration.id_scope,
                    login.registration.registration_id
                ),
            );
            return Err(errors::unauthorized(
                "the link's registration differs from the SASL user name",
            ));
        }
        let ctx = AuthContext {
            transport: "amqp",
            peer: Some(peer),
        };
        match dps
            .authenticate(&reg.id_scope, &reg.registration_id, &login.token, ctx)
            .await
        {
            Ok(p) => {
                *cached = Some(p.clone());
                Ok(p)
            }
            Err(e) => Err(errors::dps_error(&e, dps.config().retry_after_secs)),
        }
    }

    async fn reply_route(&self) -> Option<tokio::sync::mpsc::Sender<AmqpMessage>> {
        let deadline = tokio::time::Instant::now() + REPLY_ROUTE_WAIT;
        loop {
            if let Some(tx) = self
                .replies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
            {
                return Some(tx);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Accepts a DPS link once the connection's registration is authenticated.
pub(crate) async fn accept(
    link: LinkCtx,
    session: &mut ListenerSessionHandle,
    attach: Attach,
    reg: Registration,
) -> Option<LinkTask> {
    let ctx: Arc<ConnCtx> = link.conn.clone();
    let Some(dps) = ctx.service.dps.clone() else {
        links::refuse(
            session,
            attach,
            errors::not_found("this endpoint serves no DPS"),
        )
        .await;
        return None;
    };
    let principal = match ctx.dps.principal(&dps, &reg, &ctx.peer).await {
        Ok(p) => p,
        Err(error) => {
            tracing::info!(peer = %ctx.peer, registration = %reg.registration_id, condition = ?error.condition,
                "amqp: DPS link refused: {}", error.description.as_deref().unwrap_or(""));
            links::refuse(session, attach, error).await;
            return None;
        }
    };
    match attach.role {
        Role::Sender => {
            let r = links::accept_receiver(session, attach).await?;
            Some(Box::pin(serve_requests(link, r, dps, principal)))
        }
        Role::Receiver => {
            let s = links::accept_sender(session, attach).await?;
            Some(Box::pin(serve_replies(link, s)))
        }
    }
}

/// Serves the client's request link: each request is answered through `Dps` (accepted and
/// answered on the reply link), or rejected with the mapped error.
async fn serve_requests(link: LinkCtx, mut receiver: Receiver, dps: Arc<Dps>, p: DpsPrincipal) {
    let ctx = link.conn.clone();
    let retry_after = dps.config().retry_after_secs;
    loop {
        let delivery = match receiver.recv::<Body<Value>>().await {
            Ok(d) => d,
            Err(e) => {
                tracing::debug!(peer = %ctx.peer, registration = %p.registration_id, "amqp: DPS request link ended: {e}");
                break;
            }
        };
        let req = delivery.message();
        let result = match parse_request(req) {
            Ok(DpsRequest::Register(body)) => dps.register(&p, body).await,
            Ok(DpsRequest::OperationStatus(id)) => dps.operation_status(&p, &id).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(op) => {
                let out = reply(req, &op, retry_after);
                let _ = receiver.accept(&delivery).await;
                match ctx.dps.reply_route().await {
                    Some(tx) => {
                        let _ = tx.send(out).await;
                    }
                    None => {
                        tracing::info!(peer = %ctx.peer, "amqp: no DPS reply link: reply dropped");
                    }
                }
            }
            Err(e) => {
                if !matches!(e, dps::Error::Unauthorized | dps::Error::Throttled { .. }) {
                    tracing::info!(peer = %ctx.peer, registration = %p.registration_id, "amqp: DPS request failed: {e}");
                }
                let _ = receiver
                    .reject(&delivery, errors::dps_error(&e, retry_after))
                    .await;
            }
        }
    }
    let _ = tokio::time::timeout(crate::connection::CLOSE_TIMEOUT, receiver.close()).await;
}

/// Serves the client's reply link.
async fn serve_replies(link: LinkCtx, mut sender: Sender) {
    let ctx = link.conn.clone();
    let (tx, mut rx) = tokio::sync::mpsc::channel(crate::device::grants::ROUTE_QUEUE);
    *ctx.dps
        .replies
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(tx);
    loop {
        let out = tokio::select! {
            m = rx.recv() => m,
            _ = sender.on_detach() => None,
        };
        let Some(out) = out else { break };
        if let Err(e) = sender.send_batchable(out).await {
            tracing::debug!(peer = %ctx.peer, "amqp: DPS reply not sent: {e}");
            break;
        }
    }
    let _ = tokio::time::timeout(crate::connection::CLOSE_TIMEOUT, sender.close()).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::messaging::MessageId;

    fn req(props: &[(&str, &str)], body: &[u8]) -> AmqpMessage {
        let mut app = ApplicationProperties::default();
        for (k, v) in props {
            app.0
                .insert((*k).to_string(), SimpleValue::String((*v).to_string()));
        }
        Message {
            header: None,
            delivery_annotations: None,
            message_annotations: None,
            properties: Some(Properties {
                correlation_id: Some(MessageId::String("c-1".into())),
                ..Properties::default()
            }),
            application_properties: Some(app),
            body: Body::Data(vec![Data(Binary::from(body.to_vec()))].into()),
            footer: None,
        }
    }

    #[test]
    fn requests_and_replies() {
        assert_eq!(
            parse_request(&req(
                &[(OPERATION_TYPE, REGISTER)],
                b"{\"registrationId\":\"d1\"}"
            ))
            .unwrap(),
            DpsRequest::Register(DeviceRegistration {
                registration_id: Some("d1".into()),
                ..DeviceRegistration::default()
            })
        );
        assert_eq!(
            parse_request(&req(
                &[(OPERATION_TYPE, OPERATION_STATUS), (OPERATION_ID, "op-1")],
                b""
            ))
            .unwrap(),
            DpsRequest::OperationStatus("op-1".into())
        );
        assert!(parse_request(&req(&[(OPERATION_TYPE, OPERATION_STATUS)], b"")).is_err());
        assert!(parse_request(&req(&[(OPERATION_TYPE, REGISTER)], b"{")).is_err());
        assert!(parse_request(&req(&[], b"")).is_err());
        let op = RegistrationOperationStatus {
            operation_id: "op-1".into(),
            status: "assigning".into(),
            ..RegistrationOperationStatus::default()
        };
        let r = reply(&req(&[], b""), &op, 3);
        assert_eq!(
            r.properties.as_ref().unwrap().correlation_id,
            Some(MessageId::String("c-1".into()))
        );
        assert_eq!(
            r.application_properties
                .as_ref()
                .unwrap()
                .0
                .get(RETRY_AFTER),
            Some(&SimpleValue::String("3".into()))
        );
    }
}
