//! Cloud-to-device messages: a durable per-device queue with TTL; delivered over MQTT when
//! the device subscribes to `devices/{id}/messages/devicebound/#`, completed by its PUBACK, or
//! received over HTTPS with a lock (`GET /devices/{id}/messages/deviceBound`), then completed,
//! rejected or abandoned with the lock token.
//!
//! Locks are held in memory (a restart releases them, which only makes the messages deliverable
//! again, as an expired lock would). While locked, a message is delivered by no transport:
//! [`Hub::pending_c2d`] leaves it out.

use super::feedback::FeedbackStatus;
use super::{Hub, HubEvent};
use crate::hub::Error;
use fleethub_storage::{C2dMessage, StoreError};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Azure's per-device queue depth.
pub const MAX_QUEUED: usize = 50;
/// Default and maximum time to live, seconds (Azure: 1 h default, 48 h max).
pub const DEFAULT_TTL_SECS: u64 = 3600;
pub const MAX_TTL_SECS: u64 = 48 * 3600;
/// Largest C2D body (Azure: 64 KB).
pub const MAX_C2D_BYTES: usize = 64 * 1024;
/// How long a message received over HTTPS stays locked (Azure: 1 minute).
pub const LOCK_TIMEOUT: Duration = Duration::from_mins(1);
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

/// One HTTPS receive lock on a queued message.
pub(crate) struct Lock {
    device_id: String,
    sequence_number: u64,
    deadline: Instant,
}

/// Lock token -> lock, of one hub.
#[derive(Default)]
pub(crate) struct C2dLocks(Mutex<HashMap<String, Lock>>);

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
        out.retain(|m| !self.is_c2d_locked(m.sequence_number));
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
                self.unlock_sequence(m.sequence_number);
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
        self.unlock_sequence(sequence_number);
        self.feedback_outcome(sequence_number, FeedbackStatus::Success)
            .await;
        Ok(())
    }

    /// Removes every queued message of the device (locked ones too); returns how many.
    pub async fn purge_c2d(&self, device_id: &str) -> Result<u64, Error> {
        let n = self.store.purge_c2d(device_id).await?;
        self.locks().retain(|_, l| l.device_id != device_id);
        self.feedback_purged(device_id).await;
        Ok(n)
    }

    /// Whether an HTTPS receive holds an unexpired lock on the message.
    pub fn is_c2d_locked(&self, sequence_number: u64) -> bool {
        let now = Instant::now();
        self.locks()
            .values()
            .any(|l| l.sequence_number == sequence_number && l.deadline > now)
    }

    /// HTTPS receive: the oldest deliverable message, locked for [`LOCK_TIMEOUT`] with its
    /// delivery count raised; `None` when there is none. A message already delivered
    /// [`MAX_DELIVERY_COUNT`] times is dead-lettered (removed, logged) instead.
    pub async fn receive_c2d(&self, device_id: &str) -> Result<Option<LockedC2d>, Error> {
        self.prune_locks();
        for mut m in self.queued_c2d(device_id).await? {
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
            let Some(lock_token) = self.try_lock(device_id, m.sequence_number) else {
                continue;
            };
            m.delivery_count += 1;
            match self.store.update_c2d(m.clone()).await {
                Ok(()) => {
                    return Ok(Some(LockedC2d {
                        message: m,
                        lock_token,
                    }));
                }
                // Completed (e.g. over MQTT) meanwhile.
                Err(StoreError::NotFound { .. }) => {
                    self.locks().remove(&lock_token);
                }
                Err(e) => {
                    self.locks().remove(&lock_token);
                    return Err(e.into());
                }
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
        let lock = {
            let mut map = self.locks();
            let valid = map
                .get(lock_token)
                .is_some_and(|l| l.device_id == device_id && l.deadline > Instant::now());
            if !valid {
                return Err(Error::LockLost {
                    device: device_id.to_string(),
                    lock_token: lock_token.to_string(),
                });
            }
            map.remove(lock_token)
                .expect("checked under the same guard")
        };
        match how {
            Settle::Complete => {
                self.store.delete_c2d(lock.sequence_number).await?;
                self.feedback_outcome(lock.sequence_number, FeedbackStatus::Success)
                    .await;
            }
            Settle::Reject => {
                self.store.delete_c2d(lock.sequence_number).await?;
                self.feedback_outcome(lock.sequence_number, FeedbackStatus::Rejected)
                    .await;
                tracing::warn!(
                    device = device_id,
                    sequence_number = lock.sequence_number,
                    "cloud-to-device message rejected by the device: dead-lettered"
                );
            }
            Settle::Abandon => {
                tracing::debug!(
                    device = device_id,
                    sequence_number = lock.sequence_number,
                    "cloud-to-device message abandoned: deliverable again"
                );
                self.notify(device_id, None, HubEvent::C2dAvailable);
            }
        }
        Ok(())
    }

    fn locks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Lock>> {
        // A panic while holding the lock cannot leave the map inconsistent: use it anyway.
        self.c2d_locks
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Drops expired locks.
    fn prune_locks(&self) {
        let now = Instant::now();
        self.locks().retain(|_, l| l.deadline > now);
    }

    /// Locks a message unless it already is; returns the new lock token.
    fn try_lock(&self, device_id: &str, sequence_number: u64) -> Option<String> {
        let now = Instant::now();
        let mut map = self.locks();
        if map
            .values()
            .any(|l| l.sequence_number == sequence_number && l.deadline > now)
        {
            return None;
        }
        let token = uuid::Uuid::new_v4().to_string();
        map.insert(
            token.clone(),
            Lock {
                device_id: device_id.to_string(),
                sequence_number,
                deadline: now + LOCK_TIMEOUT,
            },
        );
        Some(token)
    }

    fn unlock_sequence(&self, sequence_number: u64) {
        self.locks()
            .retain(|_, l| l.sequence_number != sequence_number);
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
}
