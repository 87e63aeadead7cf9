//! The device tutorial flow: provision with DPS (symmetric key), connect to the assigned hub
//! over MQTT and send telemetry messages, printing each acknowledgement. With
//! `--connection-string` (or `IOTHUB_DEVICE_CONNECTION_STRING`) DPS is skipped.
//!
//! ```sh
//! PROVISIONING_HOST=localhost PROVISIONING_IDSCOPE=0ne00000A0A \
//! PROVISIONING_REGISTRATION_ID=dev-01 PROVISIONING_SYMMETRIC_KEY=... \
//! FLEETHUB_CA_CERT=fleethub-data/certs/ca.pem \
//!   cargo run -p fleethub-device --example send_telemetry
//!
//! cargo run -p fleethub-device --example send_telemetry -- \
//!   --connection-string 'HostName=hub.fleethub.local;DeviceId=dev-01;SharedAccessKey=...' \
//!   --ca-cert fleethub-data/certs/ca.pem --hub-address 127.0.0.1 --hub-port 8883
//! ```
//!
//! Run with `--help` for every setting (environment variable or flag).

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use fleethub_device::Message;

const EXTRA: [common::Setting; 2] = [
    ("--count", "MESSAGE_COUNT", "messages to send (default 10)"),
    (
        "--interval-ms",
        "MESSAGE_INTERVAL_MS",
        "pause between messages (default 1000)",
    ),
];

async fn run() -> Result<(), String> {
    let settings = common::Settings::load("send_telemetry", &EXTRA)?;
    let count: u32 = settings.parse("MESSAGE_COUNT", 10)?;
    let interval = Duration::from_millis(settings.parse("MESSAGE_INTERVAL_MS", 1000u64)?);
    let client = settings.connect().await?;
    println!(
        "Connected to {} as {}; sending {count} messages",
        client.host(),
        client.device_id()
    );
    for i in 1..=count {
        let body = serde_json::json!({
            "messageNumber": i,
            "temperature": 20.0 + f64::from(i % 7) * 0.5,
            "humidity": 60 + i % 10,
        });
        let message = Message::json(&body)
            .with_message_id(format!("{}-{i}", client.device_id()))
            .with_property("temperatureAlert", if i % 7 > 4 { "true" } else { "false" });
        let started = Instant::now();
        println!("Sending message #{i}: {body}");
        client
            .send_event(message)
            .await
            .map_err(|e| e.to_string())?;
        println!(
            "Message #{i} acknowledged by the hub in {:.1} ms",
            started.elapsed().as_secs_f64() * 1000.0
        );
        if i < count {
            tokio::time::sleep(interval).await;
        }
    }
    client.close().await;
    println!("Done: {count} messages sent and acknowledged");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    common::main("send_telemetry", &EXTRA, run).await
}
