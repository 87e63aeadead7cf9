//! `fleethub diagnostics auth-failures`: why recent authentications failed (the server keeps
//! the reasons that devices are never told).

use crate::args::ClientArgs;
use crate::client::{ServiceClient, Transport};
use crate::output::{Column, Outcome, col};
use crate::settings::{Endpoint, Service};
use anyhow::{Result, bail};
use serde_json::Value;

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum DiagnosticsCommand {
    /// Recent authentication failures, newest first (needs a DPS or hub service connection string).
    AuthFailures {
        /// How many to show.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        limit: u32,
    },
}

pub(crate) const AUTH_FAILURE_COLUMNS: &[Column] = &[
    col("TIME", "/timeUtc"),
    col("ENDPOINT", "/endpoint"),
    col("TRANSPORT", "/transport"),
    col("IDENTITY", "/identity"),
    col("PEER", "/peer"),
    col("REASON", "/reason"),
];

/// Runs a `diagnostics` subcommand: result on stdout, notes on stderr.
pub async fn run_diagnostics(cmd: DiagnosticsCommand, client: &ClientArgs) -> Result<()> {
    let endpoint = Endpoint::resolve(client, Service::DpsOrHub)?;
    let service = ServiceClient::new(crate::transport::connect(&endpoint)?, endpoint);
    let outcome = dispatch(cmd, &service).await?;
    crate::emit(&outcome, client.output)
}

pub(crate) async fn dispatch<T: Transport>(
    cmd: DiagnosticsCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        DiagnosticsCommand::AuthFailures { limit } => {
            let v = client
                .get("/diagnostics/authFailures", &[("limit", limit.to_string())])
                .await?;
            match v {
                Value::Array(items) => Ok(Outcome::List(items, AUTH_FAILURE_COLUMNS)),
                other => bail!("GET /diagnostics/authFailures: expected a JSON array, got {other}"),
            }
        }
    }
}
