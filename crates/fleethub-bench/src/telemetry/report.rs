//! The benchmark's result, and the CPU and memory samples its figures come from.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;
use tokio::time::Instant;

use super::Target;
use crate::procfs::{self, MachineCpu};

#[cfg(doc)]
use super::run_telemetry_bench;

/// Result of [`run_telemetry_bench`]; serializes in camelCase.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryBenchReport {
    /// PUBACKed messages per second of the window.
    pub messages_per_sec: f64,
    /// Publish -> PUBACK latency of the counted messages.
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Failed device creations, connections and publishes.
    pub errors: u64,
    /// Devices connected when the window closed.
    pub connected: usize,
    /// Server `VmRSS` when the window closed (0 when unknown).
    pub server_rss_bytes: u64,
    pub target: String,
    pub mode: String,
    pub devices: usize,
    pub processes: usize,
    pub inflight: usize,
    /// Offered aggregate rate (`None`: `--max`).
    pub rate: Option<f64>,
    pub payload_bytes: usize,
    pub duration_sec: f64,
    pub warmup_sec: f64,
    pub messages: u64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub publish_errors: u64,
    pub in_flight_at_end: u64,
    pub connect_errors: u64,
    pub device_create_errors: u64,
    pub device_create_sec: f64,
    /// Connections at the end of the connect phase.
    pub connected_at_start: usize,
    pub connect_sec: f64,
    pub connects_per_sec: f64,
    pub connect_p50_ms: f64,
    pub connect_p99_ms: f64,
    pub server_pid: Option<u32>,
    /// Server `VmRSS` before the devices connected.
    pub server_rss_before_bytes: u64,
    /// `(serverRssBytes - serverRssBeforeBytes) / connected`.
    pub server_rss_per_connection_bytes: f64,
    /// `serverRssBytes / connected`.
    pub server_rss_total_per_connection_bytes: f64,
    /// Server CPU (all threads) over the window, in cores.
    pub server_cpu_cores: f64,
    /// Server CPU per counted message (µs).
    pub server_cpu_us_per_msg: f64,
    /// The part of it spent in user space and in the kernel (system calls, the TCP stack,
    /// including loopback delivery to the client), from `utime` and `stime` (µs).
    pub server_user_us_per_msg: f64,
    pub server_kernel_us_per_msg: f64,
    /// CPU of the load generator (workers) over the window, in cores.
    pub client_cpu_cores: f64,
    pub client_cpu_us_per_msg: f64,
    /// Whole machine over the window: busy cores and cores stolen by the hypervisor.
    pub machine_busy_cores: f64,
    pub machine_steal_cores: f64,
    /// CPU of every other process over the window (other builds and tests skew results).
    pub other_cpu_cores: f64,
    /// The busiest other processes over the window (at least 0.05 cores).
    pub other_cpu_top: Vec<OtherProcess>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

impl fmt::Display for TelemetryBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} {}: {} devices over {} process(es), connected {}/{} ({:.1} s, {:.0}/s, p50 {:.1} ms)",
            self.target,
            self.mode,
            self.devices,
            self.processes,
            self.connected,
            self.devices,
            self.connect_sec,
            self.connects_per_sec,
            self.connect_p50_ms
        )?;
        if self.mode != "connect-only" {
            writeln!(
                f,
                "messages: {} in {:.1} s = {:.0}/s (p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms), {} B payload, inflight {}",
                self.messages,
                self.duration_sec,
                self.messages_per_sec,
                self.p50_ms,
                self.p99_ms,
                self.max_ms,
                self.payload_bytes,
                self.inflight
            )?;
        }
        writeln!(
            f,
            "server: RSS {:.1} MiB ({:.1} KiB/connection over the idle server, {:.1} KiB total/connection), CPU {:.2} cores ({:.1} µs/msg: user {:.1}, kernel {:.1})",
            self.server_rss_bytes as f64 / 1048576.0,
            self.server_rss_per_connection_bytes / 1024.0,
            self.server_rss_total_per_connection_bytes / 1024.0,
            self.server_cpu_cores,
            self.server_cpu_us_per_msg,
            self.server_user_us_per_msg,
            self.server_kernel_us_per_msg
        )?;
        write!(
            f,
            "load generator CPU {:.2} cores ({:.1} µs/msg); machine busy {:.2} cores, steal {:.2}, other processes {:.2}; errors {}",
            self.client_cpu_cores,
            self.client_cpu_us_per_msg,
            self.machine_busy_cores,
            self.machine_steal_cores,
            self.other_cpu_cores,
            self.errors
        )?;
        for o in &self.other_cpu_top {
            write!(f, "\n  other: {} ({}) {:.2} cores", o.name, o.pid, o.cores)?;
        }
        if let Some(e) = &self.first_error {
            write!(f, "\nfirst error: {e}")?;
        }
        Ok(())
    }
}

