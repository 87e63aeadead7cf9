//! Test harness: the real `fleethub` server binary on free ports, hub service REST calls,
//! a throw-away edge CA, and an in-process edge hub.

#![allow(dead_code)]

pub use fleethub_test_ports::free_port;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetedge_hub::{
    CredentialSource, EdgeHub, EdgeHubHandle, EdgeHubOptions, ModuleKeys, UpstreamOptions,
};
use fleethub_device::ClientTlsConfig;
use fleethub_service_client::{CaTrust, Credentials, HttpsTransport, ServiceClient};
use http::Method;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;

/// The gateway host name in the edge hub's server certificate.
pub const GATEWAY: &str = "edgehub.test";
/// Hub host name the test server runs with.
pub const HUB_HOST: &str = "localhost";

/// `FLEETHUB_BIN`, else `fleethub` next to the test's target directory
/// (`cargo build -p fleethub-server` with the same `CARGO_TARGET_DIR`).
pub fn server_binary() -> PathBuf {
    if let Ok(p) = std::env::var("FLEETHUB_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    // target/debug/deps/<test> -> target/debug/fleethub
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("fleethub"))
        .unwrap();
    assert!(
        bin.exists(),
        "no server binary at {}: run `cargo build -p fleethub-server` (same CARGO_TARGET_DIR) or set FLEETHUB_BIN",
        bin.display()
    );
    bin
}

pub struct Server {
    bin: PathBuf,
    pub dir: tempfile::TempDir,
    pub mqtt_port: u16,
    pub https_port: u16,
    child: Option<Child>,
}

impl Server {
    pub fn start() -> Server {
        let mut s = Server {
            bin: server_binary(),
            dir: tempfile::Builder::new()
                .prefix("edgeh-srv")
                .tempdir()
                .unwrap(),
            mqtt_port: free_port(),
            https_port: free_port(),
            child: None,
        };
        s.spawn();
        s
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(&self.bin)
            .args(["serve", "--data-dir"])
            .arg(self.dir.path().join("data"))
            .args(["--bind", "127.0.0.1", "--hub-hostname", HUB_HOST])
            .args(["--dps-hostname", "localhost"])
            .args(["--mqtt-port", &self.mqtt_port.to_string()])
            .args(["--https-port", &self.https_port.to_string()])
            .args(["--amqp-port", &free_port().to_string()])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("cannot start the server binary");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self.info_path().exists()
                && std::net::TcpStream::connect(("127.0.0.1", self.mqtt_port)).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.https_port)).is_ok();
            if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "server not ready: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// kill -9.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn info_path(&self) -> PathBuf {
        self.dir.path().join("data/server-info.json")
    }

    pub fn info(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.info_path()).unwrap()).unwrap()
    }

    pub fn ca_path(&self) -> PathBuf {
        PathBuf::from(self.info()["caCertPath"].as_str().unwrap())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Hub service REST calls with an `iothubowner` SAS, through the shared service client.
pub struct Service {
    client: ServiceClient<HttpsTransport>,
}

impl Service {
    pub fn new(server: &Server) -> Service {
        let info = server.info();
        let credentials = Credentials::from_connection_string(
            info["hubServiceConnectionString"].as_str().unwrap(),
        )
        .unwrap();
        let transport = HttpsTransport::connect(
            &CaTrust::File(server.ca_path()),
            "localhost",
            &format!("localhost:{}", server.https_port),
        )
        .unwrap();
        Service {
            client: ServiceClient::hub(transport, credentials),
        }
    }

    /// `method path[?query]`; PATCH and DELETE send `If-Match: "*"`.
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let (path, query) = path.split_once('?').unwrap_or((path, ""));
        let query: Vec<(&str, String)> = query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k, v.to_string()))
            .collect();
        let if_match = method == Method::PATCH || method == Method::DELETE;
        let headers = if if_match {
            vec![("If-Match".to_string(), "\"*\"".to_string())]
        } else {
            vec![]
        };
        let method = match method {
            Method::GET => "GET",
            Method::PUT => "PUT",
            Method::POST => "POST",
            Method::PATCH => "PATCH",
            Method::DELETE => "DELETE",
            other => panic!("unexpected method {other}"),
        };
        let resp = self
            .client
            .send(method, path, &query, headers, body.as_ref())
            .await
            .unwrap();
        let json = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        (resp.status, json)
    }

    /// Creates (or reads, when it exists) a module identity; returns its keys.
    pub async fn module_keys(&self, device: &str, module: &str) -> ModuleKeys {
        let path = format!("/devices/{device}/modules/{module}");
        let (status, mut m) = self
            .call(
                Method::PUT,
                &path,
                Some(serde_json::json!({"deviceId": device, "moduleId": module,
                    "authentication": {"type": "sas", "symmetricKey": {}}})),
            )
            .await;
        if status != 200 {
            let (s, got) = self.call(Method::GET, &path, None).await;
            assert_eq!(s, 200, "module {module}: PUT {status} {m}; GET {got}");
            m = got;
        }
        let key = |k: &str| {
            m["authentication"]["symmetricKey"][k]
                .as_str()
                .unwrap()
                .to_string()
        };
        ModuleKeys {
            primary: key("primaryKey"),
            secondary: key("secondaryKey"),
            generation_id: m["generationId"].as_str().unwrap_or_default().to_string(),
        }
    }

    /// All telemetry in the built-in endpoint.
    pub async fn events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut from = 0u64;
        loop {
            let (status, page) = self
                .call(
                    Method::GET,
                    &format!("/messages/events?from={from}&limit=1000"),
                    None,
                )
                .await;
            assert_eq!(status, 200, "{page}");
            let msgs = page["messages"].as_array().cloned().unwrap_or_default();
            if msgs.is_empty() {
                return out;
            }
            from = page["next"].as_u64().unwrap();
            out.extend(msgs);
        }
    }
}

