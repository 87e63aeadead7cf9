//! Device authentication for DPS (docs/protocol-notes.md, "SAS tokens"): SAS token over
//! `{idScope}/registrations/{registrationId}`, signed with the individual enrollment key or with
//! the key derived from a group key. Clients only learn "Unauthorized"; the reason is logged.

use super::{Dps, EnrollmentSource};
use crate::dps::Error;
use fleethub_api::status_enabled;
use fleethub_core::{ids, keys, sas};

/// An authenticated device on the DPS endpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct DpsPrincipal {
    /// As the device spelled it (case preserved).
    pub registration_id: String,
    pub source: EnrollmentSource,
    /// Where the device connected from, for the auth-failure log (a disabled enrollment is
    /// refused at registration, after authentication).
    pub origin: AuthOrigin,
}

/// The transport and peer address of an authenticated device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthOrigin {
    pub transport: String,
    pub peer: Option<String>,
}

impl From<AuthContext<'_>> for AuthOrigin {
    fn from(ctx: AuthContext<'_>) -> Self {
        AuthOrigin {
            transport: ctx.transport.to_string(),
            peer: ctx.peer.map(str::to_string),
        }
    }
}

/// Where a failed attempt came from, for the auth-failure log.
#[derive(Debug, Clone, Copy)]
pub struct AuthContext<'a> {
    pub transport: &'a str,
    pub peer: Option<&'a str>,
}

impl Dps {
    /// Authenticates a device. `BadRequest` for a malformed registration ID, otherwise
    /// `Unauthorized` with the reason recorded in the auth-failure log.
    pub async fn authenticate(
        &self,
        id_scope: &str,
        registration_id: &str,
        token: &str,
        ctx: AuthContext<'_>,
    ) -> Result<DpsPrincipal, Error> {
        ids::validate_registration_id(registration_id)
            .map_err(|e| Error::invalid(e.to_string()))?;
        let fail = |reason: String| {
            self.auth_failures.record(
                "dps",
                ctx.transport,
                registration_id,
                ctx.peer.map(str::to_string),
                &reason,
            );
            Error::Unauthorized
        };
        if !id_scope.eq_ignore_ascii_case(&self.cfg.id_scope) {
            return Err(fail(format!(
                "unknown ID scope '{id_scope}' for registration {registration_id}: this server's ID scope is {}",
                self.cfg.id_scope
            )));
        }
        let token =
            sas::SasToken::parse(token).map_err(|e| fail(format!("malformed SAS token: {e}")))?;
        if let Err(e) = token.check_expiry(self.clock.unix(), self.cfg.token_skew_secs) {
            return Err(fail(e.to_string()));
        }
        let resource = fleethub_iot_protocol::identity::dps_sas_resource(id_scope, registration_id);
        if !token.covers(&resource) {
            return Err(fail(format!(
                "signature mismatch for registration {registration_id}: {}",
                sas::describe_resource_mismatch(&token, &resource)
            )));
        }
        let verify = |key: &str| token.verify_signature(key).unwrap_or(false);

        if let Some(e) = self.store.get_enrollment(registration_id).await? {
            let (p, s) = e.attestation.keys().unwrap_or(("", ""));
            if verify(p) || verify(s) {
                return Ok(DpsPrincipal {
                    registration_id: registration_id.to_string(),
                    source: EnrollmentSource::Individual(Box::new(e)),
                    origin: ctx.into(),
                });
            }
            return Err(fail(format!(
                "signature mismatch for registration {registration_id}: the token is not signed with the primary or secondary key of its individual enrollment"
            )));
        }

        let groups = self.groups.all().await?;
        let mut group_key_used = None;
        for g in groups.iter() {
            let Some((p, s)) = g.attestation.keys() else {
                continue;
            };
            for key in [p, s] {
                if key.is_empty() {
                    continue;
                }
                let Ok(derived) = keys::derive_device_key(key, registration_id) else {
                    continue;
                };
                if verify(&derived) {
                    let other = if key == p { s } else { p };
                    let derived_other =
                        keys::derive_device_key(other, registration_id).unwrap_or_default();
                    let (dp, ds) = if key == p {
                        (derived, derived_other)
                    } else {
                        (derived_other, derived)
                    };
                    return Ok(DpsPrincipal {
                        registration_id: registration_id.to_string(),
                        source: EnrollmentSource::Group {
                            group: Box::new(g.clone()),
                            derived_primary: dp,
                            derived_secondary: ds,
                        },
                        origin: ctx.into(),
                    });
                }
                if group_key_used.is_none() && verify(key) {
                    group_key_used = Some(g.enrollment_group_id.clone());
                }
            }
        }
        Err(fail(match group_key_used {
            Some(gid) => format!(
                "registration {registration_id}: the group key of enrollment group '{gid}' was used instead of the derived device key (derive it with `fleethub dps enrollment-group compute-device-key`)"
            ),
            None => format!(
                "registration {registration_id}: no individual enrollment, and no enrollment group key derives the key that signed the token"
            ),
        }))
    }
}

/// Is the enrollment behind a principal enabled? (`None` = enabled.)
pub(crate) fn disabled_reason(source: &EnrollmentSource) -> Option<String> {
    match source {
        EnrollmentSource::Individual(e) if !status_enabled(&e.provisioning_status) => {
            Some(format!(
                "the individual enrollment '{}' is disabled",
                e.registration_id
            ))
        }
        EnrollmentSource::Group { group, .. } if !status_enabled(&group.provisioning_status) => {
            Some(format!(
                "the enrollment group '{}' is disabled",
                group.enrollment_group_id
            ))
        }
        _ => None,
    }
}
