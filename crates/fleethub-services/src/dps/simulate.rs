//! A dry run of a registration (`fleethub dps simulate`): which enrollment would match a
//! registration ID, whether a key is right (the enrollment's own, or derived from a group key),
//! and what a registration would do (hub, device ID, IoT Edge, initial twin, substatus), with
//! nothing written and nothing logged as an authentication failure. The same decisions as
//! [`Dps::authenticate`] and [`Dps::register`] make.

use super::auth::disabled_reason;
use super::reprovision::outcome;
use super::{AuthOrigin, Dps, DpsPrincipal, EnrollmentSource};
use crate::dps::Error;
use fleethub_api::{DeviceRegistrationState, InitialTwin};
use fleethub_core::{ids, keys};
use serde::Serialize;

/// What a registration would do.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Simulation {
    pub registration_id: String,
    /// `assigned`, `disabled` (the enrollment is disabled), `unauthorized` (the key is wrong),
    /// `keyNeeded` (only group enrollments exist: the key decides which) or `noEnrollment`.
    pub result: String,
    /// Why, in a sentence.
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enrollment: Option<EnrollmentMatch>,
    /// Which key the given key is: `primary`, `secondary` (of the individual enrollment),
    /// `derivedFromPrimary`, `derivedFromSecondary` (of a group key), `groupKey` (the group
    /// key itself, which devices must not use), `wrong`; `notChecked` without a key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// `keyNeeded`: the enabled groups a device with the right derived key would match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub candidate_groups: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    /// `initialAssignment`, `deviceDataMigrated` or `deviceDataReset`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub substatus: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iot_edge: Option<bool>,
    /// The twin a new device starts with (tags, desired properties).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    /// Whether the hub already has that device identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_exists: Option<bool>,
    /// The registration record of the last real registration, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationState>,
}

/// The enrollment a registration would use.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentMatch {
    /// `individual` or `group`.
    pub kind: String,
    pub id: String,
    pub provisioning_status: String,
}

impl Dps {
    /// Simulates the registration of `registration_id`, with the device key `key` when given.
    pub async fn simulate(
        &self,
        registration_id: &str,
        key: Option<&str>,
    ) -> Result<Simulation, Error> {
        ids::validate_registration_id(registration_id)
            .map_err(|e| Error::invalid(e.to_string()))?;
        let key = key.map(str::trim).filter(|k| !k.is_empty());
        let previous = self.store.get_registration(registration_id).await?;
        let mut sim = Simulation {
            registration_id: registration_id.to_string(),
            registration_state: previous.as_ref().map(|r| {
                let mut s = r.state.clone();
                s.enrollment_group_id = None;
                s
            }),
            ..Simulation::default()
        };
        let source = if let Some(e) = self.store.get_enrollment(registration_id).await? {
            sim.enrollment = Some(EnrollmentMatch {
                kind: "individual".into(),
                id: e.registration_id.clone(),
                provisioning_status: status(e.provisioning_status.as_deref()),
            });
            let (p, s) = e.attestation.keys().unwrap_or(("", ""));
            let which = match key {
                None => "notChecked",
                Some(k) if !p.is_empty() && k == p => "primary",
                Some(k) if !s.is_empty() && k == s => "secondary",
                Some(_) => "wrong",
            };
            sim.key = Some(which.into());
            if which == "wrong" {
                return Ok(sim.refused(
                    "unauthorized",
                    format!(
                        "the key is neither the primary nor the secondary key of individual enrollment '{}' (enrollment groups are not tried when an individual enrollment exists)",
                        e.registration_id
                    ),
                ));
            }
            EnrollmentSource::Individual(Box::new(e))
        } else {
            match self.group_source(registration_id, key, &mut sim).await? {
                Some(source) => source,
                None => return Ok(sim),
            }
        };
        if let Some(reason) = disabled_reason(&source) {
            return Ok(sim.refused("disabled", format!("registration refused: {reason}")));
        }
        let principal = DpsPrincipal {
            registration_id: registration_id.to_string(),
            source,
            origin: AuthOrigin::default(),
        };
        let stored_hubs = self.stored_linked_hubs().await?;
        let default_policy = self.instance_policy().await?;
        let plan = super::assign::plan(&principal, &self.candidates(&stored_hubs), &default_policy);
        let exists = self.store.get_device(&plan.device_id).await?.is_some();
        let super::reprovision::Outcome { substatus, hub, .. } =
            outcome(&plan, previous.as_ref(), exists);
        // A custom allocation webhook is not called in a dry run: its answer is not known.
        let webhook = plan.custom.is_some();
        let target = if webhook {
            "the hub the custom allocation webhook chooses (not called in a dry run)".to_string()
        } else {
            hub.clone()
        };
        sim.result = "assigned".into();
        sim.message = format!(
            "would be assigned to {target} as device '{}'{}",
            plan.device_id,
            if sim.key.as_deref() == Some("notChecked") {
                " (no key given: the key was not checked)"
            } else {
                ""
            }
        );
        sim.assigned_hub = (!webhook).then_some(hub);
        sim.device_id = Some(plan.device_id.clone());
        sim.substatus = (!webhook).then(|| substatus.into());
        sim.iot_edge = Some(plan.iot_edge);
        sim.initial_twin = plan.initial_twin.clone();
        sim.device_exists = Some(exists);
        Ok(sim)
    }

