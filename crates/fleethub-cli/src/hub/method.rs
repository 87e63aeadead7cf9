//! `fleethub hub invoke-device-method`: `POST /twins/{id}[/modules/{mid}]/methods`.

use super::{parse_json_value, twin_path};
use crate::client::{ServiceClient, Transport};
use crate::errors::ServiceError;
use crate::output::Outcome;
use anyhow::Result;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct MethodArgs {
    #[arg(long, short = 'd')]
    pub device_id: String,
    /// A module of the device instead of the device itself.
    #[arg(long, short = 'm')]
    pub module_id: Option<String>,
    /// Name of the direct method.
    #[arg(long)]
    pub method_name: String,
    /// Payload, any JSON value (text needs JSON quotes: '"on"').
    #[arg(long, value_name = "JSON", value_parser = parse_json_value, default_value = "{}")]
    pub method_payload: Value,
    /// Seconds to wait for the device's answer (5-300).
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(5..=300))]
    pub timeout: u64,
    /// Seconds to wait for the device to come online first (0-300; 0 = it must be online now).
    #[arg(long, value_name = "SECONDS", default_value_t = 0,
          value_parser = clap::value_parser!(u64).range(0..=300))]
    pub connect_timeout: u64,
}

impl MethodArgs {
    /// Bound on the whole HTTP request: both waits plus a margin.
    pub(crate) fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.timeout + self.connect_timeout + 15)
    }

    fn target(&self) -> String {
        match &self.module_id {
            Some(m) => format!("module '{m}' of device '{}'", self.device_id),
            None => format!("device '{}'", self.device_id),
        }
    }
}

pub(crate) async fn run<T: Transport>(
    args: MethodArgs,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    let path = format!(
        "{}/methods",
        twin_path(&args.device_id, args.module_id.as_deref())
    );
    let body = json!({
        "methodName": args.method_name,
        "payload": args.method_payload,
        "responseTimeoutInSeconds": args.timeout,
        "connectTimeoutInSeconds": args.connect_timeout,
    });
    match client.post(&path, &body).await {
        Ok(answer) => Ok(Outcome::Object(answer)),
        Err(e) => Err(explain(e, &args)),
    }
}

/// Says what a "not online" or "no answer" failure means for the user.
fn explain(e: anyhow::Error, args: &MethodArgs) -> anyhow::Error {
    let Some(se) = e.downcast_ref::<ServiceError>() else {
        return e;
    };
    let code = se.code.as_deref().unwrap_or("");
    let target = args.target();
    if se.status == 404 && (code.eq_ignore_ascii_case("DeviceNotOnline") || code == "404103") {
        let wait = if args.connect_timeout == 0 {
            "; pass --connect-timeout SECONDS to wait for it to connect"
        } else {
            ""
        };
        return e.context(format!(
            "{target} is not connected, or has not subscribed to direct methods \
             (MQTT topic $iothub/methods/POST/#): start the device and retry{wait}"
        ));
    }
    if se.status == 504 {
        return e.context(format!(
            "{target} did not answer method '{}' within {} s; raise --timeout or check the device's method handler",
            args.method_name, args.timeout
        ));
    }
    e
}
