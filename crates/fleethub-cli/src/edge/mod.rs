//! `fleethub edge ...`: IoT Edge deployments at scale and per-device modules, `az iot edge`
//! style, against the hub service REST API (`/configurations`,
//! `/devices/{id}/applyConfigurationContent`). Authenticated like `fleethub hub`.

mod content;
mod deployment;

pub use deployment::DeploymentCommand;

use crate::args::ClientArgs;
use crate::client::{HUB_API_VERSION, ServiceClient, Transport, seg};
use crate::output::Outcome;
use crate::settings::{Endpoint, Service};
use anyhow::Result;

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum EdgeCommand {
    /// IoT Edge deployments at scale: a manifest applied to every edge device whose twin
    /// matches a target condition (highest priority wins; layered deployments add to it).
    #[command(subcommand)]
    Deployment(DeploymentCommand),
    /// Set the modules of one IoT Edge device from a deployment manifest (used when no
    /// automatic deployment targets the device).
    SetModules {
        #[arg(long, short = 'd')]
        device_id: String,
        /// Manifest: a file path or inline JSON, `{"modulesContent": {...}}` or
        /// `{"content": {"modulesContent": {...}}}`.
        #[arg(long, value_name = "FILE|JSON")]
        content: String,
    },
}

/// Runs an `edge` subcommand: result on stdout, notes on stderr.
pub async fn run_edge(cmd: EdgeCommand, client: &ClientArgs) -> Result<()> {
    let endpoint = Endpoint::resolve(client, Service::Hub)?;
    let transport = crate::transport::connect(&endpoint)?;
    let service = ServiceClient::new(transport, endpoint).with_api_version(HUB_API_VERSION);
    let outcome = dispatch(cmd, &service).await?;
    crate::emit(&outcome, client.output)
}

pub(crate) async fn dispatch<T: Transport>(
    cmd: EdgeCommand,
    client: &ServiceClient<T>,
) -> Result<Outcome> {
    match cmd {
        EdgeCommand::Deployment(c) => deployment::run(c, client).await,
        EdgeCommand::SetModules { device_id, content } => {
            let modules = content::load_modules_content(&content)?;
            content::check_layering(&modules, false)?;
            let path = format!("/devices/{}/applyConfigurationContent", seg(&device_id));
            let body = serde_json::json!({ "modulesContent": modules });
            client
                .send_ok("POST", &path, &[], vec![], Some(&body))
                .await?;
            Ok(Outcome::Done(format!(
                "modules content set for device '{device_id}'"
            )))
        }
    }
}
