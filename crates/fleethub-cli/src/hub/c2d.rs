//! `fleethub hub c2d-message send|purge`: cloud-to-device messages
//! (`POST /devices/{id}/messages/deviceBound`, `DELETE /devices/{id}/commands`).

use super::device_path;
use crate::client::{ServiceClient, Transport};
use crate::output::Outcome;
use anyhow::Result;
use serde_json::{Map, Value};

/// Feedback the device's answer should produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Ack {
    None,
    Positive,
    Negative,
    Full,
}

impl Ack {
    fn as_str(self) -> &'static str {
        match self {
            Ack::None => "none",
            Ack::Positive => "positive",
            Ack::Negative => "negative",
            Ack::Full => "full",
        }
    }
}

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum C2dCommand {
    /// Queue a message for a device (delivered when it connects; at most 50 queued).
    Send {
        #[arg(long, short = 'd')]
        device_id: String,
        /// Message body (text, sent as UTF-8).
        #[arg(long, value_name = "TEXT")]
        data: String,
        #[arg(long)]
        message_id: Option<String>,
        #[arg(long)]
        correlation_id: Option<String>,
        /// Content type of the body, e.g. application/json.
        #[arg(long)]
        content_type: Option<String>,
        /// Application properties, 'key=value;key2=value2' (values cannot contain ';').
        #[arg(long, value_name = "k=v;k2=v2", value_parser = parse_props)]
        props: Option<Map<String, Value>>,
        /// Seconds the message may wait in the queue before it expires.
        #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..))]
        ttl: Option<u64>,
        /// Feedback requested from the device's completion/rejection.
        #[arg(long, value_enum)]
        ack: Option<Ack>,
    },
    /// Delete every message queued for a device.
    Purge {
        #[arg(long, short = 'd')]
        device_id: String,
    },
}

/// Parses `k=v;k2=v2` into string properties. Empty segments (a trailing `;`) are ignored;
/// a value may be empty and may contain `=`; keys are trimmed and must not repeat.
pub(crate) fn parse_props(s: &str) -> Result<Map<String, Value>, String> {
    let mut props = Map::new();
    for part in s.split(';') {
        if part.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!(
                "'{part}' is not key=value; write properties as 'key=value;key2=value2'"
            ));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("'{part}' has an empty key"));
        }
        if props
            .insert(k.to_string(), Value::String(v.to_string()))
            .is_some()
        {
            return Err(format!("property '{k}' is given twice"));
        }
    }
    if props.is_empty() {
        return Err("no properties given; write them as 'key=value;key2=value2'".into());
    }
    Ok(props)
}

/// The request body of `POST /devices/{id}/messages/deviceBound`.
#[allow(
    clippy::struct_field_names,
    reason = "the fields mirror the message properties (messageId)"
)]
pub(crate) struct Message {
    pub data: String,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    pub props: Option<Map<String, Value>>,
    pub ttl: Option<u64>,
    pub ack: Option<Ack>,
}

impl Message {
    pub(crate) fn body(self) -> Value {
        let mut b = Map::new();
        b.insert("body".into(), Value::String(self.data));
        let mut opt = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                b.insert(k.into(), v);
            }
        };
        opt("messageId", self.message_id.map(Value::String));
        opt("correlationId", self.correlation_id.map(Value::String));
        opt("contentType", self.content_type.map(Value::String));
        opt("ttlSeconds", self.ttl.map(Value::from));
        opt("ack", self.ack.map(|a| Value::String(a.as_str().into())));
        opt("properties", self.props.map(Value::Object));
        Value::Object(b)
    }
}

pub(crate) async fn run<T: Transport>(
    cmd: C2dCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        C2dCommand::Send {
            device_id,
            data,
            message_id,
            correlation_id,
            content_type,
            props,
            ttl,
            ack,
        } => {
            let body = Message {
                data,
                message_id,
                correlation_id,
                content_type,
                props,
                ttl,
                ack,
            }
            .body();
            let path = format!("{}/messages/deviceBound", device_path(&device_id));
            Ok(Outcome::Object(client.post(&path, &body).await?))
        }
        C2dCommand::Purge { device_id } => {
            let path = format!("{}/commands", device_path(&device_id));
            let resp = client.send_ok("DELETE", &path, &[], vec![], None).await?;
            Ok(Outcome::Object(resp.json(&format!("DELETE {path}"))?))
        }
    }
}
