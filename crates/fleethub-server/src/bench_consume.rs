//! `fleethub bench consume`: the command line of [`fleethub_bench::run_consume_bench`]
//! against the server of a data directory.

use crate::info::ServerInfo;
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

/// How the report is printed.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ConsumeOutput {
    Text,
    Json,
}

/// The connections of the backlog read.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ConsumeLayout {
    /// One AMQPS connection (own `$cbs` token, own session) per partition, as the official
    /// Python `EventHubConsumerClient` opens them.
    ConnectionPerPartition,
    /// One connection, a session per partition, as the Node `@azure/event-hubs` consumer.
    SessionPerPartition,
    /// Every receiver on one session of one connection.
    Shared,
}

/// How the backlog read's receivers settle.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ConsumeSettle {
    /// Accept every delivery with a Disposition, as the official Python and Node consumers do.
    Accept,
    /// Ask for pre-settled transfers (`snd-settle-mode` `settled`), as the .NET
    /// `Azure.Messaging.EventHubs` consumer and the Azure Functions trigger built on it do.
    OnSend,
}

/// Read a stored backlog with one Event Hubs-style AMQP consumer (one receiver per
/// partition) against the REST read of the same log, then the PUBACK -> live consumer
/// latency; publishes the backlog first when the partitions hold less.
#[derive(clap::Args)]
pub struct ConsumeArgs {
    /// Events the partitions must hold before reading (the missing ones are published over
    /// MQTT; a larger stored backlog is read whole).
    #[arg(long, default_value_t = 1_000_000)]
    backlog: u64,
    /// Partitions to read, from 0 (default: all of the hub's).
    #[arg(long)]
    partitions: Option<u32>,
    /// Bench devices publishing the backlog and the live messages.
    #[arg(long, default_value_t = 32)]
    devices: usize,
    /// QoS 1 publishes in flight per device while filling the backlog (1..=64).
    #[arg(long, default_value_t = 16)]
    inflight: usize,
    #[arg(long, default_value_t = 200)]
    payload_bytes: usize,
    /// Live phase: aggregate messages per second.
    #[arg(long, default_value_t = 200.0)]
    latency_rate: f64,
    /// Live phase: seconds of publishing.
    #[arg(long, default_value_t = 10)]
    latency_secs: u64,
    /// Link credit of each receiver.
    #[arg(long, default_value_t = 1000)]
    credit: u32,
    /// Connections of the backlog read.
    #[arg(long, value_enum, default_value = "connection-per-partition")]
    layout: ConsumeLayout,
    /// How the backlog read's receivers settle.
    #[arg(long, value_enum, default_value = "accept")]
    settle: ConsumeSettle,
    /// Consumer group the receivers read (must exist).
    #[arg(long, default_value = "$Default")]
    consumer_group: String,
    /// Bound on filling the backlog and on each read, seconds.
    #[arg(long, default_value_t = 3600)]
    phase_timeout: u64,
    /// Data directory of the server under test (its server-info.json names the endpoints).
    #[arg(long, env = "FLEETHUB_DATA_DIR", default_value = "./fleethub-data")]
    data_dir: PathBuf,
    #[arg(long, short = 'o', value_enum, default_value = "text")]
    output: ConsumeOutput,
}

/// Runs the benchmark and prints its report.
pub async fn run(args: ConsumeArgs) -> Result<()> {
    let info = ServerInfo::read(&args.data_dir)?;
    let report = fleethub_bench::run_consume_bench(fleethub_bench::ConsumeBenchOptions {
        backlog: args.backlog,
        partitions: args.partitions,
        devices: args.devices,
        inflight: args.inflight,
        payload_bytes: args.payload_bytes,
        latency_rate: args.latency_rate,
        latency_secs: args.latency_secs,
        credit: args.credit,
        layout: match args.layout {
            ConsumeLayout::ConnectionPerPartition => {
                fleethub_bench::ConsumeLayout::ConnectionPerPartition
            }
            ConsumeLayout::SessionPerPartition => {
                fleethub_bench::ConsumeLayout::SessionPerPartition
            }
            ConsumeLayout::Shared => fleethub_bench::ConsumeLayout::Shared,
        },
        settle: match args.settle {
            ConsumeSettle::Accept => fleethub_bench::ConsumeSettle::Accept,
            ConsumeSettle::OnSend => fleethub_bench::ConsumeSettle::OnSend,
        },
        consumer_group: args.consumer_group,
        phase_timeout: Duration::from_secs(args.phase_timeout),
        hub_host: info.hub_host.clone(),
        dial: Some("127.0.0.1".into()),
        mqtt_port: info.mqtt_port,
        https_port: info.https_port,
        amqp_port: info.amqp_port,
        ca_pem_path: PathBuf::from(&info.ca_cert_path),
        hub_service_connection_string: info.hub_service_connection_string.clone(),
    })
    .await?;
    match args.output {
        ConsumeOutput::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ConsumeOutput::Text => println!("{report}"),
    }
    Ok(())
}
