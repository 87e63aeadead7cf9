//! `fleethub hub monitor-events`: device-to-cloud telemetry, `az iot hub monitor-events` style.
//!
//! Live events come from `GET /messages/events/live` (Server-Sent Events) read over a TLS
//! connection of our own ([`live`], [`http1`], [`sse`]): the device SDK's HTTPS client only
//! returns whole bodies. Stored history comes from `GET /messages/events` pages. Gaps in the
//! live stream (a reader that fell behind, a dropped connection, a server restart) are filled
//! from the stored history by sequence number ([`follow`]), so nothing is lost or doubled.

mod follow;
mod http1;
mod live;
mod shape;
mod sse;

#[cfg(test)]
pub(crate) use follow::{Cursor, Follow, Sink, parse_page};
#[cfg(test)]
pub(crate) use http1::{BodyReader, read_head};
#[cfg(test)]
pub(crate) use live::{LiveConnector, LiveEvents, SseStream, live_request};
#[cfg(test)]
pub(crate) use shape::payload;
pub(crate) use shape::{render, shape};
#[cfg(test)]
pub(crate) use sse::{MAX_EVENT_BYTES, SseEvent, SseParser};

use crate::client::{ServiceClient, Transport};
use crate::output::OutputFormat;
use anyhow::{Result, bail};
use serde_json::Value;
use std::io::Write;
use std::time::Duration;

#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct MonitorArgs {
    /// Only this device's events.
    #[arg(long, short = 'd')]
    pub device_id: Option<String>,
    /// Only this module's events (an IoT Edge module or a module identity; a device's own
    /// messages have none).
    #[arg(long, short = 'm')]
    pub module_id: Option<String>,
    /// Consumer group for reading the stored history (--from / --from-start).
    #[arg(long, default_value = "$Default")]
    pub consumer_group: String,
    /// Start with every stored message, then follow live events.
    #[arg(long, conflicts_with = "from")]
    pub from_start: bool,
    /// Start with the stored messages after sequence number SEQ, then follow live events.
    #[arg(long, value_name = "SEQ")]
    pub from: Option<u64>,
    /// Stop after this many seconds (default: run until Ctrl-C). With --from/--from-start,
    /// 0 reads the stored history and stops without following live events.
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Include system and application properties.
    #[arg(long)]
    pub properties: bool,
}

impl MonitorArgs {
    /// Sequence number to read the history after, if any.
    pub(crate) fn start(&self) -> Option<u64> {
        if self.from_start { Some(0) } else { self.from }
    }

    /// Whether live events are followed after the history.
    pub(crate) fn live(&self) -> bool {
        self.timeout != Some(0)
    }
}

/// Prints shaped events to stdout, notes to stderr.
struct Stdout {
    format: OutputFormat,
    /// `--module-id`: other identities' events are skipped.
    module: Option<String>,
    properties: bool,
    count: u64,
}

impl follow::Sink for Stdout {
    fn event(&mut self, message: &Value) -> Result<bool> {
        if !module_matches(message, self.module.as_deref()) {
            return Ok(true);
        }
        let text = render(&shape(message, self.properties), self.format);
        let mut out = std::io::stdout().lock();
        match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => {
                self.count += 1;
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => bail!("cannot write to stdout: {e}"),
        }
    }

    fn note(&mut self, note: &str) {
        eprintln!("{note}");
    }
}

/// Is `message` (as the telemetry API shows it) from module `module` (any identity when `None`)?
pub(crate) fn module_matches(message: &Value, module: Option<&str>) -> bool {
    module.is_none_or(|m| message.get("moduleId").and_then(Value::as_str) == Some(m))
}

pub(crate) async fn run<T: Transport>(
    args: MonitorArgs,
    client: &ServiceClient<T>,
    format: OutputFormat,
) -> Result<()> {
    if !args.live() && args.start().is_none() {
        bail!(
            "--timeout 0 reads only the stored history and stops; add --from-start or --from SEQ \
             (or give a positive --timeout, or none to run until Ctrl-C)"
        );
    }
    let connector = live::HttpsLive::new(client.endpoint(), client.api_version())?;
    let mut sink = Stdout {
        format,
        module: args.module_id.clone(),
        properties: args.properties,
        count: 0,
    };
    let what = match (&args.device_id, &args.module_id) {
        (Some(d), Some(m)) => format!("module '{m}' of device '{d}'"),
        (Some(d), None) => format!("device '{d}'"),
        (None, Some(m)) => format!("module '{m}' of every device"),
        (None, None) => "all devices".to_string(),
    };
    let until = match args.timeout {
        Some(0) => "the stored history is read".to_string(),
        Some(s) => format!("{s} s passed or Ctrl-C"),
        None => "Ctrl-C".to_string(),
    };
    eprintln!("Monitoring events of {what} until {until}...");
    let mut follow = follow::Follow {
        client,
        live: &connector,
        device: args.device_id.as_deref(),
        consumer_group: &args.consumer_group,
        sink: &mut sink,
        cursor: follow::Cursor::default(),
        backoff: Duration::from_secs(1),
    };
    let work = follow.run(args.start(), args.live());
    let stop = async {
        match args.timeout.filter(|&t| t > 0) {
            Some(t) => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(t)) => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let result = tokio::select! {
        r = work => r,
        () = stop => Ok(()),
    };
    if result.is_ok() || sink.count > 0 {
        eprintln!(
            "{} event{} printed",
            sink.count,
            if sink.count == 1 { "" } else { "s" }
        );
    }
    result
}
