//! `fleethub serve`: opens the data directory, builds the services and runs the listeners.

use crate::certs::{self, TlsFiles};
use crate::config::Config;
use crate::header_case::{HeadRequests, HeaderCase};
use crate::hostnames;
use crate::identity;
use crate::info::ServerInfo;
use crate::listener::{Drain, Handler, SHUTDOWN_GRACE, Shutdown};
use anyhow::{Context, Result};
use axum::extract::ConnectInfo;
use fleethub_http::HttpState;
use fleethub_mqtt::{Gateway, GatewayConfig};
use fleethub_services::hub::EventHubConfig;
use fleethub_services::{Dps, DpsConfig, Hub, HubConfig, ServiceAuth, Shared};
use fleethub_store::Store;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tower::ServiceExt;

/// Everything a running server is made of.
pub struct Server {
    pub info: ServerInfo,
    pub dps: Arc<Dps>,
    pub hub: Arc<Hub>,
    pub tls: TlsAcceptor,
    pub gateway: Arc<Gateway>,
    /// The AMQP endpoint (AMQPS listener and AMQP over WebSocket).
    pub amqp: Arc<fleethub_amqp::AmqpService>,
    pub router: axum::Router,
    pub cfg: Config,
    /// Held while the server runs: a second server on this data directory refuses to start.
    pub data_dir_lock: crate::data_dir::DataDirLock,
    pub opts: StartOptions,
    /// Whether this start changed the stored host names.
    pub host_names: hostnames::Outcome,
}

/// What `fleethub serve` was asked to do besides serving.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartOptions {
    /// Provision a demo device through the server once it listens.
    pub demo: bool,
    /// Accept host names other than the stored ones (`--change-hostnames`).
    pub change_hostnames: bool,
    /// Print the service keys (and the demo device's key) at start even when stdout is not a
    /// terminal (`--show-keys`); on a terminal they are always printed.
    pub show_keys: bool,
}

fn create_private_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot restrict permissions of {}", dir.display()))?;
    }
    Ok(())
}

/// The hub service with its Event Hub-compatible endpoint started (the partition count fixed).
async fn start_hub(
    shared: &Shared,
    cfg: &Config,
    host: &str,
    policies: Vec<fleethub_services::Policy>,
) -> Result<Arc<Hub>> {
    let hub = Hub::new(
        shared,
        HubConfig {
            host: host.to_string(),
            token_skew_secs: cfg.token_skew_secs,
        },
        policies,
    )
    .with_event_hub(EventHubConfig {
        partition_count: cfg.partition_count,
        max_consumer_groups: cfg.max_consumer_groups,
    });
    hub.start_event_hub()
        .await
        .context("cannot open the event hub endpoint of the telemetry log")?;
    let hub = Arc::new(hub);
    // Several nodes: events and method calls for identities on other nodes go over NATS.
    if let (Some(url), Some(node_id)) = (&cfg.cluster.nats_url, &cfg.cluster.node_id) {
        fleethub_cluster_nats::join(url, host, node_id, hub.clone())
            .await
            .context("cannot join the cluster's NATS bus")?;
    }
    Ok(hub)
}

