//! `fleethub dps linked-hub create|list|delete` (as `az iot dps linked-hub`): the hubs the DPS
//! may assign devices to (`/linkedHubs`). The server's own hub is linked by default.

use crate::client::{Condition, ServiceClient, Transport, seg};
use crate::output::{Column, Outcome, col};
use anyhow::{Context, Result, bail};
use fleethub_core::connection_string::ConnectionString;
use serde_json::{Value, json};

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum LinkedHubCommand {
    /// Link a hub (or replace its link): the DPS creates the identities of the devices it
    /// assigns there through the hub's service API.
    Create {
        /// Connection string of a shared access policy of the hub with registry write rights
        /// (e.g. the hub's `fleethub info` hubServiceConnectionString).
        #[arg(
            long,
            env = "FLEETHUB_LINKED_HUB_CONNECTION_STRING",
            hide_env_values = true
        )]
        connection_string: String,
        /// Weight in hashed allocation (0 to 1000; default 1; 0 = never picked by hashing).
        #[arg(long, visible_alias = "aw")]
        allocation_weight: Option<i64>,
        /// Whether allocation policies may choose the hub (default true).
        #[arg(long, visible_alias = "apap")]
        apply_allocation_policy: Option<bool>,
        /// Azure region (kept as given).
        #[arg(long, short = 'l')]
        location: Option<String>,
        /// fleethub: `host:port` where the DPS reaches the hub's service API when that is not
        /// the host name on port 443 (the certificate is still checked for the host name).
        #[arg(long, value_name = "HOST:PORT")]
        service_endpoint: Option<String>,
    },
    /// List the linked hubs (the server's own first; keys masked).
    List,
    /// Unlink a hub.
    Delete {
        /// The hub's host name.
        #[arg(long, visible_alias = "lh")]
        linked_hub: String,
    },
}

pub(crate) const LIST_COLUMNS: &[Column] = &[
    col("NAME", "/name"),
    col("ALLOCATION WEIGHT", "/allocationWeight"),
    col("APPLY ALLOCATION POLICY", "/applyAllocationPolicy"),
    col("LOCATION", "/location"),
];

fn path(name: &str) -> String {
    format!("/linkedHubs/{}", seg(name))
}

pub(crate) async fn run<T: Transport>(
    cmd: LinkedHubCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        LinkedHubCommand::Create {
            connection_string,
            allocation_weight,
            apply_allocation_policy,
            location,
            service_endpoint,
        } => {
            let cs = ConnectionString::parse(&connection_string)
                .context("--connection-string is not a connection string")?;
            if allocation_weight.is_some_and(|w| !(0..=1000).contains(&w)) {
                bail!("--allocation-weight must be 0 to 1000");
            }
            let mut body = json!({ "connectionString": connection_string.trim() });
            if let Some(w) = allocation_weight {
                body["allocationWeight"] = json!(w);
            }
            if let Some(a) = apply_allocation_policy {
                body["applyAllocationPolicy"] = json!(a);
            }
            if let Some(l) = location {
                body["location"] = json!(l);
            }
            if let Some(e) = service_endpoint {
                body["serviceEndpoint"] = json!(e);
            }
            Ok(Outcome::Object(
                client
                    .put(&path(&cs.host_name), &body, Condition::None)
                    .await?,
            ))
        }
        LinkedHubCommand::List => {
            let list = client.get("/linkedHubs", &[]).await?;
            let Value::Array(items) = list else {
                bail!("the server answered GET /linkedHubs with something other than a list");
            };
            Ok(Outcome::List(items, LIST_COLUMNS))
        }
        LinkedHubCommand::Delete { linked_hub } => {
            client.delete(&path(&linked_hub), None).await?;
            Ok(Outcome::Done(format!("unlinked hub '{linked_hub}'")))
        }
    }
}
