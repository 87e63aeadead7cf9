//! Where to connect and with which credentials: flags and environment first, then a saved
//! profile (`fleethub login`) or the `server-info.json` that a local `fleethub serve` writes
//! into its data directory (the order is in [`ClientArgs`]).

use crate::args::ClientArgs;
use crate::profiles::{DEFAULT_PROFILE, Profile, ProfileStore};
use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// Name of the file `fleethub serve` writes into its data directory.
pub const SERVER_INFO_FILE: &str = "server-info.json";

/// Default HTTPS port when nothing says otherwise.
const DEFAULT_HTTPS_PORT: u16 = 443;

/// `server-info.json` (the object `fleethub info --output json` prints). Every field is optional
/// here so that an older or newer server's file still reads.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServerInfo {
    #[serde(default)]
    pub id_scope: Option<String>,
    #[serde(default)]
    pub dps_host: Option<String>,
    #[serde(default)]
    pub hub_host: Option<String>,
    #[serde(default)]
    pub ca_cert_path: Option<String>,
    #[serde(default)]
    pub mqtt_port: Option<u16>,
    #[serde(default)]
    pub https_port: Option<u16>,
    #[serde(default)]
    pub dps_service_connection_string: Option<String>,
    #[serde(default)]
    pub hub_service_connection_string: Option<String>,
}

impl ServerInfo {
    /// Reads `{data_dir}/server-info.json`; `None` when the file does not exist.
    pub(crate) fn load(data_dir: &Path) -> Result<Option<ServerInfo>> {
        let path = data_dir.join(SERVER_INFO_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
        };
        let info = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is not valid server info; fix or delete it, or pass --data-dir",
                path.display()
            )
        })?;
        Ok(Some(info))
    }

    /// Does this file describe the server called `host`?
    fn describes(&self, host: &str) -> bool {
        [&self.dps_host, &self.hub_host]
            .into_iter()
            .flatten()
            .any(|h| h.eq_ignore_ascii_case(host))
    }
}

fn non_empty(s: Option<&str>) -> Option<&str> {
    s.map(str::trim).filter(|s| !s.is_empty())
}

/// Which service API a command talks to (decides the connection string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Dps,
    Hub,
    /// Either; DPS preferred (diagnostics accept both kinds of service SAS).
    DpsOrHub,
}

/// Everything needed to send an authenticated request.
#[derive(Clone, PartialEq)]
pub struct Endpoint {
    /// `HostName` of the connection string: TLS server name, Host header and SAS `sr`.
    pub host_name: String,
    /// `SharedAccessKeyName` (SAS `skn`).
    pub key_name: String,
    /// `SharedAccessKey` (base64).
    pub key: String,
    /// `host:port` to dial.
    pub dial: String,
    /// CA certificate to trust; `None` = public web roots.
    pub ca_cert: Option<PathBuf>,
    /// Where the connection string came from, for messages ("--dps-connection-string", ...).
    pub origin: String,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("host_name", &self.host_name)
            .field("key_name", &self.key_name)
            .field("key", &"<redacted>")
            .field("dial", &self.dial)
            .field("ca_cert", &self.ca_cert)
            .field("origin", &self.origin)
            .finish()
    }
}

/// Where the defaults the flags leave open come from: a saved profile or a data directory's
/// `server-info.json` (the order is in [`ClientArgs`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Defaults {
    /// A profile of `profiles.toml` (`file`).
    Profile {
        name: String,
        profile: Profile,
        file: PathBuf,
    },
    /// `{dir}/server-info.json`, `None` when it does not exist.
    DataDir {
        dir: PathBuf,
        info: Option<ServerInfo>,
    },
}

impl Defaults {
    /// Picks the defaults for `args` from the user's profiles and the data directory.
    pub(crate) fn load(args: &ClientArgs) -> Result<Defaults> {
        // Without a HOME there are no profiles; that only matters when one is asked for.
        let store = ProfileStore::from_env();
        if args.profile.is_some() {
            return Defaults::select(args, Some(&store?));
        }
        Defaults::select(args, store.ok().as_ref())
    }

    /// `--profile` (must exist) > `--data-dir` > profile `default` > `./fleethub-data`.
    pub(crate) fn select(args: &ClientArgs, store: Option<&ProfileStore>) -> Result<Defaults> {
        let data_dir = || -> Result<Defaults> {
            let dir = args.data_dir();
            let info = ServerInfo::load(&dir)?;
            Ok(Defaults::DataDir { dir, info })
        };
        if let Some(name) = non_empty(args.profile.as_deref()) {
            let store = store.ok_or_else(|| anyhow!("no configuration directory for profiles"))?;
            let mut profiles = store.load()?;
            let Some(profile) = profiles.by_name.remove(name) else {
                let known: Vec<&str> = profiles.by_name.keys().map(String::as_str).collect();
                bail!(
                    "no profile '{name}' in {} ({}); save it with `fleethub login --profile {name} --hub-connection-string ... --dps-connection-string ...`",
                    store.file().display(),
                    if known.is_empty() {
                        "it has none".to_string()
                    } else {
                        format!("it has {}", known.join(", "))
                    }
                );
            };
            return Ok(Defaults::Profile {
                name: name.to_string(),
                profile,
                file: store.file(),
            });
        }
        if args.data_dir.is_some() {
            return data_dir();
        }
        if let Some(store) = store {
            let mut profiles = store.load()?;
            if let Some(profile) = profiles.by_name.remove(DEFAULT_PROFILE) {
                return Ok(Defaults::Profile {
                    name: DEFAULT_PROFILE.to_string(),
                    profile,
                    file: store.file(),
                });
            }
        }
        data_dir()
    }