/// Opens (or initialises) the data directory and builds the services. No sockets yet.
pub async fn build(cfg: Config, opts: StartOptions) -> Result<Server> {
    cfg.validate()?;
    create_private_dir(&cfg.data_dir)?;
    let data_dir_lock = crate::data_dir::lock(&cfg.data_dir)?;
    let store: Arc<dyn Store> = cfg.open_store().await?;
    if let Some(node_id) = &cfg.cluster.node_id {
        crate::cluster::claim(store.clone(), node_id).await?;
    }
    let ident = identity::load_or_init(store.as_ref()).await?;
    let (names, host_names) =
        hostnames::load(store.as_ref(), &cfg.data_dir, &cfg, opts.change_hostnames).await?;

    // Nodes sharing a PostgreSQL store share one development CA (docs/scale-out.md).
    if cfg.store.backend == crate::store_config::Backend::Postgres
        && cfg.tls_cert.is_none()
        && cfg.ca_cert.is_none()
    {
        crate::shared_ca::sync(store.as_ref(), &cfg.data_dir.join("certs")).await?;
    }
    let tls_files = tls_files(&cfg, &names.certificate_names())?;
    let tls = TlsAcceptor::from(crate::tls::server_config(
        &tls_files.cert_chain,
        &tls_files.key,
    )?);

    let shared = Shared::new(store.clone()).with_throttle(cfg.throttle.clone());
    let auth_log = shared.auth_failures.clone();
    let dps = Arc::new(Dps::new(
        &shared,
        DpsConfig {
            id_scope: ident.id_scope.clone(),
            linked_hubs: vec![names.hub.clone()],
            token_skew_secs: cfg.token_skew_secs,
            retry_after_secs: cfg.dps_retry_after_secs,
        },
    ));
    let hub = start_hub(&shared, &cfg, &names.hub, ident.hub_policies.clone()).await?;
    connect_dps(&dps, &hub, &cfg, &tls_files)?;
    let dps_auth = Arc::new(ServiceAuth::new(
        "dps-service",
        names.dps.clone(),
        ident.dps_policies,
        auth_log.clone(),
    ));
    let hub_auth = Arc::new(ServiceAuth::new(
        "hub-service",
        names.hub.clone(),
        ident.hub_policies,
        auth_log.clone(),
    ));

    let info = ServerInfo {
        id_scope: ident.id_scope,
        dps_host: names.dps.clone(),
        hub_host: names.hub.clone(),
        ca_cert_path: tls_files
            .ca_cert
            .as_ref()
            .map(|p| {
                std::path::absolute(p)
                    .unwrap_or(p.clone())
                    .display()
                    .to_string()
            })
            .unwrap_or_default(),
        mqtt_port: cfg.mqtt_port,
        https_port: cfg.https_port,
        dps_service_connection_string: dps_auth
            .connection_string("provisioningserviceowner")
            .unwrap_or_default(),
        hub_service_connection_string: hub_auth
            .connection_string("iothubowner")
            .unwrap_or_default(),
        amqp_port: cfg.amqp_port,
        event_hub_compatible_endpoint: crate::info::event_hub_endpoint(&names.hub),
        event_hub_compatible_name: hub.event_hub_name().to_string(),
        // The `service` policy: ServiceConnect, what reading the endpoint needs.
        event_hub_compatible_connection_string: crate::info::event_hub_connection_string(
            &hub_auth.connection_string("service").unwrap_or_default(),
            hub.event_hub_name(),
        ),
        policies: [("hub", &hub_auth), ("dps", &dps_auth)]
            .into_iter()
            .flat_map(|(service, auth)| crate::info::PolicyInfo::list(service, auth))
            .collect(),
    };

    let gateway = Gateway::new(dps.clone(), hub.clone(), gateway_config(&cfg));
    let amqp = fleethub_amqp::AmqpService::new_with_dps(
        hub.clone(),
        hub_auth.clone(),
        Some(dps.clone()),
        crate::amqp::amqp_config(&cfg),
    );
    let ws_gateway = gateway.clone();
    let metrics_hub = hub.clone();
    let (metrics, metrics_auth) = (shared.metrics.clone(), auth_log.clone());
    let http_state = HttpState {
        dps: dps.clone(),
        hub: hub.clone(),
        dps_service_auth: dps_auth,
        hub_service_auth: hub_auth,
        auth_failures: auth_log,
    };
    let ui = cfg.ui.then(|| dashboard(&cfg, &http_state, &shared));
    let router = fleethub_http::router(http_state).route(
        "/metrics",
        axum::routing::get(move || {
            let (hub, metrics, auth) = (metrics_hub.clone(), metrics.clone(), metrics_auth.clone());
            async move { crate::metrics_endpoint::render(&hub, &metrics, &auth).await }
        }),
    );
    let router = match ui {
        Some(state) => router.merge(fleethub_ui::router(state)),
        None => router,
    };
    let router = crate::websocket::Endpoint {
        gateway: ws_gateway,
        amqp: amqp.clone(),
        max_message_bytes: cfg.max_mqtt_packet_bytes,
    }
    .routes(router);
    Ok(Server {
        info,
        dps,
        hub,
        tls,
        gateway,
        amqp,
        router,
        cfg,
        data_dir_lock,
        opts,
        host_names,
    })
}