/// A process that used CPU during the window without being part of the benchmark.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OtherProcess {
    pub pid: u32,
    pub name: String,
    pub cores: f64,
}

/// CPU and memory counters at one instant.
pub(super) struct Sample {
    pub(super) at: Instant,
    pub(super) server_cpu_ns: Option<u64>,
    pub(super) server_user_kernel_ns: Option<(u64, u64)>,
    pub(super) server_rss: Option<u64>,
    pub(super) client_cpu_ns: u64,
    pub(super) machine: Option<MachineCpu>,
    pub(super) processes: Vec<(u32, String, u64)>,
}

impl Sample {
    pub(super) fn take(server: Option<u32>, clients: &[u32]) -> Sample {
        Sample {
            at: Instant::now(),
            server_cpu_ns: server.and_then(procfs::cpu_ns),
            server_user_kernel_ns: server.and_then(procfs::user_kernel_ns),
            server_rss: server.and_then(procfs::rss_bytes),
            client_cpu_ns: clients.iter().filter_map(|p| procfs::cpu_ns(*p)).sum(),
            machine: MachineCpu::read(),
            processes: procfs::all_process_ticks(),
        }
    }
}

impl TelemetryBenchReport {
    /// Phase 6: server memory, CPU of the server, the workers, the machine and every other
    /// process over the window from `s0` to `s1`, and the error total.
    pub(super) fn add_figures(
        &mut self,
        s0: &Sample,
        s1: &Sample,
        client_pids: &[u32],
        server_pid: Option<u32>,
    ) {
        let window = s1.at.duration_since(s0.at).as_secs_f64();
        self.server_rss_bytes = s1.server_rss.unwrap_or(0);
        if self.connected > 0 && self.server_rss_bytes > 0 {
            self.server_rss_per_connection_bytes =
                self.server_rss_bytes
                    .saturating_sub(self.server_rss_before_bytes) as f64
                    / self.connected as f64;
            self.server_rss_total_per_connection_bytes =
                self.server_rss_bytes as f64 / self.connected as f64;
        }
        let per_msg = |ns: f64| {
            if self.messages > 0 {
                ns / 1e3 / self.messages as f64
            } else {
                0.0
            }
        };
        if let (Some(a), Some(b)) = (s0.server_cpu_ns, s1.server_cpu_ns) {
            let ns = b.saturating_sub(a) as f64;
            self.server_cpu_cores = ns / 1e9 / window.max(1e-9);
            self.server_cpu_us_per_msg = per_msg(ns);
        }
        if let (Some((u0, k0)), Some((u1, k1))) =
            (s0.server_user_kernel_ns, s1.server_user_kernel_ns)
        {
            self.server_user_us_per_msg = per_msg(u1.saturating_sub(u0) as f64);
            self.server_kernel_us_per_msg = per_msg(k1.saturating_sub(k0) as f64);
        }
        let client_ns = s1.client_cpu_ns.saturating_sub(s0.client_cpu_ns) as f64;
        self.client_cpu_cores = client_ns / 1e9 / window.max(1e-9);
        self.client_cpu_us_per_msg = per_msg(client_ns);
        if let (Some(a), Some(b)) = (s0.machine, s1.machine) {
            (self.machine_busy_cores, self.machine_steal_cores) = a.cores_until(&b, window);
        }
        let ours: Vec<u32> = client_pids
            .iter()
            .copied()
            .chain(server_pid)
            .chain([std::process::id()])
            .collect();
        let before: HashMap<u32, u64> = s0.processes.iter().map(|(p, _, t)| (*p, *t)).collect();
        let mut others: Vec<OtherProcess> = s1
            .processes
            .iter()
            .filter(|(p, _, _)| !ours.contains(p))
            .map(|(pid, name, t)| OtherProcess {
                pid: *pid,
                name: name.clone(),
                cores: t.saturating_sub(before.get(pid).copied().unwrap_or(0)) as f64
                    / 100.0
                    / window.max(1e-9),
            })
            .filter(|o| o.cores > 0.0)
            .collect();
        others.sort_by(|a, b| b.cores.total_cmp(&a.cores));
        self.other_cpu_cores = others.iter().map(|o| o.cores).sum();
        others.retain(|o| o.cores >= 0.05);
        others.truncate(5);
        self.other_cpu_top = others;
        self.errors = self.device_create_errors + self.connect_errors + self.publish_errors;
    }
}

/// The process to sample: for fleethub the `fleethub serve` of `data_dir`, else (and for
/// mosquitto) whatever listens on `port`.
pub fn find_server_pid(
    target: Target,
    data_dir: Option<&std::path::Path>,
    port: u16,
) -> Option<u32> {
    let by_dir = match (target, data_dir) {
        (Target::Fleethub, Some(d)) => procfs::find_fleethub_server(d),
        _ => None,
    };
    by_dir.or_else(|| procfs::pid_listening_on(port))
}
