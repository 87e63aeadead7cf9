//! Which identities are connected, and the channel that pushes events to each connection
//! (desired-property patches, method requests). One connection per identity.
//!
//! Revocation (identity disabled or deleted, authenticating key regenerated) does not travel
//! through the bounded event queue, which is full when a device stops reading its socket: each
//! connection also holds a [`Revocation`] that is set at once and never blocks.

use super::Hub;
use super::auth::{AuthKey, HubPrincipal};
use super::event_queue::{EventReceiver, EventSender, event_queue};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Something the hub pushes to a connected device.
#[derive(Debug, Clone, PartialEq)]
pub enum HubEvent {
    /// Body for `$iothub/twin/PATCH/properties/desired/?$version={v}` (includes `$version`).
    DesiredPatch(Value),
    /// A direct method call: `$iothub/methods/POST/{name}/?$rid={rid}`. Boxed: every live
    /// connection's event queue allocates room for 32 events up front, each as large as the
    /// largest variant.
    MethodRequest(Box<MethodCall>),
    /// New cloud-to-device messages are queued.
    C2dAvailable,
    /// The identity was disabled or deleted: the connection must close (the reason says why).
    /// Not queued by the hub (see [`Revocation`]); the connection loop hands it to its session.
    Revoked(String),
}

/// A direct method call on its way to a device ([`HubEvent::MethodRequest`]).
#[derive(Debug, Clone, PartialEq)]
pub struct MethodCall {
    pub rid: String,
    pub name: String,
    pub payload: Vec<u8>,
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
    pub tx: EventSender,
    pub features: Features,
    /// Set (once) when the connection must close; never blocks.
    pub revoke: watch::Sender<Option<String>>,
    /// The credential that authenticated the connection (`None`: not known).
    pub key: Option<AuthKey>,
    /// When it attached (unix milliseconds).
    pub since_ms: i64,
}

/// What a live connection receives from the hub: queued events and the out-of-band
/// revocation.
pub struct Attachment {
    pub events: EventReceiver,
    pub revocation: Revocation,
}

/// Tells a connection that it must close (its identity was disabled or deleted, or the key it
/// authenticated with was regenerated). Unlike events it cannot be lost to a full queue.
#[derive(Debug, Clone)]
pub struct Revocation(watch::Receiver<Option<String>>);

impl Revocation {
    /// Why the connection was revoked, once it is.
    pub fn reason(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// Waits until the connection is revoked and returns why. Never returns if the hub
    /// forgets the connection without revoking it.
    pub async fn revoked(&mut self) -> String {
        let reason = match self.0.wait_for(Option::is_some).await {
            Ok(r) => r.clone(),
            Err(_) => None,
        };
        match reason {
            Some(r) => r,
            None => std::future::pending().await,
        }
    }
}

#[derive(Default)]
pub(crate) struct Presence {
    pub(crate) map: Mutex<HashMap<String, Attached>>,
    /// Connection-state changes and last activity per identity, kept after it disconnects
    /// (in memory: after a restart the registry shows the stored values again).
    activity: Mutex<HashMap<String, Activity>>,
    /// Counts revocations; an authentication notes it before reading the registry.
    epoch: AtomicU64,
    /// Recent revocations by identity (locked after `map`), so that a connection authenticated
    /// before a revocation but attached after it is revoked too.
    recent: Mutex<HashMap<String, Vec<Revoked>>>,
}

/// A recent revocation (kept [`RECENT_REVOCATIONS`]).
struct Revoked {
    epoch: u64,
    at: Instant,
    /// Also the identity's modules (the device was disabled or deleted).
    modules: bool,
    /// Only connections authenticated with these keys; `None`: all.
    keys: Option<Vec<AuthKey>>,
    reason: String,
}

/// How long a revocation is remembered for connections still between authentication and
/// attachment (far longer than that takes).
const RECENT_REVOCATIONS: Duration = Duration::from_mins(1);

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
    pub fn attach(&self, device_id: &str, module_id: Option<&str>, conn: u64) -> EventReceiver {
        self.attach_with(device_id, module_id, conn, None, u64::MAX)
            .events
    }

    /// Registers the live connection of an authenticated principal: its events, and its
    /// revocation when the identity is disabled or deleted or `p.key` is regenerated.
    pub fn attach_principal(&self, p: &HubPrincipal, conn: u64) -> Attachment {
        self.attach_with(
            &p.device_id,
            p.module_id.as_deref(),
            conn,
            Some(p.key.clone()),
            p.auth_epoch,
        )
    }

