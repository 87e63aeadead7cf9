//! `fleethub hub device-twin show|update`: device and module twins (`/twins/{id}[/modules/{mid}]`).

use super::{parse_json_object, twin_path};
use crate::client::{Condition, ServiceClient, Transport};
use crate::output::Outcome;
use anyhow::{Result, bail};
use serde_json::{Map, Value};

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum DeviceTwinCommand {
    /// Show a device's (or module's) twin: tags, desired and reported properties, connection state.
    Show {
        #[arg(long, short = 'd')]
        device_id: String,
        /// A module of the device instead of the device itself.
        #[arg(long, short = 'm')]
        module_id: Option<String>,
    },
    /// Merge tags and/or desired properties into a twin (a JSON merge patch: `null` removes a
    /// key). Prints the updated twin.
    Update {
        #[arg(long, short = 'd')]
        device_id: String,
        /// A module of the device instead of the device itself.
        #[arg(long, short = 'm')]
        module_id: Option<String>,
        /// Tags to merge, a JSON object, e.g. '{"env":"prod"}'.
        #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
        tags: Option<Value>,
        /// Desired properties to merge, a JSON object, e.g. '{"fw":"2.0","interval":null}'.
        #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
        desired: Option<Value>,
        /// Only update if the twin still has this etag (default `*`: whatever it is).
        #[arg(long)]
        etag: Option<String>,
    },
}

/// The PATCH body: `{"tags": .., "properties": {"desired": ..}}` with what was given.
pub(crate) fn patch_body(tags: Option<Value>, desired: Option<Value>) -> Value {
    let mut body = Map::new();
    if let Some(t) = tags {
        body.insert("tags".into(), t);
    }
    if let Some(d) = desired {
        let mut props = Map::new();
        props.insert("desired".into(), d);
        body.insert("properties".into(), Value::Object(props));
    }
    Value::Object(body)
}

pub(crate) async fn run<T: Transport>(
    cmd: DeviceTwinCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        DeviceTwinCommand::Show {
            device_id,
            module_id,
        } => Ok(Outcome::Object(
            client
                .get(&twin_path(&device_id, module_id.as_deref()), &[])
                .await?,
        )),
        DeviceTwinCommand::Update {
            device_id,
            module_id,
            tags,
            desired,
            etag,
        } => {
            if tags.is_none() && desired.is_none() {
                bail!("nothing to update: pass --tags JSON and/or --desired JSON");
            }
            let body = patch_body(tags, desired);
            let etag = etag.as_deref().unwrap_or("*");
            Ok(Outcome::Object(
                client
                    .patch(
                        &twin_path(&device_id, module_id.as_deref()),
                        &body,
                        Condition::IfMatch(etag),
                    )
                    .await?,
            ))
        }
    }
}
