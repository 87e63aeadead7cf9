//! `fleethub dps enrollment-group create|list|show|update|delete|compute-device-key`.

use super::fields::{EnrollmentFields, update_etag};
use crate::client::{Condition, ServiceClient, Transport, seg};
use crate::output::{Column, Outcome, col, col_or};
use anyhow::{Result, anyhow, bail};

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum GroupCommand {
    /// Create a symmetric-key enrollment group (keys are generated unless given).
    Create {
        /// Enrollment group ID.
        #[arg(
            long = "group-id",
            visible_alias = "enrollment-id",
            value_name = "GROUP_ID"
        )]
        group_id: String,
        #[command(flatten)]
        fields: EnrollmentFields,
    },
    /// List all enrollment groups.
    List,
    /// Show one group (with its keys).
    Show {
        #[arg(
            long = "group-id",
            visible_alias = "enrollment-id",
            value_name = "GROUP_ID"
        )]
        group_id: String,
    },
    /// Change the given fields of a group (read, modify, write with If-Match).
    Update {
        #[arg(
            long = "group-id",
            visible_alias = "enrollment-id",
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
            visible_alias = "enrollment-id",
            value_name = "GROUP_ID"
        )]
        group_id: String,
        /// Only delete if the group still has this etag.
        #[arg(long)]
        etag: Option<String>,
    },
    /// Derive a device key from a group key, offline. Prints the key alone on one line
    /// (whatever --output says), so scripts can use $(...).
    ComputeDeviceKey {
        /// The group's primary or secondary key (base64).
        #[arg(long)]
        key: String,
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
        GroupCommand::List => Ok(Outcome::List(
            client.query_all("/enrollmentGroups/query").await?,
            LIST_COLUMNS,
        )),
        GroupCommand::Show { group_id } => {
            Ok(Outcome::Object(client.get(&path(&group_id), &[]).await?))
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
            registration_id,
        } => Ok(Outcome::Text(compute_device_key(&key, &registration_id)?)),
    }
}
