//! `fleethub import azure`: enrollments, enrollment groups and devices exported from Azure
//! (`az iot dps enrollment list`, `az iot dps enrollment-group list`, a registry export),
//! created through the service APIs. What already exists is left alone, so a re-run imports
//! only what is new; `--dry-run` checks everything and writes nothing.

mod azure;
mod report;

use crate::args::ClientArgs;
use crate::client::{Condition, ServiceClient, Transport};
use crate::settings::{Endpoint, Service};
use anyhow::{Context, Result, bail};
use azure::Parsed;
use fleethub_service_client::progress::{Progress, ProgressMode};
use report::{Kind, Report};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug, Clone, PartialEq)]
pub enum ImportCommand {
    /// Import from the JSON that `az` prints or exports (keys included).
    #[command(after_help = AZURE_EXAMPLES)]
    Azure(AzureImportArgs),
}

const AZURE_EXAMPLES: &str = "\
Examples:
  az iot dps enrollment list --dps-name my-dps -g my-rg > enrollments.json
  az iot dps enrollment-group list --dps-name my-dps -g my-rg > groups.json
  az iot hub device-identity export -n my-hub --bcu \"$BLOB_SAS_URL\"   # then download devices.txt
  fleethub import azure --enrollments enrollments.json --groups groups.json \\
      --devices devices.txt --dry-run
  fleethub import azure --enrollments enrollments.json --groups groups.json --devices devices.txt";

/// `fleethub import azure`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct AzureImportArgs {
    /// Individual enrollments: `az iot dps enrollment list` (or `show --show-keys` output).
    #[arg(long, value_name = "FILE")]
    pub enrollments: Option<PathBuf>,
    /// Enrollment groups: `az iot dps enrollment-group list` (or `show --show-keys` output).
    #[arg(long, value_name = "FILE")]
    pub groups: Option<PathBuf>,
    /// Devices: a registry export (`devices.txt`, one JSON device per line) or
    /// `az iot hub device-identity list|show` JSON.
    #[arg(long, value_name = "FILE")]
    pub devices: Option<PathBuf>,
    /// Check every entry against the server and report; create nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// Runs `fleethub import ...`.
pub async fn run_import(cmd: ImportCommand, client: &ClientArgs) -> Result<()> {
    let ImportCommand::Azure(args) = cmd;
    let input = Input::read(&args)?;
    let dps = if input.enrollments.is_empty() && input.groups.is_empty() {
        None
    } else {
        let ep = Endpoint::resolve(client, Service::Dps)?;
        Some(ServiceClient::new(crate::transport::connect(&ep)?, ep))
    };
    let hub = if input.devices.is_empty() {
        None
    } else {
        let ep = Endpoint::resolve(client, Service::Hub)?;
        Some(
            ServiceClient::new(crate::transport::connect(&ep)?, ep)
                .with_api_version(crate::client::HUB_API_VERSION),
        )
    };
    let report = import(
        &input,
        dps.as_ref(),
        hub.as_ref(),
        args.dry_run,
        ProgressMode::detect(),
    )
    .await?;
    eprintln!("{}", report.summary());
    crate::emit(&report.outcome(), client.output)
}

/// The parsed files.
#[derive(Debug, Default)]
pub(crate) struct Input {
    pub enrollments: Vec<serde_json::Value>,
    pub groups: Vec<serde_json::Value>,
    pub devices: Vec<serde_json::Value>,
}

impl Input {
    fn read(args: &AzureImportArgs) -> Result<Input> {
        if args.enrollments.is_none() && args.groups.is_none() && args.devices.is_none() {
            bail!(
                "nothing to import: pass --enrollments FILE, --groups FILE and/or --devices FILE"
            );
        }
        let load = |p: &Option<PathBuf>| -> Result<Vec<serde_json::Value>> {
            let Some(p) = p else { return Ok(Vec::new()) };
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {}", p.display()))?;
            azure::objects(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))
        };
        Ok(Input {
            enrollments: load(&args.enrollments)?,
            groups: load(&args.groups)?,
            devices: load(&args.devices)?,
        })
    }

    fn len(&self) -> usize {
        self.enrollments.len() + self.groups.len() + self.devices.len()
    }
}

