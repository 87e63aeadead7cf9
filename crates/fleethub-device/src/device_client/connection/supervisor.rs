//! The supervisor task: dispatch of incoming packets, SAS renewal, reconnection with
//! back-off.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fleethub_iot_protocol::hub::{self, HubTopic};
use fleethub_mqtt_codec::{Publish, QoS};
use tokio::sync::watch;
use tokio::time::Instant;

use super::super::{Ack, DeviceError, Shared, Sinks, TwinReply, lock};
use super::{ConnState, Established};
use crate::mqtt_client::MqttClient;

/// Bound on the courtesy DISCONNECT before a renewal reconnect or on close.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a SAS renewal may wait for operations in flight (PUBACKs, twin responses).
const RENEWAL_GRACE: Duration = Duration::from_secs(10);

/// Why [`Shared::run_connection`] returned.
enum Outcome {
    Renew,
    Dropped(String),
    Close,
}

impl Shared {
    /// Fails the requests waiting for a response on the connection that ended.
    fn fail_pending(&self, reason: &str) {
        let waiting: Vec<_> = lock(&self.twin_pending).drain().collect();
        for (_, tx) in waiting {
            let _ = tx.send(Err(DeviceError::ConnectionLost(reason.to_string())));
        }
        // Unacknowledged C2D messages nobody took are redelivered on the next connection.
        lock(&self.sinks).c2d_backlog.clear();
    }

    /// Final state: every waiter and receiver ends.
    fn shut_down(&self, reason: String) {
        tracing::debug!(device = %self.ids.device_id, reason, "device client closed");
        self.fail_pending(&reason);
        self.set_state(ConnState::Closed { reason });
        *lock(&self.sinks) = Sinks::default();
    }

    /// Routes one incoming PUBLISH.
    fn route(&self, p: Publish, mqtt: &MqttClient) {
        let ack = || {
            if p.qos == QoS::AtLeastOnce {
                let _ = mqtt.ack(p.pkid);
            }
        };
        match hub::classify(&p.topic, &self.ids.device_id) {
            HubTopic::TwinResponse {
                status,
                rid,
                version,
            } => {
                ack();
                let waiter = lock(&self.twin_pending).remove(&rid);
                if let Some(tx) = waiter {
                    let _ = tx.send(Ok(TwinReply {
                        status,
                        version,
                        body: p.payload,
                    }));
                } else {
                    tracing::debug!(rid, "twin response for no pending request");
                }
            }
            HubTopic::DesiredPatch { version } => {
                ack();
                self.on_desired_patch(version, &p.payload);
            }
            HubTopic::MethodRequest { name, rid } => {
                ack();
                self.on_method_request(name, rid, &p.payload);
            }
            HubTopic::CloudToDevice { bag } => {
                let ack = (p.qos == QoS::AtLeastOnce).then(|| Ack {
                    mqtt: mqtt.clone(),
                    pkid: p.pkid,
                });
                self.on_c2d(&bag, p.payload, ack);
            }
            HubTopic::Other => {
                ack();
                tracing::debug!(topic = %p.topic, "ignoring a PUBLISH on an unknown topic");
            }
        }
    }

