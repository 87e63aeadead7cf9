//! DPS wire types: enrollments, groups, registration states and operation statuses
//! (azure-rest-api-specs DeviceProvisioningServices 2021-10-01, service.json and device.json).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Keys of a symmetric-key attestation. Empty strings mean "generate one".
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyAttestation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secondary_key: Option<String>,
}

/// `attestation`: `type` is `none|tpm|x509|symmetricKey`; only symmetric keys are supported.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AttestationMechanism {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyAttestation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x509: Option<Value>,
}

impl AttestationMechanism {
    pub fn symmetric(primary: String, secondary: String) -> Self {
        AttestationMechanism {
            kind: "symmetricKey".into(),
            symmetric_key: Some(SymmetricKeyAttestation {
                primary_key: Some(primary),
                secondary_key: Some(secondary),
            }),
            tpm: None,
            x509: None,
        }
    }

    /// (primary, secondary) keys when this is a symmetric-key attestation.
    pub fn keys(&self) -> Option<(&str, &str)> {
        let sk = self.symmetric_key.as_ref()?;
        Some((
            sk.primary_key.as_deref().unwrap_or(""),
            sk.secondary_key.as_deref().unwrap_or(""),
        ))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceCapabilities {
    #[serde(default)]
    pub iot_edge: bool,
}

/// `initialTwin`: `{tags, properties: {desired}}`; both free-form twin collections.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InitialTwin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub properties: Option<InitialTwinProperties>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InitialTwinProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired: Option<Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ReprovisionPolicy {
    #[serde(default = "yes")]
    pub update_hub_assignment: bool,
    #[serde(default = "yes")]
    pub migrate_device_data: bool,
}

fn yes() -> bool {
    true
}

impl Default for ReprovisionPolicy {
    fn default() -> Self {
        ReprovisionPolicy {
            update_hub_assignment: true,
            migrate_device_data: true,
        }
    }
}

/// Individual enrollment (service.json `IndividualEnrollment`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IndividualEnrollment {
    pub registration_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    pub attestation: AttestationMechanism,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hubs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional_device_information: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationState>,
}

/// Enrollment group (service.json `EnrollmentGroup`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentGroup {
    pub enrollment_group_id: String,
    pub attestation: AttestationMechanism,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capabilities: Option<DeviceCapabilities>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hub_host_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_twin: Option<InitialTwin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioning_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reprovision_policy: Option<ReprovisionPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocation_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iot_hubs: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_allocation_definition: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<String>,
}

/// Is this provisioning status "enabled" (the default when absent)?
pub fn status_enabled(s: &Option<String>) -> bool {
    !matches!(s.as_deref(), Some(v) if v.eq_ignore_ascii_case("disabled"))
}

/// `symmetricKey` section of a registration result: names the group for group devices.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SymmetricKeyRegistrationResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
}

/// Registration record (`DeviceRegistrationState` / device.json `DeviceRegistrationResult`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistrationState {
    pub registration_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_date_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_hub: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub substatus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_updated_date_time_utc: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symmetric_key: Option<SymmetricKeyRegistrationResult>,
    /// Which group the device came through (service-side record only; Azure exposes it via
    /// `symmetricKey.enrollmentGroupId` on the device side).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
}

/// Body of the device's register request (`DeviceRegistration`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeviceRegistration {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<Value>,
}

/// Response of register / operation-status (`RegistrationOperationStatus`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RegistrationOperationStatus {
    pub operation_id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_state: Option<DeviceRegistrationState>,
}

/// Body of `POST /enrollments/query` and friends.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct QuerySpecification {
    #[serde(default)]
    pub query: String,
}

/// `POST /enrollments` bulk operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperation {
    pub mode: String,
    pub enrollments: Vec<IndividualEnrollment>,
}

/// `POST /enrollmentGroups` bulk operation.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentGroupOperation {
    pub mode: String,
    pub enrollment_groups: Vec<EnrollmentGroup>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrollment_group_id: Option<String>,
    pub error_code: u32,
    pub error_status: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BulkEnrollmentOperationResult {
    pub is_successful: bool,
    pub errors: Vec<BulkEnrollmentOperationError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enrollment_round_trip_keeps_unknown_optional_fields() {
        let j = r#"{"registrationId":"dev-01","attestation":{"type":"symmetricKey","symmetricKey":{"primaryKey":"a","secondaryKey":"b"}},
            "capabilities":{"iotEdge":true},"initialTwin":{"tags":{"env":"prod"},"properties":{"desired":{"fw":"1.0"}}},
            "allocationPolicy":"hashed","customAllocationDefinition":{"webhookUrl":"https://x","apiVersion":"2021-10-01"}}"#;
        let e: IndividualEnrollment = serde_json::from_str(j).unwrap();
        assert_eq!(e.attestation.keys(), Some(("a", "b")));
        assert!(e.capabilities.as_ref().unwrap().iot_edge);
        let back = serde_json::to_value(&e).unwrap();
        assert_eq!(
            back["customAllocationDefinition"]["apiVersion"],
            "2021-10-01"
        );
        assert_eq!(back["initialTwin"]["properties"]["desired"]["fw"], "1.0");
    }

    #[test]
    fn status_default_enabled() {
        assert!(status_enabled(&None));
        assert!(status_enabled(&Some("enabled".into())));
        assert!(!status_enabled(&Some("Disabled".into())));
    }
}
