//! `fleethub dps enrollment create|list|show|update|delete` (individual enrollments).

use super::fields::{EnrollmentFields, hide_keys, update_etag, with_keys};
use crate::client::{Condition, ServiceClient, Transport, seg};
use crate::output::{Column, Outcome, col, col_or};
use anyhow::{Result, bail};
use serde_json::Value;

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum EnrollmentCommand {
    /// Create an individual enrollment (symmetric key; keys are generated unless given).
    Create {
        /// Registration ID the device will present.
        #[arg(long, visible_aliases = ["enrollment-id", "eid"])]
        registration_id: String,
        /// Hub device ID (default: the registration ID).
        #[arg(long, visible_alias = "did")]
        device_id: Option<String>,
        #[command(flatten)]
        fields: EnrollmentFields,
    },
    /// List all individual enrollments (keys hidden unless --show-keys).
    List {
        /// Include the symmetric keys (attestation.symmetricKey).
        #[arg(long, visible_alias = "keys")]
        show_keys: bool,
    },
    /// Show one enrollment with its registration state (keys hidden unless --show-keys).
    Show {
        #[arg(long, visible_aliases = ["enrollment-id", "eid"])]
        registration_id: String,
        /// Include the symmetric keys (attestation.symmetricKey).
        #[arg(long, visible_alias = "keys")]
        show_keys: bool,
    },
    /// Change the given fields of an enrollment (read, modify, write with If-Match).
    Update {
        #[arg(long, visible_aliases = ["enrollment-id", "eid"])]
        registration_id: String,
        /// Hub device ID.
        #[arg(long, visible_alias = "did")]
        device_id: Option<String>,
        #[command(flatten)]
        fields: EnrollmentFields,
        /// Only update if the enrollment still has this etag (default: the etag just read).
        #[arg(long)]
        etag: Option<String>,
    },
    /// Delete an enrollment.
    Delete {
        #[arg(long, visible_aliases = ["enrollment-id", "eid"])]
        registration_id: String,
        /// Only delete if the enrollment still has this etag.
        #[arg(long)]
        etag: Option<String>,
    },
}

pub(crate) const LIST_COLUMNS: &[Column] = &[
    col("REGISTRATION ID", "/registrationId"),
    col("DEVICE ID", "/deviceId"),
    col_or("STATUS", "/provisioningStatus", "enabled"),
    col_or("EDGE", "/capabilities/iotEdge", "false"),
    col("REGISTRATION", "/registrationState/status"),
    col("ASSIGNED HUB", "/registrationState/assignedHub"),
    col("UPDATED", "/lastUpdatedDateTimeUtc"),
];

fn path(id: &str) -> String {
    format!("/enrollments/{}", seg(id))
}

pub(crate) async fn run<T: Transport>(
    cmd: EnrollmentCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        EnrollmentCommand::Create {
            registration_id,
            device_id,
            fields,
        } => {
            let p = path(&registration_id);
            if client.get_opt(&p).await?.is_some() {
                bail!(
                    "enrollment '{registration_id}' already exists; use `fleethub dps enrollment update` to change it"
                );
            }
            let mut body = fields.new_object("registrationId", &registration_id)?;
            if let Some(d) = device_id {
                body["deviceId"] = Value::String(d);
            }
            Ok(Outcome::Object(
                client.put(&p, &body, Condition::MustNotExist).await?,
            ))
        }
        EnrollmentCommand::List { show_keys } => Ok(Outcome::List(
            with_keys(client.query_all("/enrollments/query").await?, show_keys),
            LIST_COLUMNS,
        )),
        EnrollmentCommand::Show {
            registration_id,
            show_keys,
        } => {
            let mut e = client.get(&path(&registration_id), &[]).await?;
            if !show_keys {
                hide_keys(&mut e);
            }
            Ok(Outcome::Object(e))
        }
        EnrollmentCommand::Update {
            registration_id,
            device_id,
            fields,
            etag,
        } => {
            if fields.is_empty() && device_id.is_none() {
                bail!(
                    "nothing to update: pass at least one of --device-id, --edge-enabled, --initial-twin-tags, \
                     --initial-twin-properties, --primary-key, --secondary-key, --provisioning-status"
                );
            }
            let p = path(&registration_id);
            let mut current = client.get(&p, &[]).await?;
            let if_match = update_etag(etag.as_deref(), &current);
            fields.apply(&mut current)?;
            if let Some(d) = device_id {
                current["deviceId"] = Value::String(d);
            }
            let cond = if_match
                .as_deref()
                .map_or(Condition::None, Condition::IfMatch);
            Ok(Outcome::Object(client.put(&p, &current, cond).await?))
        }
        EnrollmentCommand::Delete {
            registration_id,
            etag,
        } => {
            client
                .delete(&path(&registration_id), etag.as_deref())
                .await?;
            Ok(Outcome::Done(format!(
                "deleted enrollment '{registration_id}'"
            )))
        }
    }
}
