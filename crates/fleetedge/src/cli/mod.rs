//! The `fleetedge` command line: `run` (the daemon), `config init|apply`, `list`, `logs`,
//! `restart`, `system status|logs|restart|reprovision`, `check`, `support-bundle`, `version`.

pub mod check;
mod config_cmd;
pub mod list;
mod logs;
mod support_bundle;
mod system;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::{Config, config_path};
use crate::mgmt::{self, ModuleRow};
use crate::state::StateDir;

#[derive(Parser, Debug)]
#[command(
    name = "fleetedge",
    version,
    about = "IoT Edge device runtime for fleethub"
)]
pub struct Cli {
    /// Configuration file [default: $FLEETEDGE_CONFIG, else /etc/fleetedge/config.toml]
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Run the daemon (what the systemd unit starts).
    Run,
    /// Write or apply the configuration.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// List the modules: NAME, STATUS, DESCRIPTION, CONFIG.
    List,
    /// Show a module's logs.
    Logs {
        module: String,
        /// Only the last N lines.
        #[arg(long)]
        tail: Option<usize>,
        /// Only what was written since this time: RFC 3339 (2026-01-01T10:00:00Z) or a
        /// duration back from now (90s, 15m, 2h, 1d).
        #[arg(long)]
        since: Option<String>,
        /// Keep printing new lines.
        #[arg(short, long)]
        follow: bool,
    },
    /// Restart a module.
    Restart { module: String },
    /// The daemon itself.
    #[command(subcommand)]
    System(SystemCmd),
    /// Check the configuration, connectivity and module health.
    Check {
        #[arg(long, short, value_enum, default_value_t = Output::Text)]
        output: Output,
        /// Show details of passing checks too.
        #[arg(long)]
        verbose: bool,
        /// Check IDs not to run (comma separated).
        #[arg(long, value_delimiter = ',')]
        dont_run: Vec<String>,
    },
    /// Write a tar file for support: status, modules, check report, the configuration with
    /// keys redacted, logs; no key files.
    SupportBundle {
        /// Output file [default: ./fleetedge-support-<time>.tar]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Lines per log file.
        #[arg(long, default_value_t = 1000)]
        tail: usize,
    },
    /// Print the version.
    Version,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum ConfigCmd {
    /// Write a new configuration file (to --config or the default path).
    Init(Box<config_cmd::InitArgs>),
    /// Validate the configuration, store the key material and reload the daemon.
    Apply,
    /// Convert IoT Edge 1.1's config.yaml into this configuration file (like `iotedge config
    /// import`); the old file is left untouched.
    Import {
        /// The IoT Edge 1.1 configuration.
        #[arg(long, default_value = crate::config::import::DEFAULT_FROM)]
        from: PathBuf,
        /// Where to write [default: --config, $FLEETEDGE_CONFIG, else /etc/fleetedge/config.toml]
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum SystemCmd {
    /// Daemon state: device, hub, agent, edge hub.
    Status,
    /// The daemon's logs (journalctl -u fleetedge); extra arguments go to journalctl.
    Logs {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Restart the daemon (systemctl restart fleetedge).
    Restart,
    /// Provision the device again (runs DPS).
    Reprovision,
}

/// Loads the configuration or explains what is wrong.
pub fn load_config(flag: Option<&std::path::Path>) -> Result<Config, String> {
    Config::load(&config_path(flag)).map_err(|e| e.to_string())
}

/// Runs the CLI; returns the process exit code.
pub async fn main(cli: Cli) -> i32 {
    let result = dispatch(cli).await;
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

async fn dispatch(cli: Cli) -> Result<i32, String> {
    let flag = cli.config.as_deref();
    match cli.command {
        Cmd::Run => {
            crate::daemon::run(config_path(flag))
                .await
                .map_err(|e| format!("{e:#}"))?;
            Ok(0)
        }
        Cmd::Config(ConfigCmd::Init(args)) => config_cmd::init(&config_path(flag), *args),
        Cmd::Config(ConfigCmd::Apply) => config_cmd::apply(&config_path(flag)).await,
        Cmd::Config(ConfigCmd::Import { from, out, force }) => {
            let out = out.unwrap_or_else(|| config_path(flag));
            config_cmd::import(&from, &out, force)
        }
        Cmd::List => {
            let c = load_config(flag)?;
            let v = mgmt::call(
                &StateDir::new(&c.homedir).mgmt_socket(),
                http::Method::GET,
                "/modules",
            )
            .await?;
            let rows: Vec<ModuleRow> = serde_json::from_value(v).map_err(|e| e.to_string())?;
            print!("{}", list::render(&rows, chrono::Utc::now()));
            Ok(0)
        }
        Cmd::Logs {
            module,
            tail,
            since,
            follow,
        } => {
            let since = since
                .map(|s| crate::runtime::logs::parse_since(&s, chrono::Utc::now()))
                .transpose()?;
            let c = load_config(flag)?;
            logs::show(&c, &StateDir::new(&c.homedir), &module, tail, since, follow).await
        }
        Cmd::Restart { module } => {
            let c = load_config(flag)?;
            let path = format!(
                "/modules/{}/restart",
                percent_encoding::utf8_percent_encode(&module, percent_encoding::NON_ALPHANUMERIC)
            );
            mgmt::call(
                &StateDir::new(&c.homedir).mgmt_socket(),
                http::Method::POST,
                &path,
            )
            .await?;
            println!("{module}");
            Ok(0)
        }
        Cmd::System(cmd) => system::run(flag, cmd).await,
        Cmd::Check {
            output,
            verbose,
            dont_run,
        } => {
            let report = check::run_all(config_path(flag), &dont_run).await;
            match output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
                ),
                Output::Text => print!("{}", check::render_text(&report, verbose)),
            }
            Ok(i32::from(report.summary.errors > 0))
        }
        Cmd::SupportBundle { out, tail } => support_bundle::run(flag, out, tail).await,
        Cmd::Version => {
            println!("fleetedge {}", env!("CARGO_PKG_VERSION"));
            Ok(0)
        }
    }
}
