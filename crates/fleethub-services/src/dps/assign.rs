//! Registration: choose the hub, create or update the device identity with its initial twin,
//! record the registration, all in one durable transaction, then answer `assigning`; polls read
//! the record back as `assigned`.

use super::allocation::{Allocation, choose_hub};
use super::auth::disabled_reason;
use super::linked_hubs::Candidate;
use super::reprovision::outcome;
use super::{Dps, DpsPrincipal, EnrollmentSource, MAX_PAYLOAD_BYTES, RemoteIdentity};
use crate::dps::Error;
use crate::throttle::Operation;
use fleethub_api::{
    AuthenticationMechanism, Capabilities, Device, DeviceRegistration, DeviceRegistrationState,
    InitialTwin, RegistrationOperationStatus, ReprovisionPolicy, SymmetricKeyRegistrationResult,
    Twin, TwinProperties, time::NEVER,
};
use fleethub_storage::{Assignment, DeviceRecord, RegistrationRecord};
use serde_json::{Value, json};

/// What the enrollment says about the device to create.
pub(super) struct Plan {
    pub(super) device_id: String,
    pub(super) hub: String,
    pub(super) iot_edge: bool,
    pub(super) initial_twin: Option<InitialTwin>,
    pub(super) reprovision: ReprovisionPolicy,
    pub(super) keys: (String, String),
    pub(super) group_id: Option<String>,
    /// `customAllocationDefinition` when the policy is `custom`.
    pub(super) custom: Option<Value>,
    /// The enrollment's `iotHubs`.
    pub(super) iot_hubs: Vec<String>,
    /// The twin starts over from `initial_twin` whatever the reprovisioning policy (a
    /// webhook's `initialTwin` wins over twin migration).
    pub(super) force_twin: bool,
    /// The device moves hubs with `migrateDeviceData` but its old hub had no twin to give
    /// (the device was deleted there, or the hub was unlinked): `deviceDataReset`.
    pub(super) nothing_migrated: bool,
}

