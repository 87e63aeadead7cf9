//! The device identities one connection has authenticated on `$cbs` (several per connection:
//! the C SDK's shared transport and gateways multiplex devices). Each holds its principal (the
//! latest token: a renewal moves the expiry), the hub's live registration of that identity
//! (presence, pushed events, revocation) and the routes of its events to the links that serve
//! them. A link of an identity ends when its grant ends: revoked (device disabled or deleted,
//! key regenerated: at once, as on MQTT) or the token expired without renewal (see
//! `docs/protocol-notes.md`, "AMQP device authentication").

use crate::request::AmqpMessage;
use fleethub_services::hub::Revocation;
use fleethub_services::{Features, Hub, HubEvent, HubPrincipal};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Connection ids of AMQP device registrations start here, far above the MQTT gateway's
/// (which counts from 0), so that both transports' registrations never share an id.
const CONN_ID_BASE: u64 = 1 << 48;
static NEXT_CONN: AtomicU64 = AtomicU64::new(CONN_ID_BASE);

/// Most device identities one connection may authenticate.
pub const MAX_IDENTITIES: usize = 256;
/// Events waiting for a link that does not take them (no credit), per link.
pub const ROUTE_QUEUE: usize = 16;

/// A method request as the methods link sends it.
#[derive(Debug, Clone)]
pub struct MethodRequest {
    pub rid: String,
    pub name: String,
    pub payload: Vec<u8>,
}

/// Where an identity's pushed events go: the links that asked for them.
#[derive(Default)]
pub(crate) struct Routes {
    c2d: Option<mpsc::Sender<()>>,
    /// The twin link the client receives on: replies and desired-property patches.
    twin: Option<mpsc::Sender<AmqpMessage>>,
    /// Desired-property notifications were enabled (`PUT /notifications/twin/properties/desired`).
    desired: bool,
    methods: Option<mpsc::Sender<MethodRequest>>,
}

/// One authenticated identity of a connection.
pub(crate) struct DeviceGrant {
    hub: Arc<Hub>,
    pub device_id: String,
    pub module_id: Option<String>,
    /// The hub's id of this registration.
    conn: u64,
    principal: Mutex<HubPrincipal>,
    /// When the token stops being valid (its expiry plus the tolerated skew); a renewal
    /// sends the new one.
    deadline: watch::Sender<Instant>,
    revocation: Revocation,
    routes: Arc<Mutex<Routes>>,
    dispatcher: tokio::task::JoinHandle<()>,
}

