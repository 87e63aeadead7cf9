//! Error bodies in the two shapes Azure uses.

use serde::{Deserialize, Serialize};

/// DPS error body (`ProvisioningServiceErrorDetails`): `errorCode` is `{httpStatus}{3 digits}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DpsErrorBody {
    pub error_code: u32,
    pub tracking_id: String,
    pub message: String,
    pub timestamp_utc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
}

impl DpsErrorBody {
    pub fn new(error_code: u32, message: impl Into<String>) -> Self {
        DpsErrorBody {
            error_code,
            tracking_id: uuid::Uuid::new_v4().to_string(),
            message: message.into(),
            timestamp_utc: crate::time::now_utc(),
            info: None,
        }
    }
}

/// IoT Hub (and DPS service API) error body:
/// `{"Message":"ErrorCode:{Name};{description}","ExceptionMessage":"Tracking ID:{id}-TimeStamp:{ts}"}`.
/// Node's SDK only understands this form; we add the DPS-style fields too so every client finds
/// what it looks for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HubErrorBody {
    #[serde(rename = "Message")]
    pub message: String,
    #[serde(rename = "ExceptionMessage")]
    pub exception_message: String,
    /// The description alone (the Python service SDK reads `message`).
    #[serde(rename = "message", default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "errorCode", default, skip_serializing_if = "Option::is_none")]
    pub error_code: Option<u32>,
    #[serde(
        rename = "trackingId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tracking_id: Option<String>,
    #[serde(
        rename = "timestampUtc",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub timestamp_utc: Option<String>,
}

impl HubErrorBody {
    /// `name` is the Azure error-code name (e.g. `DeviceNotFound`), `code` the 6-digit number.
    pub fn new(name: &str, code: u32, description: &str) -> Self {
        let tracking = uuid::Uuid::new_v4().simple().to_string();
        let ts = crate::time::now_utc();
        HubErrorBody {
            message: format!("ErrorCode:{name};{description}"),
            exception_message: format!("Tracking ID:{tracking}-TimeStamp:{ts}"),
            description: Some(description.to_string()),
            error_code: Some(code),
            tracking_id: Some(tracking),
            timestamp_utc: Some(ts),
        }
    }

    /// Extracts (`name`, description) from the `ErrorCode:X;msg` form.
    pub fn parts(&self) -> (Option<&str>, &str) {
        match self.message.strip_prefix("ErrorCode:") {
            Some(rest) => match rest.split_once(';') {
                Some((n, d)) => (Some(n), d),
                None => (Some(rest), ""),
            },
            None => (None, &self.message),
        }
    }
}
