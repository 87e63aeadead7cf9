//! `fleetedge run`: the daemon. One generation of the main loop = load the configuration,
//! provision (or use the cache), open the module identity store, issue the edge hub
//! certificate, serve the management socket and (for the agent to hand out) one workload
//! socket per module, start the edge hub in-process and run the agent. A reload (SIGHUP,
//! `config apply`), a reprovision request or a rejection of the identity by the hub (Dynamic
//! mode) starts the next generation.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::Utc;
use fleethub_device::ModuleIdentityClient;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};

use crate::agent::device_link::{self, DeviceLinkStatus};
use crate::agent::reported::SystemModule;
use crate::agent::{AgentContext, AgentExit, AgentStatus};
use crate::config::{Config, ReprovisioningMode};
use crate::identity::{Credentials, IdentityStore};
use crate::mgmt::{self, Command, DaemonStatus, Management};
use crate::provisioning::{self, DeviceIdentity};
use crate::runtime::backoff::Backoff;
use crate::runtime::container::{ContainerRuntime, ContainerSettings};
use crate::runtime::dispatch::Runtimes;
use crate::runtime::process::{ProcessRuntime, ProcessSettings};
use crate::runtime::{ModuleRuntime, RuntimeStatus};
use crate::state::StateDir;
use crate::workload::sockets::WorkloadSockets;
use crate::{certs, uds};

/// Why a generation ended.
enum Next {
    Exit,
    Reload,
    Reprovision,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the daemon until SIGTERM/SIGINT.
pub async fn run(config_path: PathBuf) -> Result<()> {
    let mut config = Config::load(&config_path)?;
    for k in &config.ignored {
        tracing::info!(key = k, "configuration key ignored (Azure-only setting)");
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (cmd_tx, mut cmd_rx) = mpsc::unbounded_channel::<Command>();
    {
        let shutdown_tx = shutdown_tx.clone();
        let cmd_tx = cmd_tx.clone();
        let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut hup = signal(SignalKind::hangup()).context("SIGHUP handler")?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => break,
                    _ = int.recv() => break,
                    _ = hup.recv() => { let _ = cmd_tx.send(Command::Reload); }
                }
            }
            tracing::info!("stopping");
            shutdown_tx.send_replace(true);
        });
    }
    let started = Utc::now();
    let mut at_startup = true;
    let mut forced = false;
    loop {
        let next = generation(
            &config,
            at_startup,
            forced,
            shutdown_rx.clone(),
            &cmd_tx,
            &mut cmd_rx,
            started,
        )
        .await?;
        at_startup = false;
        forced = false;
        match next {
            Next::Exit => return Ok(()),
            Next::Reprovision => forced = true,
            Next::Reload => match Config::load(&config_path) {
                Ok(c) => {
                    tracing::info!("configuration reloaded");
                    config = c;
                }
                Err(e) => {
                    tracing::error!(error = %e, "reload failed; keeping the previous configuration");
                }
            },
        }
    }
}

/// The module runtime: processes and containers (a module's `type` picks).
async fn module_runtime(config: &Config, state: &StateDir) -> Arc<dyn ModuleRuntime> {
    let backoff = Backoff {
        initial: config.agent.restart_backoff_initial,
        max: config.agent.restart_backoff_max,
        stable_after: config.agent.stable_after,
    };
    let container = Arc::new(ContainerRuntime::new(ContainerSettings {
        moby: config.moby.clone(),
        owner: config.homedir.display().to_string(),
        gateway_hostname: config.hostname.clone(),
        edge_ca: Some(state.edge_ca_cert()),
        edge_hub_on_loopback: !config.edge_hub.listen.is_empty()
            && config.edge_hub.listen.iter().all(|a| a.ip().is_loopback()),
        backoff,
        stop_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_secs(1),
    }));
    // containers a previous run left behind are created again from the deployment
    container.sweep().await;
    Arc::new(Runtimes {
        process: Arc::new(ProcessRuntime::new(ProcessSettings {
            logs_dir: state.logs_dir(),
            log_max_bytes: config.agent.log_max_bytes,
            backoff,
            stop_timeout: Duration::from_secs(10),
        })),
        container,
    })
}

