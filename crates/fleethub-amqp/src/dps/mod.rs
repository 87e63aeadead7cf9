//! DPS over AMQP, as the Node (`azure-iot-provisioning-device-amqp`) and C provisioning
//! transports speak it: SASL PLAIN with user name `{idScope}/registrations/{registrationId}`
//! and the SAS token as password, then a sender and a receiver on the link address
//! `{idScope}/registrations/{registrationId}`. Requests carry the application property
//! `iotdps-operation-type` (`iotdps-register` with the registration JSON as body,
//! `iotdps-get-operationstatus` with `iotdps-operation-id`) and a `correlation-id`; replies carry
//! that `correlation-id`, the operation status JSON as body and, while assigning,
//! `retry-after` (seconds). The same `Dps` calls as MQTT and HTTPS serve them; the token is
//! checked (and a refusal's real reason recorded) by `Dps::authenticate` when the first link
//! attaches (see `docs/protocol-notes.md`, "DPS over AMQP").

pub(crate) mod links;

use fleethub_services::DpsPrincipal;
use std::sync::{Mutex, PoisonError};

/// The DPS link address / SASL user name: `{idScope}/registrations/{registrationId}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub id_scope: String,
    pub registration_id: String,
}

/// Parses `{idScope}/registrations/{registrationId}` (an address may be rooted or an
/// `amqps://` URL; a user name may end with `/api-version=...`).
pub fn parse(address: &str) -> Option<Registration> {
    let path = crate::addresses::path_of(address).trim_end_matches('/');
    let mut parts = path.split('/');
    let (Some(scope), Some(kw), Some(reg)) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    let rest = parts.next();
    if !kw.eq_ignore_ascii_case("registrations")
        || scope.is_empty()
        || reg.is_empty()
        || scope.starts_with('$')
        || rest.is_some_and(|r| !r.starts_with("api-version="))
    {
        return None;
    }
    Some(Registration {
        id_scope: scope.to_string(),
        registration_id: reg.to_string(),
    })
}

/// What SASL PLAIN brought for DPS: the registration and its token.
pub(crate) struct Login {
    pub registration: Registration,
    pub token: String,
}

/// The DPS state of one connection.
#[derive(Default)]
pub(crate) struct DpsConn {
    login: Mutex<Option<Login>>,
    /// The authenticated registration (checked once, at the first DPS link).
    principal: tokio::sync::Mutex<Option<DpsPrincipal>>,
    replies: Mutex<Option<tokio::sync::mpsc::Sender<crate::request::AmqpMessage>>>,
}

impl DpsConn {
    /// Keeps a SASL PLAIN login for DPS (checked when a DPS link attaches).
    pub fn set_login(&self, registration: Registration, token: String) {
        *self.login.lock().unwrap_or_else(PoisonError::into_inner) = Some(Login {
            registration,
            token,
        });
    }

    fn take_login(&self) -> Option<Login> {
        self.login
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registrations() {
        let r = |s: &str, id: &str| {
            Some(Registration {
                id_scope: s.into(),
                registration_id: id.into(),
            })
        };
        assert_eq!(
            parse("0ne00000001/registrations/dev-1"),
            r("0ne00000001", "dev-1")
        );
        assert_eq!(
            parse("amqps://dps.example/0ne00000001/registrations/dev-1/"),
            r("0ne00000001", "dev-1")
        );
        assert_eq!(
            parse("0ne1/registrations/dev-1/api-version=2019-03-31"),
            r("0ne1", "dev-1")
        );
        assert_eq!(parse("0ne1/registrations/"), None);
        assert_eq!(parse("0ne1/devices/dev-1"), None);
        assert_eq!(parse("$cbs"), None);
        assert_eq!(parse("hub/ConsumerGroups/$Default/Partitions/0"), None);
        assert_eq!(parse("0ne1/registrations/dev-1/x"), None);
    }
}
