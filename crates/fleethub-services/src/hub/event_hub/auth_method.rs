//! `iothub-connection-auth-method`: how the sending identity authenticated, as IoT Hub writes it
//! into each message's system properties (docs/protocol-notes.md, "Event Hubs: the connection
//! auth method"). Set when the message is stored, so every transport (MQTT, AMQP, HTTPS) and
//! every reader (Event Hubs receivers, REST) sees the same value.

use crate::hub::{AuthKey, HubPrincipal};
pub use fleethub_storage::{AUTH_METHOD_PROPERTY, SenderAuth};

/// How an identity authenticated as `p` signs its messages: a device's or module's own key
/// gives scope `device`/`module`; a hub policy's token (with DeviceConnect) scope `hub`.
/// Messages carry it in this compact form to the store (`fleethub_storage::SenderAuth`).
pub fn sender_auth(p: &HubPrincipal) -> SenderAuth {
    match (&p.key, &p.module_id) {
        (AuthKey::Policy(_), _) => SenderAuth::Hub,
        (_, Some(_)) => SenderAuth::Module,
        (_, None) => SenderAuth::Device,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(module: Option<&str>, key: AuthKey) -> HubPrincipal {
        HubPrincipal {
            device_id: "d".into(),
            module_id: module.map(String::from),
            token_expiry: 0,
            key,
            auth_epoch: 0,
        }
    }

    #[test]
    fn scope_follows_the_key_that_signed_the_token() {
        let auth_method = |p: &HubPrincipal| sender_auth(p).auth_method();
        let parse =
            |p: &HubPrincipal| serde_json::from_str::<serde_json::Value>(auth_method(p)).unwrap();
        let device = parse(&principal(None, AuthKey::Primary));
        assert_eq!(device["scope"], "device");
        assert_eq!(device["type"], "sas");
        assert_eq!(device["issuer"], "iothub");
        assert!(device["acceptingIpFilterRule"].is_null());
        assert_eq!(
            parse(&principal(Some("m"), AuthKey::Secondary))["scope"],
            "module"
        );
        assert_eq!(
            parse(&principal(None, AuthKey::Policy("device".into())))["scope"],
            "hub"
        );
        assert_eq!(
            auth_method(&principal(None, AuthKey::Primary)),
            r#"{"scope":"device","type":"sas","issuer":"iothub","acceptingIpFilterRule":null}"#
        );
    }
}
