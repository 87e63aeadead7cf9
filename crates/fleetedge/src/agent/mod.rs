//! The agent: connects to the hub as the `$edgeAgent` module (and, in [`device_link`], as the
//! device itself), reads the deployment from its
//! module twin's desired properties (and follows patches), makes sure every module has a
//! module identity, runs the modules through the [`ModuleRuntime`] and reports their state
//! in the reported properties. The last valid deployment is cached so the modules start
//! offline after a reboot.

pub mod device_link;
pub mod link;
pub mod manifest;
mod manifest_docker;
pub mod reported;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleethub_device::{ConnectionStatus, DeviceClient, DeviceClientOptions};
use serde::Serialize;
use serde_json::Value;
use tokio::sync::watch;

use crate::config::Config;
use crate::identity::{IdentityError, IdentityStore};
use crate::provisioning::DeviceIdentity;
use crate::runtime::{ModuleRuntime, ModuleSpec, RuntimeStatus};
use crate::state::{StateDir, write_private};
use crate::workload::sockets::WorkloadSockets;
use manifest::{Deployment, ManifestError};
use reported::{DesiredStatus, ReportInput, SystemModule};

/// What the management API shows about the agent.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// The `$edgeAgent` connection (`connected`, `connectedSinceUtc`, `disconnectedSinceUtc`,
    /// `lastRoundTripUtc`, `lastError`).
    #[serde(flatten)]
    pub link: link::LinkStatus,
    pub last_desired_version: Option<u64>,
    pub last_desired_status_code: Option<u16>,
    pub last_desired_status_description: Option<String>,
    pub last_report_utc: Option<String>,
}

impl AsMut<link::LinkStatus> for AgentStatus {
    fn as_mut(&mut self) -> &mut link::LinkStatus {
        &mut self.link
    }
}

/// Why the agent stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum AgentExit {
    Shutdown,
    /// The hub rejected the device or `$edgeAgent` credentials.
    Rejected(String),
}

/// What the agent works with.
pub struct AgentContext {
    pub config: Config,
    pub device: DeviceIdentity,
    pub state: StateDir,
    pub identities: Arc<IdentityStore>,
    pub runtime: Arc<dyn ModuleRuntime>,
    /// The modules' workload sockets.
    pub workload: Arc<WorkloadSockets>,
    /// State of the in-process edge hub.
    pub edge_hub: Arc<dyn Fn() -> SystemModule + Send + Sync>,
    pub status: Arc<Mutex<AgentStatus>>,
    pub started: chrono::DateTime<chrono::Utc>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Longest wait for the modules of a lower `startupOrder` to start.
pub const STARTUP_WAIT: Duration = Duration::from_secs(10);

/// The api-version announced to modules.
pub const WORKLOAD_API_VERSION: &str = crate::workload::API_VERSION;

/// Environment of a module process: the manifest's `env` plus the IoT Edge variables
/// (`workload_socket` is the module's own workload socket).
pub fn module_env(
    ctx: &AgentContext,
    module: &manifest::ModuleDef,
    generation_id: &str,
    workload_socket: &std::path::Path,
) -> BTreeMap<String, String> {
    let mut env = module.env.clone();
    let mut set = |k: &str, v: String| {
        env.insert(k.to_string(), v);
    };
    set("IOTEDGE_IOTHUBHOSTNAME", ctx.device.hub_hostname.clone());
    set("IOTEDGE_DEVICEID", ctx.device.device_id.clone());
    set("IOTEDGE_MODULEID", module.name.clone());
    set("IOTEDGE_GATEWAYHOSTNAME", ctx.config.hostname.clone());
    set("IOTEDGE_MODULEGENERATIONID", generation_id.to_string());
    set(
        "IOTEDGE_WORKLOADURI",
        format!("unix://{}", workload_socket.display()),
    );
    set("IOTEDGE_APIVERSION", WORKLOAD_API_VERSION.to_string());
    set("IOTEDGE_AUTHSCHEME", "sasToken".to_string());
    if let Some(a) = ctx.config.edge_hub.listen.first() {
        set("FLEETEDGE_GATEWAY_PORT", a.port().to_string());
    }
    env
}

/// The agent's working state.
struct Agent {
    ctx: Arc<AgentContext>,
    deployment: Option<Deployment>,
    settings: BTreeMap<String, Value>,
    desired_status: DesiredStatus,
    last_desired_version: Option<u64>,
    schema_version: String,
    reported_names: BTreeSet<String>,
    last_sent: Option<Value>,
    /// Starting from the cached deployment: use cached identities without asking the hub.
    prefer_cache: bool,
}

enum ApplyOutcome {
    Done(DesiredStatus),
    Rejected(String),
}

impl Agent {
    fn new(ctx: Arc<AgentContext>) -> Agent {
        Agent {
            ctx,
            deployment: None,
            settings: BTreeMap::new(),
            desired_status: DesiredStatus {
                code: 406,
                description: "the agent has not received its deployment yet".into(),
            },
            last_desired_version: None,
            schema_version: "1.1".into(),
            reported_names: BTreeSet::new(),
            last_sent: None,
            prefer_cache: false,
        }
    }