#[allow(clippy::too_many_arguments)]
async fn generation(
    config: &Config,
    at_startup: bool,
    forced: bool,
    shutdown: watch::Receiver<bool>,
    cmd_tx: &mpsc::UnboundedSender<Command>,
    cmd_rx: &mut mpsc::UnboundedReceiver<Command>,
    started: chrono::DateTime<Utc>,
) -> Result<Next> {
    let state = StateDir::new(&config.homedir);
    state
        .create()
        .with_context(|| format!("cannot create the state directory {}", state.root.display()))?;
    crate::daemon_log::open(&state, config.agent.log_max_bytes);
    let device =
        match provisioning::provision(config, &state, at_startup, forced, shutdown.clone()).await {
            Ok(d) => d,
            Err(provisioning::ProvisionError::Cancelled) => return Ok(Next::Exit),
            Err(e) => return Err(e.into()),
        };
    tracing::info!(
        device_id = device.device_id,
        hub = device.hub_hostname,
        origin = device.origin,
        "device identity"
    );

    let tls = provisioning::tls_config(config).map_err(anyhow::Error::msg)?;
    let client = ModuleIdentityClient::new(
        &device.hub_hostname,
        &device.device_id,
        &device.device_key,
        tls,
    )?
    .with_port(config.hub.https_port)
    .with_timeout(Duration::from_secs(10));
    let identities = Arc::new(IdentityStore::open(&state, &device, client)?);
    let pki = certs::ensure(&state, &device.device_id, &config.hostname)?;

    // generation-scoped shutdown for the servers and the agent
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut outer = shutdown.clone();
    {
        let stop_tx = stop_tx.clone();
        tokio::spawn(async move {
            let _ = outer.wait_for(|v| *v).await;
            stop_tx.send_replace(true);
        });
    }

    // workload API: one socket per module, created by the agent before the module starts
    let lookup_store = identities.clone();
    let workload = Arc::new(WorkloadSockets::new(
        state.clone(),
        certs::module_trust_bundle(&pki.ca_pem, config.trust_bundle_cert.as_deref()),
        Arc::new(move |m| lookup_store.get(m)),
    )?);

    // edge hub
    let (hub_state, hub_handle) =
        start_edge_hub_state(config, &device, &state, &identities, &pki).await;

    let runtime = module_runtime(config, &state).await;
    let agent_status = Arc::new(Mutex::new(AgentStatus::default()));
    let device_link_status = Arc::new(Mutex::new(DeviceLinkStatus::default()));

    // management API
    let status_fn = {
        let config = config.clone();
        let device = device.clone();
        let agent_status = agent_status.clone();
        let device_link_status = device_link_status.clone();
        let hub_handle = hub_handle.clone();
        let hub_state = hub_state.clone();
        Arc::new(move || DaemonStatus {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            started_at_utc: started.to_rfc3339(),
            config_path: config.path.display().to_string(),
            homedir: config.homedir.display().to_string(),
            device_id: device.device_id.clone(),
            hub_hostname: device.hub_hostname.clone(),
            provisioning: device.origin.clone(),
            gateway_hostname: config.hostname.clone(),
            agent: serde_json::to_value(lock(&agent_status).clone()).unwrap_or_default(),
            device_connection: lock(&device_link_status).clone(),
            edge_hub: edge_hub_json(hub_handle.as_deref(), &lock(&hub_state)),
        })
    };
    let system_rows = system_rows_fn(agent_status.clone(), hub_state.clone(), started);
    let mgmt = Management {
        status: status_fn,
        system_rows,
        runtime: runtime.clone(),
        commands: cmd_tx.clone(),
        agent: agent_status.clone(),
    };
    let ml = uds::bind(&state.mgmt_socket(), 0o660)
        .with_context(|| format!("cannot listen on {}", state.mgmt_socket().display()))?;
    let mgmt_task = tokio::spawn(uds::serve(ml, mgmt.handler(), 16, stop_rx.clone()));

    // agent
    let hub_fn = edge_hub_status_fn(hub_handle.clone(), hub_state.clone());
    let ctx = Arc::new(AgentContext {
        config: config.clone(),
        device: device.clone(),
        state: state.clone(),
        identities: identities.clone(),
        runtime: runtime.clone(),
        workload: workload.clone(),
        edge_hub: hub_fn,
        status: agent_status.clone(),
        started,
    });
    let mut agent_task = tokio::spawn(crate::agent::run(ctx, stop_rx.clone()));
    // the agent's device-level connection (the hub shows the device connected)
    let mut device_task = tokio::spawn(device_link::run(
        config.clone(),
        device.clone(),
        device_link_status.clone(),
        stop_rx.clone(),
    ));
    let mut shutdown_w = shutdown.clone();

    let next = tokio::select! {
        exit = &mut agent_task => after_rejection(config, exit).await,
        exit = &mut device_task => after_rejection(config, exit).await,
        c = cmd_rx.recv() => match c {
            Some(Command::Reload) => Next::Reload,
            Some(Command::Reprovision) => Next::Reprovision,
            None => Next::Exit,
        },
        _ = shutdown_w.wait_for(|v| *v) => Next::Exit,
    };

    // teardown
    stop_tx.send_replace(true);
    if !agent_task.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut agent_task).await;
    }
    if !device_task.is_finished() {
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut device_task).await;
    }
    runtime.shutdown().await;
    if let Some(h) = hub_handle
        && let Ok(h) = Arc::try_unwrap(h)
    {
        h.shutdown().await;
    }
    workload.shutdown();
    let _ = mgmt_task.await;
    let _ = std::fs::remove_file(state.mgmt_socket());
    if matches!(next, Next::Reprovision) {
        // A new identity may come with another hub/device: re-created modules get new keys.
        let _ = std::fs::remove_file(state.deployment_cache());
    }
    Ok(next)
}

