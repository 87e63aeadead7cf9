//! `fleethub device c2d-message receive|complete|reject|abandon`, as `az iot device
//! c2d-message`: the hub's HTTPS device API with the device's own SAS token. `receive` locks
//! the next queued message and prints it with its lock token (`etag`); the other commands
//! settle a locked message by that token.

use super::identity::Identity;
use crate::client::{HUB_API_VERSION, Transport, seg};
use crate::output::Outcome;
use anyhow::{Result, anyhow};
use fleethub_service_client::{Request, ServiceError};
use serde_json::{Map, Value, json};

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum DeviceC2dCommand {
    /// Lock and print the next queued message: {"data", "etag", "properties": {"system",
    /// "app"}}; it is redelivered unless completed (or settled at once with a flag).
    Receive {
        /// Complete it right away (it is removed from the queue).
        #[arg(long, conflicts_with_all = ["reject", "abandon"])]
        complete: bool,
        /// Reject it right away (dead-lettered; a `negative` feedback if asked for).
        #[arg(long, conflicts_with = "abandon")]
        reject: bool,
        /// Abandon it right away (back to the queue).
        #[arg(long)]
        abandon: bool,
    },
    /// Complete a received message: it leaves the queue.
    Complete {
        /// The lock token `receive` printed as `etag`.
        #[arg(long, value_name = "LOCK_TOKEN")]
        etag: String,
    },
    /// Reject a received message: it leaves the queue without being processed.
    Reject {
        #[arg(long, value_name = "LOCK_TOKEN")]
        etag: String,
    },
    /// Abandon a received message: it goes back to the queue.
    Abandon {
        #[arg(long, value_name = "LOCK_TOKEN")]
        etag: String,
    },
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Settle {
    Complete,
    Reject,
    Abandon,
}

/// Runs a command over `t` (the HTTPS transport to the hub) as `id`; `now` is unix seconds.
pub(crate) async fn run<T: Transport>(
    cmd: DeviceC2dCommand,
    t: &T,
    id: &Identity,
    now: u64,
) -> Result<Outcome> {
    let token = fleethub_core::sas::build_token(
        &fleethub_iot_protocol::identity::hub_sas_resource(&id.host, &id.device_id, None),
        &id.key,
        now + 3600,
        None,
    )
    .map_err(|e| anyhow!("cannot sign the device token: {e}"))?;
    let base = format!("/devices/{}/messages/deviceBound", seg(&id.device_id));
    let send = |method: &'static str, path: String| {
        let req = Request {
            method,
            path_and_query: path,
            headers: vec![("Authorization".to_string(), token.clone())],
            body: None,
        };
        async move {
            let op = format!(
                "{method} {}",
                req.path_and_query.split('?').next().unwrap_or("")
            );
            let resp = t.send(req).await.map_err(|e| anyhow!("{op}: {e}"))?;
            if !resp.is_success() {
                return Err(anyhow!(ServiceError::from_response(
                    op,
                    resp.status,
                    &resp.body
                )));
            }
            Ok::<_, anyhow::Error>(resp)
        }
    };
    let settle = |how: Settle, lock: String| {
        let lock_path = format!("{base}/{}", seg(lock.trim_matches('"')));
        let (method, path) = match how {
            Settle::Complete => (
                "DELETE",
                format!("{lock_path}?api-version={HUB_API_VERSION}"),
            ),
            Settle::Reject => (
                "DELETE",
                format!("{lock_path}?api-version={HUB_API_VERSION}&reject=true"),
            ),
            Settle::Abandon => (
                "POST",
                format!("{lock_path}/abandon?api-version={HUB_API_VERSION}"),
            ),
        };
        send(method, path)
    };
    let (how, lock) = match cmd {
        DeviceC2dCommand::Receive {
            complete,
            reject,
            abandon,
        } => {
            let resp = send("GET", format!("{base}?api-version={HUB_API_VERSION}")).await?;
            if resp.status == 204 {
                return Ok(Outcome::Done(format!(
                    "no cloud-to-device message is queued for device '{}'",
                    id.device_id
                )));
            }
            let lock = resp
                .header("etag")
                .map(|e| e.trim_matches('"').to_string())
                .ok_or_else(|| anyhow!("the hub's answer has no ETag (lock token)"))?;
            let mut system = Map::new();
            let mut app = Map::new();
            for (k, v) in &resp.headers {
                let k = k.to_ascii_lowercase();
                if let Some(name) = k.strip_prefix("iothub-app-") {
                    app.insert(name.to_string(), Value::String(v.clone()));
                } else if k.starts_with("iothub-") {
                    system.insert(k, Value::String(v.clone()));
                }
            }
            let out = json!({
                "data": String::from_utf8_lossy(&resp.body),
                "etag": lock,
                "properties": {"system": system, "app": app},
            });
            let how = [
                (complete, Settle::Complete),
                (reject, Settle::Reject),
                (abandon, Settle::Abandon),
            ]
            .into_iter()
            .find_map(|(on, how)| on.then_some(how));
            if let Some(how) = how {
                settle(how, lock).await?;
            }
            return Ok(Outcome::Object(out));
        }
        DeviceC2dCommand::Complete { etag } => (Settle::Complete, etag),
        DeviceC2dCommand::Reject { etag } => (Settle::Reject, etag),
        DeviceC2dCommand::Abandon { etag } => (Settle::Abandon, etag),
    };
    let lock = lock.trim_matches('"').to_string();
    settle(how, lock.clone()).await?;
    let done = match how {
        Settle::Complete => "completed",
        Settle::Reject => "rejected",
        Settle::Abandon => "abandoned",
    };
    Ok(Outcome::Done(format!("{done} message {lock}")))
}
