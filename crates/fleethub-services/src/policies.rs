//! Shared access policies for the service APIs (DPS service and hub service): named keys with
//! rights, checked against `SharedAccessSignature sr={host}&...&skn={policy}` tokens.

use crate::{AuthFailureLog, Clock};
use fleethub_core::{keys, sas};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Rights a policy can grant (Azure's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Right {
    // DPS
    ServiceConfig,
    EnrollmentRead,
    EnrollmentWrite,
    RegistrationStatusRead,
    RegistrationStatusWrite,
    // Hub
    RegistryRead,
    RegistryWrite,
    ServiceConnect,
    DeviceConnect,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    pub key_name: String,
    pub primary_key: String,
    pub secondary_key: String,
    pub rights: Vec<Right>,
}

impl Policy {
    pub fn generate(name: &str, rights: &[Right]) -> Policy {
        Policy {
            key_name: name.into(),
            primary_key: keys::generate_key(),
            secondary_key: keys::generate_key(),
            rights: rights.to_vec(),
        }
    }
}

/// Default DPS policies: `provisioningserviceowner` (everything) and `enrollmentread`.
pub fn default_dps_policies() -> Vec<Policy> {
    use Right::{
        EnrollmentRead, EnrollmentWrite, RegistrationStatusRead, RegistrationStatusWrite,
        ServiceConfig,
    };
    vec![
        Policy::generate(
            "provisioningserviceowner",
            &[
                ServiceConfig,
                EnrollmentRead,
                EnrollmentWrite,
                RegistrationStatusRead,
                RegistrationStatusWrite,
            ],
        ),
        Policy::generate("enrollmentread", &[EnrollmentRead, RegistrationStatusRead]),
    ]
}

/// Default hub policies, as Azure creates them.
pub fn default_hub_policies() -> Vec<Policy> {
    use Right::{DeviceConnect, RegistryRead, RegistryWrite, ServiceConnect};
    vec![
        Policy::generate(
            "iothubowner",
            &[RegistryRead, RegistryWrite, ServiceConnect, DeviceConnect],
        ),
        Policy::generate("service", &[ServiceConnect]),
        Policy::generate("device", &[DeviceConnect]),
        Policy::generate("registryRead", &[RegistryRead]),
        Policy::generate("registryReadWrite", &[RegistryRead, RegistryWrite]),
    ]
}

/// Why a service request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServiceAuthError {
    /// 401: no/bad token. The reason is in the auth-failure log.
    Unauthorized,
    /// 403-style: valid token, but the policy lacks a right. Safe to show.
    Forbidden(String),
}

/// What a verified AMQP token grants: access under `resource` until `expires_unix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceGrant {
    pub policy: String,
    /// The token's resource without URL scheme, lower case: `{host}` or `{host}/{path}`.
    pub resource: String,
    pub expires_unix: u64,
}

