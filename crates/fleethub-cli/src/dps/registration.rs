//! `fleethub dps registration list|show|delete` (device registration records).

use crate::client::{ServiceClient, Transport, seg};
use crate::output::{Column, Outcome, col};
use anyhow::Result;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum RegistrationCommand {
    /// List registration records: those of one group, or (without --group-id) those of every
    /// group and every individual enrollment. Records whose enrollment was deleted are not
    /// listed: the DPS API has no query over all records.
    List {
        /// Only the devices that registered through this enrollment group.
        #[arg(
            long = "group-id",
            visible_alias = "enrollment-id",
            value_name = "GROUP_ID"
        )]
        group_id: Option<String>,
    },
    /// Show one registration record.
    Show {
        #[arg(long)]
        registration_id: String,
    },
    /// Delete a registration record (the device must register again).
    Delete {
        #[arg(long)]
        registration_id: String,
        /// Only delete if the record still has this etag.
        #[arg(long)]
        etag: Option<String>,
    },
}

pub(crate) const LIST_COLUMNS: &[Column] = &[
    col("REGISTRATION ID", "/registrationId"),
    col("DEVICE ID", "/deviceId"),
    col("STATUS", "/status"),
    col("ASSIGNED HUB", "/assignedHub"),
    col("GROUP", "/enrollmentGroupId"),
    col("UPDATED", "/lastUpdatedDateTimeUtc"),
];

fn path(id: &str) -> String {
    format!("/registrations/{}", seg(id))
}

fn group_query_path(group_id: &str) -> String {
    format!("/registrations/{}/query", seg(group_id))
}

pub(crate) async fn run<T: Transport>(
    cmd: RegistrationCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        RegistrationCommand::List { group_id: Some(g) } => Ok(Outcome::List(
            client.query_all(&group_query_path(&g)).await?,
            LIST_COLUMNS,
        )),
        RegistrationCommand::List { group_id: None } => {
            Ok(Outcome::List(list_all(client).await?, LIST_COLUMNS))
        }
        RegistrationCommand::Show { registration_id } => Ok(Outcome::Object(
            client.get(&path(&registration_id), &[]).await?,
        )),
        RegistrationCommand::Delete {
            registration_id,
            etag,
        } => {
            client
                .delete(&path(&registration_id), etag.as_deref())
                .await?;
            Ok(Outcome::Done(format!(
                "deleted registration record '{registration_id}'"
            )))
        }
    }
}

/// Every group's records, plus the record of each individual enrollment (`GET
/// /registrations/{id}`, 404 = never registered); one entry per registration ID (IDs are
/// case-insensitive), sorted by it.
async fn list_all<T: Transport>(client: &ServiceClient<T>) -> Result<Vec<Value>> {
    let mut by_id: BTreeMap<String, Value> = BTreeMap::new();
    let mut add = |rec: Value| {
        if let Some(id) = rec.get("registrationId").and_then(Value::as_str) {
            by_id.entry(id.to_lowercase()).or_insert(rec);
        }
    };
    for group in client.query_all("/enrollmentGroups/query").await? {
        let Some(gid) = group.get("enrollmentGroupId").and_then(Value::as_str) else {
            continue;
        };
        for rec in client.query_all(&group_query_path(gid)).await? {
            add(rec);
        }
    }
    for enrollment in client.query_all("/enrollments/query").await? {
        let Some(rid) = enrollment.get("registrationId").and_then(Value::as_str) else {
            continue;
        };
        if let Some(rec) = client.get_opt(&path(rid)).await? {
            add(rec);
        }
    }
    Ok(by_id.into_values().collect())
}
