//! Shared state of a running edge hub: configuration, queue, upstream pool, module
//! sessions, client presence for the reported properties, background tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::EdgeHubConfig;
use crate::message::EdgeMessage;
use crate::queue::{Entry, Queue, QueueError};
use crate::routes::{self, Sink};
use crate::topics::ModuleSubscription;
use crate::upstream::Upstream;
use crate::{CredentialSource, EdgeHubError, EdgeHubOptions, EdgeHubStatus};

/// Key of the last applied desired properties in the queue database.
pub(crate) const DESIRED_CACHE_KEY: &str = "edgehub.desired";

pub(crate) fn upstream_endpoint(module: &str) -> String {
    format!("upstream/{module}")
}

pub(crate) fn module_endpoint(module: &str) -> String {
    format!("module/{module}")
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Presence of one module, for `clients` in the reported properties.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientRecord {
    pub connected: bool,
    pub last_connected: Option<String>,
    pub last_disconnected: Option<String>,
}

struct LiveSession {
    conn_id: u64,
    close: watch::Sender<bool>,
}

pub(crate) struct Hub {
    pub opts: EdgeHubOptions,
    pub creds: Arc<dyn CredentialSource>,
    pub queue: Queue,
    pub upstream: Upstream,
    pub local_addrs: Vec<SocketAddr>,
    config: RwLock<Arc<EdgeHubConfig>>,
    sessions: Mutex<HashMap<String, LiveSession>>,
    /// Subscriptions kept for modules connecting with clean session 0.
    mqtt_sessions: Mutex<HashMap<String, BTreeSet<SubKey>>>,
    pub clients: Mutex<BTreeMap<String, ClientRecord>>,
    pub clients_changed: Notify,
    forwarders: Mutex<HashSet<String>>,
    last_error: Mutex<Option<String>>,
    next_conn_id: AtomicU64,
    pub shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// [`ModuleSubscription`] as an ordered set member.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SubKey {
    Inputs,
    TwinResponses,
    Desired,
    Methods,
}

impl From<ModuleSubscription> for SubKey {
    fn from(s: ModuleSubscription) -> Self {
        match s {
            ModuleSubscription::Inputs => SubKey::Inputs,
            ModuleSubscription::TwinResponses => SubKey::TwinResponses,
            ModuleSubscription::DesiredPatches => SubKey::Desired,
            ModuleSubscription::Methods => SubKey::Methods,
        }
    }
}

fn validate(opts: &EdgeHubOptions) -> Result<(), EdgeHubError> {
    let bad = |m: &str| Err(EdgeHubError::Config(m.to_string()));
    if opts.device_id.is_empty() || opts.device_id.contains(['/', '#', '+']) {
        return bad("device_id is empty or contains '/', '#' or '+'");
    }
    if opts.upstream.hub_hostname.trim().is_empty() {
        return bad("upstream.hub_hostname is empty");
    }
    if opts.upstream.mqtt_port == 0 {
        return bad("upstream.mqtt_port is 0");
    }
    if opts.listen.is_empty() {
        return bad("no listen address");
    }
    if opts.queue_max_bytes == 0 {
        return bad("queue_max_bytes is 0");
    }
    if opts.default_ttl.is_zero() {
        return bad("default_ttl is 0");
    }
    Ok(())
}

fn create_state_dir(path: &std::path::Path) -> Result<(), EdgeHubError> {
    let io = |source| EdgeHubError::StateDir {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(io)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

impl Hub {
    pub(crate) async fn start(
        opts: EdgeHubOptions,
        creds: Arc<dyn CredentialSource>,
    ) -> Result<Arc<Hub>, EdgeHubError> {
        validate(&opts)?;
        create_state_dir(&opts.state_dir)?;
        let tls =
            crate::listener::server_config(&opts.server_cert_chain_pem, &opts.server_key_pem)?;
        let queue = Queue::open(&opts.state_dir, opts.queue_max_bytes)?;
        let config = match queue.get_kv(DESIRED_CACHE_KEY).await? {
            Some(text) => match serde_json::from_str(&text)
                .map_err(|e| e.to_string())
                .and_then(|v| EdgeHubConfig::from_desired(&v).map_err(|e| e.0))
            {
                Ok(c) => {
                    tracing::info!(
                        "edge hub: using the routes cached from the last run: {:?}",
                        c.route_names()
                    );
                    c
                }
                Err(e) => {
                    tracing::warn!(
                        "edge hub: ignoring the cached configuration ({e}); using the default route"
                    );
                    EdgeHubConfig::default_routes()
                }
            },
            None => EdgeHubConfig::default_routes(),
        };
        let listeners = crate::listener::bind(&opts.listen).await?;
        let local_addrs = listeners
            .iter()
            .filter_map(|l| l.local_addr().ok())
            .collect();
        let upstream = Upstream::new(&opts.device_id, &opts.upstream, creds.clone())
            .map_err(|e| EdgeHubError::Config(e.to_string()))?;
        let hub = Arc::new(Hub {
            upstream,
            queue,
            local_addrs,
            config: RwLock::new(Arc::new(config)),
            sessions: Mutex::default(),
            mqtt_sessions: Mutex::default(),
            clients: Mutex::default(),
            clients_changed: Notify::new(),
            forwarders: Mutex::default(),
            last_error: Mutex::default(),
            next_conn_id: AtomicU64::new(1),
            shutdown: watch::channel(false).0,
            tasks: Mutex::default(),
            opts,
            creds,
        });
        for l in listeners {
            let task = tokio::spawn(crate::listener::accept_loop(hub.clone(), l, tls.clone()));
            hub.add_task(task);
        }
        // Messages left from the last run.
        for endpoint in hub.queue.endpoints().await? {
            if let Some(module) = endpoint.strip_prefix("upstream/") {
                hub.ensure_forwarder(module);
            }
        }
        let task = tokio::spawn(crate::twin::run(hub.clone()));
        hub.add_task(task);
        tracing::info!(
            "edge hub listening on {:?} for device '{}' (upstream {}:{})",
            hub.local_addrs,
            hub.opts.device_id,
            hub.opts.upstream.hub_hostname,
            hub.opts.upstream.mqtt_port
        );
        Ok(hub)
    }

    pub(crate) fn add_task(&self, task: JoinHandle<()>) {
        let mut tasks = lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    pub(crate) fn config(&self) -> Arc<EdgeHubConfig> {
        self.config
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub(crate) fn set_config(&self, c: EdgeHubConfig) {
        *self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(c);
    }

    pub(crate) fn set_error(&self, e: impl Into<String>) {
        *lock(&self.last_error) = Some(e.into());
    }

    /// Resolves once the hub shuts down.
    pub(crate) async fn stopped(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|s| *s).await.map(|_| ());
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Routes a module's message and submits a copy per destination to the queue, in call
    /// order; the receiver resolves once they are durable. A message no route takes is
    /// dropped (and acknowledged), as in Azure IoT Edge.
    pub(crate) fn submit_message(
        self: &Arc<Self>,
        msg: &EdgeMessage,
    ) -> oneshot::Receiver<Result<(), QueueError>> {
        let config = self.config();
        let destinations = routes::destinations(&config.routes, msg);
        if destinations.is_empty() {
            tracing::debug!(
                module = msg.source_module,
                "edge hub: no route takes this message; dropped"
            );
            let (tx, rx) = oneshot::channel();
            let _ = tx.send(Ok(()));
            return rx;
        }
        let default_ttl = config.ttl.unwrap_or(self.opts.default_ttl);
        let mut upstream = false;
        let entries = destinations
            .into_iter()
            .map(|(sink, ttl)| {
                let (endpoint, input) = match sink {
                    Sink::Upstream => {
                        upstream = true;
                        (upstream_endpoint(&msg.source_module), None)
                    }
                    Sink::ModuleInput { module, input } => (module_endpoint(&module), Some(input)),
                };
                Entry {
                    endpoint,
                    input,
                    msg: msg.clone(),
                    ttl: ttl.unwrap_or(default_ttl),
                }
            })
            .collect();
        let rx = self.queue.submit(entries);
        if upstream {
            self.ensure_forwarder(&msg.source_module);
        }
        rx
    }

    /// Starts the upstream forwarder of `module` unless it runs.
    pub(crate) fn ensure_forwarder(self: &Arc<Self>, module: &str) {
        if !lock(&self.forwarders).insert(module.to_string()) {
            return;
        }
        let task = tokio::spawn(crate::upstream::forward(self.clone(), module.to_string()));
        self.add_task(task);
    }

    /// Registers a new connection of `module`, closing an older one (one live connection
    /// per module). Returns the connection id and its close signal.
    pub(crate) fn register_session(&self, module: &str) -> (u64, watch::Receiver<bool>) {
        let conn_id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let (close, close_rx) = watch::channel(false);
        if let Some(old) =
            lock(&self.sessions).insert(module.to_string(), LiveSession { conn_id, close })
        {
            tracing::info!(
                module,
                "edge hub: new connection of module '{module}' replaces the previous one"
            );
            old.close.send_replace(true);
        }
        self.set_presence(module, true);
        (conn_id, close_rx)
    }

    pub(crate) fn unregister_session(&self, module: &str, conn_id: u64) {
        let mut sessions = lock(&self.sessions);
        if sessions.get(module).is_some_and(|s| s.conn_id == conn_id) {
            sessions.remove(module);
            drop(sessions);
            self.set_presence(module, false);
        }
    }

    fn set_presence(&self, module: &str, connected: bool) {
        let key = format!("{}/{module}", self.opts.device_id);
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        {
            let mut clients = lock(&self.clients);
            let rec = clients.entry(key).or_default();
            rec.connected = connected;
            if connected {
                rec.last_connected = Some(now);
            } else {
                rec.last_disconnected = Some(now);
            }
        }
        self.clients_changed.notify_one();
    }

    /// Persistent-session subscriptions of `module`: cleared by a clean-session connect.
    pub(crate) fn session_subscriptions(&self, module: &str, clean: bool) -> BTreeSet<SubKey> {
        let mut s = lock(&self.mqtt_sessions);
        if clean {
            s.remove(module);
            BTreeSet::new()
        } else {
            s.get(module).cloned().unwrap_or_default()
        }
    }

    pub(crate) fn has_session(&self, module: &str) -> bool {
        lock(&self.mqtt_sessions).contains_key(module)
    }

    pub(crate) fn remember_subscription(&self, module: &str, clean: bool, sub: SubKey) {
        if !clean {
            lock(&self.mqtt_sessions)
                .entry(module.to_string())
                .or_default()
                .insert(sub);
        }
    }

    pub(crate) fn mark_session(&self, module: &str, clean: bool) {
        if !clean {
            lock(&self.mqtt_sessions)
                .entry(module.to_string())
                .or_default();
        }
    }

    pub(crate) fn status(&self) -> EdgeHubStatus {
        let stats = self.queue.stats();
        let mut connected_modules: Vec<String> = lock(&self.sessions).keys().cloned().collect();
        connected_modules.sort();
        EdgeHubStatus {
            upstream_connected: self.upstream.is_connected(crate::twin::EDGE_HUB_MODULE),
            connected_modules,
            queued_messages: stats.messages,
            queued_bytes: stats.bytes,
            routes: self.config().route_names(),
            last_error: lock(&self.last_error).clone(),
            expired_messages: stats.expired,
            rejected_messages: stats.rejected,
        }
    }

    /// Signals every task and session to stop; returns the aborted tasks.
    pub(crate) fn stop(&self) -> Vec<JoinHandle<()>> {
        self.shutdown.send_replace(true);
        for s in lock(&self.sessions).values() {
            s.close.send_replace(true);
        }
        let tasks: Vec<JoinHandle<()>> = std::mem::take(&mut *lock(&self.tasks));
        for t in &tasks {
            t.abort();
        }
        tasks
    }

    pub(crate) async fn shutdown(&self) {
        let tasks = self.stop();
        for t in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
        self.upstream.close_all().await;
        tracing::info!("edge hub stopped");
    }
}