    fn set_status(&self) {
        let mut s = lock(&self.ctx.status);
        s.last_desired_version = self.last_desired_version;
        s.last_desired_status_code = Some(self.desired_status.code);
        s.last_desired_status_description = Some(self.desired_status.description.clone());
    }

    /// Handles a full desired document.
    async fn on_desired(&mut self, desired: &Value) -> ApplyOutcome {
        let version = desired.get("$version").and_then(Value::as_u64);
        self.last_desired_version = version;
        let outcome = match manifest::parse(desired) {
            Ok(dep) => {
                let outcome = self.apply(dep).await;
                if matches!(outcome, ApplyOutcome::Done(ref s) if s.code == 200) {
                    let _ = write_private(
                        &self.ctx.state.deployment_cache(),
                        desired.to_string().as_bytes(),
                    );
                }
                outcome
            }
            Err(e) => {
                tracing::warn!(code = e.code(), error = %e, "deployment not applied; the last good deployment keeps running");
                if matches!(e, ManifestError::Empty) {
                    // nothing to run: stop what a previous deployment started
                    self.remove_absent(&BTreeSet::new()).await;
                    self.deployment = None;
                }
                ApplyOutcome::Done(DesiredStatus {
                    code: e.code(),
                    description: e.to_string(),
                })
            }
        };
        if let ApplyOutcome::Done(s) = &outcome {
            self.desired_status = s.clone();
        }
        self.set_status();
        outcome
    }

    async fn remove_absent(&mut self, keep: &BTreeSet<String>) {
        for st in self.ctx.runtime.list() {
            if !keep.contains(&st.name) {
                tracing::info!(module = st.name, "removing module (not in the deployment)");
                let _ = self.ctx.runtime.remove(&st.name).await;
                self.ctx.workload.remove(&st.name);
                if let Err(e) = self.ctx.identities.remove(&st.name).await {
                    tracing::warn!(module = st.name, error = %e, "cannot remove the module identity");
                }
                self.settings.remove(&st.name);
            }
        }
        // also the sockets of modules the runtime never accepted
        self.ctx.workload.retain(keep);
    }