/// The web dashboard's state (docs/dashboard.md), over the same services and policies as the
/// HTTP APIs.
fn dashboard(cfg: &Config, http: &HttpState, shared: &Shared) -> fleethub_ui::UiState {
    fleethub_ui::UiState {
        dps: http.dps.clone(),
        hub: http.hub.clone(),
        dps_auth: http.dps_service_auth.clone(),
        hub_auth: http.hub_service_auth.clone(),
        auth_failures: http.auth_failures.clone(),
        session_key: fleethub_ui::SessionKey::generate(),
        session_secs: cfg.ui_session_hours * 3600,
        clock: shared.clock.clone(),
        rate: fleethub_ui::rate::TelemetryRate::start(shared.metrics.clone(), shared.clock.clone()),
    }
}

fn gateway_config(cfg: &Config) -> GatewayConfig {
    GatewayConfig {
        max_packet_bytes: cfg.max_mqtt_packet_bytes,
        write_stall_timeout_secs: cfg.mqtt_write_stall_timeout_secs.max(1),
        max_token_lifetime_secs: cfg.max_token_lifetime_secs.max(1),
        ..Default::default()
    }
}

/// Binds both listeners and serves until the process is stopped.
pub async fn run(server: Server) -> Result<()> {
    let cfg = &server.cfg;
    let mqtt = bind(&cfg.bind, cfg.mqtt_port, "MQTT/TLS").await?;
    let https = bind(&cfg.bind, cfg.https_port, "HTTPS").await?;
    let amqps = bind(&cfg.bind, cfg.amqp_port, "AMQPS").await?;
    server.info.write(&cfg.data_dir)?;
    // stdout of a service ends up in journald or a log file: keys only on a terminal or when asked.
    let show_keys = server.opts.show_keys || std::io::stdout().is_terminal();
    if show_keys {
        println!("{}", server.info.banner());
    } else {
        println!("{}", server.info.banner_without_keys(&cfg.data_dir));
    }
    if let hostnames::Outcome::Changed(changes) = &server.host_names {
        println!(
            "host names changed on request: {}\n  devices must resolve, trust and use the new names\n",
            changes.join(", ")
        );
    }
    // Each listener has its own connection limit: idle HTTPS clients cannot lock MQTT out.
    let mqtt_limit = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    let https_limit = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    let amqp_limit = Arc::new(tokio::sync::Semaphore::new(cfg.max_connections));
    let drain = Drain::new();
    tokio::spawn(retention_task(
        server.hub.clone(),
        Duration::from_secs(cfg.telemetry_retention_hours.max(1) * 3600),
    ));
    tokio::spawn(
        server
            .hub
            .clone()
            .run_deployments(Duration::from_secs(DEPLOYMENT_SWEEP_SECS)),
    );
    let mut mqtt_task = tokio::spawn(
        drain
            .listener(
                "MQTT",
                mqtt,
                server.tls.clone(),
                mqtt_limit,
                crate::mqtt_handler::MqttHandler(server.gateway.clone()),
            )
            .run(),
    );
    let mut https_task = tokio::spawn(
        drain
            .listener(
                "HTTPS",
                https,
                server.tls.clone(),
                https_limit,
                HttpsHandler {
                    router: server.router.clone(),
                    header_read_timeout: Duration::from_secs(cfg.http_header_read_timeout_secs),
                },
            )
            .run(),
    );
    let mut amqp_task = tokio::spawn(
        drain
            .listener(
                "AMQP",
                amqps,
                server.tls.clone(),
                amqp_limit,
                crate::amqp::AmqpHandler(server.amqp.clone()),
            )
            .run(),
    );
    if server.opts.demo {
        let (dps, info, dir) = (
            server.dps.clone(),
            server.info.clone(),
            cfg.data_dir.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = crate::demo::run(&dps, &info, &dir, show_keys).await {
                eprintln!("demo failed: {e:#}");
            }
        });
    }
    tokio::select! {
        r = &mut mqtt_task => r.context("MQTT listener stopped")??,
        r = &mut https_task => r.context("HTTPS listener stopped")??,
        r = &mut amqp_task => r.context("AMQP listener stopped")??,
        () = shutdown_signal() => tracing::info!("shutting down: draining connections"),
    }
    // MQTT sessions finish the burst in progress (telemetry committed, PUBACKs written), then
    // close their streams; HTTPS answers the requests in flight.
    server.gateway.shutdown();
    server.amqp.shutdown();
    if drain.shutdown(SHUTDOWN_GRACE).await {
        tracing::info!("all connections closed");
    } else {
        tracing::warn!(
            "connections still open after {}s; exiting anyway",
            SHUTDOWN_GRACE.as_secs()
        );
    }
    Ok(())
}

