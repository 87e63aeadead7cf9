//! Recent authentication failures with the real reason, for `fleethub diagnostics auth-failures`.
//! Devices only ever see "Unauthorized"; operators see why. Never holds keys or signatures.

use crate::Clock;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Which side of the server a failed client talked to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Dps,
    Hub,
    Service,
}

impl Endpoint {
    fn of(name: &str) -> Endpoint {
        match name {
            "dps" => Endpoint::Dps,
            "hub" => Endpoint::Hub,
            _ => Endpoint::Service,
        }
    }
}

pub struct AuthFailureLog {
    capacity: usize,
    entries: Mutex<VecDeque<AuthFailure>>,
    /// Failures recorded so far, by [`Endpoint`] (the log itself keeps only the latest).
    counts: [AtomicU64; 3],
    clock: Clock,
}

impl AuthFailureLog {
    pub fn new(capacity: usize) -> Self {
        AuthFailureLog {
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::new()),
            counts: Default::default(),
            clock: Clock::system(),
        }
    }

    /// The log with timestamps from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Failures recorded for `endpoint` since start.
    pub fn count(&self, endpoint: Endpoint) -> u64 {
        self.counts[endpoint as usize].load(Ordering::Relaxed)
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
        crate::metrics::inc(&self.counts[Endpoint::of(endpoint) as usize]);
        let entry = AuthFailure {
            time_utc: self.clock.now_utc(),
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
        assert_eq!(log.count(Endpoint::Dps), 3);
        assert_eq!(log.count(Endpoint::Hub), 0);
    }
}