    /// The `server-info.json` in effect (none with a profile).
    pub(crate) fn server_info(&self) -> Option<&ServerInfo> {
        match self {
            Defaults::DataDir { info, .. } => info.as_ref(),
            Defaults::Profile { .. } => None,
        }
    }

    /// The CA certificate the defaults name.
    pub(crate) fn ca_cert(&self) -> Option<PathBuf> {
        match self {
            Defaults::Profile { profile, .. } => profile.ca_cert.clone(),
            Defaults::DataDir { dir, info } => info
                .as_ref()
                .and_then(|i| non_empty(i.ca_cert_path.as_deref()))
                .map(|p| resolve_relative(Path::new(p), dir)),
        }
    }
}

impl Endpoint {
    /// Resolves flags/env, then the profile or `server-info.json`, into an endpoint for
    /// `service`.
    pub fn resolve(args: &ClientArgs, service: Service) -> Result<Endpoint> {
        match Defaults::load(args)? {
            Defaults::DataDir { info, .. } => resolve_with(args, service, info.as_ref()),
            Defaults::Profile {
                name,
                profile,
                file,
            } => resolve_profile(args, service, &name, &profile, &file),
        }
    }
}

/// The explicit connection-string flags (or their environment variables) for `service`.
fn flag_candidates(args: &ClientArgs) -> (Option<(&str, String)>, Option<(&str, String)>) {
    let dps = non_empty(args.dps_connection_string.as_deref())
        .map(|s| (s, "--dps-connection-string".to_string()));
    let hub = non_empty(args.hub_connection_string.as_deref())
        .map(|s| (s, "--hub-connection-string".to_string()));
    (dps, hub)
}

