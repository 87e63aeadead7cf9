//! Recent authentication failures with the real reason, for `fleethub diagnostics auth-failures`.
//! Devices only ever see "Unauthorized"; operators see why. Never holds keys or signatures.

use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthFailure {
    pub time_utc: String,
    /// `dps` or `hub` or `service`.
    pub endpoint: String,
    /// `mqtt`, `mqtt-ws`, `https`.
    pub transport: String,
    /// Registration ID, device ID or policy name the client claimed.
    pub identity: String,
    pub peer: Option<String>,
    pub reason: String,
}

pub struct AuthFailureLog {
    capacity: usize,
    entries: Mutex<VecDeque<AuthFailure>>,
    /// Counters by endpoint, for /metrics.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

impl AuthFailureLog {
    pub fn new(capacity: usize) -> Self {
        AuthFailureLog {
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::new()),
            metrics: Default::default(),
        }
    }

    /// Records a failure and logs it at WARN level.
    pub fn record(
        &self,
        endpoint: &str,
        transport: &str,
        identity: &str,
        peer: Option<String>,
        reason: &str,
    ) {
        tracing::warn!(
            endpoint,
            transport,
            identity,
            peer = peer.as_deref().unwrap_or("-"),
            "authentication failed: {reason}"
        );
        let counter = match endpoint {
            "dps" => &self.metrics.dps_auth_failures,
            "hub" => &self.metrics.hub_auth_failures,
            _ => &self.metrics.service_auth_failures,
        };
        crate::metrics::inc(counter);
        let entry = AuthFailure {
            time_utc: fleethub_api::time::now_utc(),
            endpoint: endpoint.into(),
            transport: transport.into(),
            identity: identity.into(),
            peer,
            reason: reason.into(),
        };
        let mut q = self.entries.lock().expect("auth log");
        if q.len() == self.capacity {
            q.pop_front();
        }
        q.push_back(entry);
    }

    /// Most recent first.
    pub fn recent(&self, limit: usize) -> Vec<AuthFailure> {
        let q = self.entries.lock().expect("auth log");
        q.iter().rev().take(limit).cloned().collect()
    }
}

impl Default for AuthFailureLog {
    fn default() -> Self {
        AuthFailureLog::new(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_most_recent_first() {
        let log = AuthFailureLog::new(2);
        for i in 0..3 {
            log.record("dps", "mqtt", &format!("d{i}"), None, "bad");
        }
        let r = log.recent(10);
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].identity, "d2");
        assert_eq!(r[1].identity, "d1");
    }
}
