//! Connection state as callers see it, and leases of the live connection.

use std::future::Future;
use std::sync::atomic::Ordering;

use tokio::sync::watch;

use super::super::{DeviceError, Shared};
use crate::mqtt_client::MqttClient;

/// Connection state, as seen by callers waiting for a connection.
#[derive(Clone)]
pub(crate) enum ConnState {
    Connecting { last_error: Option<String> },
    Connected { mqtt: MqttClient, generation: u64 },
    Closed { reason: String },
}

/// Public view of the connection state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionStatus {
    Connected,
    /// (Re)connecting; `last_error` says why the previous connection or attempt ended.
    Connecting {
        last_error: Option<String>,
    },
    /// Closed for good; calls fail with [`DeviceError::Closed`].
    Closed {
        reason: String,
    },
}

impl From<&ConnState> for ConnectionStatus {
    fn from(s: &ConnState) -> Self {
        match s {
            ConnState::Connecting { last_error } => ConnectionStatus::Connecting {
                last_error: last_error.clone(),
            },
            ConnState::Connected { .. } => ConnectionStatus::Connected,
            ConnState::Closed { reason } => ConnectionStatus::Closed {
                reason: reason.clone(),
            },
        }
    }
}

/// A live connection lent to one operation (see [`Shared::lease`]).
pub(crate) struct Lease<'a> {
    shared: &'a Shared,
    pub(crate) mqtt: MqttClient,
    pub(crate) generation: u64,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Shared {
    pub(super) fn set_state(&self, state: ConnState) {
        self.state.send_replace(state);
    }

    pub(crate) fn status(&self) -> ConnectionStatus {
        ConnectionStatus::from(&*self.state.borrow())
    }

    pub(crate) fn status_changes(&self) -> watch::Receiver<ConnectionStatus> {
        let mut states = self.state.subscribe();
        let (tx, rx) = watch::channel(ConnectionStatus::from(&*states.borrow_and_update()));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = states.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        let current = ConnectionStatus::from(&*states.borrow_and_update());
                        let closed = matches!(current, ConnectionStatus::Closed { .. });
                        tx.send_if_modified(|s| {
                            let modified = *s != current;
                            *s = current;
                            modified
                        });
                        if closed {
                            return;
                        }
                    }
                    () = tx.closed() => return,
                }
            }
        });
        rx
    }

    pub(super) fn generation(&self) -> Option<u64> {
        match &*self.state.borrow() {
            ConnState::Connected { generation, .. } => Some(*generation),
            _ => None,
        }
    }

    /// Waits (unbounded: callers use [`Shared::bounded`]) for a live connection.
    pub(crate) async fn wait_connected(&self) -> Result<(MqttClient, u64), DeviceError> {
        let lease = self.lease().await?;
        Ok((lease.mqtt.clone(), lease.generation))
    }

    /// Waits for a live connection and counts the caller as in flight on it until the lease
    /// is dropped: a SAS renewal lets leased operations finish before it disconnects.
    pub(crate) async fn lease(&self) -> Result<Lease<'_>, DeviceError> {
        let mut rx = self.state.subscribe();
        loop {
            // Count first, then look: the renewal switches the state first, then waits for
            // the count, so an operation either is counted or sees "connecting".
            self.in_flight.fetch_add(1, Ordering::SeqCst);
            let seen = match &*rx.borrow_and_update() {
                ConnState::Connected { mqtt, generation } if !mqtt.is_closed() => {
                    Ok(Some((mqtt.clone(), *generation)))
                }
                ConnState::Closed { reason } => Err(DeviceError::Closed(reason.clone())),
                _ => Ok(None),
            };
            match seen {
                Ok(Some((mqtt, generation))) => {
                    return Ok(Lease {
                        shared: self,
                        mqtt,
                        generation,
                    });
                }
                Ok(None) => {
                    self.in_flight.fetch_sub(1, Ordering::SeqCst);
                }
                Err(e) => {
                    self.in_flight.fetch_sub(1, Ordering::SeqCst);
                    return Err(e);
                }
            }
            if rx.changed().await.is_err() {
                return Err(DeviceError::Closed("the client is gone".into()));
            }
        }
    }

    /// Runs `fut` within the operation timeout.
    pub(crate) async fn bounded<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = Result<T, DeviceError>>,
    ) -> Result<T, DeviceError> {
        let after = self.options.operation_timeout;
        tokio::time::timeout(after, fut)
            .await
            .map_err(|_| DeviceError::Timeout { what, after })?
    }
}
