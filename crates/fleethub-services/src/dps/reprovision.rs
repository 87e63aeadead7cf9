//! Reprovisioning (docs/protocol-notes.md, "Reprovisioning"): what a registered device's next
//! registration does under its enrollment's `reprovisionPolicy`. It stays on its hub
//! (`updateHubAssignment` false, or allocation picks the same hub: `reprovisionedToInitialAssignment`)
//! or moves to the hub allocation picks now, taking its twin along (`migrateDeviceData`:
//! `deviceDataMigrated`) or starting there from the enrollment's initial twin
//! (`deviceDataReset`); a device that moves is removed from its old hub once the new hub has it.

use super::assign::Plan;
use super::{Dps, DpsPrincipal};
use crate::dps::Error;
use fleethub_api::{DeviceRegistrationState, InitialTwin, InitialTwinProperties, LinkedHub, Twin};
use fleethub_storage::{Assignment, RegistrationRecord};

/// How a registration that is allowed ends.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Outcome {
    pub(super) substatus: &'static str,
    /// The twin starts over from the plan's initial twin (for a migration: the old hub's twin).
    pub(super) reset_twin: bool,
    pub(super) hub: String,
    /// The hub and device ID the device leaves.
    pub(super) moved_from: Option<(String, String)>,
}

/// The outcome given the device's previous registration record and whether its identity
/// exists on the target hub (a device created now always gets the initial twin).
pub(super) fn outcome(
    plan: &Plan,
    previous: Option<&RegistrationRecord>,
    device_exists: bool,
) -> Outcome {
    // A record names a hub only when the device was assigned one: `assigned`, or a later
    // attempt that failed or was refused (those keep the previous assignment).
    let old = previous.and_then(|r| {
        let hub = r.state.assigned_hub.clone()?;
        let device = r.state.device_id.clone().unwrap_or(plan.device_id.clone());
        Some((hub, device))
    });
    let rp = &plan.reprovision;
    let stay = |hub: String, reset: bool| Outcome {
        substatus: "reprovisionedToInitialAssignment",
        reset_twin: reset || plan.force_twin || !device_exists,
        hub,
        moved_from: None,
    };
    match old {
        None => Outcome {
            substatus: "initialAssignment",
            reset_twin: !device_exists || plan.force_twin,
            hub: plan.hub.clone(),
            moved_from: None,
        },
        Some((hub, _)) if !rp.update_hub_assignment => stay(hub, false),
        Some((hub, _)) if hub.eq_ignore_ascii_case(&plan.hub) => stay(hub, !rp.migrate_device_data),
        Some(from) => Outcome {
            substatus: if rp.migrate_device_data && !plan.nothing_migrated {
                "deviceDataMigrated"
            } else {
                "deviceDataReset"
            },
            reset_twin: true,
            hub: plan.hub.clone(),
            moved_from: Some(from),
        },
    }
}

/// The part of a twin that moves with the device: tags and desired properties (reported
/// properties belong to the device, which reports them again on its new hub).
fn movable(twin: &Twin) -> InitialTwin {
    InitialTwin {
        tags: twin.tags.clone(),
        properties: Some(InitialTwinProperties {
            desired: Some(twin.properties.desired.clone()),
        }),
    }
}

