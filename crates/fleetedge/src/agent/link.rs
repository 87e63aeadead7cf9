//! The state of one upstream connection to the hub (the agent's `$edgeAgent` connection and
//! the device-level connection), as the management API, `system status` and `check` show it.
//!
//! [`monitor`] mirrors the device SDK's connection status (connect and disconnect events) and
//! proves the connection with a twin round trip when there was none for [`PING_INTERVAL`]:
//! a connection that is up on paper but gets no answer (a hub that stopped answering, a
//! half-open TCP connection) shows as disconnected within `PING_INTERVAL + PING_TIMEOUT`.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use fleethub_device::{ConnectionStatus, DeviceClient};
use serde::{Deserialize, Serialize};

/// A twin round trip is made when none succeeded for this long.
pub const PING_INTERVAL: Duration = Duration::from_secs(10);
/// How long a round trip may take before the connection counts as down.
pub const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// What the management API shows about one connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkStatus {
    pub connected: bool,
    /// When the current connection was established (RFC 3339).
    pub connected_since_utc: Option<String>,
    /// When the connection was lost, or the first connection attempt failed (RFC 3339).
    #[serde(default)]
    pub disconnected_since_utc: Option<String>,
    /// The last request the hub answered (RFC 3339).
    #[serde(default)]
    pub last_round_trip_utc: Option<String>,
    /// Why the link is not connected (no secrets: connection errors only).
    pub last_error: Option<String>,
}

fn ago(t: &str, now: DateTime<Utc>) -> Option<String> {
    let t = DateTime::parse_from_rfc3339(t).ok()?;
    let secs = (now - t.with_timezone(&Utc)).num_seconds().max(0);
    Some(crate::cli::list::human_duration(secs).to_lowercase() + " ago")
}

impl LinkStatus {
    /// The connection is up (again).
    pub fn set_up(&mut self, now: DateTime<Utc>) {
        if !self.connected {
            self.connected = true;
            self.connected_since_utc = Some(now.to_rfc3339());
            self.disconnected_since_utc = None;
            self.last_error = None;
        }
    }

    /// The connection is down; `error` says why (kept from before when `None`).
    pub fn set_down(&mut self, now: DateTime<Utc>, error: Option<String>) {
        if self.connected || self.disconnected_since_utc.is_none() {
            self.disconnected_since_utc = Some(now.to_rfc3339());
        }
        self.connected = false;
        self.connected_since_utc = None;
        if error.is_some() {
            self.last_error = error;
        }
    }

    /// The hub answered a request.
    pub fn round_trip(&mut self, now: DateTime<Utc>) {
        self.last_round_trip_utc = Some(now.to_rfc3339());
    }

    /// When the last round trip was, if it is recent.
    fn round_trip_within(&self, now: DateTime<Utc>, d: Duration) -> bool {
        self.last_round_trip_utc
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .is_some_and(|t| (now - t.with_timezone(&Utc)).to_std().unwrap_or_default() < d)
    }

    /// One line for `fleetedge system status` and `check`.
    pub fn summary(&self) -> String {
        self.summary_at(Utc::now())
    }

