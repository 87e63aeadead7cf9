//! CONNECT with a fresh SAS token, and the subscriptions backing the hub features.

use std::sync::Arc;

use fleethub_iot_protocol::hub;
use fleethub_iot_protocol::identity;
use fleethub_mqtt_codec::{QoS, SubscribeReturnCode};
use tokio::time::Instant;

use super::super::{DeviceError, Shared};
use super::{ConnState, Credentials, renewal_delay};
use crate::mqtt_client::{DEFAULT_CONNACK_TIMEOUT, MqttClient, MqttIncoming, MqttOptions};

/// Hub features backed by a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Feature {
    TwinResponses,
    Desired,
    Methods,
    CloudToDevice,
}

/// A connection that completed CONNACK.
pub(crate) struct Established {
    pub(super) mqtt: MqttClient,
    pub(super) incoming: MqttIncoming,
    /// When to reconnect with a fresh token (key credentials only).
    pub(super) renew_at: Option<Instant>,
}

impl Shared {
    fn filter(&self, f: Feature) -> String {
        match f {
            Feature::TwinResponses => hub::TWIN_RESPONSE_FILTER.to_string(),
            Feature::Desired => hub::DESIRED_FILTER.to_string(),
            Feature::Methods => hub::METHODS_FILTER.to_string(),
            Feature::CloudToDevice => hub::c2d_filter(&self.ids.device_id),
        }
    }

    fn password(&self) -> Result<String, DeviceError> {
        match &self.credentials {
            Credentials::Token(t) => Ok(t.clone()),
            Credentials::Key(key) => {
                let expiry =
                    fleethub_core::time_util::now_unix() + self.options.sas_ttl.as_secs().max(1);
                let resource = identity::hub_sas_resource(
                    &self.ids.host,
                    &self.ids.device_id,
                    self.ids.module_id.as_deref(),
                );
                Ok(fleethub_core::sas::build_token(
                    &resource, key, expiry, None,
                )?)
            }
        }
    }

    /// One connection attempt: transport, CONNECT with a fresh token, CONNACK.
    pub(crate) async fn connect_once(&self) -> Result<Established, DeviceError> {
        let password = self.password()?;
        let stream = (self.connector)().await?;
        let options = MqttOptions::new(identity::client_id(
            &self.ids.device_id,
            self.ids.module_id.as_deref(),
        ))
        .with_credentials(
            identity::hub_username(
                &self.ids.host,
                &self.ids.device_id,
                self.ids.module_id.as_deref(),
                hub::DEVICE_API_VERSION,
                Some(crate::USER_AGENT),
            ),
            password.into_bytes(),
        )
        .with_clean_session(false)
        .with_keep_alive(self.options.keep_alive)
        .with_connack_timeout(DEFAULT_CONNACK_TIMEOUT)
        .with_manual_acks(true);
        let connected_at = Instant::now();
        let (mqtt, incoming) = MqttClient::connect(stream, options)
            .await
            .map_err(DeviceError::from_mqtt)?;
        tracing::debug!(
            device = %self.ids.device_id,
            session_present = mqtt.session_present(),
            "connected to the hub"
        );
        let renew_at = self
            .credentials
            .renewable()
            .then(|| connected_at + renewal_delay(self.options.sas_ttl));
        Ok(Established {
            mqtt,
            incoming,
            renew_at,
        })
    }

    /// Re-subscribes when the hub did not keep the session, then publishes the connection.
    pub(crate) async fn activate(
        self: &Arc<Self>,
        est: &Established,
        generation: u64,
    ) -> Result<(), DeviceError> {
        let subscribed = self.subscribed.lock().await;
        if !est.mqtt.session_present() && !subscribed.is_empty() {
            let filters: Vec<(String, QoS)> = subscribed
                .iter()
                .map(|f| (self.filter(*f), QoS::AtLeastOnce))
                .collect();
            tracing::info!(
                device = %self.ids.device_id,
                ?filters,
                "the hub did not keep the MQTT session: subscribing again"
            );
            let codes = tokio::time::timeout(
                self.options.operation_timeout,
                est.mqtt.subscribe(filters.clone()),
            )
            .await
            .map_err(|_| DeviceError::Timeout {
                what: "re-subscribing",
                after: self.options.operation_timeout,
            })?
            .map_err(DeviceError::from_mqtt)?;
            for ((filter, _), code) in filters.iter().zip(codes) {
                if code == SubscribeReturnCode::Failure {
                    tracing::warn!(filter, "the hub refused a re-subscription");
                }
            }
        }
        self.set_state(ConnState::Connected {
            mqtt: est.mqtt.clone(),
            generation,
        });
        drop(subscribed);
        if generation > 1 {
            self.resync_desired();
        }
        Ok(())
    }

    /// Subscribes the feature's filter once for the client's lifetime.
    pub(crate) async fn ensure_subscribed(&self, feature: Feature) -> Result<(), DeviceError> {
        loop {
            let (mqtt, generation) = self.wait_connected().await?;
            let mut subscribed = self.subscribed.lock().await;
            if subscribed.contains(&feature) {
                return Ok(());
            }
            if self.generation() != Some(generation) {
                // Reconnected meanwhile: use the new connection.
                continue;
            }
            let filter = self.filter(feature);
            let codes = mqtt
                .subscribe(vec![(filter.clone(), QoS::AtLeastOnce)])
                .await
                .map_err(DeviceError::from_mqtt)?;
            return match codes.first() {
                Some(SubscribeReturnCode::Success(_)) => {
                    subscribed.insert(feature);
                    Ok(())
                }
                _ => Err(DeviceError::SubscribeRefused(filter)),
            };
        }
    }
}