impl Drop for DeviceGrant {
    fn drop(&mut self) {
        self.dispatcher.abort();
        self.hub
            .detach(&self.device_id, self.module_id.as_deref(), self.conn);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl DeviceGrant {
    /// `d` or `d/m`.
    pub fn identity(&self) -> String {
        super::address::identity(&self.device_id, self.module_id.as_deref())
    }

    /// The latest principal (its token's expiry and key).
    pub fn principal(&self) -> HubPrincipal {
        lock(&self.principal).clone()
    }

    /// Why the grant no longer holds, if it does not: revoked, or the token expired.
    pub fn ended(&self) -> Option<String> {
        if let Some(reason) = self.revocation.reason() {
            return Some(reason);
        }
        (Instant::now() >= *self.deadline.borrow())
            .then(|| "the token expired and was not renewed".to_string())
    }

    /// Waits until the grant ends (revocation at once; expiry unless renewed before) and says
    /// why.
    pub async fn wait_ended(&self) -> String {
        let mut revocation = self.revocation.clone();
        let mut deadline = self.deadline.subscribe();
        loop {
            if let Some(reason) = self.ended() {
                return reason;
            }
            let until = *deadline.borrow_and_update();
            tokio::select! {
                reason = revocation.revoked() => return reason,
                _ = deadline.changed() => {}
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }

    /// Records what this connection's links of the identity asked for (the hub pushes only
    /// those events).
    fn publish_features(&self, routes: &Routes) {
        let f = Features {
            desired: routes.desired && routes.twin.is_some(),
            methods: routes.methods.is_some(),
            c2d: routes.c2d.is_some(),
        };
        self.hub
            .set_features(&self.device_id, self.module_id.as_deref(), self.conn, f);
    }

    /// The C2D link: woken when messages are queued.
    pub fn route_c2d(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel(1);
        let mut r = lock(&self.routes);
        r.c2d = Some(tx);
        self.publish_features(&r);
        rx
    }

    /// The twin link the client receives on (replies and desired patches).
    pub fn route_twin(&self) -> mpsc::Receiver<AmqpMessage> {
        let (tx, rx) = mpsc::channel(ROUTE_QUEUE);
        lock(&self.routes).twin = Some(tx);
        rx
    }

    /// The sender of twin replies, when the client's twin receiver is attached.
    pub fn twin_replies(&self) -> Option<mpsc::Sender<AmqpMessage>> {
        lock(&self.routes).twin.clone()
    }

    /// Enables or disables desired-property notifications.
    pub fn set_desired(&self, on: bool) {
        let mut r = lock(&self.routes);
        r.desired = on;
        self.publish_features(&r);
    }

    /// The methods link (the client receives requests on it).
    pub fn route_methods(&self) -> mpsc::Receiver<MethodRequest> {
        let (tx, rx) = mpsc::channel(ROUTE_QUEUE);
        let mut r = lock(&self.routes);
        r.methods = Some(tx);
        self.publish_features(&r);
        rx
    }

    /// Stops routing to a link that ended.
    pub fn unroute(&self, link: super::address::DeviceLink) {
        use super::address::DeviceLink;
        let mut r = lock(&self.routes);
        match link {
            DeviceLink::C2d => r.c2d = None,
            DeviceLink::Twin => {
                r.twin = None;
                r.desired = false;
            }
            DeviceLink::Methods => r.methods = None,
            DeviceLink::Telemetry => {}
        }
        self.publish_features(&r);
    }
}

/// The registration a dispatcher ends when its grant ends.
struct Lifecycle {
    hub: Arc<Hub>,
    device_id: String,
    module_id: Option<String>,
    conn: u64,
    revocation: Revocation,
    deadline: watch::Receiver<Instant>,
}

impl Lifecycle {
    /// Waits until the grant ends: revoked, or its deadline passed without renewal.
    async fn ended(&mut self) {
        loop {
            let until = *self.deadline.borrow_and_update();
            if Instant::now() >= until {
                return;
            }
            tokio::select! {
                _ = self.revocation.revoked() => return,
                changed = self.deadline.changed() => if changed.is_err() {
                    return;
                },
                () = tokio::time::sleep_until(until) => {}
            }
        }
    }
}

/// Hands the hub's events of one identity to its links; an event no link takes is dropped
/// (the hub only sends what the links asked for; a method nobody takes times out as on MQTT).
/// When the grant ends (revoked, or expired without renewal) the identity is no longer
/// registered as connected through this connection.
async fn dispatch(
    identity: String,
    mut events: fleethub_services::hub::EventReceiver,
    routes: Arc<Mutex<Routes>>,
    mut life: Lifecycle,
) {
    loop {
        let ev = tokio::select! {
            ev = events.recv() => ev,
            () = life.ended() => None,
        };
        let Some(ev) = ev else {
            life.hub
                .detach(&life.device_id, life.module_id.as_deref(), life.conn);
            return;
        };
        let r = lock(&routes);
        let delivered = match ev {
            HubEvent::C2dAvailable => {
                // A full queue already holds a wake-up.
                if let Some(tx) = &r.c2d {
                    let _ = tx.try_send(());
                }
                true
            }
            HubEvent::DesiredPatch(patch) => {
                r.desired
                    && r.twin
                        .as_ref()
                        .is_some_and(|tx| tx.try_send(super::twin::desired_message(&patch)).is_ok())
            }
            HubEvent::MethodRequest(call) => r.methods.as_ref().is_some_and(|tx| {
                let fleethub_services::hub::MethodCall { rid, name, payload } = *call;
                tx.try_send(MethodRequest { rid, name, payload }).is_ok()
            }),
            HubEvent::Revoked(_) => true,
        };
        drop(r);
        if !delivered {
            tracing::info!(
                identity,
                "amqp: a hub event was dropped: its link is missing or does not take more"
            );
        }
    }
}

/// The identities of one connection.
#[derive(Default)]
pub(crate) struct DeviceGrants {
    map: Mutex<HashMap<String, Arc<DeviceGrant>>>,
}

/// Why a grant was not added.
#[derive(Debug, thiserror::Error)]
#[error("a connection may authenticate at most {MAX_IDENTITIES} device identities")]
pub(crate) struct TooManyIdentities;

impl DeviceGrants {
    /// Adds an authenticated principal, or renews its grant (a later token of the same
    /// identity moves the expiry; a revoked or expired grant is replaced by a fresh one).
    pub fn add(&self, hub: &Arc<Hub>, p: HubPrincipal) -> Result<(), TooManyIdentities> {
        let id = super::address::identity(&p.device_id, p.module_id.as_deref());
        let mut map = lock(&self.map);
        if let Some(g) = map.get(&id)
            && g.ended().is_none()
        {
            g.deadline
                .send_replace(Instant::now() + hub.token_lifetime(&p));
            *lock(&g.principal) = p;
            return Ok(());
        }
        if !map.contains_key(&id) && map.len() >= MAX_IDENTITIES {
            return Err(TooManyIdentities);
        }
        let conn = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        let attachment = hub.attach_principal(&p, conn);
        let routes = Arc::new(Mutex::new(Routes::default()));
        let deadline = watch::Sender::new(Instant::now() + hub.token_lifetime(&p));
        let life = Lifecycle {
            hub: hub.clone(),
            device_id: p.device_id.clone(),
            module_id: p.module_id.clone(),
            conn,
            revocation: attachment.revocation.clone(),
            deadline: deadline.subscribe(),
        };
        let dispatcher = tokio::spawn(dispatch(
            id.clone(),
            attachment.events,
            routes.clone(),
            life,
        ));
        let grant = DeviceGrant {
            hub: hub.clone(),
            device_id: p.device_id.clone(),
            module_id: p.module_id.clone(),
            conn,
            deadline,
            principal: Mutex::new(p),
            revocation: attachment.revocation,
            routes,
            dispatcher,
        };
        // A replaced (ended) grant detaches in its Drop, after the new one is attached:
        // `Hub::detach` removes only the registration that is still its own.
        map.insert(id, Arc::new(grant));
        Ok(())
    }

    /// The live grant of an identity (`d` or `d/m`), or why there is none.
    pub fn get(&self, identity: &str) -> Result<Arc<DeviceGrant>, String> {
        let g = lock(&self.map)
            .get(identity)
            .cloned()
            .ok_or_else(|| format!("no token for '{identity}' was put on $cbs"))?;
        match g.ended() {
            Some(reason) => Err(reason),
            None => Ok(g),
        }
    }
}
