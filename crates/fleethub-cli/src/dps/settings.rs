//! `fleethub dps settings show|update`: the DPS instance's settings (`/settings`), its
//! allocation policy for enrollments and groups that name none (Azure: `az iot dps update
//! --set properties.allocationPolicy=...`).

use crate::client::{Condition, ServiceClient, Transport};
use crate::output::Outcome;
use anyhow::Result;
use serde_json::json;

/// The policies an instance may have (`custom` is set per enrollment or group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InstancePolicy {
    /// Evenly weighted over the linked hubs by a hash of the registration ID (the default).
    Hashed,
    /// Like hashed (fleethub knows no locations).
    #[value(name = "geoLatency")]
    GeoLatency,
    /// The hub an enrollment names, else this server's own hub.
    Static,
}

impl InstancePolicy {
    fn as_str(self) -> &'static str {
        match self {
            InstancePolicy::Hashed => "hashed",
            InstancePolicy::GeoLatency => "geoLatency",
            InstancePolicy::Static => "static",
        }
    }
}

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum SettingsCommand {
    /// Show the instance's settings.
    Show,
    /// Change the instance's settings.
    Update {
        /// The allocation policy of enrollments and groups that name none.
        #[arg(long, visible_alias = "ap", value_enum)]
        allocation_policy: InstancePolicy,
    },
}

pub(crate) async fn run<T: Transport>(
    cmd: SettingsCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    Ok(Outcome::Object(match cmd {
        SettingsCommand::Show => client.get("/settings", &[]).await?,
        SettingsCommand::Update { allocation_policy } => {
            let body = json!({"allocationPolicy": allocation_policy.as_str()});
            client.put("/settings", &body, Condition::None).await?
        }
    }))
}
