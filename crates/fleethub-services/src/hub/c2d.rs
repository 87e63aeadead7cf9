//! Cloud-to-device messages: a durable per-device queue with TTL; delivered over MQTT when
//! the device subscribes to `devices/{id}/messages/devicebound/#`, completed by its PUBACK, or
//! received over HTTPS with a lock (`GET /devices/{id}/messages/deviceBound`), then completed,
//! rejected or abandoned with the lock token.
//!
//! Locks are kept in the C2D store with the message (token and end time, by the hub's clock), so
//! every node sharing the store knows them: a device may settle a message through another node
//! than the one it received it from (docs/protocol-notes.md, "C2D over HTTPS: lock tokens"). While
//! locked, a message is delivered by no transport: [`Hub::pending_c2d`] leaves it out.

use super::feedback::FeedbackStatus;
use super::{Hub, HubEvent};
use crate::hub::Error;
use fleethub_storage::{C2dLock, C2dLockRelease, C2dMessage, StoreError};
use std::collections::BTreeMap;
use std::time::Duration;

/// Azure's per-device queue depth.
pub const MAX_QUEUED: usize = 50;
/// Default and maximum time to live, seconds (Azure: 1 h default, 48 h max).
pub const DEFAULT_TTL_SECS: u64 = 3600;
pub const MAX_TTL_SECS: u64 = 48 * 3600;
/// Largest C2D body (Azure: 64 KB).
pub const MAX_C2D_BYTES: usize = 64 * 1024;
/// How long a message received over HTTPS stays locked (Azure: 1 minute).
pub const LOCK_TIMEOUT: Duration = Duration::from_mins(1);
const LOCK_MILLIS: i64 = LOCK_TIMEOUT.as_millis() as i64;
/// Deliveries after which a message is dead-lettered instead of delivered again (Azure's
/// default maximum delivery count).
pub const MAX_DELIVERY_COUNT: u32 = 10;

/// What a sender supplies.
#[derive(Debug, Clone, Default)]
pub struct C2dSend {
    pub body: Vec<u8>,
    pub message_id: Option<String>,
    pub correlation_id: Option<String>,
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub ttl_secs: Option<u64>,
    pub ack: Option<String>,
    pub properties: BTreeMap<String, String>,
}

/// A message received over HTTPS, locked until [`LOCK_TIMEOUT`] passes or it is settled.
#[derive(Debug, Clone)]
pub struct LockedC2d {
    /// `delivery_count` includes this delivery.
    pub message: C2dMessage,
    /// Names the lock in complete / reject / abandon (the HTTP `ETag`).
    pub lock_token: String,
}

/// How a locked message is settled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Delivered: remove it.
    Complete,
    /// Refused by the device: remove it (dead-lettered).
    Reject,
    /// Give it back: unlock, deliverable again.
    Abandon,
}

impl Hub {
    /// Queues a message for a device and wakes its connection. A full queue is
    /// [`Error::QueueFull`].
    pub async fn send_c2d(&self, device_id: &str, m: C2dSend) -> Result<C2dMessage, Error> {
        let Some(device) = self.store.get_device(device_id).await? else {
            return Err(Error::device_not_found(device_id));
        };
        if m.body.len() > MAX_C2D_BYTES {
            return Err(Error::TooLarge(format!(
                "message body is {} bytes; cloud-to-device messages are limited to {MAX_C2D_BYTES}",
                m.body.len()
            )));
        }
        if let Some(a) = &m.ack
            && !["none", "positive", "negative", "full"].contains(&a.as_str())
        {
            return Err(Error::invalid(format!(
                "ack '{a}' is invalid; use none, positive, negative or full"
            )));
        }
        let ttl = m
            .ttl_secs
            .unwrap_or(DEFAULT_TTL_SECS)
            .clamp(1, MAX_TTL_SECS);
        let msg = C2dMessage {
            sequence_number: 0,
            device_id: device_id.to_string(),
            message_id: m
                .message_id
                .unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
            correlation_id: m.correlation_id,
            content_type: m.content_type,
            content_encoding: m.content_encoding,
            expiry_unix: self.clock.unix() + ttl,
            enqueued_time_utc: self.clock.now_utc(),
            delivery_count: 0,
            ack: m.ack,
            properties: m.properties,
            body: m.body,
        };
        let stored = self.store.enqueue_c2d(msg, MAX_QUEUED).await?;
        self.feedback_requested(
            stored.sequence_number,
            stored.ack.as_deref(),
            &stored.message_id,
            device_id,
            device.device.generation_id.as_deref(),
        )
        .await;
        self.deliver(device_id, None, HubEvent::C2dAvailable).await;
        Ok(stored)
    }