    async fn apply(&mut self, dep: Deployment) -> ApplyOutcome {
        let keep: BTreeSet<String> = dep.modules.iter().map(|m| m.name.clone()).collect();
        self.remove_absent(&keep).await;
        let mut failures = Vec::new();
        let mut previous_order = None;
        for m in &dep.modules {
            if previous_order.is_some_and(|o| o < m.startup_order) {
                self.wait_started(&dep, m.startup_order).await;
            }
            previous_order = Some(m.startup_order);
            let cached = self
                .prefer_cache
                .then(|| self.ctx.identities.get(&m.name))
                .flatten();
            let identity = match cached {
                Some(i) => Ok(i),
                None => self.ctx.identities.ensure(&m.name).await,
            };
            let identity = match identity {
                Ok(i) => i,
                Err(IdentityError::Unauthorized(e)) => {
                    return ApplyOutcome::Rejected(e.to_string());
                }
                Err(e) => {
                    failures.push(e.to_string());
                    continue;
                }
            };
            // the module's own workload socket exists before the module starts
            let socket = match self.ctx.workload.ensure(&m.name) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(module = m.name, error = %e, "module not started");
                    failures.push(e.to_string());
                    continue;
                }
            };
            let spec = ModuleSpec {
                name: m.name.clone(),
                command: m.command.clone(),
                args: m.args.clone(),
                working_dir: m.working_dir.clone(),
                env: module_env(&self.ctx, m, &identity.generation_id, &socket),
                restart_policy: m.restart_policy,
                desired_status: m.status,
                version: m.version.clone(),
                container: m.container.clone(),
            };
            self.settings.insert(m.name.clone(), m.settings.clone());
            if let Err(e) = self.ctx.runtime.apply(spec).await {
                failures.push(e.to_string());
            }
        }
        self.schema_version.clone_from(&dep.schema_version);
        self.deployment = Some(dep);
        ApplyOutcome::Done(if failures.is_empty() {
            DesiredStatus {
                code: 200,
                description: String::new(),
            }
        } else {
            DesiredStatus {
                code: 500,
                description: failures.join("; "),
            }
        })
    }

    /// startupOrder: waits (at most [`STARTUP_WAIT`]) until the modules ordered before
    /// `order` that should run have started (running, or already failed/backing off).
    async fn wait_started(&self, dep: &Deployment, order: u32) {
        let earlier: Vec<&str> = dep
            .modules
            .iter()
            .filter(|m| {
                m.startup_order < order && m.status == crate::runtime::DesiredStatus::Running
            })
            .map(|m| m.name.as_str())
            .collect();
        let deadline = tokio::time::Instant::now() + STARTUP_WAIT;
        loop {
            let states = self.ctx.runtime.list();
            let started = earlier.iter().all(|n| {
                states
                    .iter()
                    .find(|s| s.name == *n)
                    .is_none_or(|s| s.runtime_status != RuntimeStatus::Unknown)
            });
            if started || tokio::time::Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn report_doc(&self) -> Value {
        let agent = SystemModule {
            runtime_status: RuntimeStatus::Running,
            status_description: None,
            last_start_time_utc: Some(
                self.ctx
                    .started
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            ),
        };
        let hub = (self.ctx.edge_hub)();
        let modules = self
            .ctx
            .runtime
            .list()
            .into_iter()
            .map(|st| {
                let spec = self.ctx.runtime.spec(&st.name);
                let settings = self.settings.get(&st.name).cloned();
                (st, spec, settings)
            })
            .collect();
        reported::build(&ReportInput {
            schema_version: &self.schema_version,
            last_desired_version: self.last_desired_version,
            last_desired_status: &self.desired_status,
            edge_agent: &agent,
            edge_hub: &hub,
            modules,
            previously_reported: &self.reported_names,
        })
    }

    /// Sends the reported properties when they changed since the last report.
    async fn report(&mut self, client: &DeviceClient) -> Result<(), fleethub_device::DeviceError> {
        let doc = self.report_doc();
        if self.last_sent.as_ref() == Some(&doc) {
            return Ok(());
        }
        client.patch_reported(doc.clone()).await?;
        lock(&self.ctx.status).link.round_trip(chrono::Utc::now());
        self.reported_names = doc["modules"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, v)| !v.is_null())
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        self.last_sent = Some(doc);
        lock(&self.ctx.status).last_report_utc = Some(chrono::Utc::now().to_rfc3339());
        Ok(())
    }
}

/// Connects as `$edgeAgent`.
async fn connect(ctx: &AgentContext) -> Result<DeviceClient, ConnectError> {
    let identity = match ctx.identities.ensure("$edgeAgent").await {
        Ok(i) => i,
        Err(IdentityError::Unauthorized(e)) => return Err(ConnectError::Rejected(e.to_string())),
        Err(e) => return Err(ConnectError::Other(e.to_string())),
    };
    let cs = format!(
        "HostName={};DeviceId={};ModuleId=$edgeAgent;SharedAccessKey={}",
        ctx.device.hub_hostname, ctx.device.device_id, identity.primary_key
    );
    let tls = crate::provisioning::tls_config(&ctx.config).map_err(ConnectError::Other)?;
    let options = DeviceClientOptions::default()
        .with_port(ctx.config.hub.mqtt_port)
        .with_tls(tls);
    DeviceClient::from_connection_string(&cs, options)
        .await
        .map_err(|e| {
            if e.is_unauthorized() {
                ConnectError::Rejected(e.to_string())
            } else {
                ConnectError::Other(e.to_string())
            }
        })
}

enum ConnectError {
    Rejected(String),
    Other(String),
}