/// The deployment engine re-plans every device this often (besides reacting to changes).
const DEPLOYMENT_SWEEP_SECS: u64 = 60;

/// Prunes the built-in telemetry endpoint every 10 minutes.
async fn retention_task(hub: Arc<Hub>, retention: Duration) {
    let mut tick = tokio::time::interval(Duration::from_mins(10));
    loop {
        tick.tick().await;
        match hub.apply_retention(retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(deleted = n, "telemetry retention applied"),
            Err(e) => tracing::warn!("telemetry retention failed: {e}"),
        }
    }
}

async fn bind(host: &str, port: u16, what: &str) -> Result<TcpListener> {
    TcpListener::bind((host, port)).await.with_context(|| {
        let hint = if port < 1024 {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE: run as root, or `sudo setcap cap_net_bind_service=+ep $(which fleethub)`)"
        } else {
            " (is another server already listening there?)"
        };
        format!("cannot listen for {what} on {host}:{port}{hint}")
    })
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

/// How long an MQTT connection may take to finish after shutdown began (the hub session
/// commits and acknowledges the burst in progress, then closes; a connection still before or
/// in its CONNECT, or a DPS session, is dropped at this bound).
pub(crate) const MQTT_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// HTTPS connections (HTTP/1.1 keep-alive, WebSocket upgrades): at shutdown the request in
/// flight is answered, then the connection closes.
#[derive(Clone)]
struct HttpsHandler {
    router: axum::Router,
    /// hyper's header-read timer: it runs from the connection's start and from the end of each
    /// response until the next request head is complete, so it closes half-sent requests and
    /// idle keep-alive connections alike (`http_header_read_timeout_secs`).
    header_read_timeout: Duration,
}

impl Handler for HttpsHandler {
    async fn serve(&self, stream: TlsStream<TcpStream>, peer: SocketAddr, mut shutdown: Shutdown) {
        // Response header names in Azure's spelling (`ETag`, ...): the IO adapter follows the
        // responses; it learns which ones answer HEAD (no body) as requests reach the router.
        let heads = HeadRequests::default();
        let noted = heads.clone();
        // A WebSocket upgraded from this connection keeps a clone: it stays counted by the
        // listener's limit and the shutdown drain after this task has ended.
        // The connection's extensions go into each request here rather than through
        // `Router::layer`, which wraps every route again (for each connection).
        let extension_shutdown = shutdown.clone();
        let svc = self.router.clone().map_request(
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                noted.note(req.method());
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(extension_shutdown.clone());
                req
            },
        );
        let svc = hyper_util::service::TowerToHyperService::new(svc);
        let conn = hyper::server::conn::http1::Builder::new()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .serve_connection(TokioIo::new(HeaderCase::new(stream, heads)), svc)
            .with_upgrades();
        tokio::pin!(conn);
        let result = tokio::select! {
            r = conn.as_mut() => r,
            () = shutdown.recv() => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            tracing::debug!(%peer, "HTTPS connection ended: {e}");
        }
    }
}

