//! SASL on the AMQP listener: `MSSBCBS` and `ANONYMOUS` (the client authenticates afterwards
//! with `$cbs` put-token) and `PLAIN` with user name `{policy}@sas.root.{hubName}` and a SAS
//! token as password, whose grant the connection holds from the start (see
//! `docs/protocol-notes.md`, "AMQP transport and SASL").

use crate::claims::Claims;
use fe2o3_amqp::acceptor::SaslAcceptor;
use fe2o3_amqp::acceptor::sasl_acceptor::SaslServerFrame;
use fe2o3_amqp_types::primitives::{Array, Binary, Symbol};
use fe2o3_amqp_types::sasl::{SaslCode, SaslInit, SaslOutcome, SaslResponse};
use fleethub_services::{Right, ServiceAuth};
use std::sync::Arc;

/// The mechanisms offered, in the order Azure offers them.
pub const MECHANISMS: [&str; 3] = ["MSSBCBS", "PLAIN", "ANONYMOUS"];

/// One connection's SASL exchange; a PLAIN grant goes into the connection's [`Claims`].
#[derive(Clone)]
pub struct HubSasl {
    auth: Arc<ServiceAuth>,
    claims: Arc<Claims>,
    peer: String,
    /// Where a DPS login (user `{idScope}/registrations/{id}`) goes, when DPS is served.
    dps: Option<Arc<crate::dps::DpsConn>>,
}

impl HubSasl {
    pub fn new(auth: Arc<ServiceAuth>, claims: Arc<Claims>, peer: String) -> Self {
        HubSasl {
            auth,
            claims,
            peer,
            dps: None,
        }
    }

    /// Also accepts DPS logins: PLAIN with user name `{idScope}/registrations/{id}` and a SAS
    /// token, kept for `Dps::authenticate` when the registration's link attaches.
    #[must_use]
    pub(crate) fn with_dps(mut self, dps: Arc<crate::dps::DpsConn>) -> Self {
        self.dps = Some(dps);
        self
    }

    fn outcome(code: SaslCode) -> SaslServerFrame {
        SaslServerFrame::Outcome(SaslOutcome {
            code,
            additional_data: None,
        })
    }

    fn plain(&self, response: &[u8]) -> SaslCode {
        let mut parts = response.split(|b| *b == 0);
        let (Some(_authzid), Some(user), Some(password)) =
            (parts.next(), parts.next(), parts.next())
        else {
            tracing::info!(peer = %self.peer, "amqp: SASL PLAIN response malformed");
            return SaslCode::Auth;
        };
        let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return SaslCode::Auth;
        };
        if let (Some(dps), Some(registration)) = (&self.dps, crate::dps::parse(user)) {
            tracing::debug!(peer = %self.peer, user, "amqp: SASL PLAIN for DPS: checked when its link attaches");
            dps.set_login(registration, password.to_string());
            return SaslCode::Ok;
        }
        match self
            .auth
            .authorize_token(password, Right::ServiceConnect, "amqp", Some(&self.peer))
        {
            Ok(grant) => {
                tracing::debug!(peer = %self.peer, user, policy = %grant.policy, "amqp: SASL PLAIN accepted");
                self.claims.add(grant);
                SaslCode::Ok
            }
            Err(_) => SaslCode::Auth,
        }
    }
}

impl SaslAcceptor for HubSasl {
    fn mechanisms(&self) -> Array<Symbol> {
        Array::from(
            MECHANISMS
                .iter()
                .map(|m| Symbol::from(*m))
                .collect::<Vec<_>>(),
        )
    }

    fn on_init(&mut self, init: SaslInit) -> SaslServerFrame {
        match init.mechanism.as_str() {
            "ANONYMOUS" | "MSSBCBS" => Self::outcome(SaslCode::Ok),
            "PLAIN" => {
                let response = init
                    .initial_response
                    .map(Binary::into_vec)
                    .unwrap_or_default();
                Self::outcome(self.plain(&response))
            }
            other => {
                tracing::info!(peer = %self.peer, mechanism = other, "amqp: SASL mechanism not offered");
                Self::outcome(SaslCode::Auth)
            }
        }
    }

    fn on_response(&mut self, _response: SaslResponse) -> SaslServerFrame {
        // None of our mechanisms sends a challenge.
        Self::outcome(SaslCode::Auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fe2o3_amqp_types::primitives::Binary;
    use fleethub_core::sas::build_token;
    use fleethub_services::policies::default_hub_policies;
    use fleethub_services::{AuthFailureLog, Clock};

    fn sasl() -> (HubSasl, Arc<Claims>, String) {
        let policies = default_hub_policies();
        let key = policies[1].primary_key.clone();
        let auth = Arc::new(ServiceAuth::new(
            "hub-service",
            "hub.example".into(),
            policies,
            Arc::new(AuthFailureLog::new(8)),
        ));
        let claims = Arc::new(Claims::default());
        (HubSasl::new(auth, claims.clone(), "p".into()), claims, key)
    }

    fn init(mechanism: &str, response: Option<Vec<u8>>) -> SaslInit {
        SaslInit {
            mechanism: Symbol::from(mechanism),
            initial_response: response.map(Binary::from),
            hostname: None,
        }
    }

    fn code(f: SaslServerFrame) -> SaslCode {
        match f {
            SaslServerFrame::Outcome(o) => o.code,
            SaslServerFrame::Challenge(_) => panic!("challenge"),
        }
    }

    #[test]
    fn mechanisms() {
        let (mut s, claims, key) = sasl();
        assert!(matches!(
            code(s.on_init(init("MSSBCBS", None))),
            SaslCode::Ok
        ));
        assert!(matches!(
            code(s.on_init(init("ANONYMOUS", None))),
            SaslCode::Ok
        ));
        assert!(matches!(
            code(s.on_init(init("EXTERNAL", None))),
            SaslCode::Auth
        ));
        let exp = Clock::system().unix() + 60;
        let tok = build_token("hub.example/messages/events", &key, exp, Some("service")).unwrap();
        let ok = format!("\0service@sas.root.hub\0{tok}").into_bytes();
        assert!(matches!(
            code(s.on_init(init("PLAIN", Some(ok)))),
            SaslCode::Ok
        ));
        assert_eq!(
            claims.expiry_for("hub.example/messages/events/x", exp - 10),
            Some(exp)
        );
        let bad = b"\0service@sas.root.hub\0not-a-token".to_vec();
        assert!(matches!(
            code(s.on_init(init("PLAIN", Some(bad)))),
            SaslCode::Auth
        ));
        assert!(matches!(
            code(s.on_init(init("PLAIN", None))),
            SaslCode::Auth
        ));
    }
}
