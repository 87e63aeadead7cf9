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

    /// Checks an `Authorization` header value and that the policy has `right`.
    /// Returns the policy name.
    pub fn authorize(
        &self,
        header: Option<&str>,
        right: Right,
        transport: &str,
        peer: Option<&str>,
    ) -> Result<String, ServiceAuthError> {
        let fail = |identity: &str, reason: String| {
            self.log.record(
                self.endpoint,
                transport,
                identity,
                peer.map(str::to_string),
                &reason,
            );
            ServiceAuthError::Unauthorized
        };
        let Some(header) = header.filter(|h| !h.trim().is_empty()) else {
            return Err(fail(
                "-",
                "no Authorization header: send a SharedAccessSignature made from a policy key"
                    .into(),
            ));
        };
        let token = sas::SasToken::parse(header)
            .map_err(|e| fail("-", format!("malformed SAS token: {e}")))?;
        let Some(name) = token.skn.clone() else {
            return Err(fail("-", "the token has no skn (policy name): service tokens must name a shared access policy".into()));
        };
        token
            .check_expiry(self.clock.unix(), self.skew_secs)
            .map_err(|e| fail(&name, e.to_string()))?;
        let Some(policy) = self
            .policies
            .iter()
            .find(|p| p.key_name.eq_ignore_ascii_case(&name))
        else {
            return Err(fail(
                &name,
                format!("unknown shared access policy '{name}'"),
            ));
        };
        if !token.covers(&self.host) {
            return Err(fail(
                &name,
                format!(
                    "token is for another host: {}",
                    sas::describe_resource_mismatch(&token, &self.host)
                ),
            ));
        }
        let ok = [&policy.primary_key, &policy.secondary_key]
            .into_iter()
            .any(|k| token.verify_signature(k).unwrap_or(false));
        if !ok {
            return Err(fail(
                &name,
                format!(
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
        Ok(policy.key_name.clone())
    }
}
