//! Records the store keeps that are more than one wire document.

use fleethub_api::{Device, DeviceRegistrationState, Twin};
use serde::{Deserialize, Serialize};

/// A DPS registration record plus the operation that produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationRecord {
    pub state: DeviceRegistrationState,
    pub operation_id: String,
}

/// A device identity with its twin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub device: Device,
    pub twin: Twin,
}

/// What a DPS assignment writes, atomically.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub registration: RegistrationRecord,
    /// Device to create or replace (`None` when the device is left as it is).
    pub device: Option<DeviceRecord>,
}