    pub fn summary_at(&self, now: DateTime<Utc>) -> String {
        let rt = self
            .last_round_trip_utc
            .as_deref()
            .and_then(|t| ago(t, now))
            .map(|a| format!("; last round trip {a}"))
            .unwrap_or_default();
        if self.connected {
            return match &self.connected_since_utc {
                Some(t) => format!("connected since {t}{rt}"),
                None => format!("connected{rt}"),
            };
        }
        let why = self
            .last_error
            .as_deref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        match &self.disconnected_since_utc {
            Some(t) => {
                let a = ago(t, now).map(|a| format!(" ({a})")).unwrap_or_default();
                format!("disconnected since {t}{a}{why}{rt}")
            }
            None => format!("not connected{why}"),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl AsMut<LinkStatus> for LinkStatus {
    fn as_mut(&mut self) -> &mut LinkStatus {
        self
    }
}

fn mirror<T: AsMut<LinkStatus>>(s: &ConnectionStatus, status: &Mutex<T>) {
    let now = Utc::now();
    let mut guard = lock(status);
    let link = guard.as_mut();
    match s {
        ConnectionStatus::Connected => link.set_up(now),
        ConnectionStatus::Connecting { last_error } => link.set_down(now, last_error.clone()),
        ConnectionStatus::Closed { reason } => link.set_down(now, Some(reason.clone())),
    }
}

/// Keeps `status` true to `client`'s connection until dropped (never returns): connect and
/// disconnect events as they happen, and a twin round trip after [`PING_INTERVAL`] without
/// one.
pub async fn monitor<T: AsMut<LinkStatus>>(client: &DeviceClient, status: &Mutex<T>) {
    let mut changes = client.status_changes();
    let current = changes.borrow_and_update().clone();
    mirror(&current, status);
    let mut ping = tokio::time::interval(PING_INTERVAL);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ping.tick().await;
    let mut events_open = true;
    loop {
        tokio::select! {
            changed = changes.changed(), if events_open => {
                if changed.is_err() {
                    events_open = false;
                    continue;
                }
                let current = changes.borrow_and_update().clone();
                mirror(&current, status);
            }
            _ = ping.tick() => {
                if lock(status).as_mut().round_trip_within(Utc::now(), PING_INTERVAL) {
                    continue;
                }
                let answer = tokio::time::timeout(PING_TIMEOUT, client.get_twin()).await;
                let now = Utc::now();
                let mut guard = lock(status);
                let s = guard.as_mut();
                match answer {
                    Ok(Ok(_)) => {
                        s.round_trip(now);
                        if matches!(*changes.borrow(), ConnectionStatus::Connected) {
                            s.set_up(now);
                        }
                    }
                    Ok(Err(e)) => s.set_down(now, Some(format!("twin round trip failed: {e}"))),
                    Err(_) => s.set_down(
                        now,
                        Some(format!(
                            "the hub did not answer a twin request within {} s",
                            PING_TIMEOUT.as_secs()
                        )),
                    ),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn transitions_keep_the_time_of_the_change() {
        let mut s = LinkStatus::default();
        assert_eq!(s.summary(), "not connected");
        s.set_down(t("2026-01-01T00:00:00Z"), Some("connection refused".into()));
        s.set_down(t("2026-01-01T00:00:05Z"), None);
        assert_eq!(
            s.disconnected_since_utc.as_deref(),
            Some("2026-01-01T00:00:00+00:00"),
            "the first failure counts"
        );
        assert_eq!(
            s.summary_at(t("2026-01-01T00:00:42Z")),
            "disconnected since 2026-01-01T00:00:00+00:00 (42 seconds ago): connection refused"
        );
        s.set_up(t("2026-01-01T00:01:00Z"));
        s.round_trip(t("2026-01-01T00:01:01Z"));
        assert!(s.connected && s.last_error.is_none() && s.disconnected_since_utc.is_none());
        assert_eq!(
            s.summary_at(t("2026-01-01T00:01:04Z")),
            "connected since 2026-01-01T00:01:00+00:00; last round trip 3 seconds ago"
        );
        assert!(s.round_trip_within(t("2026-01-01T00:01:04Z"), PING_INTERVAL));
        assert!(!s.round_trip_within(t("2026-01-01T00:02:00Z"), PING_INTERVAL));
        // the hub goes away
        s.set_down(t("2026-01-01T00:02:00Z"), Some("connection reset".into()));
        assert_eq!(
            s.summary_at(t("2026-01-01T00:02:30Z")),
            "disconnected since 2026-01-01T00:02:00+00:00 (30 seconds ago): connection reset; last round trip about a minute ago"
        );
    }
}
