//! Upstream: one IoT hub connection per module identity (so the hub records the sending
//! module), opened on demand with that module's key, and the forwarders that drain the
//! queue's `upstream/{module}` endpoints in order.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleethub_device::{
    ClientTlsConfig, ConnectionStatus, DeviceClient, DeviceClientOptions, DeviceError,
    ReconnectPolicy,
};
use tokio::sync::Mutex as AsyncMutex;

use crate::hub::{Hub, lock, upstream_endpoint};
use crate::queue::QueueError;
use crate::{CredentialSource, UpstreamOptions};

/// Rows read per forwarder round.
const FORWARD_BATCH: usize = 64;
/// Bound on one upstream operation (connection wait included).
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("no keys for module '{0}' (not a module identity of this device?)")]
    NoKeys(String),
    #[error("invalid upstream TLS configuration: {0}")]
    Tls(String),
    #[error("upstream connection as '{module}' failed: {source}")]
    Device {
        module: String,
        #[source]
        source: DeviceError,
    },
}

type Slot = Arc<AsyncMutex<Option<DeviceClient>>>;

/// Lazily opened upstream connections, one per module identity.
pub struct Upstream {
    hub_hostname: String,
    device_id: String,
    options: DeviceClientOptions,
    creds: Arc<dyn CredentialSource>,
    clients: Mutex<HashMap<String, Slot>>,
}

/// Exponential back-off between upstream attempts (0.5 s doubling to 30 s).
#[derive(Debug)]
pub(crate) struct Backoff(u32);

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff(0)
    }

    pub(crate) fn reset(&mut self) {
        self.0 = 0;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = Duration::from_millis(500).saturating_mul(1 << self.0.min(6));
        self.0 += 1;
        d.min(Duration::from_secs(30))
    }
}

impl Upstream {
    pub fn new(
        device_id: &str,
        opts: &UpstreamOptions,
        creds: Arc<dyn CredentialSource>,
    ) -> Result<Upstream, UpstreamError> {
        let mut options = DeviceClientOptions::default()
            .with_port(opts.mqtt_port)
            .with_operation_timeout(OPERATION_TIMEOUT)
            .with_reconnect(ReconnectPolicy {
                initial_delay: Duration::from_millis(500),
                max_delay: Duration::from_secs(30),
                ..ReconnectPolicy::default()
            });
        if let Some(ca) = &opts.ca_pem_path {
            options = options.with_tls(
                ClientTlsConfig::with_ca_file(ca).map_err(|e| UpstreamError::Tls(e.to_string()))?,
            );
        }
        if let Some(addr) = &opts.connect_address {
            options = options.with_connect_address(addr.clone());
        }
        Ok(Upstream {
            hub_hostname: opts.hub_hostname.clone(),
            device_id: device_id.to_string(),
            options,
            creds,
            clients: Mutex::default(),
        })
    }

    fn slot(&self, module: &str) -> Slot {
        lock(&self.clients)
            .entry(module.to_string())
            .or_default()
            .clone()
    }

    /// The connection of `module`, opened (with its primary key, then its secondary key)
    /// when there is none or the previous one was closed.
    pub async fn client(&self, module: &str) -> Result<DeviceClient, UpstreamError> {
        let slot = self.slot(module);
        let mut guard = slot.lock().await;
        if let Some(c) = guard.as_ref()
            && !matches!(c.status(), ConnectionStatus::Closed { .. })
        {
            return Ok(c.clone());
        }
        let keys = self
            .creds
            .module_keys(module)
            .ok_or_else(|| UpstreamError::NoKeys(module.to_string()))?;
        let mut last = None;
        for key in [&keys.primary, &keys.secondary] {
            if key.is_empty() {
                continue;
            }
            let cs = format!(
                "HostName={};DeviceId={};ModuleId={module};SharedAccessKey={key}",
                self.hub_hostname, self.device_id
            );
            match DeviceClient::from_connection_string(&cs, self.options.clone()).await {
                Ok(c) => {
                    tracing::info!(
                        module,
                        "edge hub: upstream connection as '{module}' established"
                    );
                    *guard = Some(c.clone());
                    return Ok(c);
                }
                Err(e) if e.is_unauthorized() => last = Some(e),
                Err(e) => {
                    last = Some(e);
                    break;
                }
            }
        }
        Err(UpstreamError::Device {
            module: module.to_string(),
            source: last.unwrap_or_else(|| DeviceError::Config("the module has no keys".into())),
        })
    }

