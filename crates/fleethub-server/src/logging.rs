//! The server's log: tracing events on stderr, as plain text or one JSON object per line, with
//! colours only when stderr is a terminal (journald and log files get no escape codes).

use serde::{Deserialize, Serialize};
use std::io::IsTerminal;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `message`, the event's fields, `target`.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("unknown log format '{s}': use text or json")),
        }
    }
}

/// Colour escape codes only on a terminal, and never with `NO_COLOR` set.
fn use_ansi() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `filter`. The NATS client
/// (`async_nats`) logs warnings only unless the filter names it: it reports every reconnect
/// attempt, and the cluster bus logs an outage once itself.
pub fn init(filter: &str, format: LogFormat) {
    let text = std::env::var("RUST_LOG").unwrap_or_else(|_| filter.to_string());
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    if !text.contains("async_nats")
        && let Ok(quiet) = "async_nats=warn".parse()
    {
        filter = filter.add_directive(quiet);
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(use_ansi()).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
