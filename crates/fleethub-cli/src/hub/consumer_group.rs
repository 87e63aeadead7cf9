//! `fleethub hub consumer-group create|list|show|delete` (as `az iot hub consumer-group`):
//! consumer groups of the Event Hub-compatible built-in endpoint
//! (`/messages/events/consumerGroups[/{name}]`).

use crate::client::{ServiceClient, Transport};
use crate::output::{Column, Outcome, col};
use anyhow::{Context, Result};
use serde::Serialize;

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum ConsumerGroupCommand {
    /// Create a consumer group (1-50 letters, digits, '.', '_', '-').
    Create {
        #[arg(long, short = 'n')]
        name: String,
    },
    /// List the consumer groups ($Default first).
    List,
    /// Show one consumer group.
    Show {
        #[arg(long, short = 'n')]
        name: String,
    },
    /// Delete a consumer group and its checkpoint ($Default cannot be deleted).
    Delete {
        #[arg(long, short = 'n')]
        name: String,
    },
}

const COLUMNS: &[Column] = &[col("NAME", "/name"), col("CREATED", "/createdTimeUtc")];

fn json(v: &impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(v).context("cannot show the consumer group")
}

pub(crate) async fn run<T: Transport>(
    cmd: ConsumerGroupCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    Ok(match cmd {
        ConsumerGroupCommand::Create { name } => Outcome::Object(json(
            &client.typed(|c| c.create_consumer_group(&name)).await?,
        )?),
        ConsumerGroupCommand::List => {
            let groups = client
                .typed(fleethub_service_client::ServiceClient::list_consumer_groups)
                .await?;
            Outcome::List(groups.iter().map(json).collect::<Result<_>>()?, COLUMNS)
        }
        ConsumerGroupCommand::Show { name } => {
            Outcome::Object(json(&client.typed(|c| c.get_consumer_group(&name)).await?)?)
        }
        ConsumerGroupCommand::Delete { name } => {
            client.typed(|c| c.delete_consumer_group(&name)).await?;
            Outcome::Done(format!("deleted consumer group '{name}'"))
        }
    })
}