    /// The revocation counter (see [`HubPrincipal`]).
    pub(crate) fn revocation_epoch(&self) -> u64 {
        self.presence.epoch.load(Ordering::SeqCst)
    }

    /// Why a connection of `id` authenticated at `epoch` with `key` was revoked since.
    /// Called with the presence map locked.
    fn revoked_since(
        &self,
        device_id: &str,
        id: &str,
        key: Option<&AuthKey>,
        epoch: u64,
    ) -> Option<String> {
        let recent = self.presence.recent.lock().expect("recent revocations");
        let mine = recent.get(id).into_iter().flatten();
        let device = (id != device_id)
            .then(|| recent.get(device_id))
            .flatten()
            .into_iter()
            .flatten()
            .filter(|r| r.modules);
        mine.chain(device)
            .filter(|r| r.epoch > epoch)
            .find(|r| match (&r.keys, key) {
                (None, _) => true,
                (Some(keys), Some(k)) => keys.contains(k),
                (Some(_), None) => false,
            })
            .map(|r| r.reason.clone())
    }

    /// Remembers a revocation (called with the presence map locked).
    fn remember_revocation(
        &self,
        id: &str,
        modules: bool,
        keys: Option<Vec<AuthKey>>,
        reason: &str,
    ) {
        let epoch = self.presence.epoch.fetch_add(1, Ordering::SeqCst) + 1;
        let now = Instant::now();
        let mut recent = self.presence.recent.lock().expect("recent revocations");
        recent.retain(|_, list| {
            list.retain(|r| now.duration_since(r.at) < RECENT_REVOCATIONS);
            !list.is_empty()
        });
        recent.entry(id.to_string()).or_default().push(Revoked {
            epoch,
            at: now,
            modules,
            keys,
            reason: reason.to_string(),
        });
    }

    fn attach_with(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        conn: u64,
        key: Option<AuthKey>,
        auth_epoch: u64,
    ) -> Attachment {
        let (tx, rx) = event_queue(EVENT_QUEUE);
        let (revoke, revoked) = watch::channel(None);
        let id = identity(device_id, module_id);
        let now = self.clock.unix_ms();
        self.presence.activity.lock().expect("activity").insert(
            id.clone(),
            Activity {
                state_updated_ms: now,
                last_activity_ms: now,
            },
        );
        let mut map = self.presence.map.lock().expect("presence");
        if let Some(reason) = self.revoked_since(device_id, &id, key.as_ref(), auth_epoch) {
            tracing::info!(identity = %id, "closing the connection: {reason}");
            revoke.send_replace(Some(reason));
        }
        map.insert(
            id,
            Attached {
                conn,
                tx,
                features: Features::default(),
                revoke,
                key,
                since_ms: now,
            },
        );
        drop(map);
        self.cluster_claim(device_id, module_id, now);
        Attachment {
            events: rx,
            revocation: Revocation(revoked),
        }
    }

    /// Unregisters a connection (only if it is still the registered one).
    pub fn detach(&self, device_id: &str, module_id: Option<&str>, conn: u64) {
        let id = identity(device_id, module_id);
        let mut map = self.presence.map.lock().expect("presence");
        if map.get(&id).is_some_and(|a| a.conn == conn) {
            map.remove(&id);
            drop(map);
            let now = self.clock.unix_ms();
            self.cluster_release(&id, now);
            if let Some(a) = self
                .presence
                .activity
                .lock()
                .expect("activity")
                .get_mut(&id)
            {
                a.state_updated_ms = now;
            }
        }
    }

    /// [`Hub::revoke_device`] on this node.
    pub(crate) fn revoke_device_here(&self, device_id: &str, reason: &str) {
        let prefix = format!("{device_id}/");
        let map = self.presence.map.lock().expect("presence");
        self.remember_revocation(device_id, true, None, reason);
        for (id, a) in map.iter() {
            if id == device_id || id.starts_with(&prefix) {
                revoke(id, a, reason);
            }
        }
    }

    /// [`Hub::revoke_module`] on this node.
    pub(crate) fn revoke_module_here(&self, device_id: &str, module_id: &str, reason: &str) {
        let id = identity(device_id, Some(module_id));
        let map = self.presence.map.lock().expect("presence");
        self.remember_revocation(&id, false, None, reason);
        if let Some(a) = map.get(&id) {
            revoke(&id, a, reason);
        }
    }

