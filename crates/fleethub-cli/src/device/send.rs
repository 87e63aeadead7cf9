//! `fleethub device send-d2c-message`: device-to-cloud messages over MQTT, as `az iot device
//! send-d2c-message` sends them.

use super::identity::{DeviceArgs, Reach, connect};
use crate::args::ClientArgs;
use crate::hub::parse_props;
use anyhow::{Result, bail};
use fleethub_device::Message;
use serde_json::{Map, Value};
use std::time::Duration;

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct SendArgs {
    /// Message body (text; JSON is sent as is).
    #[arg(long, default_value = "Ping from fleethub", value_name = "TEXT")]
    pub data: String,
    /// Application properties, 'k=v;k2=v2' (values cannot contain ';').
    #[arg(long, value_name = "k=v;k2=v2", value_parser = parse_props)]
    pub props: Option<Map<String, Value>>,
    /// Content type (e.g. application/json), sent as $.ct.
    #[arg(long, value_name = "TYPE")]
    pub content_type: Option<String>,
    /// How many messages (each waits for its PUBACK).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub msg_count: u64,
    /// Pause between messages, in milliseconds.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub interval_ms: u64,
}

/// A message with the flags' body and properties.
pub(crate) fn message(
    data: &str,
    props: Option<&Map<String, Value>>,
    content_type: Option<&str>,
) -> Message {
    let mut m = Message::new(data.as_bytes().to_vec());
    if let Some(ct) = content_type {
        m = m.with_content_type(ct);
    }
    for (k, v) in props.into_iter().flatten() {
        m = m.with_property(k.clone(), v.as_str().unwrap_or_default());
    }
    m
}

pub(crate) async fn run(a: SendArgs, client: &ClientArgs, device: &DeviceArgs) -> Result<()> {
    if device.registration_id.is_some() {
        bail!(
            "send-d2c-message acts as an existing device: use -d/--device-id or --device-connection-string (`device simulate` provisions through DPS)"
        );
    }
    let m = message(&a.data, a.props.as_ref(), a.content_type.as_deref());
    let reach = Reach::resolve(client, device)?;
    let dc = connect(client, device, &reach).await?;
    for i in 0..a.msg_count {
        if i > 0 && a.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
        }
        dc.send_event(m.clone()).await?;
    }
    eprintln!(
        "sent {} message{} as device '{}'",
        a.msg_count,
        if a.msg_count == 1 { "" } else { "s" },
        dc.device_id()
    );
    dc.close().await;
    Ok(())
}
