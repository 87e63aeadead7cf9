//! Device and module authentication on the hub's device plane: a SAS token for
//! `{hubHost}/devices/{deviceId}[/modules/{moduleId}]` signed with the device's primary or
//! secondary key, or with a hub policy key that grants DeviceConnect (Node SDK with a
//! `SharedAccessKeyName` connection string).

use super::Hub;
use crate::AuthContext;
use crate::hub::Error;
use crate::policies::Right;
use fleethub_core::sas;

/// An authenticated device (or module) connection.
#[derive(Debug, Clone, PartialEq)]
pub struct HubPrincipal {
    pub device_id: String,
    pub module_id: Option<String>,
    /// Unix time the token stops being valid (connections end then).
    pub token_expiry: u64,
    /// The credential that signed the token: regenerating it ends the connection.
    pub key: AuthKey,
    /// The hub's revocation counter before the registry was read: a revocation after it
    /// ends the connection even if it comes before the connection is attached.
    pub(crate) auth_epoch: u64,
}

/// Which credential signed a device-plane token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthKey {
    /// The identity's (device's or module's) primary key.
    Primary,
    /// The identity's secondary key.
    Secondary,
    /// A hub policy key with DeviceConnect (named by the token's `skn`).
    Policy(String),
}

impl Hub {
    /// How long a connection authenticated as `p` may stay open: until its token expires, plus
    /// the tolerated clock skew.
    pub fn token_lifetime(&self, p: &HubPrincipal) -> std::time::Duration {
        let secs = p.token_expiry.saturating_sub(self.clock.unix()) + self.cfg.token_skew_secs;
        std::time::Duration::from_secs(secs)
    }

    /// Authenticates a device-plane connection. Errors are `Unauthorized` (reason in the
    /// auth-failure log).
    pub async fn authenticate_device(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        token: &str,
        ctx: AuthContext<'_>,
    ) -> Result<HubPrincipal, Error> {
        let identity = match module_id {
            Some(m) => format!("{device_id}/{m}"),
            None => device_id.to_string(),
        };
        let fail = |reason: String| {
            self.auth_failures.record(
                "hub",
                ctx.transport,
                &identity,
                ctx.peer.map(str::to_string),
                &reason,
            );
            Error::Unauthorized
        };
        let auth_epoch = self.revocation_epoch();
        let token =
            sas::SasToken::parse(token).map_err(|e| fail(format!("malformed SAS token: {e}")))?;
        token
            .check_expiry(self.clock.unix(), self.cfg.token_skew_secs)
            .map_err(|e| fail(e.to_string()))?;
        let resource =
            fleethub_iot_protocol::identity::hub_sas_resource(&self.cfg.host, device_id, module_id);
        if !token.covers(&resource) {
            return Err(fail(format!(
                "signature mismatch for device {identity}: {}",
                sas::describe_resource_mismatch(&token, &resource)
            )));
        }
        let Some(rec) = self.store.get_device(device_id).await? else {
            return Err(fail(format!(
                "device '{device_id}' is not in the registry (device IDs are case-sensitive)"
            )));
        };
        if !rec.device.enabled() {
            return Err(fail(format!("device '{device_id}' is disabled")));
        }
        let verify = |k: &str| token.verify_signature(k).unwrap_or(false);
        let own_key = |a: Option<&fleethub_api::AuthenticationMechanism>| {
            let sk = a.and_then(|a| a.symmetric_key.as_ref())?;
            if sk.primary_key.as_deref().is_some_and(verify) {
                Some(AuthKey::Primary)
            } else if sk.secondary_key.as_deref().is_some_and(verify) {
                Some(AuthKey::Secondary)
            } else {
                None
            }
        };
        let key = match token.skn.as_deref() {
            Some(policy) => self
                .policies
                .iter()
                .find(|p| p.key_name.eq_ignore_ascii_case(policy))
                .filter(|p| p.rights.contains(&Right::DeviceConnect))
                .filter(|p| verify(&p.primary_key) || verify(&p.secondary_key))
                .map(|p| AuthKey::Policy(p.key_name.clone())),
            None => match module_id {
                Some(m) => match self.module_record(device_id, m).await {
                    Ok(mr) => own_key(mr.module.authentication.as_ref()),
                    Err(_) => {
                        return Err(fail(format!(
                            "module '{m}' of device '{device_id}' is not in the registry"
                        )));
                    }
                },
                None => own_key(rec.device.authentication.as_ref()),
            },
        };
        let Some(key) = key else {
            let why = match (token.skn.as_deref(), module_id) {
                (Some(p), _) => format!(
                    "the token names policy '{p}', which does not exist, lacks DeviceConnect, or did not sign it"
                ),
                (None, Some(_)) => {
                    "the token is not signed with the module's primary or secondary key".to_string()
                }
                (None, None) => {
                    "the token is not signed with the device's primary or secondary key".to_string()
                }
            };
            return Err(fail(format!(
                "signature mismatch for device {identity}: {why}"
            )));
        };
        Ok(HubPrincipal {
            device_id: device_id.to_string(),
            module_id: module_id.map(str::to_string),
            token_expiry: token.expiry,
            key,
            auth_epoch,
        })
    }
}