/// What follows the end of the agent's `$edgeAgent` or device connection: the hub rejected
/// the device's credentials -> DPS again (Dynamic mode), else a retry after 30 s.
async fn after_rejection(config: &Config, exit: Result<AgentExit, tokio::task::JoinError>) -> Next {
    match exit {
        Ok(AgentExit::Shutdown) | Err(_) => Next::Exit,
        Ok(AgentExit::Rejected(reason)) => {
            if config.reprovisioning == ReprovisioningMode::Dynamic
                && matches!(config.provisioning, crate::config::Provisioning::Dps { .. })
            {
                tracing::warn!(
                    reason,
                    "the hub rejected the device identity; provisioning again"
                );
                Next::Reprovision
            } else {
                tracing::error!(
                    reason,
                    "the hub rejected the device identity; retrying in 30 s (check the credentials, or use auto_reprovisioning_mode = \"Dynamic\")"
                );
                tokio::time::sleep(Duration::from_secs(30)).await;
                Next::Reload
            }
        }
    }
}

fn edge_hub_json(h: Option<&fleetedge_hub::EdgeHubHandle>, s: &SystemModule) -> serde_json::Value {
    let mut v = serde_json::json!({
        "runtimeStatus": s.runtime_status.as_str(),
        "statusDescription": s.status_description,
    });
    if let Some(h) = h {
        let st = h.status();
        v["upstreamConnected"] = st.upstream_connected.into();
        v["connectedModules"] = st.connected_modules.into();
        v["queuedMessages"] = st.queued_messages.into();
        v["queuedBytes"] = st.queued_bytes.into();
        v["routes"] = st.routes.into();
        v["lastError"] = st.last_error.into();
        v["listen"] = h
            .local_addrs()
            .iter()
            .map(std::string::ToString::to_string)
            .collect::<Vec<_>>()
            .into();
    }
    v
}

/// Starts the edge hub if the configuration enables it; its status for the management API
/// and the agent's reported properties.
async fn start_edge_hub_state(
    config: &Config,
    device: &DeviceIdentity,
    state: &StateDir,
    identities: &Arc<IdentityStore>,
    pki: &certs::EdgePki,
) -> (
    Arc<Mutex<SystemModule>>,
    Option<Arc<fleetedge_hub::EdgeHubHandle>>,
) {
    let hub_state = Arc::new(Mutex::new(SystemModule {
        runtime_status: RuntimeStatus::Stopped,
        status_description: Some(
            "disabled in the configuration ([edge_hub] enabled = false)".into(),
        ),
        last_start_time_utc: None,
    }));
    let mut hub_handle = None;
    if config.edge_hub.enabled {
        match start_edge_hub(config, device, state, identities, pki).await {
            Ok(h) => {
                *lock(&hub_state) = SystemModule {
                    runtime_status: RuntimeStatus::Running,
                    status_description: None,
                    last_start_time_utc: Some(Utc::now().to_rfc3339()),
                };
                hub_handle = Some(Arc::new(h));
            }
            Err(e) => {
                tracing::error!(target: crate::daemon_log::EDGE_HUB_TARGET, error = %format!("{e:#}"), "the edge hub did not start");
                *lock(&hub_state) = SystemModule {
                    runtime_status: RuntimeStatus::Failed,
                    status_description: Some(format!("{e:#}")),
                    last_start_time_utc: None,
                };
            }
        }
    }
    (hub_state, hub_handle)
}