    /// No individual enrollment: the group whose key derives `key`, or the outcome saying why
    /// none does (`None`, with `sim` filled in).
    async fn group_source(
        &self,
        registration_id: &str,
        key: Option<&str>,
        sim: &mut Simulation,
    ) -> Result<Option<EnrollmentSource>, Error> {
        let groups = self.groups.all().await?;
        let Some(key) = key else {
            let candidates: Vec<String> = groups
                .iter()
                .filter(|g| g.attestation.keys().is_some())
                .filter(|g| fleethub_api::status_enabled(&g.provisioning_status))
                .map(|g| g.enrollment_group_id.clone())
                .collect();
            let (result, message) = if candidates.is_empty() {
                (
                    "noEnrollment",
                    format!(
                        "no individual enrollment '{registration_id}' and no enabled symmetric-key enrollment group"
                    ),
                )
            } else {
                (
                    "keyNeeded",
                    format!(
                        "no individual enrollment '{registration_id}': the device's key decides which enrollment group it belongs to (pass --key)"
                    ),
                )
            };
            sim.candidate_groups = Some(candidates);
            *sim = std::mem::take(sim).refused(result, message);
            return Ok(None);
        };
        let mut group_key_of = None;
        for g in groups.iter() {
            let Some((p, s)) = g.attestation.keys() else {
                continue;
            };
            let dp = keys::derive_device_key(p, registration_id).unwrap_or_default();
            let ds = keys::derive_device_key(s, registration_id).unwrap_or_default();
            let which = if !p.is_empty() && key == dp {
                "derivedFromPrimary"
            } else if !s.is_empty() && key == ds {
                "derivedFromSecondary"
            } else {
                if group_key_of.is_none() && (key == p || key == s) {
                    group_key_of = Some(g.enrollment_group_id.clone());
                }
                continue;
            };
            sim.key = Some(which.into());
            sim.enrollment = Some(EnrollmentMatch {
                kind: "group".into(),
                id: g.enrollment_group_id.clone(),
                provisioning_status: status(g.provisioning_status.as_deref()),
            });
            return Ok(Some(EnrollmentSource::Group {
                group: Box::new(g.clone()),
                derived_primary: dp,
                derived_secondary: ds,
            }));
        }
        let (which, message) = match group_key_of {
            Some(gid) => (
                "groupKey",
                format!(
                    "that is the group key of enrollment group '{gid}'; the device must use the key derived from it (`fleethub dps enrollment-group compute-device-key`)"
                ),
            ),
            None => (
                "wrong",
                format!(
                    "no individual enrollment '{registration_id}', and no enrollment group key derives this key"
                ),
            ),
        };
        sim.key = Some(which.into());
        *sim = std::mem::take(sim).refused("unauthorized", message);
        Ok(None)
    }
}

impl Simulation {
    fn refused(mut self, result: &str, message: String) -> Simulation {
        self.result = result.into();
        self.message = message;
        self
    }
}

fn status(s: Option<&str>) -> String {
    s.filter(|s| !s.is_empty()).unwrap_or("enabled").to_string()
}