fn pick<'a>(
    service: Service,
    dps: Option<(&'a str, String)>,
    hub: Option<(&'a str, String)>,
) -> Option<(&'a str, String)> {
    match service {
        Service::Dps => dps,
        Service::Hub => hub,
        Service::DpsOrHub => dps.or(hub),
    }
}

/// Flags first, then the saved profile `name`; a profile never falls back to a data directory.
pub(crate) fn resolve_profile(
    args: &ClientArgs,
    service: Service,
    name: &str,
    profile: &Profile,
    file: &Path,
) -> Result<Endpoint> {
    let (dps_flag, hub_flag) = flag_candidates(args);
    let of = |field: &str| format!("{field} of profile '{name}' in {}", file.display());
    let dps_saved = non_empty(profile.dps_connection_string.as_deref())
        .map(|s| (s, of("dps_connection_string")));
    let hub_saved = non_empty(profile.hub_connection_string.as_deref())
        .map(|s| (s, of("hub_connection_string")));
    let chosen = pick(service, dps_flag, hub_flag).or_else(|| pick(service, dps_saved, hub_saved));
    let Some((conn, origin)) = chosen else {
        let (what, flag) = match service {
            Service::Hub => ("hub", "--hub-connection-string"),
            _ => ("DPS", "--dps-connection-string"),
        };
        bail!(
            "no {what} connection string: profile '{name}' ({}) has none; add it with `fleethub login --profile {name} {flag} ...` or pass {flag}",
            file.display()
        );
    };
    let hub = origin == "--hub-connection-string" || origin.starts_with("hub_connection_string");
    let (host_name, key_name, key) = parse_connection_string_for(conn, &origin, hub)?;
    let dial = match non_empty(args.server.as_deref()) {
        Some(s) => dial_address(s, DEFAULT_HTTPS_PORT).context("--server")?,
        None => match non_empty(profile.server.as_deref()) {
            Some(s) => dial_address(s, DEFAULT_HTTPS_PORT)
                .with_context(|| format!("server of profile '{name}'"))?,
            None => join_host_port(&host_name, DEFAULT_HTTPS_PORT),
        },
    };
    Ok(Endpoint {
        host_name,
        key_name,
        key,
        dial,
        ca_cert: args.ca_cert.clone().or_else(|| profile.ca_cert.clone()),
        origin,
    })
}

pub(crate) fn resolve_with(
    args: &ClientArgs,
    service: Service,
    info: Option<&ServerInfo>,
) -> Result<Endpoint> {
    let data_dir = args.data_dir();
    let info_file = data_dir.join(SERVER_INFO_FILE);
    let (dps_flag, hub_flag) = flag_candidates(args);
    let dps_info = info
        .and_then(|i| non_empty(i.dps_service_connection_string.as_deref()))
        .map(|s| {
            (
                s,
                "dpsServiceConnectionString in server-info.json".to_string(),
            )
        });
    let hub_info = info
        .and_then(|i| non_empty(i.hub_service_connection_string.as_deref()))
        .map(|s| {
            (
                s,
                "hubServiceConnectionString in server-info.json".to_string(),
            )
        });

    let chosen = pick(service, dps_flag, hub_flag).or_else(|| pick(service, dps_info, hub_info));
    let Some((conn, origin)) = chosen else {
        let (what, flag) = match service {
            Service::Hub => ("hub", "--hub-connection-string"),
            _ => ("DPS", "--dps-connection-string"),
        };
        let why = if info.is_some() {
            format!("{} has none", info_file.display())
        } else {
            format!("{} does not exist", info_file.display())
        };
        bail!(
            "no {what} connection string: pass {flag} or run `fleethub serve` with --data-dir {} first ({why}); elsewhere, save it once with `fleethub login {flag} ...`",
            data_dir.display()
        );
    };
    let from_info = origin.ends_with("server-info.json");
    let (host_name, key_name, key) = parse_service_connection_string(conn, &origin)?;

    // server-info.json only speaks for the server it describes.
    let info = info.filter(|i| from_info || i.describes(&host_name));
    let default_port = info
        .and_then(|i| i.https_port)
        .unwrap_or(DEFAULT_HTTPS_PORT);
    let dial = match non_empty(args.server.as_deref()) {
        Some(s) => dial_address(s, default_port).context("--server")?,
        None => join_host_port(&host_name, default_port),
    };
    let ca_cert = args.ca_cert.clone().or_else(|| {
        info.and_then(|i| non_empty(i.ca_cert_path.as_deref()))
            .map(|p| resolve_relative(Path::new(p), &data_dir))
    });
    Ok(Endpoint {
        host_name,
        key_name,
        key,
        dial,
        ca_cert,
        origin,
    })
}

/// A relative `caCertPath` is taken relative to the data directory when the file is there.
fn resolve_relative(p: &Path, data_dir: &Path) -> PathBuf {
    if p.is_relative() && !p.exists() && data_dir.join(p).exists() {
        data_dir.join(p)
    } else {
        p.to_path_buf()
    }
}

/// (HostName, SharedAccessKeyName, SharedAccessKey) of a service connection string.
pub(crate) fn parse_service_connection_string(
    s: &str,
    origin: &str,
) -> Result<(String, String, String)> {
    parse_connection_string_for(s, origin, origin.contains("hub"))
}

/// [`parse_service_connection_string`] with the kind given: `hub` picks the example policy
/// named in messages.
pub(crate) fn parse_connection_string_for(
    s: &str,
    origin: &str,
    hub: bool,
) -> Result<(String, String, String)> {
    let cs = fleethub_core::connection_string::ConnectionString::parse(s)
        .map_err(|e| anyhow!("the connection string from {origin} is invalid: {e}"))?;
    let field = |v: &Option<String>| {
        v.as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    let policy = if hub {
        "iothubowner"
    } else {
        "provisioningserviceowner"
    };
    let example = format!("HostName=...;SharedAccessKeyName={policy};SharedAccessKey=...");
    if field(&cs.device_id).is_some() {
        bail!(
            "the connection string from {origin} is a device connection string; admin commands need a service one ({example})"
        );
    }
    let host = cs.host_name.trim().to_string();
    let key_name = field(&cs.shared_access_key_name).ok_or_else(|| {
        anyhow!("the connection string from {origin} has no SharedAccessKeyName; a service connection string looks like {example}")
    })?;
    let key = field(&cs.shared_access_key).ok_or_else(|| {
        anyhow!("the connection string from {origin} has no SharedAccessKey ({example})")
    })?;
    Ok((host, key_name, key))
}

/// `host:port` for dialing; IPv6 literals get brackets.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Checks a `--server` value: `HOST:PORT`, `[V6]:PORT`, or a bare host (then `default_port`).
pub(crate) fn dial_address(s: &str, default_port: u16) -> Result<String> {
    let s = s.trim();
    let bad = || anyhow!("'{s}' is not HOST:PORT (e.g. 127.0.0.1:8443 or [::1]:8443)");
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        if host.is_empty() {
            return Err(bad());
        }
        return match after {
            "" => Ok(format!("[{host}]:{default_port}")),
            p => {
                let port = p
                    .strip_prefix(':')
                    .and_then(|p| p.parse::<u16>().ok())
                    .ok_or_else(bad)?;
                Ok(format!("[{host}]:{port}"))
            }
        };
    }
    match s.matches(':').count() {
        0 if !s.is_empty() => Ok(format!("{s}:{default_port}")),
        1 => {
            let (host, port) = s.split_once(':').ok_or_else(bad)?;
            let port: u16 = port.parse().map_err(|_| bad())?;
            if host.is_empty() || port == 0 {
                return Err(bad());
            }
            Ok(format!("{host}:{port}"))
        }
        _ => Err(bad()),
    }
}
