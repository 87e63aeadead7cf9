//! What Azure's tools export, read into fleethub's records (no IO):
//! - `az iot dps enrollment list` / `enrollment show --show-keys`: individual enrollments,
//! - `az iot dps enrollment-group list` / `enrollment-group show --show-keys`: groups,
//! - `az iot hub device-identity export` (the blob `devices.txt`: one JSON device per line,
//!   `id`, `authentication.symmetricKey`, `status`, `capabilities`, `tags`, `properties.desired`)
//!   and `az iot hub device-identity list` / `show` (`deviceId`).
//!
//! The field names are Azure's camelCase (docs/protocol-notes.md, "Migration from Azure: az
//! export shapes"). Azure hub assignments (`iotHubHostName`, `iotHubs`, allocation policies)
//! name Azure hubs and are dropped: devices go to this server's hub.

use fleethub_api::dps::{
    AttestationMechanism, DeviceCapabilities, EnrollmentGroup, IndividualEnrollment, InitialTwin,
    InitialTwinProperties,
};
use fleethub_api::hub::{AuthenticationMechanism, Capabilities, Device};
use serde_json::{Map, Value};

/// One record read from a file, ready to create, or why it cannot be.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Parsed<T> {
    /// The record and notes about what was not carried over.
    Ok(T, Vec<String>),
    /// Cannot be imported: no usable id, not symmetric-key, ...
    Invalid { id: String, reason: String },
    /// Symmetric-key, but the export holds no keys.
    NoKeys { id: String, hint: &'static str },
}

/// A device with the twin parts an export carries (tags, desired properties).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeviceImport {
    pub device: Device,
    /// `{"tags": .., "properties": {"desired": ..}}`, `None` when the export has neither.
    pub twin_patch: Option<Value>,
}

