//! Recent authentication failures with the real reason, for `fleethub diagnostics auth-failures`.
//! Devices only ever see "Unauthorized"; operators see why. Never holds keys or signatures:
//! what clients sent is passed through [`redact`] first.

use crate::Clock;
use fleethub_core::redact::redact;
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

    /// Records a failure and logs it at WARN level. The identity and the reason are client
    /// input (user names, client IDs, tokens quoted in messages): secrets in them are redacted
    /// before they are logged or kept.
    pub fn record(
        &self,
        endpoint: &str,
        transport: &str,
        identity: &str,
        peer: Option<String>,
        reason: &str,
    ) {
        let identity = &*redact(identity);
        let reason = &*redact(reason);
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

    /// A client that puts its SAS token into the MQTT user name (or anything else quoted in a
    /// reason) leaves no signature in the WARN log nor in the stored entries.
    #[test]
    fn tokens_in_user_names_are_redacted_in_log_and_entries() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Sink(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Sink {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let sig = "q6Gm0Ek2Nf4rZ8yT1bXcV3sLwP9hJ5uD7aQeR0tYiOk%3D";
        let token = format!("SharedAccessSignature sr=hub.local%2Fdevices%2Fd1&sig={sig}&se=1");
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let log = AuthFailureLog::new(10);
        tracing::subscriber::with_default(subscriber, || {
            log.record(
                "mqtt",
                "mqtt",
                &token,
                None,
                &format!("user name '{token}' is neither a DPS nor a hub user name"),
            );
        });
        let logged = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("authentication failed"), "{logged}");
        assert!(logged.contains("sig=<redacted>"), "{logged}");
        let entry = &log.recent(1)[0];
        let stored = format!("{} {}", entry.identity, entry.reason);
        for text in [&logged, &stored] {
            assert!(!text.contains(&sig[..8]), "{text}");
        }
        assert!(
            entry
                .reason
                .contains("sr=hub.local%2Fdevices%2Fd1&sig=<redacted>&se=1")
        );
    }
}