/// Imports `input`: enrollments and groups through `dps`, devices through `hub`.
pub(crate) async fn import<T: Transport>(
    input: &Input,
    dps: Option<&ServiceClient<T>>,
    hub: Option<&ServiceClient<T>>,
    dry_run: bool,
    mode: ProgressMode,
) -> Result<Report> {
    let mut report = Report::new(dry_run);
    let mut progress = Progress::with_mode("import", input.len() as u64, mode);
    for (n, v) in input.enrollments.iter().enumerate() {
        let dps = dps.context("enrollments need the DPS connection")?;
        match azure::enrollment(v, n + 1) {
            Parsed::Ok(e, notes) => {
                let id = e.registration_id.clone();
                let exists = dps
                    .service()
                    .find_enrollment(&id)
                    .await
                    .map_err(|e| dps.explain(e))?
                    .is_some();
                if exists {
                    report.exists(Kind::Enrollment, &id);
                } else if dry_run {
                    report.imported(Kind::Enrollment, &id, &notes);
                } else {
                    match dps.service().put_enrollment(&e, Condition::None).await {
                        Ok(_) => report.imported(Kind::Enrollment, &id, &notes),
                        Err(err) => report.refused(Kind::Enrollment, &id, dps.explain(err))?,
                    }
                }
            }
            other => report.parsed_failure(Kind::Enrollment, other),
        }
        progress.inc(1);
    }
    for (n, v) in input.groups.iter().enumerate() {
        let dps = dps.context("enrollment groups need the DPS connection")?;
        match azure::group(v, n + 1) {
            Parsed::Ok(g, notes) => {
                let id = g.enrollment_group_id.clone();
                let exists = dps
                    .service()
                    .find_enrollment_group(&id)
                    .await
                    .map_err(|e| dps.explain(e))?
                    .is_some();
                if exists {
                    report.exists(Kind::Group, &id);
                } else if dry_run {
                    report.imported(Kind::Group, &id, &notes);
                } else {
                    match dps
                        .service()
                        .put_enrollment_group(&g, Condition::None)
                        .await
                    {
                        Ok(_) => report.imported(Kind::Group, &id, &notes),
                        Err(err) => report.refused(Kind::Group, &id, dps.explain(err))?,
                    }
                }
            }
            other => report.parsed_failure(Kind::Group, other),
        }
        progress.inc(1);
    }
    for (n, v) in input.devices.iter().enumerate() {
        let hub = hub.context("devices need the hub connection")?;
        match azure::device(v, n + 1) {
            Parsed::Ok(d, notes) => {
                let id = d.device.device_id.clone();
                let exists = hub
                    .service()
                    .find_device(&id)
                    .await
                    .map_err(|e| hub.explain(e))?
                    .is_some();
                if exists {
                    report.exists(Kind::Device, &id);
                } else if dry_run {
                    report.imported(Kind::Device, &id, &notes);
                } else {
                    let created = hub
                        .service()
                        .put_device(&d.device, Condition::MustNotExist)
                        .await;
                    let twin = match (&created, &d.twin_patch) {
                        (Ok(_), Some(patch)) => hub
                            .service()
                            .update_twin(&id, None, patch, Condition::None)
                            .await
                            .map(|_| ()),
                        _ => Ok(()),
                    };
                    match created.and(twin) {
                        Ok(()) => report.imported(Kind::Device, &id, &notes),
                        Err(err) => report.refused(Kind::Device, &id, hub.explain(err))?,
                    }
                }
            }
            other => report.parsed_failure(Kind::Device, other),
        }
        progress.inc(1);
    }
    progress.finish();
    Ok(report)
}