impl Dps {
    fn linked<'a>(stored: &'a [LinkedHub], hub: &str) -> Option<&'a LinkedHub> {
        stored.iter().find(|h| h.name.eq_ignore_ascii_case(hub))
    }

    /// For a device that moves hubs with `migrateDeviceData`: makes its old hub's twin the
    /// twin it starts from on the new hub (unless a webhook's `initialTwin` wins). An old hub
    /// that no longer has the device, or is no longer linked, has nothing to give
    /// (`deviceDataReset`); one that cannot be reached fails the registration (`Err`: why).
    pub(super) async fn migrate_twin(
        &self,
        plan: &mut Plan,
        previous: Option<&RegistrationRecord>,
        stored: &[LinkedHub],
    ) -> Result<(), String> {
        let Some((old_hub, old_device)) = outcome(plan, previous, true).moved_from else {
            return Ok(());
        };
        if !plan.reprovision.migrate_device_data || plan.force_twin {
            return Ok(());
        }
        let twin = if self.is_local_hub(&old_hub) {
            self.store
                .get_device(&old_device)
                .await
                .map_err(|e| format!("cannot read the twin on '{old_hub}': {e}"))?
                .map(|r| movable(&r.twin))
        } else {
            match (Self::linked(stored, &old_hub), self.remote_hubs.get()) {
                (Some(link), Some(remote)) => remote
                    .read_twin(link, &old_device)
                    .await
                    .map_err(|e| format!("cannot read the twin on '{old_hub}': {e}"))?,
                _ => None,
            }
        };
        match twin {
            Some(t) => {
                plan.initial_twin = Some(t);
                plan.force_twin = true;
            }
            None => plan.nothing_migrated = true,
        }
        Ok(())
    }

    /// Removes a device that moved from its old hub. A failure is logged (the device is already
    /// assigned to its new hub).
    pub(super) async fn remove_from_old_hub(
        &self,
        (old_hub, old_device): (String, String),
        stored: &[LinkedHub],
    ) {
        let result = if self.is_local_hub(&old_hub) {
            match self
                .local_hub_registry
                .get()
                .and_then(std::sync::Weak::upgrade)
            {
                Some(hub) => match hub.delete_device(&old_device, None).await {
                    Err(crate::hub::Error::DeviceNotFound { .. }) | Ok(()) => Ok(()),
                    Err(e) => Err(e.to_string()),
                },
                None => match self
                    .store
                    .delete_device(&old_device, fleethub_storage::Precondition::Any)
                    .await
                {
                    Err(fleethub_storage::StoreError::NotFound { .. }) | Ok(()) => Ok(()),
                    Err(e) => Err(e.to_string()),
                },
            }
        } else {
            match (Self::linked(stored, &old_hub), self.remote_hubs.get()) {
                (Some(link), Some(remote)) => remote
                    .remove(link, &old_device)
                    .await
                    .map_err(|e| e.to_string()),
                _ => Err("the hub is no longer linked".into()),
            }
        };
        match result {
            Ok(()) => {
                tracing::info!(hub = %old_hub, device = %old_device, "device removed from the hub it left");
            }
            Err(e) => {
                tracing::warn!(hub = %old_hub, device = %old_device, error = %e, "could not remove a device from the hub it left");
            }
        }
    }

    /// Records a registration that could not complete for now (the previous assignment is
    /// kept in the record) and logs why; the device gets `err` and may register again.
    pub(super) async fn fail_retryably(
        &self,
        p: &DpsPrincipal,
        mut state: DeviceRegistrationState,
        previous: Option<&RegistrationRecord>,
        operation_id: String,
        message: &str,
        err: Error,
    ) -> Error {
        tracing::warn!(registration = %p.registration_id, %message, "registration failed");
        self.auth_failures.record(
            "dps",
            &p.origin.transport,
            &p.registration_id,
            p.origin.peer.clone(),
            message,
        );
        state.status = Some("failed".into());
        state.error_code = Some(503_000);
        state.error_message = Some(format!("{message}; the device may register again"));
        if let Some(prev) = previous {
            state.assigned_hub.clone_from(&prev.state.assigned_hub);
            state.device_id.clone_from(&prev.state.device_id);
        }
        let committed = self
            .store
            .commit_assignment(Assignment {
                registration: RegistrationRecord {
                    state,
                    operation_id,
                },
                device: None,
            })
            .await;
        match committed {
            Ok(rec) => {
                self.recent.insert(&rec);
                err
            }
            Err(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fleethub_api::ReprovisionPolicy;

    fn plan(hub: &str, update: bool, migrate: bool) -> Plan {
        Plan {
            device_id: "d".into(),
            hub: hub.into(),
            iot_edge: false,
            initial_twin: None,
            reprovision: ReprovisionPolicy {
                update_hub_assignment: update,
                migrate_device_data: migrate,
            },
            keys: (String::new(), String::new()),
            group_id: None,
            custom: None,
            iot_hubs: Vec::new(),
            force_twin: false,
            nothing_migrated: false,
        }
    }

    fn assigned_to(hub: &str) -> RegistrationRecord {
        RegistrationRecord {
            state: DeviceRegistrationState {
                registration_id: "d".into(),
                status: Some("assigned".into()),
                assigned_hub: Some(hub.into()),
                device_id: Some("d-old".into()),
                ..Default::default()
            },
            operation_id: "op".into(),
        }
    }

    #[test]
    fn substatus_and_twin_follow_azures_definitions() {
        let a = assigned_to("a.test");
        let failed = RegistrationRecord {
            state: DeviceRegistrationState {
                status: Some("failed".into()),
                ..a.state.clone()
            },
            ..a.clone()
        };
        let case = |p: &Plan, prev: Option<&RegistrationRecord>, exists| {
            let o = outcome(p, prev, exists);
            (o.substatus, o.reset_twin, o.hub, o.moved_from)
        };
        // First assignment (a failed first attempt names no hub).
        let failed_first = RegistrationRecord {
            state: DeviceRegistrationState {
                assigned_hub: None,
                device_id: None,
                ..failed.state.clone()
            },
            ..failed.clone()
        };
        for prev in [None, Some(&failed_first)] {
            assert_eq!(
                case(&plan("b.test", true, true), prev, false),
                ("initialAssignment", true, "b.test".into(), None)
            );
        }
        assert!(
            !case(&plan("b.test", true, true), None, true).1,
            "an existing identity keeps its twin"
        );
        // A failed attempt after an assignment keeps it: the next one moves from there.
        assert_eq!(
            case(&plan("b.test", true, false), Some(&failed), true).3,
            Some(("a.test".to_string(), "d-old".to_string()))
        );
        // Never reprovision: stays, twin untouched.
        assert_eq!(
            case(&plan("b.test", false, true), Some(&a), true),
            (
                "reprovisionedToInitialAssignment",
                false,
                "a.test".into(),
                None
            )
        );
        // Same hub again: stays; reset only without migration.
        assert_eq!(
            case(&plan("A.test", true, true), Some(&a), true),
            (
                "reprovisionedToInitialAssignment",
                false,
                "a.test".into(),
                None
            )
        );
        assert!(case(&plan("a.test", true, false), Some(&a), true).1);
        // Another hub: moves, leaving the old identity behind to be removed.
        let moved = Some(("a.test".to_string(), "d-old".to_string()));
        assert_eq!(
            case(&plan("b.test", true, true), Some(&a), false),
            ("deviceDataMigrated", true, "b.test".into(), moved.clone())
        );
        assert_eq!(
            case(&plan("b.test", true, false), Some(&a), true),
            ("deviceDataReset", true, "b.test".into(), moved.clone())
        );
        let mut lost = plan("b.test", true, true);
        lost.nothing_migrated = true;
        assert_eq!(case(&lost, Some(&a), false).0, "deviceDataReset");
    }

    #[test]
    fn a_migrated_twin_keeps_tags_and_desired_only() {
        let mut twin = Twin {
            tags: Some(serde_json::json!({"site": "b"})),
            ..Default::default()
        };
        twin.properties.desired = serde_json::json!({"fw": "2", "$version": 4});
        twin.properties.reported = serde_json::json!({"temp": 20});
        let m = movable(&twin);
        assert_eq!(m.tags, twin.tags);
        let desired = m.properties.unwrap().desired.unwrap();
        assert_eq!(desired["fw"], "2");
        assert!(desired.get("temp").is_none());
    }
}
