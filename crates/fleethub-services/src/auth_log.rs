//! Recent authentication failures with the real reason, for `fleethub diagnostics auth-failures`.
//! Devices only ever see "Unauthorized"; operators see why. Never holds keys or signatures:
//! what clients sent is passed through [`redact`] first.

use crate::Clock;
use fleethub_core::redact::redact;
use fleethub_storage::AuthFailureStore;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use tokio::sync::{mpsc, oneshot};

/// Entries waiting to be written; past this a flood of failures is kept in memory only.
const PERSIST_QUEUE: usize = 256;

enum Persist {
    Append(AuthFailure),
    /// Answered once everything queued before it is written (and the old entries loaded).
    Flush(oneshot::Sender<()>),
}

/// One refused authentication (the stored record is the wire shape of
/// `GET /diagnostics/authFailures`).
pub use fleethub_storage::AuthFailureRecord as AuthFailure;

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

/// The newest `capacity` failures in memory (what the diagnostics API reads), written through
/// to an [`AuthFailureStore`] when [`AuthFailureLog::persist_to`] was called, so that the
/// window survives a restart.
pub struct AuthFailureLog {
    capacity: usize,
    entries: Mutex<VecDeque<AuthFailure>>,
    /// Failures recorded so far, by [`Endpoint`] (the log itself keeps only the latest).
    counts: [AtomicU64; 3],
    clock: Clock,
    persist: OnceLock<mpsc::Sender<Persist>>,
}

impl AuthFailureLog {
    pub fn new(capacity: usize) -> Self {
        AuthFailureLog {
            capacity: capacity.max(1),
            entries: Mutex::new(VecDeque::new()),
            counts: Default::default(),
            clock: Clock::system(),
            persist: OnceLock::new(),
        }
    }

    /// Keeps the window in `store` from now on: a background task first loads the entries an
    /// earlier run left (as older than any recorded since), then writes every new one, keeping
    /// the newest `capacity`. Needs a tokio runtime; without one the log stays memory-only.
    /// Calling it again does nothing.
    pub fn persist_to(self: &Arc<Self>, store: Arc<dyn AuthFailureStore>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("no async runtime: the auth-failure log is kept in memory only");
            return;
        };
        let (tx, rx) = mpsc::channel(PERSIST_QUEUE);
        if self.persist.set(tx).is_ok() {
            runtime.spawn(persist_task(Arc::downgrade(self), store, rx));
        }
    }

    /// Waits until every failure recorded so far is written (and, the first time, the earlier
    /// run's entries are loaded). Returns at once when the log is not persisted.
    pub async fn flush(&self) {
        let Some(tx) = self.persist.get() else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Persist::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }

    /// Puts entries of an earlier run behind the ones recorded since (they are older).
    fn restore(&self, older: Vec<AuthFailure>) {
        let mut q = self.entries.lock().expect("auth log");
        // `older` is newest first
        for entry in older {
            if q.len() == self.capacity {
                break;
            }
            q.push_front(entry);
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
        if let Some(tx) = self.persist.get()
            && let Err(e) = tx.try_send(Persist::Append(entry.clone()))
        {
            tracing::debug!("auth failure kept in memory only: {e}");
        }
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

/// Loads the earlier run's window, then writes new entries in order until the log is dropped.
async fn persist_task(
    log: Weak<AuthFailureLog>,
    store: Arc<dyn AuthFailureStore>,
    mut rx: mpsc::Receiver<Persist>,
) {
    let Some(capacity) = log.upgrade().map(|l| l.capacity) else {
        return;
    };
    match store.recent_auth_failures(capacity).await {
        Ok(older) => {
            if let Some(log) = log.upgrade() {
                log.restore(older);
            }
        }
        Err(e) => tracing::warn!("cannot load the stored auth-failure log: {e}"),
    }
    while let Some(msg) = rx.recv().await {
        match msg {
            Persist::Append(entry) => {
                if let Err(e) = store.append_auth_failure(entry, capacity).await {
                    tracing::warn!("cannot store an auth failure: {e}");
                }
            }
            Persist::Flush(done) => {
                let _ = done.send(());
            }
        }
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
