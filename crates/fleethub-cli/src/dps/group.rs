//! `fleethub dps enrollment-group create|list|show|update|delete|compute-device-key`.

use super::fields::{EnrollmentFields, hide_keys, update_etag, with_keys};
use crate::client::{Condition, ServiceClient, Transport, seg};
use crate::output::{Column, Outcome, col, col_or};
use anyhow::{Result, anyhow, bail};
use serde_json::Value;

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum GroupCommand {
    /// Create a symmetric-key enrollment group (keys are generated unless given).
    Create {
        /// Enrollment group ID.
        #[arg(
            long = "group-id",
            visible_aliases = ["enrollment-id", "eid"],
            value_name = "GROUP_ID"
        )]
        group_id: String,
        #[command(flatten)]
        fields: EnrollmentFields,
    },
    /// List all enrollment groups (keys hidden unless --show-keys).
    List {
        /// Include the group keys (attestation.symmetricKey).
        #[arg(long, visible_alias = "keys")]
        show_keys: bool,
    },
    /// Show one group (keys hidden unless --show-keys).
    Show {
        #[arg(
            long = "group-id",
            visible_aliases = ["enrollment-id", "eid"],
            value_name = "GROUP_ID"
        )]
        group_id: String,
        /// Include the group keys (attestation.symmetricKey).
        #[arg(long, visible_alias = "keys")]
        show_keys: bool,
    },
    /// Change the given fields of a group (read, modify, write with If-Match).
    Update {
        #[arg(
            long = "group-id",
            visible_aliases = ["enrollment-id", "eid"],
            value_name = "GROUP_ID"
        )]
        group_id: String,
        #[command(flatten)]
        fields: EnrollmentFields,
        /// Only update if the group still has this etag (default: the etag just read).
        #[arg(long)]
        etag: Option<String>,
    },
    /// Delete an enrollment group.
    Delete {
        #[arg(
            long = "group-id",
            visible_aliases = ["enrollment-id", "eid"],
            value_name = "GROUP_ID"
        )]
        group_id: String,
        /// Only delete if the group still has this etag.
        #[arg(long)]
        etag: Option<String>,
    },
    /// Derive a device key from a group key: the one given (offline), or the primary key of
    /// the group named by --group-id (read from the server). Prints the key alone on one line
    /// (whatever --output says), so scripts can use $(...).
    ComputeDeviceKey {
        /// The group's primary or secondary key (base64).
        #[arg(
            long,
            required_unless_present = "group_id",
            conflicts_with = "group_id"
        )]
        key: Option<String>,
        /// Read the primary key of this enrollment group from the server.
        #[arg(
            long = "group-id",
            visible_aliases = ["enrollment-id", "eid"],
            value_name = "GROUP_ID"
        )]
        group_id: Option<String>,
        /// The device's registration ID (used exactly as given, case included).
        #[arg(long)]
        registration_id: String,
    },
}

pub(crate) const LIST_COLUMNS: &[Column] = &[
    col("GROUP ID", "/enrollmentGroupId"),
    col_or("STATUS", "/provisioningStatus", "enabled"),
    col_or("EDGE", "/capabilities/iotEdge", "false"),
    col("ATTESTATION", "/attestation/type"),
    col("ALLOCATION", "/allocationPolicy"),
    col("UPDATED", "/lastUpdatedDateTimeUtc"),
];

fn path(id: &str) -> String {
    format!("/enrollmentGroups/{}", seg(id))
}

/// `compute-device-key`: no server involved.
pub(crate) fn compute_device_key(key: &str, registration_id: &str) -> Result<String> {
    if registration_id.is_empty() {
        bail!("--registration-id must not be empty");
    }
    fleethub_core::keys::derive_device_key(key.trim(), registration_id)
        .map_err(|e| anyhow!("--key is not a usable group key: {e}"))
}

/// The primary key of a symmetric-key enrollment group, read from the server.
async fn group_primary_key<T: Transport>(
    client: &ServiceClient<T>,
    group_id: &str,
) -> Result<String> {
    let g = client.get(&path(group_id), &[]).await?;
    g.pointer("/attestation/symmetricKey/primaryKey")
        .and_then(Value::as_str)
        .filter(|k| !k.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            anyhow!(
                "enrollment group '{group_id}' has no symmetric primary key (attestation type: {})",
                g.pointer("/attestation/type")
                    .and_then(Value::as_str)
                    .unwrap_or("none")
            )
        })
}

pub(crate) async fn run<T: Transport>(
    cmd: GroupCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        GroupCommand::Create { group_id, fields } => {
            let p = path(&group_id);
            if client.get_opt(&p).await?.is_some() {
                bail!(
                    "enrollment group '{group_id}' already exists; use `fleethub dps enrollment-group update` to change it"
                );
            }
            let body = fields.new_object("enrollmentGroupId", &group_id)?;
            Ok(Outcome::Object(
                client.put(&p, &body, Condition::MustNotExist).await?,
            ))
        }
        GroupCommand::List { show_keys } => Ok(Outcome::List(
            with_keys(
                client.query_all("/enrollmentGroups/query").await?,
                show_keys,
            ),
            LIST_COLUMNS,
        )),
        GroupCommand::Show {
            group_id,
            show_keys,
        } => {
            let mut g = client.get(&path(&group_id), &[]).await?;
            if !show_keys {
                hide_keys(&mut g);
            }
            Ok(Outcome::Object(g))
        }
        GroupCommand::Update {
            group_id,
            fields,
            etag,
        } => {
            if fields.is_empty() {
                bail!(
                    "nothing to update: pass at least one of --edge-enabled, --initial-twin-tags, \
                     --initial-twin-properties, --primary-key, --secondary-key, --provisioning-status"
                );
            }
            let p = path(&group_id);
            let mut current = client.get(&p, &[]).await?;
            let if_match = update_etag(etag.as_deref(), &current);
            fields.apply(&mut current)?;
            let cond = if_match
                .as_deref()
                .map_or(Condition::None, Condition::IfMatch);
            Ok(Outcome::Object(client.put(&p, &current, cond).await?))
        }
        GroupCommand::Delete { group_id, etag } => {
            client.delete(&path(&group_id), etag.as_deref()).await?;
            Ok(Outcome::Done(format!(
                "deleted enrollment group '{group_id}'"
            )))
        }
        GroupCommand::ComputeDeviceKey {
            key,
            group_id,
            registration_id,
        } => {
            let key = match (key, group_id) {
                (Some(k), _) => k,
                (None, Some(g)) => group_primary_key(client, &g).await?,
                (None, None) => bail!("pass --key GROUP_KEY or --group-id GROUP_ID"),
            };
            Ok(Outcome::Text(compute_device_key(&key, &registration_id)?))
        }
    }
}
