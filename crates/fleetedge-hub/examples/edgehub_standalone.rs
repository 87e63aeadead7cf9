//! Runs the edge hub alone (without the fleetedge daemon), for manual tests with the
//! official SDKs: `cargo run -p fleetedge-hub --example edgehub_standalone -- config.json`.
//!
//! ```json
//! {"device_id": "edge-1", "listen": ["127.0.0.3:8883"], "gateway_names": ["127.0.0.3"],
//!  "hub_hostname": "localhost", "hub_mqtt_port": 8883, "hub_connect_address": "127.0.0.1",
//!  "hub_ca": "/path/ca.pem", "state_dir": "/tmp/edgeh-state",
//!  "module_keys": {"$edgeHub": "<key>", "A": "<key>"}}
//! ```
//! A throw-away edge CA and a server certificate for `gateway_names` are generated; the CA is
//! written to `<state_dir>/edge-ca.pem` for the modules to trust.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use fleetedge_hub::{CredentialSource, EdgeHub, EdgeHubOptions, ModuleKeys, UpstreamOptions};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use serde_json::Value;

struct Keys(HashMap<String, String>);

impl CredentialSource for Keys {
    fn module_keys(&self, module_id: &str) -> Option<ModuleKeys> {
        self.0.get(module_id).map(|k| ModuleKeys {
            primary: k.clone(),
            secondary: String::new(),
            generation_id: String::new(),
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let path = std::env::args()
        .nth(1)
        .ok_or("usage: edgehub_standalone <config.json>")?;
    let c: Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    let s = |k: &str| {
        c[k].as_str()
            .map(str::to_string)
            .ok_or(format!("missing '{k}'"))
    };
    let state_dir = std::path::PathBuf::from(s("state_dir")?);
    std::fs::create_dir_all(&state_dir)?;

    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "edge standalone CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key)?;
    let names: Vec<String> = c["gateway_names"]
        .as_array()
        .ok_or("missing 'gateway_names'")?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(names.clone())?;
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].clone());
    let leaf = params.signed_by(&key, &ca, &ca_key)?;
    std::fs::write(state_dir.join("edge-ca.pem"), ca.pem())?;

    let keys: HashMap<String, String> = c["module_keys"]
        .as_object()
        .ok_or("missing 'module_keys'")?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
        .collect();
    let opts = EdgeHubOptions {
        device_id: s("device_id")?,
        listen: c["listen"]
            .as_array()
            .ok_or("missing 'listen'")?
            .iter()
            .filter_map(|v| v.as_str()?.parse().ok())
            .collect(),
        server_cert_chain_pem: format!("{}{}", leaf.pem(), ca.pem()),
        server_key_pem: key.serialize_pem(),
        upstream: UpstreamOptions {
            hub_hostname: s("hub_hostname")?,
            mqtt_port: c["hub_mqtt_port"].as_u64().unwrap_or(8883) as u16,
            connect_address: c["hub_connect_address"].as_str().map(str::to_string),
            ca_pem_path: c["hub_ca"].as_str().map(Into::into),
        },
        state_dir,
        queue_max_bytes: 256 << 20,
        default_ttl: Duration::from_hours(2),
    };
    let edge = EdgeHub::start(opts, Arc::new(Keys(keys))).await?;
    println!("edge hub listening on {:?}", edge.local_addrs());
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(5)) => {
                println!("status: {:?}", edge.status());
            }
        }
    }
    edge.shutdown().await;
    Ok(())
}
