//! `fleetedge config init`, `config apply` and `config import`.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::config::Config;
use crate::config::apply::apply as apply_config;
use crate::config::init::{InitOptions, write};
use crate::mgmt;
use crate::state::StateDir;

#[derive(Args, Debug)]
pub struct InitArgs {
    /// Manual provisioning with a device connection string.
    #[arg(long, value_name = "CS", conflicts_with = "dps_symmetric_key")]
    pub manual_connection_string: Option<String>,
    /// DPS provisioning with a symmetric key (needs --scope-id, --registration-id, --symmetric-key).
    #[arg(long, requires_all = ["scope_id", "registration_id", "symmetric_key"])]
    pub dps_symmetric_key: bool,
    #[arg(long)]
    pub scope_id: Option<String>,
    #[arg(long)]
    pub registration_id: Option<String>,
    /// The device key (for a group enrollment: the key derived for this registration ID).
    #[arg(long)]
    pub symmetric_key: Option<String>,
    /// DPS endpoint, e.g. https://dps.example.com:443
    #[arg(long)]
    pub global_endpoint: Option<String>,
    /// PEM CA file of the DPS/hub certificates.
    #[arg(long)]
    pub trust_bundle: Option<PathBuf>,
    /// Gateway host name modules dial (default: this machine's host name).
    #[arg(long)]
    pub hostname: Option<String>,
    /// State directory (default /var/lib/fleetedge).
    #[arg(long)]
    pub homedir: Option<PathBuf>,
    #[arg(long)]
    pub hub_mqtt_port: Option<u16>,
    #[arg(long)]
    pub hub_https_port: Option<u16>,
    /// Edge hub listen address (repeatable), e.g. 0.0.0.0:8883
    #[arg(long)]
    pub edge_hub_listen: Vec<String>,
    /// Replace an existing file.
    #[arg(long)]
    pub force: bool,
}

pub fn init(path: &Path, a: InitArgs) -> Result<i32, String> {
    if a.manual_connection_string.is_none() && !a.dps_symmetric_key {
        return Err("give --manual-connection-string CS, or --dps-symmetric-key --scope-id S --registration-id R --symmetric-key K".into());
    }
    let opts = InitOptions {
        connection_string: a.manual_connection_string,
        scope_id: a.scope_id.filter(|_| a.dps_symmetric_key),
        registration_id: a.registration_id,
        symmetric_key: a.symmetric_key,
        global_endpoint: a.global_endpoint,
        trust_bundle: a.trust_bundle,
        hostname: a.hostname,
        homedir: a.homedir,
        hub_mqtt_port: a.hub_mqtt_port,
        hub_https_port: a.hub_https_port,
        edge_hub_listen: a.edge_hub_listen,
    };
    let c = write(path, &opts, a.force)?;
    println!(
        "wrote {} ({} provisioning)",
        path.display(),
        c.provisioning.source()
    );
    println!("next: `fleetedge config apply --config {}`", path.display());
    Ok(0)
}

pub async fn apply(path: &Path) -> Result<i32, String> {
    let config = Config::load(path).map_err(|e| e.to_string())?;
    for k in &config.ignored {
        println!("note: `{k}` is an Azure-only setting and is ignored");
    }
    let report = apply_config(&config)?;
    println!(
        "key material stored in {} (owner only)",
        report.key_file.display()
    );
    if report.changes.is_empty() {
        println!("no changes since the last apply");
    } else {
        println!(
            "{}:",
            if report.first_apply {
                "applied settings"
            } else {
                "changed"
            }
        );
        for c in &report.changes {
            println!("  {c}");
        }
    }
    let sock = StateDir::new(&config.homedir).mgmt_socket();
    if report.changes.is_empty() {
        return Ok(0);
    }
    let cmd = if report.provisioning_changed {
        "/reprovision"
    } else {
        "/reload"
    };
    match mgmt::call(&sock, http::Method::POST, cmd).await {
        Ok(_) => println!("the running daemon is reloading the configuration"),
        Err(_) => println!(
            "the daemon is not running: start it with `systemctl start fleetedge` (or restart it to use the new settings)"
        ),
    }
    println!("fleetedge has been configured successfully!");
    Ok(0)
}

pub fn import(from: &Path, out: &Path, force: bool) -> Result<i32, String> {
    let i = crate::config::import::import(from, out, force)?;
    println!(
        "imported {} into {} (owner only)",
        from.display(),
        out.display()
    );
    println!("carried over:");
    for c in &i.carried {
        println!("  {} (line {}) -> {}", c.key, c.line, c.note);
    }
    if !i.dropped.is_empty() {
        println!("not carried over:");
        for d in &i.dropped {
            println!("  {} (line {}): {}", d.key, d.line, d.note);
        }
    }
    println!("{} is unchanged.", from.display());
    println!(
        "next: review {0}, then `fleetedge config apply --config {0}`",
        out.display()
    );
    Ok(0)
}