impl ServiceGrant {
    /// Whether the grant covers `resource` (`{host}/{path}`): equal, or below it at a `/`.
    pub fn covers(&self, resource: &str) -> bool {
        let r = resource.trim_end_matches('/').to_ascii_lowercase();
        r == self.resource
            || r.strip_prefix(&self.resource)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// `sb://x`, `amqps://x`, `https://x` -> `x`.
fn strip_scheme(resource: &str) -> &str {
    match resource.find("://") {
        Some(i) if resource[..i].bytes().all(|b| b.is_ascii_alphanumeric()) => &resource[i + 3..],
        _ => resource,
    }
}

/// Verifies service tokens for one endpoint (a DPS or a hub host name).
pub struct ServiceAuth {
    endpoint: &'static str,
    host: String,
    policies: Vec<Policy>,
    skew_secs: u64,
    log: Arc<AuthFailureLog>,
    clock: Clock,
}

impl ServiceAuth {
    pub fn new(
        endpoint: &'static str,
        host: String,
        policies: Vec<Policy>,
        log: Arc<AuthFailureLog>,
    ) -> Self {
        ServiceAuth {
            endpoint,
            host,
            policies,
            skew_secs: 30,
            log,
            clock: Clock::system(),
        }
    }

    /// Checks token expiry against `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    /// Connection string for a policy: `HostName=..;SharedAccessKeyName=..;SharedAccessKey=..`.
    pub fn connection_string(&self, policy: &str) -> Option<String> {
        self.policies
            .iter()
            .find(|p| p.key_name == policy)
            .map(|p| {
                format!(
                    "HostName={};SharedAccessKeyName={};SharedAccessKey={}",
                    self.host, p.key_name, p.primary_key
                )
            })
    }

    /// Checks a SAS token given over AMQP (CBS `put-token` or SASL PLAIN) and that its
    /// policy has `right`. Unlike HTTP, the token may name a resource below the host, with or
    /// without a URL scheme (`sb://{host}/{eventHub}`, `amqps://{host}/messages/events`,
    /// `{host}`): the grant covers that resource and what lies below it (see
    /// `docs/protocol-notes.md`, "AMQP claims-based security").
    pub fn authorize_token(
        &self,
        token: &str,
        right: Right,
        transport: &str,
        peer: Option<&str>,
    ) -> Result<ServiceGrant, ServiceAuthError> {
        let attempt = Attempt {
            transport,
            peer,
            // IoT Hub clients sign with the decoded key, Event Hubs clients with the key's text.
            text_keys: true,
        };
        let host = self.host.to_ascii_lowercase();
        let (policy, token, resource) = self.verify(token.trim(), right, &attempt, |token| {
            let resource = strip_scheme(&token.resource())
                .trim_end_matches('/')
                .to_ascii_lowercase();
            let under_host = resource == host
                || resource
                    .strip_prefix(&host)
                    .is_some_and(|rest| rest.starts_with('/') || rest.starts_with(':'));
            if under_host {
                Ok(resource)
            } else {
                Err(format!(
                    "its resource is '{}', this hub is '{}'",
                    token.resource(),
                    self.host
                ))
            }
        })?;
        // `host:port/path` names the same resource as `host/path`.
        let resource = match resource
            .strip_prefix(&host)
            .and_then(|r| r.strip_prefix(':'))
        {
            Some(rest) => format!("{host}{}", rest.find('/').map_or("", |i| &rest[i..])),
            None => resource,
        };
        Ok(ServiceGrant {
            policy: policy.key_name.clone(),
            resource,
            expires_unix: token.expiry,
        })
    }

    /// Checks an `Authorization` header value and that the policy has `right`.
    /// Returns the policy name.
    pub fn authorize(
        &self,
        header: Option<&str>,
        right: Right,
        transport: &str,
        peer: Option<&str>,
    ) -> Result<String, ServiceAuthError> {
        let attempt = Attempt {
            transport,
            peer,
            text_keys: false,
        };
        let Some(header) = header.filter(|h| !h.trim().is_empty()) else {
            return Err(self.fail(
                &attempt,
                "-",
                "no Authorization header: send a SharedAccessSignature made from a policy key",
            ));
        };
        let (policy, _, ()) = self.verify(header, right, &attempt, |token| {
            if token.covers(&self.host) {
                Ok(())
            } else {
                Err(sas::describe_resource_mismatch(token, &self.host))
            }
        })?;
        Ok(policy.key_name.clone())
    }

    /// The one check of a policy token, whichever transport carried it: parses it, requires a
    /// policy name (`skn`), checks expiry, finds the policy, checks the resource with
    /// `resource_ok` (its `Err` says why the token is for another host), verifies the signature
    /// with the policy's keys in constant time, and requires `right`. Every refusal but a
    /// missing right is recorded in the auth-failure log with its reason.
    fn verify<T>(
        &self,
        text: &str,
        right: Right,
        attempt: &Attempt<'_>,
        resource_ok: impl FnOnce(&sas::SasToken) -> Result<T, String>,
    ) -> Result<(&Policy, sas::SasToken, T), ServiceAuthError> {
        let token = sas::SasToken::parse(text)
            .map_err(|e| self.fail(attempt, "-", &format!("malformed SAS token: {e}")))?;
        let Some(name) = token.skn.clone() else {
            return Err(self.fail(attempt, "-", "the token has no skn (policy name): service tokens must name a shared access policy (a device token cannot open the service endpoints)"));
        };
        token
            .check_expiry(self.clock.unix(), self.skew_secs)
            .map_err(|e| self.fail(attempt, &name, &e.to_string()))?;
        let Some(policy) = self
            .policies
            .iter()
            .find(|p| p.key_name.eq_ignore_ascii_case(&name))
        else {
            return Err(self.fail(
                attempt,
                &name,
                &format!("unknown shared access policy '{name}'"),
            ));
        };
        let checked = resource_ok(&token).map_err(|why| {
            self.fail(attempt, &name, &format!("token is for another host: {why}"))
        })?;
        let ok = [&policy.primary_key, &policy.secondary_key]
            .into_iter()
            .any(|k| {
                token.verify_signature(k).unwrap_or(false)
                    || (attempt.text_keys && token.verify_signature_text_key(k))
            });
        if !ok {
            return Err(self.fail(
                attempt,
                &name,
                &format!(
                    "signature mismatch: the token is not signed with a key of policy '{name}'"
                ),
            ));
        }
        if !policy.rights.contains(&right) {
            return Err(ServiceAuthError::Forbidden(format!(
                "policy '{}' does not grant {right:?}",
                policy.key_name
            )));
        }
        Ok((policy, token, checked))
    }

    /// Records a refused attempt and returns the error the caller answers with.
    fn fail(&self, attempt: &Attempt<'_>, identity: &str, reason: &str) -> ServiceAuthError {
        self.log.record(
            self.endpoint,
            attempt.transport,
            identity,
            attempt.peer.map(str::to_string),
            reason,
        );
        ServiceAuthError::Unauthorized
    }
}

/// Who presented a policy token, and how its signature may be made.
struct Attempt<'a> {
    transport: &'a str,
    peer: Option<&'a str>,
    /// Whether a signature made with the key's base64 text (Event Hubs clients) counts, besides
    /// one made with the decoded key (IoT Hub clients).
    text_keys: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleethub_core::sas::build_token;

    fn hub_auth() -> (ServiceAuth, Policy) {
        let policies = default_hub_policies();
        let service = policies[1].clone();
        let auth = ServiceAuth::new(
            "hub-service",
            "hub.example.test".into(),
            policies,
            Arc::new(AuthFailureLog::new(16)),
        );
        (auth, service)
    }

    fn token(resource: &str, policy: &Policy, expiry: u64) -> String {
        build_token(
            resource,
            &policy.primary_key,
            expiry,
            Some(&policy.key_name),
        )
        .unwrap()
    }

    #[test]
    fn amqp_tokens_grant_the_resource_they_name() {
        let (auth, service) = hub_auth();
        let exp = Clock::system().unix() + 600;
        for (resource, granted) in [
            ("sb://hub.example.test/hub", "hub.example.test/hub"),
            (
                "amqps://HUB.example.test/messages/events/",
                "hub.example.test/messages/events",
            ),
            ("hub.example.test", "hub.example.test"),
            ("amqps://hub.example.test:5671/hub", "hub.example.test/hub"),
        ] {
            let g = auth
                .authorize_token(
                    &token(resource, &service, exp),
                    Right::ServiceConnect,
                    "amqp",
                    None,
                )
                .unwrap();
            assert_eq!(g.resource, granted, "{resource}");
            assert_eq!((g.policy.as_str(), g.expires_unix), ("service", exp));
        }
        let g = auth
            .authorize_token(
                &token("sb://hub.example.test/hub", &service, exp),
                Right::ServiceConnect,
                "amqp",
                None,
            )
            .unwrap();
        assert!(g.covers("hub.example.test/hub/ConsumerGroups/$Default/Partitions/0"));
        assert!(!g.covers("hub.example.test/hubx"));
        assert!(!g.covers("hub.example.test/messages/devicebound"));
    }

    #[test]
    fn amqp_tokens_refused() {
        let (auth, service) = hub_auth();
        let exp = Clock::system().unix() + 600;
        let other_host = token("sb://other.example.test/hub", &service, exp);
        let host_prefix = token("sb://hub.example.test.evil/hub", &service, exp);
        let expired = token("sb://hub.example.test/hub", &service, 1000);
        let device = build_token(
            "hub.example.test/devices/d1",
            &service.primary_key,
            exp,
            None,
        )
        .unwrap();
        for t in [
            other_host,
            host_prefix,
            expired,
            device,
            "garbage".to_string(),
        ] {
            assert_eq!(
                auth.authorize_token(&t, Right::ServiceConnect, "amqp", None),
                Err(ServiceAuthError::Unauthorized),
                "{t}"
            );
        }
        let (auth2, _) = hub_auth();
        let rr = auth2
            .policies()
            .iter()
            .find(|p| p.key_name == "registryRead")
            .unwrap()
            .clone();
        assert!(matches!(
            auth2.authorize_token(
                &token("hub.example.test", &rr, exp),
                Right::ServiceConnect,
                "amqp",
                None
            ),
            Err(ServiceAuthError::Forbidden(_))
        ));
    }
}
