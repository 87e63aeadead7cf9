//! Device twin and direct methods: reports properties, prints desired-property updates (and
//! reports each accepted value back), answers the `reboot` direct method (404 for others),
//! and prints cloud-to-device messages.
//! Connects like `send_telemetry` (DPS or `--connection-string`); runs until Ctrl-C or for
//! `--run-for` seconds.
//!
//! ```sh
//! cargo run -p fleethub-device --example device_twin_methods -- \
//!   --connection-string 'HostName=hub.fleethub.local;DeviceId=dev-01;SharedAccessKey=...' \
//!   --ca-cert fleethub-data/certs/ca.pem --hub-address 127.0.0.1
//! # then, from the service side: update the twin's desired properties, invoke `reboot`.
//! ```

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::Duration;

use fleethub_device::{MethodRequest, MethodResponse};
use serde_json::{Value, json};

const EXTRA: [common::Setting; 1] = [(
    "--run-for",
    "RUN_FOR_SECS",
    "stop after this many seconds (default: until Ctrl-C)",
)];

async fn on_method(request: MethodRequest) -> MethodResponse {
    println!(
        "Direct method '{}' (rid {}) with payload {}",
        request.name, request.rid, request.payload
    );
    match request.name.as_str() {
        "reboot" => {
            let delay = request
                .payload
                .get("delay")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            println!("  -> rebooting in {delay} s (simulated)");
            MethodResponse::ok(json!({"result": "rebooting", "delay": delay}))
        }
        other => MethodResponse::new(404, json!({"error": format!("unknown method '{other}'")})),
    }
}

async fn run() -> Result<(), String> {
    let settings = common::Settings::load("device_twin_methods", &EXTRA)?;
    let run_for: u64 = settings.parse("RUN_FOR_SECS", 0)?;
    let client = settings.connect().await?;
    let err = |e: fleethub_device::DeviceError| e.to_string();
    println!("Connected to {} as {}", client.host(), client.device_id());

    let twin = client.get_twin().await.map_err(err)?;
    println!("Twin: {twin}");
    let version = client
        .patch_reported(json!({
            "firmwareVersion": "1.0.0",
            "sdk": fleethub_device::USER_AGENT,
            "startedAt": fleethub_core::time_util::now_unix(),
        }))
        .await
        .map_err(err)?;
    println!("Reported properties updated: $version {version}");

    let mut desired = client.desired_updates().await.map_err(err)?;
    let methods = client.on_method(on_method).await.map_err(err)?;
    let mut c2d = client.c2d_messages().await.map_err(err)?;
    println!("Waiting for desired-property updates, direct methods and C2D messages ...");

    let stop = async {
        if run_for > 0 {
            tokio::time::sleep(Duration::from_secs(run_for)).await;
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    tokio::pin!(stop);
    loop {
        tokio::select! {
            patch = desired.recv() => {
                let Some(patch) = patch else { break };
                println!("Desired properties update: {patch}");
                // Acknowledge every desired value (the Azure "writable property" convention).
                let version = patch.get("$version").cloned().unwrap_or(Value::Null);
                let mut ack = serde_json::Map::new();
                if let Some(obj) = patch.as_object() {
                    for (k, v) in obj.iter().filter(|(k, _)| !k.starts_with('$')) {
                        ack.insert(k.clone(), json!({"value": v, "ac": 200, "av": version}));
                    }
                }
                if !ack.is_empty() {
                    match client.patch_reported(Value::Object(ack)).await {
                        Ok(v) => println!("  -> acknowledged in reported properties ($version {v})"),
                        Err(e) => eprintln!("  -> cannot report: {e}"),
                    }
                }
            }
            message = c2d.recv() => {
                let Some(m) = message else { break };
                println!(
                    "C2D message {}: {} (properties {:?})",
                    m.message_id.as_deref().unwrap_or("-"),
                    m.body_text(),
                    m.properties
                );
            }
            () = &mut stop => break,
        }
    }
    methods.abort();
    client.close().await;
    println!("Closed");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    common::main("device_twin_methods", &EXTRA, run).await
}