    /// Dispatches incoming packets until the connection drops, the token is due for
    /// renewal or the client closes.
    ///
    /// Renewal first drains: new operations wait (the state says "connecting"), operations
    /// already in flight get their PUBACK or response (at most [`RENEWAL_GRACE`]), then the
    /// client disconnects and reconnects with a fresh token.
    async fn run_connection(
        &self,
        est: &mut Established,
        close_rx: &mut watch::Receiver<bool>,
    ) -> Outcome {
        let mut drain_until: Option<Instant> = None;
        loop {
            if let Some(until) = drain_until
                && (self.in_flight.load(Ordering::SeqCst) == 0 || Instant::now() >= until)
            {
                return Outcome::Renew;
            }
            let renew_sleep = tokio::time::sleep_until(est.renew_at.unwrap_or_else(Instant::now));
            tokio::select! {
                p = est.incoming.recv() => {
                    if let Some(p) = p {
                        self.route(p, &est.mqtt);
                    } else {
                        let reason = est
                            .incoming
                            .close_reason()
                            .unwrap_or_else(|| "connection closed".into());
                        return Outcome::Dropped(reason);
                    }
                }
                () = renew_sleep, if est.renew_at.is_some() && drain_until.is_none() => {
                    self.set_state(ConnState::Connecting {
                        last_error: Some("renewing the SAS token".into()),
                    });
                    drain_until = Some(Instant::now() + RENEWAL_GRACE);
                }
                () = tokio::time::sleep(Duration::from_millis(20)), if drain_until.is_some() => {}
                _ = close_rx.wait_for(|closing| *closing) => return Outcome::Close,
            }
        }
    }
}

/// The background task owning the connection after the first CONNACK.
pub(crate) async fn supervise(
    shared: Arc<Shared>,
    mut est: Established,
    mut close_rx: watch::Receiver<bool>,
) {
    let policy = shared.options.reconnect.clone();
    let mut generation = 1u64;
    loop {
        let outcome = shared.run_connection(&mut est, &mut close_rx).await;
        let reason = match &outcome {
            Outcome::Renew => "reconnecting to renew the SAS token".to_string(),
            Outcome::Dropped(r) => r.clone(),
            Outcome::Close => "closed by the application".to_string(),
        };
        if !matches!(outcome, Outcome::Dropped(_)) {
            let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, est.mqtt.disconnect()).await;
        }
        shared.fail_pending(&reason);
        match outcome {
            Outcome::Close => return shared.shut_down(reason),
            Outcome::Dropped(_) if !policy.enabled => {
                return shared.shut_down(format!("connection lost: {reason}"));
            }
            Outcome::Dropped(_) => {
                tracing::warn!(device = %shared.ids.device_id, reason, "hub connection lost; reconnecting");
            }
            Outcome::Renew => {
                tracing::debug!(device = %shared.ids.device_id, "renewing the SAS token");
            }
        }
        shared.set_state(ConnState::Connecting {
            last_error: Some(reason),
        });

        // A renewal reconnects at once; a drop waits first (a server that kicks the
        // device, e.g. for a duplicate connection, is not hammered).
        let mut wait = matches!(outcome, Outcome::Dropped(_));
        let mut failures = 0u32;
        est = loop {
            if wait {
                let delay = policy.next_delay(failures);
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    _ = close_rx.wait_for(|c| *c) => {
                        return shared.shut_down("closed by the application".into());
                    }
                }
            }
            wait = true;
            let attempt = tokio::select! {
                r = shared.connect_once() => r,
                _ = close_rx.wait_for(|c| *c) => {
                    return shared.shut_down("closed by the application".into());
                }
            };
            let attempt = match attempt {
                Ok(e) => match shared.activate(&e, generation + 1).await {
                    Ok(()) => Ok(e),
                    Err(err) => {
                        let _ = tokio::time::timeout(DISCONNECT_TIMEOUT, e.mqtt.disconnect()).await;
                        Err(err)
                    }
                },
                Err(e) => Err(e),
            };
            match attempt {
                Ok(e) => break e,
                Err(e) if e.is_fatal() => {
                    return shared.shut_down(format!("reconnection refused: {e}"));
                }
                Err(e) => {
                    failures += 1;
                    tracing::warn!(device = %shared.ids.device_id, attempt = failures, "reconnection failed: {e}");
                    if policy.max_attempts.is_some_and(|max| failures >= max) {
                        return shared.shut_down(format!(
                            "gave up reconnecting after {failures} attempts: {e}"
                        ));
                    }
                    shared.set_state(ConnState::Connecting {
                        last_error: Some(e.to_string()),
                    });
                }
            }
        };
        generation += 1;
    }
}
