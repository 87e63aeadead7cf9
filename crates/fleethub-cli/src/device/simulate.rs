//! `fleethub device simulate`, as `az iot device simulate`: connects as a device (provisioning
//! through DPS first with `--registration-id`), sends messages at a rate, answers direct
//! methods, prints desired-property updates and cloud-to-device messages.

use super::identity::{DeviceArgs, Reach, connect};
use super::send::message;
use crate::args::ClientArgs;
use crate::hub::parse_props;
use anyhow::Result;
use fleethub_device::{MethodRequest, MethodResponse};
use serde_json::{Map, Value, json};
use std::time::Duration;

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct SimulateDeviceArgs {
    /// Messages to send (0: none, just listen).
    #[arg(long, default_value_t = 100)]
    pub msg_count: u64,
    /// Pause between messages, in seconds (fractions allowed).
    #[arg(long, default_value_t = 3.0, value_name = "SECONDS")]
    pub msg_interval: f64,
    /// Message body; `{n}` is replaced by the message number.
    #[arg(
        long,
        default_value = r#"{"temperature": 21.5, "n": {n}}"#,
        value_name = "TEXT"
    )]
    pub data: String,
    /// Application properties of every message, 'k=v;k2=v2'.
    #[arg(long, value_name = "k=v;k2=v2", value_parser = parse_props)]
    pub props: Option<Map<String, Value>>,
    /// Status that direct methods are answered with.
    #[arg(long, default_value_t = 200)]
    pub method_response_code: u16,
    /// Payload that direct methods are answered with (JSON; default: the request echoed).
    #[arg(long, value_name = "JSON")]
    pub method_response_payload: Option<String>,
    /// Keep running this many seconds after the last message (default: until Ctrl-C when
    /// --msg-count is 0, else stop after the last message).
    #[arg(long, value_name = "SECONDS")]
    pub linger: Option<u64>,
}

pub(crate) async fn run(
    a: SimulateDeviceArgs,
    client: &ClientArgs,
    device: &DeviceArgs,
) -> Result<()> {
    let reply: Option<Value> = match &a.method_response_payload {
        Some(p) => Some(
            serde_json::from_str(p)
                .map_err(|e| anyhow::anyhow!("--method-response-payload is not JSON: {e}"))?,
        ),
        None => None,
    };
    let reach = Reach::resolve(client, device)?;
    let dc = connect(client, device, &reach).await?;
    eprintln!("Connected to {} as '{}'", dc.host(), dc.device_id());
    let mut desired = dc.desired_updates().await?;
    let mut c2d = dc.c2d_messages().await?;
    let status = a.method_response_code;
    let methods = dc
        .on_method(move |r: MethodRequest| {
            let payload = reply
                .clone()
                .unwrap_or_else(|| json!({"methodName": r.name, "payload": r.payload}));
            println!(
                "{}",
                json!({"method": {"name": r.name, "payload": r.payload, "status": status}})
            );
            async move { MethodResponse::new(status, payload) }
        })
        .await?;
    let interval = Duration::from_secs_f64(a.msg_interval.max(0.0));
    let mut sent = 0u64;
    let mut next = tokio::time::Instant::now();
    let linger = match (a.linger, a.msg_count) {
        (Some(s), _) => Some(Duration::from_secs(s)),
        (None, 0) => None,
        (None, _) => Some(Duration::ZERO),
    };
    let mut stop_at: Option<tokio::time::Instant> = None;
    loop {
        if sent == a.msg_count && stop_at.is_none() {
            stop_at = linger.map(|l| tokio::time::Instant::now() + l);
            if let Some(t) = stop_at
                && t <= tokio::time::Instant::now()
            {
                break;
            }
        }
        let sending = sent < a.msg_count;
        let stop = async {
            match stop_at {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(next), if sending => {
                sent += 1;
                let body = a.data.replace("{n}", &sent.to_string());
                dc.send_event(message(&body, a.props.as_ref(), None)).await?;
                eprintln!("sent message {sent}/{}", a.msg_count);
                next += interval;
            }
            patch = desired.recv() => {
                let Some(patch) = patch else { break };
                println!("{}", json!({"desired": patch}));
            }
            m = c2d.recv() => {
                let Some(m) = m else { break };
                println!("{}", json!({"c2d": {"messageId": m.message_id, "body": m.body_text(), "properties": m.properties}}));
            }
            () = stop => break,
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    methods.abort();
    dc.close().await;
    eprintln!("{sent} message{} sent", if sent == 1 { "" } else { "s" });
    Ok(())
}