    /// The device's deliverable messages, oldest first: expired ones are dropped, messages
    /// locked by an HTTPS receive are left out.
    pub async fn pending_c2d(&self, device_id: &str) -> Result<Vec<C2dMessage>, Error> {
        let mut out = self.queued_c2d(device_id).await?;
        if !out.is_empty() {
            let locked = self
                .store
                .locked_c2d(device_id, self.clock.unix_ms())
                .await?;
            out.retain(|m| !locked.contains(&m.sequence_number));
        }
        Ok(out)
    }

    /// Every unexpired message of the device, locked or not; expired ones are dropped.
    async fn queued_c2d(&self, device_id: &str) -> Result<Vec<C2dMessage>, Error> {
        let now = self.clock.unix();
        let mut out = Vec::new();
        for m in self.store.list_c2d(device_id, MAX_QUEUED).await? {
            if m.expiry_unix < now {
                tracing::info!(
                    device = device_id,
                    message_id = %m.message_id,
                    "cloud-to-device message expired undelivered"
                );
                self.store.delete_c2d(m.sequence_number).await?;
                self.feedback_outcome(m.sequence_number, FeedbackStatus::Expired)
                    .await;
            } else {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Counts a delivery attempt.
    pub async fn mark_c2d_delivered(&self, m: &C2dMessage) -> Result<(), Error> {
        let mut m = m.clone();
        m.delivery_count += 1;
        match self.store.update_c2d(m).await {
            Ok(()) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The device acknowledged (MQTT PUBACK): remove it.
    pub async fn complete_c2d(&self, sequence_number: u64) -> Result<(), Error> {
        self.store.delete_c2d(sequence_number).await?;
        self.feedback_outcome(sequence_number, FeedbackStatus::Success)
            .await;
        Ok(())
    }

    /// Removes every queued message of the device (locked ones too, with their locks);
    /// returns how many.
    pub async fn purge_c2d(&self, device_id: &str) -> Result<u64, Error> {
        let n = self.store.purge_c2d(device_id).await?;
        self.feedback_purged(device_id).await;
        Ok(n)
    }

    /// HTTPS receive: the oldest deliverable message, locked for [`LOCK_TIMEOUT`] with its
    /// delivery count raised; `None` when there is none. A message already delivered
    /// [`MAX_DELIVERY_COUNT`] times is dead-lettered (removed, logged) instead. The lock is taken
    /// in the store, so of two receives on different nodes only one gets the message.
    pub async fn receive_c2d(&self, device_id: &str) -> Result<Option<LockedC2d>, Error> {
        let queued = self.queued_c2d(device_id).await?;
        if queued.is_empty() {
            return Ok(None);
        }
        let now_ms = self.clock.unix_ms();
        let locked = self.store.locked_c2d(device_id, now_ms).await?;
        for mut m in queued {
            if locked.contains(&m.sequence_number) {
                continue;
            }
            if m.delivery_count >= MAX_DELIVERY_COUNT {
                tracing::warn!(
                    device = device_id,
                    message_id = %m.message_id,
                    deliveries = m.delivery_count,
                    "cloud-to-device message dead-lettered: maximum delivery count reached"
                );
                self.store.delete_c2d(m.sequence_number).await?;
                self.feedback_outcome(m.sequence_number, FeedbackStatus::DeliveryCountExceeded)
                    .await;
                continue;
            }
            m.delivery_count += 1;
            let lock = C2dLock {
                token: uuid::Uuid::new_v4().to_string(),
                now_ms,
                until_ms: now_ms.saturating_add(LOCK_MILLIS),
            };
            let lock_token = lock.token.clone();
            match self.store.lock_c2d(m.clone(), lock).await {
                Ok(true) => {
                    return Ok(Some(LockedC2d {
                        message: m,
                        lock_token,
                    }));
                }
                // Locked by another receive (on this or another node), or completed (e.g. over
                // MQTT) meanwhile.
                Ok(false) | Err(StoreError::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Settles a message received with [`Hub::receive_c2d`]. An unknown, expired or already
    /// used lock token (or one of another device) is [`Error::LockLost`].
    pub async fn settle_c2d(
        &self,
        device_id: &str,
        lock_token: &str,
        how: Settle,
    ) -> Result<(), Error> {
        let release = match how {
            Settle::Complete | Settle::Reject => C2dLockRelease::Remove,
            Settle::Abandon => C2dLockRelease::Unlock,
        };
        let Some(sequence_number) = self
            .store
            .settle_c2d_lock(device_id, lock_token, self.clock.unix_ms(), release)
            .await?
        else {
            return Err(Error::LockLost {
                device: device_id.to_string(),
                lock_token: lock_token.to_string(),
            });
        };
        match how {
            Settle::Complete => {
                self.feedback_outcome(sequence_number, FeedbackStatus::Success)
                    .await;
            }
            Settle::Reject => {
                self.feedback_outcome(sequence_number, FeedbackStatus::Rejected)
                    .await;
                tracing::warn!(
                    device = device_id,
                    sequence_number,
                    "cloud-to-device message rejected by the device: dead-lettered"
                );
            }
            Settle::Abandon => {
                tracing::debug!(
                    device = device_id,
                    sequence_number,
                    "cloud-to-device message abandoned: deliverable again"
                );
                // The device's other connection (MQTT, AMQP) may be on another node.
                self.deliver(device_id, None, HubEvent::C2dAvailable).await;
            }
        }
        Ok(())
    }
}

/// Borrowed view of a message for transports that format it.
pub struct C2dView<'a> {
    pub device_id: &'a str,
    pub message_id: &'a str,
    pub correlation_id: Option<&'a str>,
    pub content_type: Option<&'a str>,
    pub content_encoding: Option<&'a str>,
    pub expiry_utc: &'a str,
    pub ack: Option<&'a str>,
    pub properties: &'a BTreeMap<String, String>,
}

/// ISO-8601 UTC of a unix time.
pub fn iso_utc(unix: u64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp(unix as i64, 0)
        .map(fleethub_api::time::format_utc)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{Clock, TestClock};
    use crate::hub::{Error, HubConfig};
    use fleethub_api::Device;
    use fleethub_store::sqlite::SqliteStore;
    use std::sync::Arc;

    fn hub(dir: &tempfile::TempDir, clock: Clock) -> Hub {
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        hub_on(store, clock)
    }

    /// A hub on `store`: several of them are the nodes of a cluster.
    fn hub_on(store: Arc<SqliteStore>, clock: Clock) -> Hub {
        Hub::new(
            &crate::Shared::with_clock(store, clock),
            HubConfig {
                host: "hub.local".into(),
                token_skew_secs: 30,
            },
            vec![],
        )
    }

    fn message(ttl_secs: u64) -> C2dSend {
        C2dSend {
            body: b"hi".to_vec(),
            ttl_secs: Some(ttl_secs),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn queue_depth_ttl_and_locks_as_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        let time = TestClock::new(chrono::Utc::now());
        let hub = hub(&dir, Clock::from_source(time.clone()));
        assert!(matches!(
            hub.send_c2d("nobody", message(60)).await,
            Err(Error::DeviceNotFound { id }) if id == "nobody"
        ));
        hub.put_device("d1", Device::default(), None).await.unwrap();
        let first = hub.send_c2d("d1", message(60)).await.unwrap();
        assert_eq!(first.expiry_unix, hub.clock.unix() + 60);
        for _ in 1..MAX_QUEUED {
            hub.send_c2d("d1", message(3600)).await.unwrap();
        }
        assert!(matches!(
            hub.send_c2d("d1", message(60)).await,
            Err(Error::QueueFull {
                max: MAX_QUEUED,
                ..
            })
        ));
        // the clock, not the wall, decides what expired
        assert_eq!(hub.pending_c2d("d1").await.unwrap().len(), MAX_QUEUED);
        time.advance(chrono::Duration::seconds(61));
        let pending = hub.pending_c2d("d1").await.unwrap();
        assert_eq!(pending.len(), MAX_QUEUED - 1);
        assert!(
            pending
                .iter()
                .all(|m| m.sequence_number != first.sequence_number)
        );
        // a lock token of another device, or a used one, is LockLost
        let locked = hub.receive_c2d("d1").await.unwrap().unwrap();
        assert!(matches!(
            hub.settle_c2d("d2", &locked.lock_token, Settle::Complete)
                .await,
            Err(Error::LockLost { .. })
        ));
        hub.settle_c2d("d1", &locked.lock_token, Settle::Complete)
            .await
            .unwrap();
        assert!(matches!(
            hub.settle_c2d("d1", &locked.lock_token, Settle::Complete)
                .await,
            Err(Error::LockLost { .. })
        ));
    }

    #[tokio::test]
    async fn locks_are_shared_by_the_hubs_on_one_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("s.db")).unwrap());
        let time = TestClock::new(chrono::Utc::now());
        let a = hub_on(store.clone(), Clock::from_source(time.clone()));
        let b = hub_on(store, Clock::from_source(time.clone()));
        a.put_device("d1", Device::default(), None).await.unwrap();
        let first = a.send_c2d("d1", message(3600)).await.unwrap();
        let second = a.send_c2d("d1", message(3600)).await.unwrap();
        // A message node a handed out is locked for node b too: b gets the next one, and
        // neither is deliverable on either node while locked.
        let on_a = a.receive_c2d("d1").await.unwrap().unwrap();
        assert_eq!(on_a.message.sequence_number, first.sequence_number);
        assert_eq!(on_a.message.delivery_count, 1);
        let on_b = b.receive_c2d("d1").await.unwrap().unwrap();
        assert_eq!(on_b.message.sequence_number, second.sequence_number);
        assert!(b.receive_c2d("d1").await.unwrap().is_none());
        assert!(a.pending_c2d("d1").await.unwrap().is_empty());
        // Completed through the other node; the token is then used up on both.
        b.settle_c2d("d1", &on_a.lock_token, Settle::Complete)
            .await
            .unwrap();
        assert!(matches!(
            a.settle_c2d("d1", &on_a.lock_token, Settle::Complete).await,
            Err(Error::LockLost { .. })
        ));
        // An expired lock (by the hubs' clock) is lost on both nodes; the message is
        // deliverable again, with its deliveries counted.
        time.advance(chrono::Duration::seconds(61));
        assert!(matches!(
            a.settle_c2d("d1", &on_b.lock_token, Settle::Abandon).await,
            Err(Error::LockLost { .. })
        ));
        let pending = b.pending_c2d("d1").await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].sequence_number, second.sequence_number);
        let again = a.receive_c2d("d1").await.unwrap().unwrap();
        assert_eq!(again.message.delivery_count, 2);
        // Abandoned through the other node: unlocked, still queued.
        b.settle_c2d("d1", &again.lock_token, Settle::Abandon)
            .await
            .unwrap();
        assert_eq!(a.pending_c2d("d1").await.unwrap().len(), 1);
        b.settle_c2d("d1", &again.lock_token, Settle::Reject)
            .await
            .unwrap_err();
    }
}
