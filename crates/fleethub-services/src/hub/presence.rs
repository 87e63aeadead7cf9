//! Which identities are connected, and the channel that pushes events to each connection
//! (desired-property patches, method requests). One connection per identity.

use super::Hub;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

/// Something the hub pushes to a connected device.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// Body for `$iothub/twin/PATCH/properties/desired/?$version={v}` (includes `$version`).
    DesiredPatch(Value),
    /// A direct method call: `$iothub/methods/POST/{name}/?$rid={rid}`.
    MethodRequest {
        rid: String,
        name: String,
        payload: Vec<u8>,
    },
    /// New cloud-to-device messages are queued.
    C2dAvailable,
    /// The identity was disabled or deleted: the connection must close (the reason says why).
    Revoked(String),
}

/// Which features a connection has subscribed to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Features {
    pub desired: bool,
    pub methods: bool,
    pub c2d: bool,
}

pub(crate) struct Attached {
    pub conn: u64,
    pub tx: mpsc::Sender<HubEvent>,
    pub features: Features,
}

#[derive(Default)]
pub(crate) struct Presence {
    pub(crate) map: Mutex<HashMap<String, Attached>>,
    /// Connection-state changes and last activity per identity, kept after it disconnects
    /// (in memory: after a restart the registry shows the stored values again).
    activity: Mutex<HashMap<String, Activity>>,
}

/// When an identity last changed connection state and last did something, in unix milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Activity {
    pub state_updated_ms: i64,
    pub last_activity_ms: i64,
}

impl Activity {
    /// `connectionStateUpdatedTime` as the registry shows it.
    pub fn state_updated_utc(&self) -> String {
        format_ms(self.state_updated_ms)
    }

    /// `lastActivityTime` as the registry shows it.
    pub fn last_activity_utc(&self) -> String {
        format_ms(self.last_activity_ms)
    }
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(fleethub_api::time::format_utc)
        .unwrap_or_default()
}

pub(crate) fn identity(device_id: &str, module_id: Option<&str>) -> String {
    match module_id {
        Some(m) => format!("{device_id}/{m}"),
        None => device_id.to_string(),
    }
}

const EVENT_QUEUE: usize = 256;

impl Hub {
    /// Registers a live connection; returns the receiver of its events.
    pub fn attach(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        conn: u64,
    ) -> mpsc::Receiver<HubEvent> {
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let id = identity(device_id, module_id);
        let now = self.clock.unix_ms();
        self.presence.activity.lock().expect("activity").insert(
            id.clone(),
            Activity {
                state_updated_ms: now,
                last_activity_ms: now,
            },
        );
        self.presence.map.lock().expect("presence").insert(
            id,
            Attached {
                conn,
                tx,
                features: Features::default(),
            },
        );
        rx
    }

    /// Unregisters a connection (only if it is still the registered one).
    pub fn detach(&self, device_id: &str, module_id: Option<&str>, conn: u64) {
        let id = identity(device_id, module_id);
        let mut map = self.presence.map.lock().expect("presence");
        if map.get(&id).is_some_and(|a| a.conn == conn) {
            map.remove(&id);
            drop(map);
            if let Some(a) = self
                .presence
                .activity
                .lock()
                .expect("activity")
                .get_mut(&id)
            {
                a.state_updated_ms = self.clock.unix_ms();
            }
        }
    }

    /// Closes the live connections of a device and of its modules (it was disabled or deleted).
    pub(crate) fn revoke_device(&self, device_id: &str, reason: &str) {
        let prefix = format!("{device_id}/");
        let map = self.presence.map.lock().expect("presence");
        for (id, a) in map.iter() {
            if id == device_id || id.starts_with(&prefix) {
                tracing::info!(identity = %id, "closing the connection: {reason}");
                let _ = a.tx.try_send(HubEvent::Revoked(reason.to_string()));
            }
        }
    }

    /// Closes the live connection of one module (it was deleted).
    pub(crate) fn revoke_module(&self, device_id: &str, module_id: &str, reason: &str) {
        let id = identity(device_id, Some(module_id));
        if let Some(a) = self.presence.map.lock().expect("presence").get(&id) {
            tracing::info!(identity = %id, "closing the connection: {reason}");
            let _ = a.tx.try_send(HubEvent::Revoked(reason.to_string()));
        }
    }

    /// Records that an identity did something (telemetry, twin or method traffic).
    pub fn touch(&self, device_id: &str, module_id: Option<&str>) {
        let now = self.clock.unix_ms();
        self.presence
            .activity
            .lock()
            .expect("activity")
            .entry(identity(device_id, module_id))
            .or_default()
            .last_activity_ms = now;
    }

    /// Fills an identity's live `connectionState`, `connectionStateUpdatedTime` and
    /// `lastActivityTime` (registry views of devices and modules).
    pub(crate) fn fill_live_state(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        state: &mut Option<String>,
        state_updated: &mut Option<String>,
        last_activity: &mut Option<String>,
    ) {
        let on = self.is_connected(device_id, module_id);
        *state = Some(if on { "Connected" } else { "Disconnected" }.into());
        if let Some(a) = self.activity(device_id, module_id) {
            if a.state_updated_ms > 0 {
                *state_updated = Some(a.state_updated_utc());
            }
            *last_activity = Some(a.last_activity_utc());
        }
    }

    /// Connection-state change and last activity seen since this process started.
    pub fn activity(&self, device_id: &str, module_id: Option<&str>) -> Option<Activity> {
        self.presence
            .activity
            .lock()
            .expect("activity")
            .get(&identity(device_id, module_id))
            .copied()
    }

    /// Forgets an identity's activity (it was deleted).
    pub(crate) fn forget_activity(&self, device_id: &str, module_id: Option<&str>) {
        self.presence
            .activity
            .lock()
            .expect("activity")
            .remove(&identity(device_id, module_id));
    }

    /// Records what a connection subscribed to.
    pub fn set_features(&self, device_id: &str, module_id: Option<&str>, conn: u64, f: Features) {
        let id = identity(device_id, module_id);
        if let Some(a) = self.presence.map.lock().expect("presence").get_mut(&id)
            && a.conn == conn
        {
            a.features = f;
        }
    }

    pub fn is_connected(&self, device_id: &str, module_id: Option<&str>) -> bool {
        self.presence
            .map
            .lock()
            .expect("presence")
            .contains_key(&identity(device_id, module_id))
    }

    pub fn connected_count(&self) -> usize {
        self.presence.map.lock().expect("presence").len()
    }

    /// Pushes an event if the identity is connected and subscribed to that feature.
    pub(crate) fn notify(&self, device_id: &str, module_id: Option<&str>, ev: HubEvent) -> bool {
        let map = self.presence.map.lock().expect("presence");
        let Some(a) = map.get(&identity(device_id, module_id)) else {
            return false;
        };
        let wanted = match &ev {
            HubEvent::DesiredPatch(_) => a.features.desired,
            HubEvent::MethodRequest { .. } => a.features.methods,
            HubEvent::C2dAvailable => a.features.c2d,
            HubEvent::Revoked(_) => true,
        };
        if !wanted {
            tracing::debug!(identity = %identity(device_id, module_id), event = ?ev, "hub event not pushed: the connection has not subscribed to it");
            return false;
        }
        match a.tx.try_send(ev) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(identity = %identity(device_id, module_id), "hub event not pushed: {e}");
                false
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_ms_gives_azure_utc() {
        assert_eq!(format_ms(1_700_000_000_123), "2023-11-14T22:13:20.1230000Z");
    }
}