/// The rows of the system modules (edgeAgent, edgeHub) in the management API's `GET /modules`.
fn system_rows_fn(
    agent_status: Arc<Mutex<AgentStatus>>,
    hub_state: Arc<Mutex<SystemModule>>,
    started: chrono::DateTime<Utc>,
) -> Arc<dyn Fn() -> Vec<mgmt::ModuleRow> + Send + Sync> {
    Arc::new(move || {
        let a = lock(&agent_status).clone();
        let h = lock(&hub_state).clone();
        vec![
            mgmt::system_row(
                "edgeAgent",
                RuntimeStatus::Running,
                Some(if a.link.connected {
                    "connected to the hub".into()
                } else {
                    format!("hub connection: {}", a.link.summary())
                }),
                Some(started),
            ),
            mgmt::system_row(
                "edgeHub",
                h.runtime_status,
                h.status_description,
                h.last_start_time_utc
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                    .map(|t| t.with_timezone(&Utc)),
            ),
        ]
    })
}

/// The edge hub's status as the agent reports it (with the upstream connection's last error).
fn edge_hub_status_fn(
    hub_handle: Option<Arc<fleetedge_hub::EdgeHubHandle>>,
    hub_state: Arc<Mutex<SystemModule>>,
) -> Arc<dyn Fn() -> SystemModule + Send + Sync> {
    Arc::new(move || {
        let mut s = lock(&hub_state).clone();
        if let Some(h) = hub_handle.as_deref() {
            let st = h.status();
            if let Some(e) = st.last_error
                && !st.upstream_connected
            {
                s.status_description = Some(format!("upstream not connected: {e}"));
            }
        }
        s
    })
}

async fn start_edge_hub(
    config: &Config,
    device: &DeviceIdentity,
    state: &StateDir,
    identities: &Arc<IdentityStore>,
    pki: &certs::EdgePki,
) -> Result<fleetedge_hub::EdgeHubHandle> {
    // Cache first, so an unreachable hub does not delay the local hub; refreshed in the
    // background (the agent reprovisions if the hub rejects the device).
    if identities.get("$edgeHub").is_some() {
        let refresh = identities.clone();
        tokio::spawn(async move {
            if let Err(e) = refresh.ensure("$edgeHub").await {
                tracing::warn!(error = %e, "cannot refresh the $edgeHub identity");
            }
        });
    } else {
        identities
            .ensure("$edgeHub")
            .await
            .context("the $edgeHub module identity")?;
    }
    let opts = fleetedge_hub::EdgeHubOptions {
        device_id: device.device_id.clone(),
        listen: config.edge_hub.listen.clone(),
        server_cert_chain_pem: pki.server_chain_pem.clone(),
        server_key_pem: pki.server_key_pem.clone(),
        upstream: fleetedge_hub::UpstreamOptions {
            hub_hostname: device.hub_hostname.clone(),
            mqtt_port: config.hub.mqtt_port,
            connect_address: None,
            ca_pem_path: config.trust_bundle_cert.clone(),
        },
        state_dir: state.edge_hub_dir(),
        queue_max_bytes: config.edge_hub.queue_max_bytes,
        default_ttl: config.edge_hub.default_ttl,
    };
    let creds = Arc::new(Credentials(identities.clone()));
    let h = fleetedge_hub::EdgeHub::start(opts, creds).await?;
    tracing::info!(target: crate::daemon_log::EDGE_HUB_TARGET, listen = ?h.local_addrs(), "edge hub started");
    Ok(h)
}

/// The management socket of the configuration at `config_path` (for the CLI).
pub fn mgmt_socket_of(config: &Config) -> PathBuf {
    StateDir::new(&config.homedir).mgmt_socket()
}

/// Whether `path` is a live daemon's management socket.
pub async fn daemon_running(path: &Path) -> bool {
    mgmt::call(path, http::Method::GET, "/status").await.is_ok()
}