    /// Whether `module`'s upstream connection is currently up.
    pub fn is_connected(&self, module: &str) -> bool {
        let slot = lock(&self.clients).get(module).cloned();
        slot.and_then(|s| {
            s.try_lock().ok().and_then(|g| {
                g.as_ref()
                    .map(|c| c.status() == ConnectionStatus::Connected)
            })
        })
        .unwrap_or(false)
    }

    /// Drops a connection so that the next [`Upstream::client`] opens a new one.
    pub async fn invalidate(&self, module: &str) {
        let slot = self.slot(module);
        if let Some(c) = slot.lock().await.take() {
            c.close().await;
        }
    }

    pub async fn close_all(&self) {
        let slots: Vec<Slot> = lock(&self.clients).values().cloned().collect();
        for s in slots {
            if let Some(c) = s.lock().await.take() {
                c.close().await;
            }
        }
    }
}

/// Waits `d`, or less when the hub shuts down; `false` on shutdown.
pub(crate) async fn pause(hub: &Hub, d: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => !hub.is_shutting_down(),
        () = hub.stopped() => false,
    }
}

/// Drains `upstream/{module}` in order: each message is sent as `module` and deleted only
/// after the hub's PUBACK. Failed sends are retried (same message, back-off) until they
/// succeed or the message expires.
pub(crate) async fn forward(hub: Arc<Hub>, module: String) {
    let endpoint = upstream_endpoint(&module);
    let mut changes = hub.queue.changes();
    let mut backoff = Backoff::new();
    while !hub.is_shutting_down() {
        changes.borrow_and_update();
        let rows = match hub.queue.peek(&endpoint, 0, FORWARD_BATCH).await {
            Ok(rows) => rows,
            Err(QueueError::Closed) => return,
            Err(e) => {
                tracing::error!("edge hub: cannot read the queue: {e}");
                hub.set_error(e.to_string());
                if !pause(&hub, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        if rows.is_empty() {
            tokio::select! {
                _ = changes.changed() => {}
                () = tokio::time::sleep(Duration::from_secs(5)) => {}
                () = hub.stopped() => return,
            }
            continue;
        }
        for row in rows {
            loop {
                if row.expired() {
                    tracing::warn!(
                        module,
                        "edge hub: message expired before it could be sent upstream; dropped"
                    );
                    hub.queue.count_expired(1);
                    let _ = hub.queue.remove(&endpoint, vec![row.seq]).await;
                    break;
                }
                let result = match hub.upstream.client(&module).await {
                    Ok(client) => {
                        client
                            .send_event(row.msg.to_upstream())
                            .await
                            .map_err(|source| UpstreamError::Device {
                                module: module.clone(),
                                source,
                            })
                    }
                    Err(e) => Err(e),
                };
                match result {
                    Ok(()) => {
                        backoff.reset();
                        if let Err(e) = hub.queue.remove(&endpoint, vec![row.seq]).await {
                            tracing::error!("edge hub: cannot delete a forwarded message: {e}");
                        }
                        break;
                    }
                    Err(UpstreamError::Device {
                        source: DeviceError::MessageTooLarge { size, max },
                        ..
                    }) => {
                        tracing::error!(
                            module,
                            "edge hub: message of {size} bytes exceeds the hub's {max}-byte limit; dropped"
                        );
                        let _ = hub.queue.remove(&endpoint, vec![row.seq]).await;
                        break;
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(
                            module,
                            "edge hub: upstream send failed ({e}); retrying in {delay:?}"
                        );
                        hub.set_error(e.to_string());
                        if let UpstreamError::Device { source, .. } = &e
                            && matches!(
                                source,
                                DeviceError::Closed(_) | DeviceError::Refused { .. }
                            )
                        {
                            hub.upstream.invalidate(&module).await;
                        }
                        if !pause(&hub, delay).await {
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let mut b = Backoff::new();
        let d: Vec<u64> = (0..9).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(
            d,
            vec![500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(500));
    }
}
