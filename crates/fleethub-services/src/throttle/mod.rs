//! Overload throttles modelled on Azure IoT Hub's and DPS's (docs/protocol-notes.md,
//! "Throttling"): a token bucket per operation class for all identities together, and one per
//! device (or module, or registration) identity, configured by [`ThrottleConfig`].
//!
//! The services decide, the transports map: an operation is either *refused* with
//! [`Throttled`] (the services turn it into `hub::Error::Throttled` / `dps::Error::Throttled`,
//! which HTTPS answers with 429 + `Retry-After` and MQTT with status 429 on the response
//! topic), or *paced* ([`Throttle::pace`]): taken in advance, with the time the caller waits
//! before going on (MQTT telemetry: the PUBACK is delayed, nothing is dropped).
//!
//! A device's own bucket is asked first, so a device over its quota does not use up the
//! global one; when the global bucket refuses, the device's token is given back.

mod bucket;
mod config;
#[cfg(test)]
mod tests;

pub use config::{Limit, ThrottleConfig};

use crate::Clock;
use bucket::{DeviceBuckets, GlobalBucket, Mode, Shape, Take};
use std::time::Duration;

/// The classes of operations that are throttled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    DeviceToCloud,
    TwinRead,
    TwinUpdate,
    DirectMethod,
    Registry,
    DpsRegistration,
    DpsOperationStatus,
}

impl Operation {
    pub const ALL: [Operation; 7] = [
        Operation::DeviceToCloud,
        Operation::TwinRead,
        Operation::TwinUpdate,
        Operation::DirectMethod,
        Operation::Registry,
        Operation::DpsRegistration,
        Operation::DpsOperationStatus,
    ];

    /// The class's table in `[throttle]`.
    pub fn config_key(self) -> &'static str {
        match self {
            Operation::DeviceToCloud => "device_to_cloud",
            Operation::TwinRead => "twin_reads",
            Operation::TwinUpdate => "twin_updates",
            Operation::DirectMethod => "direct_methods",
            Operation::Registry => "registry_operations",
            Operation::DpsRegistration => "dps_registrations",
            Operation::DpsOperationStatus => "dps_operation_status",
        }
    }

    /// The class in words, for messages (`twin reads are throttled`).
    pub fn describe(self) -> &'static str {
        match self {
            Operation::DeviceToCloud => "device-to-cloud sends",
            Operation::TwinRead => "twin reads",
            Operation::TwinUpdate => "twin updates",
            Operation::DirectMethod => "direct method invocations",
            Operation::Registry => "identity registry operations",
            Operation::DpsRegistration => "device registrations",
            Operation::DpsOperationStatus => "registration status polls",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// An operation refused by a throttle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{op:?} throttled: retry after {retry_after:?}")]
pub struct Throttled {
    pub op: Operation,
    /// When the bucket has room again.
    pub retry_after: Duration,
}

impl Throttled {
    /// `retry_after` in whole seconds, at least 1 (the unit of `Retry-After`).
    pub fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs()
            + u64::from(self.retry_after.subsec_nanos() > 0 || self.retry_after.is_zero())
    }
}

struct Class {
    global: Option<GlobalBucket>,
    per_device: Option<DeviceBuckets>,
}

/// The buckets of every class. Cheap on the hot path: the global bucket is an atomic, a
/// device's bucket one short lock on one shard of its class.
pub struct Throttle {
    clock: Clock,
    config: ThrottleConfig,
    classes: Vec<Class>,
}

impl std::fmt::Debug for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Throttle")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(ThrottleConfig::default(), Clock::system())
    }
}

impl Throttle {
    pub fn new(config: ThrottleConfig, clock: Clock) -> Throttle {
        let classes = Operation::ALL
            .iter()
            .map(|op| {
                let l = config.limit(*op);
                Class {
                    global: Shape::new(l.global, l.burst_secs).map(GlobalBucket::new),
                    per_device: Shape::new(l.per_device, l.burst_secs)
                        .map(|s| DeviceBuckets::new(s, config.max_tracked_identities)),
                }
            })
            .collect();
        Throttle {
            clock,
            config,
            classes,
        }
    }

    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp_nanos_opt().unwrap_or(i64::MAX)
    }

    /// Admits one operation of `op` by (or on) `identity` (`None`: only the global bucket
    /// applies), or refuses it without using up any token.
    ///
    /// # Errors
    /// [`Throttled`] with the time after which the same request would be admitted.
    pub fn admit(&self, op: Operation, identity: Option<&str>) -> Result<(), Throttled> {
        let class = &self.classes[op.index()];
        let now = self.now();
        let refused = |wait: i64| Throttled {
            op,
            retry_after: nanos(wait),
        };
        let device = match (&class.per_device, identity) {
            (Some(buckets), Some(id)) => match buckets.take(id, now, 1, Mode::Refuse) {
                Take::Refused(wait) => return Err(refused(wait)),
                Take::Now | Take::After(_) => Some((buckets, id)),
            },
            _ => None,
        };
        if let Some(global) = &class.global
            && let Take::Refused(wait) = global.take(now, 1, Mode::Refuse)
        {
            if let Some((buckets, id)) = device {
                buckets.give_back(id, now, 1);
            }
            return Err(refused(wait));
        }
        Ok(())
    }

    /// Takes `n` operations of `op` by `identity` in advance and says how long the caller must
    /// wait before carrying them out: first the device's own bucket, then (after that wait)
    /// the global one, so that a device over its quota takes global tokens only at its own
    /// rate. Call [`Throttle::pace_global`] after waiting the returned time
    /// (`Hub::pace_telemetry` does both).
    pub fn pace_device(&self, op: Operation, identity: &str, n: usize) -> Duration {
        let class = &self.classes[op.index()];
        match &class.per_device {
            Some(b) => waited(b.take(identity, self.now(), count(n), Mode::Pace)),
            None => Duration::ZERO,
        }
    }

    /// The global half of pacing (see [`Throttle::pace_device`]).
    pub fn pace_global(&self, op: Operation, n: usize) -> Duration {
        let class = &self.classes[op.index()];
        match &class.global {
            Some(b) => waited(b.take(self.now(), count(n), Mode::Pace)),
            None => Duration::ZERO,
        }
    }

    /// Identities with a per-device bucket remembered in `op`'s class.
    pub fn tracked_identities(&self, op: Operation) -> usize {
        self.classes[op.index()]
            .per_device
            .as_ref()
            .map_or(0, DeviceBuckets::len)
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn nanos(n: i64) -> Duration {
    Duration::from_nanos(u64::try_from(n).unwrap_or(0))
}

fn waited(t: Take) -> Duration {
    match t {
        Take::Now => Duration::ZERO,
        Take::After(w) | Take::Refused(w) => nanos(w),
    }
}