impl Dps {
    /// Handles a register request from an authenticated device. The outcome is durable before
    /// this returns; the answer is always `assigning` with an operation ID to poll.
    pub async fn register(
        &self,
        p: &DpsPrincipal,
        body: DeviceRegistration,
    ) -> Result<RegistrationOperationStatus, Error> {
        self.admit(Operation::DpsRegistration, p)?;
        if let Some(rid) = &body.registration_id
            && !rid.eq_ignore_ascii_case(&p.registration_id)
        {
            return Err(Error::invalid(format!(
                "registrationId '{rid}' in the body does not match '{}' in the request path/connection",
                p.registration_id
            )));
        }
        if let Some(payload) = &body.payload {
            let size = serde_json::to_vec(payload).map_or(0, |v| v.len());
            if size > MAX_PAYLOAD_BYTES {
                return Err(Error::TooLarge(format!(
                    "registration payload is {size} bytes; at most {MAX_PAYLOAD_BYTES} are accepted"
                )));
            }
        }
        let operation_id = new_operation_id(&self.cfg.id_scope);
        let previous = self.store.get_registration(&p.registration_id).await?;
        let now = self.clock.now_utc();
        let stored_hubs = self.stored_linked_hubs().await?;
        let default_policy = self.instance_policy().await?;
        let plan = plan(p, &self.candidates(&stored_hubs), &default_policy);
        let mut state = DeviceRegistrationState {
            registration_id: p.registration_id.clone(),
            created_date_time_utc: Some(
                previous
                    .as_ref()
                    .and_then(|r| r.state.created_date_time_utc.clone())
                    .unwrap_or_else(|| now.clone()),
            ),
            last_updated_date_time_utc: Some(now),
            enrollment_group_id: plan.group_id.clone(),
            symmetric_key: plan
                .group_id
                .as_ref()
                .map(|g| SymmetricKeyRegistrationResult {
                    enrollment_group_id: Some(g.clone()),
                }),
            ..Default::default()
        };

        if let Some(reason) = disabled_reason(&p.source) {
            self.auth_failures.record(
                "dps",
                &p.origin.transport,
                &p.registration_id,
                p.origin.peer.clone(),
                &format!("registration refused: {reason}"),
            );
            state.status = Some("disabled".into());
            state.error_code = Some(401_003);
            state.error_message = Some(format!("Registration refused: {reason}"));
            if let Some(prev) = &previous {
                state.assigned_hub = prev.state.assigned_hub.clone();
                state.device_id = prev.state.device_id.clone();
            }
            let rec = self
                .store
                .commit_assignment(Assignment {
                    registration: RegistrationRecord {
                        state,
                        operation_id: operation_id.clone(),
                    },
                    device: None,
                })
                .await?;
            self.recent.insert(&rec);
            crate::metrics::inc(&self.metrics.dps_registrations_disabled);
            return Ok(assigning(operation_id, &p.registration_id));
        }

        let mut plan = plan;
        if plan.custom.is_some() {
            let candidates = self.candidates(&stored_hubs);
            if let Some(end) = self
                .allocate_custom(
                    p,
                    &mut plan,
                    &mut state,
                    previous.as_ref(),
                    body.payload.as_ref(),
                    &candidates,
                    &operation_id,
                )
                .await
            {
                return end;
            }
        }
        if let Err(reason) = self
            .migrate_twin(&mut plan, previous.as_ref(), &stored_hubs)
            .await
        {
            let old = previous
                .as_ref()
                .and_then(|r| r.state.assigned_hub.clone())
                .unwrap_or_default();
            let message = format!("migrating the device data failed: {reason}");
            return Err(self
                .fail_retryably(
                    p,
                    state,
                    previous.as_ref(),
                    operation_id,
                    &message,
                    Error::HubUnavailable { hub: old },
                )
                .await);
        }
        let hub = outcome(&plan, previous.as_ref(), true).hub;
        if !self.is_local_hub(&hub) {
            let linked = stored_hubs
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(&hub));
            return self
                .register_remote(p, &plan, previous.as_ref(), state, linked, operation_id)
                .await;
        }
        let existing = self.store.get_device(&plan.device_id).await?;
        let out = outcome(&plan, previous.as_ref(), existing.is_some());
        let device = build_device(&plan, existing, out.reset_twin, &self.clock.now_utc());
        state.assigned_hub = Some(out.hub);
        state.device_id = Some(plan.device_id.clone());
        state.status = Some("assigned".into());
        state.substatus = Some(out.substatus.into());
        let plannable = deployments_may_apply(&device);
        let rec = self
            .store
            .commit_assignment(Assignment {
                registration: RegistrationRecord {
                    state,
                    operation_id: operation_id.clone(),
                },
                device: Some(device),
            })
            .await?;
        self.recent.insert(&rec);
        if plannable && let Some(hook) = self.assigned_hook.get() {
            hook(&plan.device_id);
        }
        if let Some(from) = out.moved_from {
            self.remove_from_old_hub(from, &stored_hubs).await;
        }
        crate::metrics::inc(&self.metrics.dps_registrations_assigned);
        tracing::info!(registration = %p.registration_id, device = %plan.device_id, substatus = out.substatus, "device assigned");
        Ok(assigning(operation_id, &p.registration_id))
    }

    /// Assignment to a linked hub other than the local one: the identity is created or updated
    /// there first; only then is the registration recorded as assigned (the local registry
    /// gets no device). When the hub cannot take it the record says why (keeping the previous
    /// assignment), the diagnostics view gets an entry, and the device gets a retryable error.
    async fn register_remote(
        &self,
        p: &DpsPrincipal,
        plan: &Plan,
        previous: Option<&RegistrationRecord>,
        mut state: DeviceRegistrationState,
        linked: Option<&fleethub_api::LinkedHub>,
        operation_id: String,
    ) -> Result<RegistrationOperationStatus, Error> {
        let out = outcome(plan, previous, true);
        let hub = out.hub.clone();
        let identity = RemoteIdentity {
            device_id: plan.device_id.clone(),
            primary_key: plan.keys.0.clone(),
            secondary_key: plan.keys.1.clone(),
            iot_edge: plan.iot_edge,
            initial_twin: plan.initial_twin.clone(),
            reset_twin: out.reset_twin,
        };
        let result = match (linked, self.remote_hubs.get()) {
            (None, _) => Err(format!("hub '{hub}' is not linked to this DPS any more")),
            (Some(_), None) => Err("this server has no client for linked hubs".to_string()),
            (Some(link), Some(remote)) => remote
                .provision(link, &identity)
                .await
                .map_err(|e| e.to_string()),
        };
        if let Err(reason) = result {
            let message = format!("assignment to linked hub '{hub}' failed: {reason}");
            let err = Error::HubUnavailable { hub };
            return Err(self
                .fail_retryably(p, state, previous, operation_id, &message, err)
                .await);
        }
        state.assigned_hub = Some(hub.clone());
        state.device_id = Some(plan.device_id.clone());
        state.status = Some("assigned".into());
        state.substatus = Some(out.substatus.into());
        let rec = self
            .store
            .commit_assignment(Assignment {
                registration: RegistrationRecord {
                    state,
                    operation_id: operation_id.clone(),
                },
                device: None,
            })
            .await?;
        self.recent.insert(&rec);
        if let Some(from) = out.moved_from {
            let stored = self.stored_linked_hubs().await?;
            self.remove_from_old_hub(from, &stored).await;
        }
        crate::metrics::inc(&self.metrics.dps_registrations_assigned);
        tracing::info!(registration = %p.registration_id, device = %plan.device_id, %hub, substatus = out.substatus, "device assigned to a linked hub");
        Ok(assigning(operation_id, &p.registration_id))
    }

    /// Answers an operation-status poll.
    pub async fn operation_status(
        &self,
        p: &DpsPrincipal,
        operation_id: &str,
    ) -> Result<RegistrationOperationStatus, Error> {
        self.admit(Operation::DpsOperationStatus, p)?;
        let rec = match self.recent.get(operation_id) {
            Some(r) => Some(r),
            None => {
                self.store
                    .get_registration_by_operation(operation_id)
                    .await?
            }
        };
        let Some(rec) = rec.filter(|r| {
            r.state
                .registration_id
                .eq_ignore_ascii_case(&p.registration_id)
        }) else {
            return Err(Error::OperationNotFound {
                operation_id: operation_id.to_string(),
                registration_id: p.registration_id.clone(),
            });
        };
        let mut state = rec.state;
        state.enrollment_group_id = None;
        Ok(RegistrationOperationStatus {
            operation_id: rec.operation_id,
            status: state.status.clone().unwrap_or_else(|| "failed".into()),
            registration_state: Some(state),
        })
    }
}