/// Every JSON object in `text`: a JSON array, one object, or objects one per line (or simply
/// one after another). A value that is neither object nor array is an error with its position.
pub(crate) fn objects(text: &str) -> Result<Vec<Value>, String> {
    let text = text.trim_start_matches('\u{feff}');
    let mut out = Vec::new();
    let stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    for (n, v) in stream.enumerate() {
        let v = v.map_err(|e| format!("not JSON: {e}"))?;
        match v {
            Value::Array(items) => out.extend(items),
            Value::Object(_) => out.push(v),
            other => return Err(format!("value #{} is not an object: {other}", n + 1)),
        }
    }
    Ok(out)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

/// A twin collection as az prints it: plain, or the SDK model form
/// `{"additionalProperties": {..}}`; `$metadata`/`$version` removed. `None` when empty.
fn collection(v: Option<&Value>) -> Option<Value> {
    let Some(Value::Object(map)) = v else {
        return None;
    };
    let map = match map.get("additionalProperties") {
        Some(Value::Object(inner)) => inner,
        _ => map,
    };
    let clean: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    (!clean.is_empty()).then_some(Value::Object(clean))
}

fn initial_twin(v: &Value) -> Option<InitialTwin> {
    let tags = collection(v.pointer("/initialTwin/tags"));
    let desired = collection(v.pointer("/initialTwin/properties/desired"));
    (tags.is_some() || desired.is_some()).then(|| InitialTwin {
        tags,
        properties: desired.map(|d| InitialTwinProperties { desired: Some(d) }),
    })
}

fn edge(v: &Value) -> Option<bool> {
    v.pointer("/capabilities/iotEdge").and_then(Value::as_bool)
}

/// Notes for the Azure hub assignments that are dropped.
fn dropped_allocation(v: &Value) -> Vec<String> {
    let mut notes = Vec::new();
    if let Some(h) = str_at(v, "/iotHubHostName") {
        notes.push(format!(
            "iotHubHostName {h} dropped (devices go to this server's hub)"
        ));
    }
    if v.get("iotHubs")
        .is_some_and(|h| h.as_array().is_some_and(|a| !a.is_empty()))
    {
        notes.push("iotHubs dropped (devices go to this server's hub)".to_string());
    }
    if let Some(p) = str_at(v, "/allocationPolicy").filter(|p| *p != "hashed") {
        notes.push(format!("allocationPolicy {p} dropped"));
    }
    notes
}

/// The symmetric keys of a DPS attestation, or why there are none.
fn attestation_keys(v: &Value, id: &str) -> Result<AttestationMechanism, Parsed<()>> {
    let kind = str_at(v, "/attestation/type").unwrap_or("");
    if !kind.eq_ignore_ascii_case("symmetricKey") {
        return Err(Parsed::Invalid {
            id: id.to_string(),
            reason: if kind.is_empty() {
                "no attestation".to_string()
            } else {
                format!("attestation '{kind}' is not supported (symmetric keys only)")
            },
        });
    }
    match (
        str_at(v, "/attestation/symmetricKey/primaryKey"),
        str_at(v, "/attestation/symmetricKey/secondaryKey"),
    ) {
        (Some(p), s) => Ok(AttestationMechanism::symmetric(
            p.to_string(),
            s.unwrap_or(p).to_string(),
        )),
        (None, _) => Err(Parsed::NoKeys {
            id: id.to_string(),
            hint: "export with keys: `az iot dps enrollment show --enrollment-id ID --show-keys` (or enrollment-group show --show-keys) per entry",
        }),
    }
}

fn retype<T>(p: Parsed<()>) -> Parsed<T> {
    match p {
        Parsed::Invalid { id, reason } => Parsed::Invalid { id, reason },
        Parsed::NoKeys { id, hint } => Parsed::NoKeys { id, hint },
        Parsed::Ok((), _) => unreachable!("only failures are retyped"),
    }
}

/// One item of `az iot dps enrollment list`.
pub(crate) fn enrollment(v: &Value, n: usize) -> Parsed<IndividualEnrollment> {
    let Some(id) = str_at(v, "/registrationId") else {
        return Parsed::Invalid {
            id: format!("#{n}"),
            reason: "no registrationId".into(),
        };
    };
    let attestation = match attestation_keys(v, id) {
        Ok(a) => a,
        Err(p) => return retype(p),
    };
    let e = IndividualEnrollment {
        registration_id: id.to_string(),
        device_id: str_at(v, "/deviceId").map(String::from),
        attestation,
        capabilities: edge(v).map(|iot_edge| DeviceCapabilities { iot_edge }),
        iot_hub_host_name: None,
        initial_twin: initial_twin(v),
        etag: None,
        provisioning_status: str_at(v, "/provisioningStatus").map(String::from),
        reprovision_policy: v
            .get("reprovisionPolicy")
            .and_then(|r| serde_json::from_value(r.clone()).ok()),
        allocation_policy: None,
        iot_hubs: None,
        custom_allocation_definition: None,
        optional_device_information: None,
        created_date_time_utc: None,
        last_updated_date_time_utc: None,
        registration_state: None,
    };
    Parsed::Ok(e, dropped_allocation(v))
}

/// One item of `az iot dps enrollment-group list`.
pub(crate) fn group(v: &Value, n: usize) -> Parsed<EnrollmentGroup> {
    let Some(id) = str_at(v, "/enrollmentGroupId") else {
        return Parsed::Invalid {
            id: format!("#{n}"),
            reason: "no enrollmentGroupId".into(),
        };
    };
    let attestation = match attestation_keys(v, id) {
        Ok(a) => a,
        Err(p) => return retype(p),
    };
    let g = EnrollmentGroup {
        enrollment_group_id: id.to_string(),
        attestation,
        capabilities: edge(v).map(|iot_edge| DeviceCapabilities { iot_edge }),
        iot_hub_host_name: None,
        initial_twin: initial_twin(v),
        etag: None,
        provisioning_status: str_at(v, "/provisioningStatus").map(String::from),
        reprovision_policy: v
            .get("reprovisionPolicy")
            .and_then(|r| serde_json::from_value(r.clone()).ok()),
        allocation_policy: None,
        iot_hubs: None,
        custom_allocation_definition: None,
        created_date_time_utc: None,
        last_updated_date_time_utc: None,
    };
    Parsed::Ok(g, dropped_allocation(v))
}

/// One device of a registry export line or of `az iot hub device-identity list|show`.
pub(crate) fn device(v: &Value, n: usize) -> Parsed<DeviceImport> {
    let Some(id) = str_at(v, "/id").or_else(|| str_at(v, "/deviceId")) else {
        return Parsed::Invalid {
            id: format!("#{n}"),
            reason: "no id or deviceId".into(),
        };
    };
    let kind = str_at(v, "/authentication/type")
        .or_else(|| str_at(v, "/authenticationType"))
        .unwrap_or("sas");
    if !kind.eq_ignore_ascii_case("sas") {
        return Parsed::Invalid {
            id: id.to_string(),
            reason: format!("authentication '{kind}' is not supported (symmetric keys only)"),
        };
    }
    let Some(primary) = str_at(v, "/authentication/symmetricKey/primaryKey") else {
        return Parsed::NoKeys {
            id: id.to_string(),
            hint: "export with keys: `az iot hub device-identity export` (the blob's devices.txt holds them) or `az iot hub device-identity show -d ID` per device",
        };
    };
    let secondary = str_at(v, "/authentication/symmetricKey/secondaryKey").unwrap_or(primary);
    let mut notes = Vec::new();
    if v.get("parentScopes")
        .is_some_and(|p| p.as_array().is_some_and(|a| !a.is_empty()))
        || str_at(v, "/deviceScope").is_some()
    {
        notes.push("deviceScope/parentScopes dropped (set the parent again)".to_string());
    }
    let device = Device {
        device_id: id.to_string(),
        generation_id: None,
        etag: None,
        connection_state: None,
        status: str_at(v, "/status").map(String::from),
        status_reason: str_at(v, "/statusReason").map(String::from),
        connection_state_updated_time: None,
        status_updated_time: None,
        last_activity_time: None,
        cloud_to_device_message_count: 0,
        authentication: Some(AuthenticationMechanism::sas(
            primary.to_string(),
            secondary.to_string(),
        )),
        capabilities: edge(v).map(|iot_edge| Capabilities { iot_edge }),
        device_scope: None,
        parent_scopes: None,
    };
    let tags = collection(v.get("tags"));
    let desired = collection(v.pointer("/properties/desired"));
    let mut patch = Map::new();
    if let Some(t) = tags {
        patch.insert("tags".into(), t);
    }
    if let Some(d) = desired {
        patch.insert("properties".into(), serde_json::json!({ "desired": d }));
    }
    Parsed::Ok(
        DeviceImport {
            device,
            twin_patch: (!patch.is_empty()).then_some(Value::Object(patch)),
        },
        notes,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn arrays_single_objects_and_json_lines() {
        assert_eq!(objects("[{\"a\":1},{\"a\":2}]").unwrap().len(), 2);
        assert_eq!(
            objects("\u{feff}{\"a\":1}\n{\"a\":2}\n\n{\"a\":3}")
                .unwrap()
                .len(),
            3
        );
        assert_eq!(objects("{\"a\":1}").unwrap().len(), 1);
        assert!(
            objects("[1]").unwrap().iter().all(Value::is_number),
            "checked per entry later"
        );
        assert!(objects("3").unwrap_err().contains("not an object"));
        assert!(objects("{\"a\":").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn sdk_model_collections_are_unwrapped() {
        let v = json!({
            "registrationId": "r",
            "attestation": {"type": "symmetricKey", "symmetricKey": {"primaryKey": "k1"}},
            "initialTwin": {"tags": {"additionalProperties": {"a": 1}},
                            "properties": {"desired": {"b": 2, "$version": 4}}}
        });
        let Parsed::Ok(e, notes) = enrollment(&v, 1) else {
            panic!("parsed")
        };
        assert!(notes.is_empty());
        assert_eq!(
            e.attestation.keys(),
            Some(("k1", "k1")),
            "a missing secondary key is the primary"
        );
        let twin = e.initial_twin.unwrap();
        assert_eq!(twin.tags, Some(json!({"a": 1})));
        assert_eq!(twin.properties.unwrap().desired, Some(json!({"b": 2})));
    }

    #[test]
    fn entries_without_ids_or_keys() {
        assert!(matches!(
            group(&json!({"attestation": {"type": "symmetricKey"}}), 3),
            Parsed::Invalid { id, .. } if id == "#3"
        ));
        assert!(matches!(
            device(&json!({"deviceId": "d", "authentication": {"type": "sas"}}), 1),
            Parsed::NoKeys { id, .. } if id == "d"
        ));
        assert!(matches!(
            device(&json!({"id": "d", "authentication": {"type": "certificateAuthority"}}), 1),
            Parsed::Invalid { reason, .. } if reason.contains("certificateAuthority")
        ));
    }
}
