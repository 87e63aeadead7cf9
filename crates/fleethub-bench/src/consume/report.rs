//! What `bench consume` reports.

use std::fmt;

use serde::Serialize;

/// The figures of one `bench consume` run.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumeBenchReport {
    /// Partitions read.
    pub partitions: u32,
    /// `--backlog`: events the partitions had to hold before reading.
    pub backlog_requested: u64,
    /// Events published (MQTT QoS 1, PUBACKed) to fill the backlog (0: it was already there).
    pub backlog_published: u64,
    pub backlog_publish_sec: f64,
    pub backlog_publish_per_sec: f64,
    pub publish_errors: u64,
    /// Events stored in the partitions read (begin..=last sequence number of each).
    pub backlog_events: u64,
    /// Events the Event Hubs-style consumer read from the start of every partition.
    pub events_read: u64,
    pub consume_sec: f64,
    pub events_per_sec: f64,
    /// What the baseline measures.
    pub baseline: String,
    pub baseline_events: u64,
    pub baseline_sec: f64,
    pub baseline_events_per_sec: f64,
    /// `eventsPerSec / baselineEventsPerSec`.
    pub ratio: f64,
    /// Live phase: aggregate publish rate (messages/s) and its length.
    pub latency_rate: f64,
    pub latency_secs: f64,
    /// Live phase: messages PUBACKed, and of those the ones the `@latest` consumer received.
    pub latency_sent: u64,
    pub latency_received: u64,
    /// Event at the consumer minus PUBACK at the device (both in this process); negative when
    /// the event arrived first.
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub devices: usize,
    pub credit: u32,
    /// Connections of the backlog read.
    pub layout: super::Layout,
    /// How the backlog read's receivers settled.
    pub settle: super::Settle,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl fmt::Display for ConsumeBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bench consume: {} partitions, link credit {}, {}, {}",
            self.partitions,
            self.credit,
            match self.layout {
                super::Layout::ConnectionPerPartition => "one AMQP connection per partition",
                super::Layout::SessionPerPartition =>
                    "one AMQP connection, one session per partition",
                super::Layout::Shared => "one AMQP connection and session for all partitions",
            },
            match self.settle {
                super::Settle::Accept => "every delivery accepted (Python, Node)",
                super::Settle::OnSend => "settled on send (.NET, Azure Functions)",
            }
        )?;
        if self.backlog_published > 0 {
            writeln!(
                f,
                "  backlog:   published {} events from {} devices in {:.1} s ({:.0}/s, {} errors)",
                self.backlog_published,
                self.devices,
                self.backlog_publish_sec,
                self.backlog_publish_per_sec,
                self.publish_errors
            )?;
        } else {
            writeln!(
                f,
                "  backlog:   reused the stored events (>= {} requested)",
                self.backlog_requested
            )?;
        }
        writeln!(
            f,
            "  consume:   {} of {} stored events in {:.2} s = {:.0} events/s (AMQP, one receiver per partition)",
            self.events_read, self.backlog_events, self.consume_sec, self.events_per_sec
        )?;
        writeln!(
            f,
            "  baseline:  {} events in {:.2} s = {:.0} events/s ({}); ratio {:.2}",
            self.baseline_events,
            self.baseline_sec,
            self.baseline_events_per_sec,
            self.baseline,
            self.ratio
        )?;
        write!(
            f,
            "  latency:   PUBACK -> consumer p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} of {} events at {:.0}/s for {:.0} s)",
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_max_ms,
            self.latency_received,
            self.latency_sent,
            self.latency_rate,
            self.latency_secs
        )?;
        if let Some(e) = &self.first_error {
            write!(f, "\n  first error: {e}")?;
        }
        Ok(())
    }
}