/// What the enrollment says about the device, with the hub chosen among `candidates` by the
/// enrollment's policy or else `default_policy` (the instance's).
pub(super) fn plan(p: &DpsPrincipal, candidates: &[Candidate], default_policy: &str) -> Plan {
    match &p.source {
        EnrollmentSource::Individual(e) => Plan {
            device_id: e
                .device_id
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| e.registration_id.clone()),
            hub: choose_hub(
                candidates,
                &p.registration_id,
                &Allocation {
                    policy: e.allocation_policy.as_deref().or(Some(default_policy)),
                    fixed: e.iot_hub_host_name.as_ref(),
                    hubs: e.iot_hubs.as_ref(),
                },
            ),
            iot_edge: e.capabilities.as_ref().is_some_and(|c| c.iot_edge),
            initial_twin: e.initial_twin.clone(),
            reprovision: e.reprovision_policy.clone().unwrap_or_default(),
            keys: e
                .attestation
                .keys()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .unwrap_or_default(),
            group_id: None,
            custom: custom_definition(
                e.allocation_policy.as_deref(),
                e.custom_allocation_definition.as_ref(),
            ),
            iot_hubs: e.iot_hubs.clone().unwrap_or_default(),
            force_twin: false,
            nothing_migrated: false,
        },
        EnrollmentSource::Group {
            group,
            derived_primary,
            derived_secondary,
        } => Plan {
            device_id: p.registration_id.clone(),
            hub: choose_hub(
                candidates,
                &p.registration_id,
                &Allocation {
                    policy: group.allocation_policy.as_deref().or(Some(default_policy)),
                    fixed: group.iot_hub_host_name.as_ref(),
                    hubs: group.iot_hubs.as_ref(),
                },
            ),
            iot_edge: group.capabilities.as_ref().is_some_and(|c| c.iot_edge),
            initial_twin: group.initial_twin.clone(),
            reprovision: group.reprovision_policy.clone().unwrap_or_default(),
            keys: (derived_primary.clone(), derived_secondary.clone()),
            group_id: Some(group.enrollment_group_id.clone()),
            custom: custom_definition(
                group.allocation_policy.as_deref(),
                group.custom_allocation_definition.as_ref(),
            ),
            iot_hubs: group.iot_hubs.clone().unwrap_or_default(),
            force_twin: false,
            nothing_migrated: false,
        },
    }
}

