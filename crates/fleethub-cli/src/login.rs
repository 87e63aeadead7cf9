//! `fleethub login` / `fleethub logout`: save, list and delete named connections (profiles),
//! so that the admin commands run as an ordinary user, from any directory, against a local or
//! remote server. Keys are stored owner-only and never printed (`--list` masks them).

use crate::output::{Column, Outcome, OutputFormat, col};
use crate::profiles::{DEFAULT_PROFILE, Profile, ProfileStore, Profiles, check_name, mask_key};
use crate::settings::{dial_address, parse_connection_string_for};
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::path::PathBuf;

/// `fleethub login`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct LoginArgs {
    /// Hub service connection string (HostName=..;SharedAccessKeyName=iothubowner;SharedAccessKey=..).
    #[arg(long, value_name = "CONNECTION_STRING")]
    pub hub_connection_string: Option<String>,
    /// DPS service connection string
    /// (HostName=..;SharedAccessKeyName=provisioningserviceowner;SharedAccessKey=..).
    #[arg(long, value_name = "CONNECTION_STRING")]
    pub dps_connection_string: Option<String>,
    /// CA certificate (PEM) that signed the server's certificate; a copy is saved with the
    /// profile. Default: the public web roots.
    #[arg(long, value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// TCP address to dial (HOST:PORT) when the server is not at the connection strings'
    /// HostName:443, e.g. 127.0.0.1:8443.
    #[arg(long, value_name = "HOST:PORT")]
    pub server: Option<String>,
    /// Profile to save into (created, or updated field by field).
    #[arg(long, env = "FLEETHUB_PROFILE", default_value = DEFAULT_PROFILE, value_name = "NAME")]
    pub profile: String,
    /// List the saved profiles (keys masked) instead.
    #[arg(long, conflicts_with_all = ["hub_connection_string", "dps_connection_string", "ca_cert", "server"])]
    pub list: bool,
    /// Output of --list: json, yaml or table (default).
    #[arg(long, short = 'o', value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
}

/// `fleethub logout`.
#[derive(clap::Args, Debug, Clone, Default, PartialEq)]
pub struct LogoutArgs {
    /// Profile to delete.
    #[arg(long, env = "FLEETHUB_PROFILE", default_value = DEFAULT_PROFILE, value_name = "NAME")]
    pub profile: String,
    /// Delete every profile.
    #[arg(long, conflicts_with = "profile")]
    pub all: bool,
}

const LIST_COLUMNS: &[Column] = &[
    col("PROFILE", "/profile"),
    col("HUB", "/hubHost"),
    col("DPS", "/dpsHost"),
    col("SERVER", "/server"),
    col("CA", "/caCert"),
];

/// Runs `fleethub login`.
pub fn run_login(args: &LoginArgs) -> Result<()> {
    let store = ProfileStore::from_env()?;
    let outcome = login(&store, args)?;
    crate::emit(&outcome, args.output)
}

/// Runs `fleethub logout`.
pub fn run_logout(args: &LogoutArgs) -> Result<()> {
    let store = ProfileStore::from_env()?;
    let note = logout(&store, args)?;
    eprintln!("{note}");
    Ok(())
}

/// Saves (or lists) profiles in `store`.
pub(crate) fn login(store: &ProfileStore, args: &LoginArgs) -> Result<Outcome> {
    let mut profiles = store.load()?;
    if args.list {
        return Ok(Outcome::List(list(&profiles), LIST_COLUMNS));
    }
    let name = args.profile.trim();
    check_name(name)?;
    let hub = non_empty(args.hub_connection_string.as_deref());
    let dps = non_empty(args.dps_connection_string.as_deref());
    let server = non_empty(args.server.as_deref());
    if hub.is_none() && dps.is_none() && args.ca_cert.is_none() && server.is_none() {
        bail!(
            "nothing to save: pass --hub-connection-string and/or --dps-connection-string (`fleethub info` on the server prints both), and --ca-cert PEM for a server with its own CA"
        );
    }
    if let Some(cs) = hub {
        parse_connection_string_for(cs, "--hub-connection-string", true)?;
    }
    if let Some(cs) = dps {
        parse_connection_string_for(cs, "--dps-connection-string", false)?;
    }
    if let Some(s) = server {
        dial_address(s, 443).map_err(|e| e.context("--server"))?;
    }
    let existed = profiles.by_name.contains_key(name);
    let mut profile = profiles.by_name.remove(name).unwrap_or_default();
    if let Some(cs) = hub {
        profile.hub_connection_string = Some(cs.to_string());
    }
    if let Some(cs) = dps {
        profile.dps_connection_string = Some(cs.to_string());
    }
    if let Some(s) = server {
        profile.server = Some(s.to_string());
    }
    if let Some(ca) = &args.ca_cert {
        profile.ca_cert = Some(store.copy_ca(name, ca)?);
    }
    profiles.by_name.insert(name.to_string(), profile);
    store.save(&profiles)?;
    let how = if name == DEFAULT_PROFILE {
        "used when no --profile or --data-dir is given".to_string()
    } else {
        format!("use it with --profile {name} or FLEETHUB_PROFILE={name}")
    };
    Ok(Outcome::Done(format!(
        "{} profile '{name}' in {} ({how})",
        if existed { "updated" } else { "saved" },
        store.file().display()
    )))
}

/// Deletes profiles from `store`; returns what was done.
pub(crate) fn logout(store: &ProfileStore, args: &LogoutArgs) -> Result<String> {
    let mut profiles = store.load()?;
    let names: Vec<String> = if args.all {
        profiles.by_name.keys().cloned().collect()
    } else {
        let name = args.profile.trim();
        if !profiles.by_name.contains_key(name) {
            bail!(
                "no profile '{name}' in {} (`fleethub login --list` shows them)",
                store.file().display()
            );
        }
        vec![name.to_string()]
    };
    for name in &names {
        profiles.by_name.remove(name);
        store.remove_ca(name)?;
    }
    store.save(&profiles)?;
    Ok(if names.is_empty() {
        "no profiles saved".to_string()
    } else {
        format!(
            "deleted profile{} {} from {}",
            if names.len() == 1 { "" } else { "s" },
            names.join(", "),
            store.file().display()
        )
    })
}

/// One object per profile, connection strings with their keys masked.
fn list(profiles: &Profiles) -> Vec<Value> {
    profiles
        .by_name
        .iter()
        .map(|(name, p)| listing(name, p))
        .collect()
}

fn listing(name: &str, p: &Profile) -> Value {
    let host = |cs: &Option<String>| {
        cs.as_deref()
            .and_then(|s| fleethub_core::connection_string::ConnectionString::parse(s).ok())
            .map(|c| c.host_name)
    };
    json!({
        "profile": name,
        "default": name == DEFAULT_PROFILE,
        "hubHost": host(&p.hub_connection_string),
        "dpsHost": host(&p.dps_connection_string),
        "hubConnectionString": p.hub_connection_string.as_deref().map(mask_key),
        "dpsConnectionString": p.dps_connection_string.as_deref().map(mask_key),
        "server": p.server,
        "caCert": p.ca_cert.as_ref().map(|c| c.display().to_string()),
    })
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}