/// Keys of the device's module identities, as the daemon would hold them.
#[derive(Default)]
pub struct Keys(pub Mutex<HashMap<String, ModuleKeys>>);

impl CredentialSource for Keys {
    fn module_keys(&self, module_id: &str) -> Option<ModuleKeys> {
        self.0.lock().unwrap().get(module_id).cloned()
    }
}

/// An edge CA and a server certificate for [`GATEWAY`] signed by it.
#[allow(clippy::struct_field_names, reason = "all three are PEM texts")]
pub struct EdgePki {
    pub ca_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

impl EdgePki {
    pub fn new() -> EdgePki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "edge test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![GATEWAY.to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, GATEWAY);
        let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
        EdgePki {
            ca_pem: ca.pem(),
            chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
            key_pem: key.serialize_pem(),
        }
    }

    /// Client TLS trusting the edge CA, dialling `addr` for [`GATEWAY`].
    pub fn client_tls(&self, addr: SocketAddr) -> ClientTlsConfig {
        ClientTlsConfig::with_ca_pem(&self.ca_pem)
            .unwrap()
            .with_address_override(GATEWAY, addr.ip().to_string())
    }
}

pub fn edge_options(
    server: &Server,
    pki: &EdgePki,
    device: &str,
    state_dir: &Path,
    listen: SocketAddr,
) -> EdgeHubOptions {
    EdgeHubOptions {
        device_id: device.to_string(),
        listen: vec![listen],
        server_cert_chain_pem: pki.chain_pem.clone(),
        server_key_pem: pki.key_pem.clone(),
        upstream: UpstreamOptions {
            hub_hostname: HUB_HOST.to_string(),
            mqtt_port: server.mqtt_port,
            connect_address: Some("127.0.0.1".to_string()),
            ca_pem_path: Some(server.ca_path()),
        },
        state_dir: state_dir.to_path_buf(),
        queue_max_bytes: 64 << 20,
        default_ttl: Duration::from_hours(1),
    }
}

pub async fn start_edge(opts: EdgeHubOptions, keys: Arc<Keys>) -> EdgeHubHandle {
    EdgeHub::start(opts, keys).await.expect("edge hub starts")
}

/// Polls `f` every 100 ms until it returns `Some`, at most `secs` seconds.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
