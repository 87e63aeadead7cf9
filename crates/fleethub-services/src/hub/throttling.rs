//! The hub's throttles ([`crate::throttle`]) as the transports meet them: refuse an
//! operation with [`Error::Throttled`], or pace a connection's telemetry.

use super::{Error, Hub, HubPrincipal};
use crate::throttle::{Operation, Throttle};
use std::borrow::Cow;
use std::pin::Pin;
use std::time::Duration;

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

    /// Paces `messages` device-to-cloud messages of `p`: `None` when they may be stored at
    /// once (the usual case: nothing to wait for, nothing allocated), else the wait, which
    /// ends when the device's and then the hub's buckets allow. MQTT awaits it before storing
    /// (and acknowledging) a run of publishes instead of refusing them.
    pub fn pace_telemetry(
        &self,
        p: &HubPrincipal,
        messages: usize,
    ) -> Option<Pin<Box<dyn Future<Output = ()> + Send + '_>>> {
        const OP: Operation = Operation::DeviceToCloud;
        let identity: Cow<'_, str> = match &p.module_id {
            None => Cow::Borrowed(&p.device_id),
            Some(m) => Cow::Owned(super::presence::identity(&p.device_id, Some(m))),
        };
        let device_wait = self.throttle.pace_device(OP, &identity, messages);
        let global_wait = if device_wait.is_zero() {
            self.throttle.pace_global(OP, messages)
        } else {
            Duration::ZERO
        };
        if device_wait.is_zero() && global_wait.is_zero() {
            return None;
        }
        crate::metrics::inc(&self.metrics.throttled);
        Some(Box::pin(async move {
            if device_wait.is_zero() {
                tokio::time::sleep(global_wait).await;
                return;
            }
            // Global tokens are taken only once the device's own wait is over, so that a
            // device over its quota takes them at its own rate.
            tokio::time::sleep(device_wait).await;
            let global_wait = self.throttle.pace_global(OP, messages);
            if !global_wait.is_zero() {
                tokio::time::sleep(global_wait).await;
            }
        }))
    }

    /// The throttles this hub applies.
    pub fn throttle(&self) -> &Throttle {
        &self.throttle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::HubConfig;
    use crate::throttle::{Limit, ThrottleConfig};
    use crate::{AuthContext, Shared};
    use fleethub_api::{AuthenticationMechanism, Device, Module};
    use fleethub_store::sqlite::SqliteStore;
    use std::sync::Arc;

    async fn principal(hub: &Hub, device: &str, module: Option<&str>, key: &str) -> HubPrincipal {
        let resource =
            fleethub_iot_protocol::identity::hub_sas_resource("hub.local", device, module);
        let token =
            fleethub_core::sas::build_token(&resource, key, hub.clock.unix() + 3600, None).unwrap();
        let ctx = AuthContext {
            transport: "mqtt",
            peer: None,
        };
        hub.authenticate_device(device, module, &token, ctx)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn telemetry_over_the_device_quota_waits_its_turn() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        // 10 messages per second, a bucket of one message.
        let limits = ThrottleConfig {
            device_to_cloud: Limit::new(10.0, 0.0, 0.1),
            ..Default::default()
        };
        let hub = Hub::new(
            &Shared::new(store).with_throttle(limits),
            HubConfig {
                host: "hub.local".into(),
                token_skew_secs: 30,
            },
            vec![],
        );
        let key = fleethub_core::keys::generate_key();
        let auth = AuthenticationMechanism::sas(key.clone(), fleethub_core::keys::generate_key());
        let device = Device {
            device_id: "d1".into(),
            authentication: Some(auth.clone()),
            ..Default::default()
        };
        hub.put_device("d1", device, None).await.unwrap();
        let module = Module {
            authentication: Some(auth),
            ..Default::default()
        };
        hub.put_module("d1", "m1", module, None).await.unwrap();
        let d1 = principal(&hub, "d1", None, &key).await;
        let m1 = principal(&hub, "d1", Some("m1"), &key).await;

        assert!(hub.pace_telemetry(&d1, 1).is_none(), "within the burst");
        // The module is an identity of its own.
        assert!(hub.pace_telemetry(&m1, 1).is_none());
        let start = std::time::Instant::now();
        let wait = hub.pace_telemetry(&d1, 3).expect("over the quota");
        wait.await;
        let waited = start.elapsed();
        assert!(
            waited >= Duration::from_millis(290) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        let throttled = hub
            .metrics
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(throttled, 1);
    }
}
