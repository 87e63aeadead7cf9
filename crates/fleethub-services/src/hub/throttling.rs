//! The hub's throttles ([`crate::throttle`]) as the transports meet them: refuse an
//! operation with [`Error::Throttled`], or pace a connection's telemetry.

use super::{Error, Hub, HubPrincipal};
use crate::throttle::{Operation, Throttle};

impl Hub {
    /// Admits one operation of class `op` by or on `identity` (a device ID or
    /// `{deviceId}/{moduleId}`; `None` for operations on no identity, such as registry
    /// listings), or refuses it.
    ///
    /// # Errors
    /// [`Error::Throttled`] with the seconds after which to retry.
    pub fn admit(&self, op: Operation, identity: Option<&str>) -> Result<(), Error> {
        self.throttle.admit(op, identity).map_err(|t| {
            crate::metrics::inc(&self.metrics.throttled);
            Error::from(t)
        })
    }

    /// Admits one operation of class `op` by or on a device or module.
    ///
    /// # Errors
    /// [`Error::Throttled`] with the seconds after which to retry.
    pub fn admit_for(
        &self,
        op: Operation,
        device_id: &str,
        module_id: Option<&str>,
    ) -> Result<(), Error> {
        match module_id {
            None => self.admit(op, Some(device_id)),
            Some(m) => self.admit(op, Some(&super::presence::identity(device_id, Some(m)))),
        }
    }

    /// Returns once `messages` device-to-cloud messages of `p` may be stored: at once within
    /// the limits, otherwise when the device's and the hub's buckets allow. MQTT waits here
    /// before storing (and acknowledging) a run of publishes instead of refusing them.
    pub async fn pace_telemetry(&self, p: &HubPrincipal, messages: usize) {
        let identity = super::presence::identity(&p.device_id, p.module_id.as_deref());
        let waited = self
            .throttle
            .pace(Operation::DeviceToCloud, &identity, messages)
            .await;
        if !waited.is_zero() {
            crate::metrics::inc(&self.metrics.throttled);
        }
    }

    /// The throttles this hub applies.
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }
}