/// The webhook definition of a `custom` enrollment (`{}` when it names none: the call fails).
fn custom_definition(policy: Option<&str>, def: Option<&Value>) -> Option<Value> {
    policy
        .is_some_and(|p| p.eq_ignore_ascii_case("custom"))
        .then(|| def.cloned().unwrap_or_else(|| json!({})))
}

pub(super) fn assigning(
    operation_id: String,
    registration_id: &str,
) -> RegistrationOperationStatus {
    RegistrationOperationStatus {
        operation_id,
        status: "assigning".into(),
        registration_state: Some(DeviceRegistrationState {
            registration_id: registration_id.to_string(),
            status: Some("assigning".into()),
            ..Default::default()
        }),
    }
}

/// `5.{scope hash}.{uuid}`, the shape real DPS operation IDs have.
fn new_operation_id(scope: &str) -> String {
    let h = scope
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    format!("5.{h:016x}.{}", uuid::Uuid::new_v4())
}

/// Creates the device record or updates an existing one for this enrollment.
/// Whether the deployment engine can have anything to do for the device as committed: IoT
/// Edge devices get module twins and statuses planned; any other device at most loses the
/// `configurations` statuses its twin holds (from a time it was an IoT Edge device). A device
/// that is neither is not handed to the engine, which would only read it back to find nothing
/// to do (a store read and a task wake-up per registration).
fn deployments_may_apply(rec: &DeviceRecord) -> bool {
    rec.device.is_edge() || rec.twin.configurations.is_some()
}

fn build_device(
    plan: &Plan,
    existing: Option<DeviceRecord>,
    reset_twin: bool,
    now: &str,
) -> DeviceRecord {
    let now = now.to_string();
    let (mut device, twin) = match existing {
        Some(rec) => (rec.device, rec.twin),
        None => (
            Device {
                device_id: plan.device_id.clone(),
                generation_id: Some(generation_id()),
                connection_state: Some("Disconnected".into()),
                status: Some("enabled".into()),
                connection_state_updated_time: Some(NEVER.into()),
                status_updated_time: Some(NEVER.into()),
                last_activity_time: Some(NEVER.into()),
                ..Default::default()
            },
            Twin::default(),
        ),
    };
    device.authentication = Some(AuthenticationMechanism::sas(
        plan.keys.0.clone(),
        plan.keys.1.clone(),
    ));
    device.capabilities = Some(Capabilities {
        iot_edge: plan.iot_edge,
    });
    if plan.iot_edge && device.device_scope.is_none() {
        device.device_scope = Some(format!(
            "ms-azure-iot-edge://{}-{}",
            device.device_id,
            device.generation_id.clone().unwrap_or_default()
        ));
    }
    let twin = if reset_twin || twin.device_id.is_empty() {
        initial_twin(&device, plan.initial_twin.as_ref(), &now)
    } else {
        twin
    };
    DeviceRecord { device, twin }
}

fn generation_id() -> String {
    let n = uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000_000_000;
    format!("{n:018}")
}

/// A fresh twin carrying the enrollment's initial tags and desired properties.
fn initial_twin(device: &Device, init: Option<&InitialTwin>, now: &str) -> Twin {
    let tags = init.and_then(|t| t.tags.clone()).filter(Value::is_object);
    let mut desired = init
        .and_then(|t| t.properties.as_ref())
        .and_then(|p| p.desired.clone())
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let desired_obj = desired.as_object_mut().expect("object");
    // The initial twin may carry TwinCollection bookkeeping (version, count, metadata): drop it.
    for k in ["$version", "$metadata", "version", "count", "metadata"] {
        desired_obj.remove(k);
    }
    desired_obj.insert(
        "$metadata".into(),
        json!({"$lastUpdated": now, "$lastUpdatedVersion": 1}),
    );
    desired_obj.insert("$version".into(), json!(1));
    Twin {
        device_id: device.device_id.clone(),
        status: device.status.clone(),
        status_update_time: Some(NEVER.into()),
        connection_state: Some("Disconnected".into()),
        last_activity_time: Some(NEVER.into()),
        authentication_type: Some("sas".into()),
        version: 1,
        tags,
        properties: TwinProperties {
            desired,
            reported: json!({"$metadata": {"$lastUpdated": now}, "$version": 1}),
        },
        capabilities: device.capabilities.clone(),
        device_scope: device.device_scope.clone(),
        ..Default::default()
    }
}
