//! Connection and output options shared by every admin subcommand.

use crate::output::OutputFormat;
use std::path::PathBuf;

/// How to reach the server. Flatten it next to the subcommand; the options are global, so they
/// may appear anywhere after `dps` / `hub` / `diagnostics`. What the flags leave open comes from
/// the profile named by `--profile` (`FLEETHUB_PROFILE`), else from `--data-dir`'s
/// `server-info.json` when `--data-dir` (`FLEETHUB_DATA_DIR`) is given, else from the profile
/// `default` (`fleethub login`), else from `./fleethub-data/server-info.json`.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct ClientArgs {
    /// DPS service connection string (HostName=...;SharedAccessKeyName=...;SharedAccessKey=...).
    /// Default: the profile's (`fleethub login`), else dpsServiceConnectionString from
    /// server-info.json.
    #[arg(
        long,
        global = true,
        env = "FLEETHUB_DPS_CONNECTION_STRING",
        hide_env_values = true,
        value_name = "CONNECTION_STRING"
    )]
    pub dps_connection_string: Option<String>,

    /// Hub service connection string (HostName=...;SharedAccessKeyName=iothubowner;SharedAccessKey=...)
    /// for `hub ...` (`diagnostics` uses it when no DPS one is given).
    /// Default: the profile's (`fleethub login`), else hubServiceConnectionString from
    /// server-info.json.
    #[arg(
        long,
        global = true,
        env = "FLEETHUB_HUB_CONNECTION_STRING",
        hide_env_values = true,
        value_name = "CONNECTION_STRING"
    )]
    pub hub_connection_string: Option<String>,

    /// CA certificate (PEM) that signed the server's certificate.
    /// Default: the profile's, else caCertPath from server-info.json, else the public web roots.
    #[arg(long, global = true, env = "FLEETHUB_CA_CERT", value_name = "PATH")]
    pub ca_cert: Option<PathBuf>,

    /// Saved connection to use (`fleethub login --profile NAME`). Default: the profile
    /// `default` when it exists and no --data-dir is given.
    #[arg(long, global = true, env = "FLEETHUB_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// Data directory of a local `fleethub serve` (its server-info.json supplies the defaults).
    /// Default: ./fleethub-data, unless a `default` profile exists.
    #[arg(long, global = true, env = "FLEETHUB_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// TCP address to dial (HOST:PORT), e.g. 127.0.0.1:8443. TLS server name, Host header and
    /// token still use the connection string's HostName. Default: HostName, port httpsPort from
    /// server-info.json (when it describes that host) or 443.
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub server: Option<String>,

    /// Output format: json (default, for scripts), yaml, or table (for people).
    #[arg(long, short = 'o', global = true, value_enum, default_value_t = OutputFormat::Json)]
    pub output: OutputFormat,
}

/// The data directory used when none is given.
pub(crate) const DEFAULT_DATA_DIR: &str = "./fleethub-data";

impl ClientArgs {
    /// `--data-dir`, or `./fleethub-data`.
    pub fn data_dir(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }
}

impl Default for ClientArgs {
    fn default() -> Self {
        ClientArgs {
            dps_connection_string: None,
            hub_connection_string: None,
            ca_cert: None,
            profile: None,
            data_dir: None,
            server: None,
            output: OutputFormat::Json,
        }
    }
}
