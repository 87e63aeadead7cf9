//! Counters the server exposes at `/metrics` (Prometheus text format). Lock-free atomics,
//! incremented by the services; rendering lives here so every transport shares one set.

use crate::auth_log::{AuthFailureLog, Endpoint};
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub dps_registrations_assigned: AtomicU64,
    pub dps_registrations_disabled: AtomicU64,
    pub telemetry_messages: AtomicU64,
    pub telemetry_bytes: AtomicU64,
    pub c2d_sent: AtomicU64,
    pub c2d_completed: AtomicU64,
    pub method_invocations: AtomicU64,
    pub twin_updates: AtomicU64,
    /// Operations refused (429) or delayed (MQTT telemetry) by a throttle.
    pub throttled: AtomicU64,
}

pub fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl Metrics {
    /// Renders every counter (with the authentication-failure counts of `auth_failures`) plus
    /// the given gauges.
    pub fn render(&self, auth_failures: &AuthFailureLog, gauges: &[(&str, &str, u64)]) -> String {
        let mut out = String::new();
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counters: [(&str, &str, u64); 12] = [
            (
                "fleethub_dps_registrations_assigned_total",
                "DPS registrations that ended assigned",
                load(&self.dps_registrations_assigned),
            ),
            (
                "fleethub_dps_registrations_disabled_total",
                "DPS registrations refused because the enrollment is disabled",
                load(&self.dps_registrations_disabled),
            ),
            (
                "fleethub_dps_auth_failures_total",
                "DPS device authentication failures",
                auth_failures.count(Endpoint::Dps),
            ),
            (
                "fleethub_hub_auth_failures_total",
                "hub device authentication failures",
                auth_failures.count(Endpoint::Hub),
            ),
            (
                "fleethub_service_auth_failures_total",
                "service API authentication failures",
                auth_failures.count(Endpoint::Service),
            ),
            (
                "fleethub_telemetry_messages_total",
                "device-to-cloud messages stored",
                load(&self.telemetry_messages),
            ),
            (
                "fleethub_telemetry_bytes_total",
                "device-to-cloud body bytes stored",
                load(&self.telemetry_bytes),
            ),
            (
                "fleethub_c2d_messages_sent_total",
                "cloud-to-device messages queued",
                load(&self.c2d_sent),
            ),
            (
                "fleethub_c2d_messages_completed_total",
                "cloud-to-device messages completed",
                load(&self.c2d_completed),
            ),
            (
                "fleethub_method_invocations_total",
                "direct method invocations",
                load(&self.method_invocations),
            ),
            (
                "fleethub_twin_updates_total",
                "twin updates (reported and desired)",
                load(&self.twin_updates),
            ),
            (
                "fleethub_throttled_operations_total",
                "operations refused (429) or delayed (MQTT telemetry PUBACKs) by a throttle",
                load(&self.throttled),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        inc(&m.telemetry_messages);
        let log = AuthFailureLog::new(10);
        log.record("hub", "mqtt", "d", None, "bad");
        let t = m.render(
            &log,
            &[("fleethub_connected_devices", "devices connected", 3)],
        );
        assert!(t.contains("# TYPE fleethub_telemetry_messages_total counter\nfleethub_telemetry_messages_total 1\n"));
        assert!(t.contains("fleethub_connected_devices 3\n"));
        assert!(t.contains("\nfleethub_hub_auth_failures_total 1\n"));
        assert!(t.contains("\nfleethub_dps_auth_failures_total 0\n"));
    }
}
