//! The throttle settings (`[throttle]` in the server config): one [`Limit`] per operation
//! class. A table in the file only needs the keys it changes; the others keep the class's
//! default.

use super::Operation;
use serde::{Deserialize, Serialize};

/// The rate limits of one operation class. A rate of 0 turns that bucket off.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct Limit {
    /// Operations per second each device (or module) identity may do.
    pub per_device: f64,
    /// Operations per second of all identities together.
    pub global: f64,
    /// How many seconds' worth of operations may come at once (the bucket size is
    /// `rate * burst_secs`, at least one operation).
    pub burst_secs: f64,
}

impl Limit {
    pub const fn new(per_device: f64, global: f64, burst_secs: f64) -> Limit {
        Limit {
            per_device,
            global,
            burst_secs,
        }
    }
}

/// The throttles of the hub and DPS. The defaults are above what one fleethub instance serves
/// (docs/configuration.md, "Throttling"), so they protect the server from a runaway client
/// without limiting normal use; set lower values to emulate an Azure tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ThrottleFile", rename_all = "snake_case")]
pub struct ThrottleConfig {
    /// Device-to-cloud telemetry sends (MQTT: the PUBACK is delayed; HTTPS: 429).
    pub device_to_cloud: Limit,
    /// Twin reads (device `GET` over MQTT, service `GET /twins/..`).
    pub twin_reads: Limit,
    /// Twin updates (reported patches from devices, desired/tags updates from services).
    pub twin_updates: Limit,
    /// Direct method invocations (per target device).
    pub direct_methods: Limit,
    /// Identity registry operations (devices and modules: create, read, update, delete, list,
    /// bulk); only the global rate applies.
    pub registry_operations: Limit,
    /// DPS register requests (per registration ID).
    pub dps_registrations: Limit,
    /// DPS operation-status polls (per registration ID).
    pub dps_operation_status: Limit,
    /// Most identities whose per-device bucket is remembered, per operation class. Idle buckets
    /// (full again) are forgotten first; they hold no information.
    pub max_tracked_identities: usize,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            device_to_cloud: Limit::new(1_000.0, 100_000.0, 1.0),
            twin_reads: Limit::new(1_000.0, 10_000.0, 1.0),
            twin_updates: Limit::new(1_000.0, 10_000.0, 1.0),
            direct_methods: Limit::new(1_000.0, 10_000.0, 1.0),
            registry_operations: Limit::new(0.0, 5_000.0, 1.0),
            dps_registrations: Limit::new(10.0, 5_000.0, 1.0),
            dps_operation_status: Limit::new(10.0, 20_000.0, 1.0),
            max_tracked_identities: 100_000,
        }
    }
}

impl ThrottleConfig {
    /// The limit of one class.
    pub fn limit(&self, op: Operation) -> Limit {
        match op {
            Operation::DeviceToCloud => self.device_to_cloud,
            Operation::TwinRead => self.twin_reads,
            Operation::TwinUpdate => self.twin_updates,
            Operation::DirectMethod => self.direct_methods,
            Operation::Registry => self.registry_operations,
            Operation::DpsRegistration => self.dps_registrations,
            Operation::DpsOperationStatus => self.dps_operation_status,
        }
    }

    pub(super) fn limit_mut(&mut self, op: Operation) -> &mut Limit {
        match op {
            Operation::DeviceToCloud => &mut self.device_to_cloud,
            Operation::TwinRead => &mut self.twin_reads,
            Operation::TwinUpdate => &mut self.twin_updates,
            Operation::DirectMethod => &mut self.direct_methods,
            Operation::Registry => &mut self.registry_operations,
            Operation::DpsRegistration => &mut self.dps_registrations,
            Operation::DpsOperationStatus => &mut self.dps_operation_status,
        }
    }

    /// Checks every value; the message names the key.
    ///
    /// # Errors
    /// A negative or non-finite rate, a `burst_secs` that is not positive, or
    /// `max_tracked_identities` of 0.
    pub fn validate(&self) -> Result<(), String> {
        for op in Operation::ALL {
            let l = self.limit(op);
            let key = op.config_key();
            for (name, v) in [("per_device", l.per_device), ("global", l.global)] {
                if !v.is_finite() || v < 0.0 {
                    return Err(format!(
                        "throttle.{key}.{name} must be a number of operations per second, 0 or more (0 = no limit), not {v}"
                    ));
                }
            }
            if !l.burst_secs.is_finite() || l.burst_secs <= 0.0 || l.burst_secs > 3600.0 {
                return Err(format!(
                    "throttle.{key}.burst_secs must be more than 0 and at most 3600 seconds, not {}",
                    l.burst_secs
                ));
            }
        }
        if self.max_tracked_identities == 0 {
            return Err("throttle.max_tracked_identities must be at least 1".into());
        }
        Ok(())
    }
}

/// One class's table as written in the file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitFile {
    per_device: Option<f64>,
    global: Option<f64>,
    burst_secs: Option<f64>,
}

/// `[throttle]` as written in the file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThrottleFile {
    device_to_cloud: Option<LimitFile>,
    twin_reads: Option<LimitFile>,
    twin_updates: Option<LimitFile>,
    direct_methods: Option<LimitFile>,
    registry_operations: Option<LimitFile>,
    dps_registrations: Option<LimitFile>,
    dps_operation_status: Option<LimitFile>,
    max_tracked_identities: Option<usize>,
}

impl TryFrom<ThrottleFile> for ThrottleConfig {
    type Error = String;

    fn try_from(f: ThrottleFile) -> Result<Self, String> {
        let mut c = ThrottleConfig::default();
        let tables = [
            (Operation::DeviceToCloud, f.device_to_cloud),
            (Operation::TwinRead, f.twin_reads),
            (Operation::TwinUpdate, f.twin_updates),
            (Operation::DirectMethod, f.direct_methods),
            (Operation::Registry, f.registry_operations),
            (Operation::DpsRegistration, f.dps_registrations),
            (Operation::DpsOperationStatus, f.dps_operation_status),
        ];
        for (op, table) in tables {
            let Some(t) = table else { continue };
            let l = c.limit_mut(op);
            l.per_device = t.per_device.unwrap_or(l.per_device);
            l.global = t.global.unwrap_or(l.global);
            l.burst_secs = t.burst_secs.unwrap_or(l.burst_secs);
        }
        if let Some(n) = f.max_tracked_identities {
            c.max_tracked_identities = n;
        }
        c.validate()?;
        Ok(c)
    }
}
