//! The agent's device-level connection: besides `$edgeAgent`, the agent connects to the hub
//! as the device itself (its own credentials from provisioning), so the hub shows the edge
//! device `Connected`. The SDK keeps the connection up (reconnects with back-off, renews the
//! SAS token); when the SDK gives up (the hub refused a reconnection) the link connects
//! again itself, which tells a credential rejection (CONNACK 4/5) from other failures. A
//! rejection ends [`run`] with [`AgentExit::Rejected`], like the `$edgeAgent` connection.

use std::sync::{Arc, Mutex};

use fleethub_device::{ConnectionStatus, DeviceClient, DeviceClientOptions, DeviceError};
use tokio::sync::watch;

use super::AgentExit;
use crate::config::Config;
use crate::provisioning::{DeviceIdentity, retry_delay};

/// What the management API shows about the device connection.
pub use super::link::LinkStatus as DeviceLinkStatus;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn set_disconnected(status: &Mutex<DeviceLinkStatus>, error: Option<String>) {
    lock(status).set_down(chrono::Utc::now(), error);
}

/// The device connection string (holds the key: never logged).
fn connection_string(device: &DeviceIdentity) -> String {
    format!(
        "HostName={};DeviceId={};SharedAccessKey={}",
        device.hub_hostname, device.device_id, device.device_key
    )
}

async fn connect(config: &Config, device: &DeviceIdentity) -> Result<DeviceClient, DeviceError> {
    let tls = crate::provisioning::tls_config(config).map_err(DeviceError::Config)?;
    let options = DeviceClientOptions::default()
        .with_port(config.hub.mqtt_port)
        .with_tls(tls);
    DeviceClient::from_connection_string(&connection_string(device), options).await
}

/// Keeps the device connected until `shutdown`, or until the hub rejects the device's
/// credentials ([`AgentExit::Rejected`]).
pub async fn run(
    config: Config,
    device: DeviceIdentity,
    status: Arc<Mutex<DeviceLinkStatus>>,
    mut shutdown: watch::Receiver<bool>,
) -> AgentExit {
    let mut attempt = 0u32;
    loop {
        let connected = tokio::select! {
            r = connect(&config, &device) => r,
            _ = shutdown.changed() => return AgentExit::Shutdown,
        };
        let client = match connected {
            Ok(c) => c,
            Err(e) if e.is_unauthorized() => {
                let m = e.to_string();
                tracing::warn!(device_id = device.device_id, error = %m, "the hub refused the device connection");
                set_disconnected(&status, Some(m.clone()));
                return AgentExit::Rejected(m);
            }
            Err(e) => {
                let delay = retry_delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(error = %e, retry_in = ?delay, "cannot connect to the hub as the device");
                set_disconnected(&status, Some(e.to_string()));
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    _ = shutdown.changed() => return AgentExit::Shutdown,
                }
            }
        };
        attempt = 0;
        tracing::info!(
            device_id = device.device_id,
            hub = device.hub_hostname,
            "connected to the hub as the device"
        );
        let end = follow(&client, &status, &mut shutdown).await;
        client.close().await;
        match end {
            None => {
                set_disconnected(&status, None);
                return AgentExit::Shutdown;
            }
            // The SDK gave up: connect again here to learn whether the hub rejects the
            // credentials (a typed error) or something else is wrong (back-off).
            Some(reason) => {
                tracing::warn!(error = %reason, "device connection closed; connecting again");
                set_disconnected(&status, Some(reason));
            }
        }
    }
}

/// Keeps `status` true to the client's connection ([`super::link::monitor`]) until shutdown
/// (`None`) or until the client closes for good (`Some(reason)`).
async fn follow(
    client: &DeviceClient,
    status: &Mutex<DeviceLinkStatus>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<String> {
    let closed = async {
        let mut changes = client.status_changes();
        loop {
            if let ConnectionStatus::Closed { reason } = changes.borrow_and_update().clone() {
                return Some(reason);
            }
            if changes.changed().await.is_err() {
                return Some("the device client stopped".to_string());
            }
        }
    };
    tokio::select! {
        end = closed => end,
        () = super::link::monitor(client, status) => unreachable!("monitor never returns"),
        _ = shutdown.changed() => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_says_why_it_is_not_connected() {
        let mut s = DeviceLinkStatus::default();
        assert_eq!(s.summary(), "not connected");
        s.last_error = Some("connection refused".into());
        assert_eq!(s.summary(), "not connected: connection refused");
        s.connected = true;
        s.connected_since_utc = Some("2026-01-01T00:00:00+00:00".into());
        assert_eq!(s.summary(), "connected since 2026-01-01T00:00:00+00:00");
    }

    #[test]
    fn connection_string_is_a_device_connection_string() {
        let d = DeviceIdentity {
            device_id: "edge-1".into(),
            hub_hostname: "hub.example".into(),
            device_key: "a2V5".into(),
            origin: "manual".into(),
        };
        let cs = fleethub_core::connection_string::ConnectionString::parse(&connection_string(&d))
            .unwrap();
        assert_eq!(cs.device_id.as_deref(), Some("edge-1"));
        assert_eq!(cs.module_id, None);
    }
}