/// Runs the agent until shutdown, or until the hub rejects the credentials.
pub async fn run(ctx: Arc<AgentContext>, mut shutdown: watch::Receiver<bool>) -> AgentExit {
    let mut agent = Agent::new(ctx.clone());
    // Offline start: the last good deployment, from the cache.
    if let Ok(bytes) = std::fs::read(ctx.state.deployment_cache())
        && let Ok(desired) = serde_json::from_slice::<Value>(&bytes)
    {
        tracing::info!("starting the modules of the cached deployment");
        agent.prefer_cache = true;
        let outcome = agent.on_desired(&desired).await;
        agent.prefer_cache = false;
        if let ApplyOutcome::Rejected(m) = outcome {
            return AgentExit::Rejected(m);
        }
    }
    let interval = ctx.config.agent.status_report_interval;
    let mut attempt = 0u32;
    loop {
        let client = tokio::select! {
            r = connect(&ctx) => r,
            _ = shutdown.changed() => return AgentExit::Shutdown,
        };
        let client = match client {
            Ok(c) => c,
            Err(ConnectError::Rejected(m)) => {
                lock(&ctx.status)
                    .link
                    .set_down(chrono::Utc::now(), Some(m.clone()));
                return AgentExit::Rejected(m);
            }
            Err(ConnectError::Other(m)) => {
                let delay = crate::provisioning::retry_delay(attempt);
                attempt += 1;
                tracing::warn!(error = %m, retry_in = ?delay, "cannot connect to the hub as $edgeAgent");
                lock(&ctx.status).link.set_down(chrono::Utc::now(), Some(m));
                tokio::select! {
                    () = tokio::time::sleep(delay) => continue,
                    _ = shutdown.changed() => return AgentExit::Shutdown,
                }
            }
        };
        attempt = 0;
        lock(&ctx.status).link.set_up(chrono::Utc::now());
        tracing::info!(
            hub = ctx.device.hub_hostname,
            "agent connected as $edgeAgent"
        );
        // The connection state follows the SDK's events and a periodic round trip, also while
        // the session waits on a request.
        let exit = tokio::select! {
            e = session(&mut agent, &client, &mut shutdown, interval) => e,
            () = link::monitor(&client, &ctx.status) => unreachable!("monitor never returns"),
        };
        lock(&ctx.status).link.set_down(chrono::Utc::now(), None);
        client.close().await;
        match exit {
            SessionEnd::Shutdown => return AgentExit::Shutdown,
            SessionEnd::Rejected(m) => return AgentExit::Rejected(m),
            SessionEnd::Lost(m) => {
                tracing::warn!(error = %m, "agent connection lost; reconnecting");
                lock(&ctx.status).link.set_down(chrono::Utc::now(), Some(m));
            }
        }
    }
}

enum SessionEnd {
    Shutdown,
    Rejected(String),
    Lost(String),
}

async fn session(
    agent: &mut Agent,
    client: &DeviceClient,
    shutdown: &mut watch::Receiver<bool>,
    interval: Duration,
) -> SessionEnd {
    let lost = |e: fleethub_device::DeviceError| SessionEnd::Lost(e.to_string());
    let mut patches = match client.desired_updates().await {
        Ok(rx) => rx,
        Err(e) => return lost(e),
    };
    let mut status = client.status_changes();
    let mut need_twin = true;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if need_twin {
            need_twin = false;
            let twin = match client.get_twin().await {
                Ok(t) => t,
                Err(e) => return lost(e),
            };
            lock(&agent.ctx.status).link.round_trip(chrono::Utc::now());
            let desired = twin.get("desired").cloned().unwrap_or(Value::Null);
            if let ApplyOutcome::Rejected(m) = agent.on_desired(&desired).await {
                return SessionEnd::Rejected(m);
            }
            if let Err(e) = agent.report(client).await {
                return lost(e);
            }
        }
        tokio::select! {
            p = patches.recv() => match p {
                // Re-read the whole twin: patches may arrive out of order or be partial.
                Some(_) => need_twin = true,
                None => return SessionEnd::Lost("desired-property stream ended".into()),
            },
            _ = tick.tick() => {
                if let Err(e) = agent.report(client).await {
                    return lost(e);
                }
            }
            changed = status.changed() => {
                if changed.is_err() {
                    return SessionEnd::Lost("client closed".into());
                }
                let st = status.borrow().clone();
                if let ConnectionStatus::Closed { reason } = st {
                    return SessionEnd::Lost(reason);
                }
            }
            _ = shutdown.changed() => return SessionEnd::Shutdown,
        }
    }
}
