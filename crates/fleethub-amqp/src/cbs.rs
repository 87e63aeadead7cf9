//! `$cbs` put-token: a client proves a SAS token for an audience; the connection then holds
//! that grant until the token expires (see `docs/protocol-notes.md`, "AMQP claims-based
//! security").

use crate::errors;
use crate::request::{self, AmqpMessage};
use fleethub_services::{Right, ServiceAuth, ServiceGrant};

/// The outcome of one put-token request.
#[derive(Debug)]
pub struct PutToken {
    /// 200 with the grant, or the refusal's status.
    pub status: i32,
    pub description: String,
    pub grant: Option<ServiceGrant>,
}

/// Handles one request on `$cbs`.
pub fn handle(req: &AmqpMessage, auth: &ServiceAuth, peer: &str) -> PutToken {
    let refuse = |status: i32, description: String| PutToken {
        status,
        description,
        grant: None,
    };
    match request::app_prop(req, "operation") {
        Some("put-token") => {}
        Some(op) => {
            return refuse(
                400,
                format!("unsupported $cbs operation '{op}': use put-token"),
            );
        }
        None => {
            return refuse(
                400,
                "the request has no operation application property".into(),
            );
        }
    }
    match request::app_prop(req, "type") {
        Some("servicebus.windows.net:sastoken" | "azure-devices.net:sastoken") => {}
        Some(t) => {
            return refuse(
                400,
                format!(
                    "unsupported token type '{t}': send a SAS token (servicebus.windows.net:sastoken)"
                ),
            );
        }
        None => return refuse(400, "the request has no type application property".into()),
    }
    let Some(token) = request::body_text(req) else {
        return refuse(400, "the request body is not a token string".into());
    };
    match auth.authorize_token(&token, Right::ServiceConnect, "amqp", Some(peer)) {
        Ok(grant) => {
            if let Some(audience) = request::app_prop(req, "name") {
                tracing::debug!(%peer, audience, policy = %grant.policy, "amqp: put-token accepted");
            }
            PutToken {
                status: 200,
                description: "OK".into(),
                grant: Some(grant),
            }
        }
        Err(e) => {
            let (status, description) = errors::service_auth_status(&e);
            tracing::info!(%peer, status, "amqp: put-token refused");
            refuse(status, description)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::tests::request;
    use fleethub_core::sas::build_token;
    use fleethub_services::policies::default_hub_policies;
    use fleethub_services::{AuthFailureLog, Clock};
    use std::sync::Arc;

    #[test]
    fn put_token() {
        let policies = default_hub_policies();
        let service = policies[1].clone();
        let log = Arc::new(AuthFailureLog::new(8));
        let auth = ServiceAuth::new("hub-service", "hub.example".into(), policies, log.clone());
        let exp = Clock::system().unix() + 60;
        let tok = build_token(
            "sb://hub.example/hub",
            &service.primary_key,
            exp,
            Some("service"),
        )
        .unwrap();
        let ok = handle(
            &request(
                &[
                    ("operation", "put-token"),
                    ("type", "servicebus.windows.net:sastoken"),
                    ("name", "sb://hub.example/hub"),
                ],
                &tok,
            ),
            &auth,
            "peer",
        );
        assert_eq!(ok.status, 200);
        assert_eq!(ok.grant.unwrap().resource, "hub.example/hub");
        let bad = handle(
            &request(
                &[
                    ("operation", "put-token"),
                    ("type", "servicebus.windows.net:sastoken"),
                ],
                "SharedAccessSignature sr=x&sig=y&se=1&skn=service",
            ),
            &auth,
            "peer",
        );
        assert_eq!((bad.status, bad.grant.is_none()), (401, true));
        assert_eq!(log.recent(10).len(), 1);
        let wrong_op = handle(
            &request(&[("operation", "delete-token")], &tok),
            &auth,
            "peer",
        );
        assert_eq!(wrong_op.status, 400);
        let wrong_type = handle(
            &request(&[("operation", "put-token"), ("type", "jwt")], &tok),
            &auth,
            "peer",
        );
        assert_eq!(wrong_type.status, 400);
    }
}