/// The server certificate: the operator's own (`tls_cert`/`tls_key`), or one issued for
/// `names` by the operator's CA (`ca_cert`/`ca_key`) or the development CA.
fn tls_files(cfg: &Config, names: &[String]) -> Result<TlsFiles> {
    Ok(match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => TlsFiles {
            ca_cert: None,
            cert_chain: cert.clone(),
            key: key.clone(),
        },
        _ => certs::ensure_pki(
            &cfg.data_dir.join("certs"),
            names,
            cfg.ca_cert
                .as_deref()
                .zip(cfg.ca_key.as_deref())
                .map(|(cert, key)| certs::OperatorCa { cert, key }),
        )?,
    })
}

/// What the DPS reaches beyond its store: linked hubs (their service API), allocation webhooks,
/// and the local hub (devices that move away are deleted through it; assignments re-plan its
/// deployments).
fn connect_dps(dps: &Dps, hub: &Arc<Hub>, cfg: &Config, tls_files: &TlsFiles) -> Result<()> {
    let linked_trust = linked_hub_trust(cfg, tls_files)?;
    dps.set_allocation_webhooks(
        Arc::new(crate::allocation_webhook::WebhookClient::new(
            webhook_trust(&linked_trust)?,
        )),
        std::time::Duration::from_secs(cfg.allocation_webhook_timeout_secs.max(1)),
    );
    dps.set_remote_hubs(Arc::new(crate::linked_hubs::LinkedHubClient::new(
        linked_trust,
    )));
    dps.set_local_hub(Arc::downgrade(hub));
    let hub = Arc::downgrade(hub);
    dps.on_device_assigned(Box::new(move |device_id| {
        if let Some(hub) = hub.upgrade() {
            hub.deployments_device_changed(device_id);
        }
    }));
    Ok(())
}

/// The CAs the DPS trusts when it calls an allocation webhook over HTTPS: the system's roots
/// (a public webhook) plus those it trusts for linked hubs.
fn webhook_trust(
    linked: &fleethub_service_client::CaTrust,
) -> Result<fleethub_device::ClientTlsConfig> {
    use fleethub_device::tls;
    let mut roots = tls::load_system_roots().unwrap_or_else(|_| rustls::RootCertStore::empty());
    if let fleethub_service_client::CaTrust::Pem(pem) = linked {
        roots.roots.extend(tls::load_ca_pem(pem)?.roots);
    }
    Ok(fleethub_device::ClientTlsConfig::from_rustls(Arc::new(
        tls::client_config(roots)?,
    )))
}

/// The CAs the DPS trusts when it calls linked hubs: the CA of this server's certificate (when
/// it has one) and `linked_hub_ca_file`; the system's roots when neither is there.
fn linked_hub_trust(
    cfg: &Config,
    tls_files: &TlsFiles,
) -> Result<fleethub_service_client::CaTrust> {
    let mut pem = Vec::new();
    for path in tls_files
        .ca_cert
        .iter()
        .chain(cfg.linked_hub_ca_file.iter())
    {
        let bytes = std::fs::read(path)
            .with_context(|| format!("cannot read CA certificates {}", path.display()))?;
        pem.extend_from_slice(&bytes);
        pem.push(b'\n');
    }
    Ok(if pem.is_empty() {
        fleethub_service_client::CaTrust::System
    } else {
        fleethub_service_client::CaTrust::Pem(pem)
    })
}