    /// [`Hub::revoke_keys`] on this node.
    pub(crate) fn revoke_keys_here(
        &self,
        device_id: &str,
        module_id: Option<&str>,
        keys: &[AuthKey],
        reason: &str,
    ) {
        if keys.is_empty() {
            return;
        }
        let id = identity(device_id, module_id);
        let map = self.presence.map.lock().expect("presence");
        self.remember_revocation(&id, false, Some(keys.to_vec()), reason);
        if let Some(a) = map.get(&id)
            && a.key.as_ref().is_some_and(|k| keys.contains(k))
        {
            revoke(&id, a, reason);
        }
    }

    /// Records that an identity did something (telemetry, twin or method traffic).
    pub fn touch(&self, device_id: &str, module_id: Option<&str>) {
        let now = self.clock.unix_ms();
        match module_id {
            None => self.touch_identity(device_id, now),
            Some(_) => self.touch_identity(&identity(device_id, module_id), now),
        }
    }

    /// Records activity of `id` at `now`; allocates its key only the first time (this runs
    /// for every telemetry message).
    fn touch_identity(&self, id: &str, now: i64) {
        self.cluster_touch(id, now);
        let mut activity = self.presence.activity.lock().expect("activity");
        match activity.get_mut(id) {
            Some(a) => a.last_activity_ms = now,
            None => {
                activity.entry(id.to_string()).or_default().last_activity_ms = now;
            }
        }
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
        let id = identity(device_id, module_id);
        self.cluster_forget(&id);
        self.presence.activity.lock().expect("activity").remove(&id);
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
        if !super::cluster_presence::wanted(a.features, &ev) {
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

pub(super) fn revoke(identity: &str, a: &Attached, reason: &str) {
    tracing::info!(identity, "closing the connection: {reason}");
    a.revoke.send_replace(Some(reason.to_string()));
}

/// Which of an identity's own keys an update changed (`old`: before, `new`: after).
pub(crate) fn changed_keys(
    old: Option<&fleethub_api::AuthenticationMechanism>,
    new: Option<&fleethub_api::AuthenticationMechanism>,
) -> Vec<AuthKey> {
    if old.is_none() {
        // A new identity: no connection can have authenticated with its keys.
        return Vec::new();
    }
    let sk = |a: Option<&fleethub_api::AuthenticationMechanism>| {
        a.and_then(|a| a.symmetric_key.clone()).unwrap_or_default()
    };
    let (old, new) = (sk(old), sk(new));
    let mut out = Vec::new();
    if old.primary_key != new.primary_key {
        out.push(AuthKey::Primary);
    }
    if old.secondary_key != new.secondary_key {
        out.push(AuthKey::Secondary);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::AuthContext;
    use crate::hub::HubConfig;
    use fleethub_api::{AuthenticationMechanism, Device, Module};
    use fleethub_store::sqlite::SqliteStore;
    use std::sync::Arc;

    fn hub(dir: &tempfile::TempDir) -> Hub {
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        Hub::new(
            &crate::Shared::new(store),
            HubConfig {
                host: "hub.local".into(),
                token_skew_secs: 30,
            },
            vec![],
        )
    }

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

    fn keys(a: Option<&AuthenticationMechanism>) -> (String, String) {
        let sk = a.unwrap().symmetric_key.clone().unwrap();
        (sk.primary_key.unwrap(), sk.secondary_key.unwrap())
    }

    fn with_keys(primary: &str, secondary: &str) -> AuthenticationMechanism {
        AuthenticationMechanism::sas(primary.to_string(), secondary.to_string())
    }

    #[tokio::test]
    async fn disabling_revokes_even_when_the_event_queue_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(&dir);
        let d = hub.put_device("d1", Device::default(), None).await.unwrap();
        let (primary, _) = keys(d.authentication.as_ref());
        let p = principal(&hub, "d1", None, &primary).await;
        assert_eq!(p.key, AuthKey::Primary);
        let mut a = hub.attach_principal(&p, 1);
        let all = Features {
            desired: true,
            methods: true,
            c2d: true,
        };
        hub.set_features("d1", None, 1, all);
        // The connection reads nothing: its queue fills up.
        while hub.notify("d1", None, HubEvent::C2dAvailable) {}
        assert_eq!(a.revocation.reason(), None);
        let mut disabled = hub.get_device("d1").await.unwrap();
        disabled.status = Some("disabled".into());
        hub.put_device("d1", disabled, Some("*")).await.unwrap();
        let reason =
            tokio::time::timeout(std::time::Duration::from_secs(1), a.revocation.revoked())
                .await
                .expect("revoked although the queue is full");
        assert!(reason.contains("disabled"), "{reason}");
        assert!(
            a.events.try_recv().is_ok(),
            "the queued events are still there"
        );
    }

    #[tokio::test]
    async fn regenerating_the_authenticating_key_revokes_only_its_connections() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(&dir);
        let d = hub.put_device("d1", Device::default(), None).await.unwrap();
        let (_, secondary) = keys(d.authentication.as_ref());
        let p = principal(&hub, "d1", None, &secondary).await;
        assert_eq!(p.key, AuthKey::Secondary);
        let a = hub.attach_principal(&p, 1);

        // The primary key changes: a connection made with the secondary key stays.
        let mut update = hub.get_device("d1").await.unwrap();
        let new_primary = fleethub_core::keys::generate_key();
        update.authentication = Some(with_keys(&new_primary, &secondary));
        hub.put_device("d1", update.clone(), Some("*"))
            .await
            .unwrap();
        assert_eq!(a.revocation.reason(), None);
        // An update that keeps the keys revokes nothing either.
        update.authentication = None;
        hub.put_device("d1", update.clone(), Some("*"))
            .await
            .unwrap();
        assert_eq!(a.revocation.reason(), None);
        // The secondary key changes: the connection ends.
        update.authentication = Some(with_keys(
            &new_primary,
            &fleethub_core::keys::generate_key(),
        ));
        hub.put_device("d1", update, Some("*")).await.unwrap();
        let reason = a.revocation.reason().expect("revoked");
        assert!(reason.contains("regenerated"), "{reason}");

        // A module: key regeneration and deletion.
        let m = hub
            .put_module("d1", "m1", Module::default(), None)
            .await
            .unwrap();
        let (mp, ms) = keys(m.authentication.as_ref());
        let pm = principal(&hub, "d1", Some("m1"), &mp).await;
        let am = hub.attach_principal(&pm, 2);
        let mut mu = hub.get_module("d1", "m1").await.unwrap();
        mu.authentication = Some(with_keys(&fleethub_core::keys::generate_key(), &ms));
        hub.put_module("d1", "m1", mu, Some("*")).await.unwrap();
        assert!(am.revocation.reason().unwrap().contains("regenerated"));
        let pm = principal(&hub, "d1", Some("m1"), &ms).await;
        let am = hub.attach_principal(&pm, 3);
        hub.delete_module("d1", "m1", None).await.unwrap();
        assert!(am.revocation.reason().unwrap().contains("deleted"));
    }

    #[tokio::test]
    async fn a_revocation_between_authentication_and_attachment_still_ends_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub(&dir);
        let d = hub.put_device("d1", Device::default(), None).await.unwrap();
        let (primary, secondary) = keys(d.authentication.as_ref());
        let by_primary = principal(&hub, "d1", None, &primary).await;
        let by_secondary = principal(&hub, "d1", None, &secondary).await;
        hub.put_module("d1", "m1", Module::default(), None)
            .await
            .unwrap();
        let m = hub.get_module("d1", "m1").await.unwrap();
        let module = principal(&hub, "d1", Some("m1"), &keys(m.authentication.as_ref()).0).await;
        // The primary key is regenerated before the connections attach.
        let mut update = hub.get_device("d1").await.unwrap();
        update.authentication = Some(with_keys(&fleethub_core::keys::generate_key(), &secondary));
        hub.put_device("d1", update.clone(), Some("*"))
            .await
            .unwrap();
        assert!(
            hub.attach_principal(&by_primary, 1)
                .revocation
                .reason()
                .is_some()
        );
        assert_eq!(
            hub.attach_principal(&by_secondary, 2).revocation.reason(),
            None
        );
        assert_eq!(hub.attach_principal(&module, 3).revocation.reason(), None);
        // A later authentication is not affected by the earlier revocation.
        let fresh = principal(&hub, "d1", None, &secondary).await;
        assert_eq!(hub.attach_principal(&fresh, 4).revocation.reason(), None);
        // Disabling the device covers its modules too.
        let module = principal(&hub, "d1", Some("m1"), &keys(m.authentication.as_ref()).0).await;
        update.status = Some("disabled".into());
        update.authentication = None;
        hub.put_device("d1", update, Some("*")).await.unwrap();
        let reason = hub.attach_principal(&module, 5).revocation.reason();
        assert!(reason.is_some_and(|r| r.contains("disabled")));
    }

    #[test]
    fn format_ms_gives_azure_utc() {
        assert_eq!(format_ms(1_700_000_000_123), "2023-11-14T22:13:20.1230000Z");
    }
}
