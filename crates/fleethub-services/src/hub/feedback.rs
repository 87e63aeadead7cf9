//! Cloud-to-device feedback: when a sender asks for it (`iothub-ack` = `positive`, `negative`
//! or `full`), the outcome of the message (completed, rejected, expired, dead-lettered, purged)
//! becomes a feedback record that the service reads on the AMQP node
//! `/messages/servicebound/feedback` (see `docs/protocol-notes.md`, "C2D feedback").
//!
//! Requests and records are kept in the store (`C2dFeedbackStore`), so a restart loses
//! neither; the queue of records is bounded ([`MAX_FEEDBACK_RECORDS`]; the oldest are dropped
//! when nobody reads them). A batch handed to a reader is leased (not handed to another reader
//! of this node) until the reader accepts it (the records are deleted) or gives it back. In a
//! cluster, a record added on one node reaches a reader on another: the adding node broadcasts
//! `PeerEvent::FeedbackAvailable`, and a waiting reader also re-reads the store every
//! `cluster::STORE_RECHECK` (docs/scale-out.md, "Cross-node delivery").

use super::Hub;
use crate::cluster::STORE_RECHECK;
use crate::hub::Error;
use fleethub_storage::{C2dFeedbackRecord, C2dFeedbackRequest};
use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

/// Most records waiting to be read; older ones are dropped first.
pub const MAX_FEEDBACK_RECORDS: usize = 10_000;
/// Most records delivered in one feedback message (a batch).
pub const MAX_FEEDBACK_BATCH: usize = 100;
/// How long a reader waits before it looks at the store again after a store error.
const RETRY_AFTER_ERROR: Duration = Duration::from_secs(1);

/// Azure's `statusCode` of a feedback record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedbackStatus {
    Success,
    Expired,
    DeliveryCountExceeded,
    Rejected,
    Purged,
}

impl FeedbackStatus {
    const ALL: [FeedbackStatus; 5] = [
        FeedbackStatus::Success,
        FeedbackStatus::Expired,
        FeedbackStatus::DeliveryCountExceeded,
        FeedbackStatus::Rejected,
        FeedbackStatus::Purged,
    ];

    /// The wire name (`statusCode` and `description`).
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackStatus::Success => "Success",
            FeedbackStatus::Expired => "Expired",
            FeedbackStatus::DeliveryCountExceeded => "DeliveryCountExceeded",
            FeedbackStatus::Rejected => "Rejected",
            FeedbackStatus::Purged => "Purged",
        }
    }

    /// The status of a wire name.
    pub fn from_wire(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether an `iothub-ack` value asks for feedback of this outcome.
    fn requested_by(self, ack: &str) -> bool {
        match ack {
            "full" => true,
            "positive" => self == FeedbackStatus::Success,
            "negative" => self != FeedbackStatus::Success,
            _ => false,
        }
    }
}

/// One feedback record (Azure's JSON field names are given by the transport).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackRecord {
    pub original_message_id: String,
    pub device_id: String,
    pub device_generation_id: String,
    pub status: FeedbackStatus,
    /// When the outcome happened, ISO-8601 UTC.
    pub enqueued_time_utc: String,
}

/// Records handed to one reader: accept them ([`Hub::accept_c2d_feedback`]) or give them back
/// ([`Hub::return_c2d_feedback`]).
#[derive(Debug)]
pub struct FeedbackBatch {
    pub records: Vec<FeedbackRecord>,
    ids: Vec<u64>,
}

/// The readers' leases and their wake-up.
#[derive(Default)]
pub(crate) struct Feedback {
    /// Ids of stored records handed to a reader of this node and not yet settled.
    leased: Mutex<HashSet<u64>>,
    available: tokio::sync::Notify,
}

impl Feedback {
    fn leased(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.leased
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Hub {
    /// Remembers (in the store) that the message with this queue sequence number asked for
    /// feedback. A store failure is logged: the message is queued already, and failing its
    /// send would make the sender send it again.
    pub(crate) async fn feedback_requested(
        &self,
        sequence_number: u64,
        ack: Option<&str>,
        message_id: &str,
        device_id: &str,
        device_generation_id: Option<&str>,
    ) {
        let Some(ack) = ack.filter(|a| *a != "none") else {
            return;
        };
        let put = self
            .store
            .put_feedback_request(C2dFeedbackRequest {
                sequence_number,
                ack: ack.to_string(),
                message_id: message_id.to_string(),
                device_id: device_id.to_string(),
                device_generation_id: device_generation_id.unwrap_or_default().to_string(),
            })
            .await;
        if let Err(e) = put {
            tracing::warn!(sequence_number, "C2D feedback request not recorded: {e}");
        }
    }

    /// The message left the queue with this outcome: records feedback when it was asked for.
    /// A store failure is logged: the message's own outcome stands.
    pub(crate) async fn feedback_outcome(&self, sequence_number: u64, status: FeedbackStatus) {
        if let Err(e) = self.record_outcomes(vec![sequence_number], status).await {
            tracing::warn!(sequence_number, "C2D feedback not recorded: {e}");
        }
    }

    async fn record_outcomes(
        &self,
        sequence_numbers: Vec<u64>,
        status: FeedbackStatus,
    ) -> Result<(), Error> {
        let requests = self.store.take_feedback_requests(sequence_numbers).await?;
        let mut added = false;
        for req in requests {
            if !status.requested_by(&req.ack) {
                continue;
            }
            self.store
                .append_feedback(
                    C2dFeedbackRecord {
                        original_message_id: req.message_id,
                        device_id: req.device_id,
                        device_generation_id: req.device_generation_id,
                        status_code: status.as_str().to_string(),
                        enqueued_time_utc: self.clock.now_utc(),
                    },
                    MAX_FEEDBACK_RECORDS,
                )
                .await?;
            added = true;
        }
        if added {
            self.wake_feedback_readers();
            if let Some(bus) = self.cluster_bus() {
                bus.broadcast(crate::cluster::PeerEvent::FeedbackAvailable);
            }
        }
        Ok(())
    }

    fn wake_feedback_readers(&self) {
        self.feedback.available.notify_waiters();
        self.feedback.available.notify_one();
    }

    /// Another node added feedback records (its `FeedbackAvailable` event).
    pub(crate) fn feedback_available_elsewhere(&self) {
        self.wake_feedback_readers();
    }

    /// Every purged message of a device: feedback `Purged` where it was asked for.
    pub(crate) async fn feedback_purged(&self, device_id: &str) {
        let purged = match self.store.list_feedback_requests().await {
            Ok(all) => all
                .into_iter()
                .filter(|r| r.device_id == device_id)
                .map(|r| r.sequence_number)
                .collect(),
            Err(e) => {
                tracing::warn!(
                    device = device_id,
                    "C2D feedback of purged messages not recorded: {e}"
                );
                return;
            }
        };
        if let Err(e) = self.record_outcomes(purged, FeedbackStatus::Purged).await {
            tracing::warn!(
                device = device_id,
                "C2D feedback of purged messages not recorded: {e}"
            );
        }
    }

    /// Takes up to [`MAX_FEEDBACK_BATCH`] records, oldest first, waiting until there is one
    /// that no other reader holds. Settle it with [`Hub::accept_c2d_feedback`] or
    /// [`Hub::return_c2d_feedback`].
    pub async fn next_c2d_feedback(&self) -> FeedbackBatch {
        loop {
            let notified = self.feedback.available.notified();
            let held = self.feedback.leased().len();
            match self.store.list_feedback(MAX_FEEDBACK_BATCH + held).await {
                Ok(stored) => {
                    let mut leased = self.feedback.leased();
                    let mut batch = FeedbackBatch {
                        records: Vec::new(),
                        ids: Vec::new(),
                    };
                    for f in stored {
                        if batch.ids.len() == MAX_FEEDBACK_BATCH || leased.contains(&f.id) {
                            continue;
                        }
                        let Some(status) = FeedbackStatus::from_wire(&f.record.status_code) else {
                            tracing::warn!(id = f.id, status = %f.record.status_code, "C2D feedback record with an unknown status skipped");
                            continue;
                        };
                        leased.insert(f.id);
                        batch.ids.push(f.id);
                        batch.records.push(FeedbackRecord {
                            original_message_id: f.record.original_message_id,
                            device_id: f.record.device_id,
                            device_generation_id: f.record.device_generation_id,
                            status,
                            enqueued_time_utc: f.record.enqueued_time_utc,
                        });
                    }
                    if !batch.ids.is_empty() {
                        return batch;
                    }
                }
                Err(e) => {
                    tracing::warn!("C2D feedback could not be read: {e}");
                    tokio::time::sleep(RETRY_AFTER_ERROR).await;
                    continue;
                }
            }
            // In a cluster other nodes add records too: their event wakes this reader, and
            // since the bus delivers at most once the reader also looks again by itself.
            if self.cluster_bus().is_some() {
                let _ = tokio::time::timeout(STORE_RECHECK, notified).await;
            } else {
                notified.await;
            }
        }
    }

    /// The reader took the batch (or refused it for good): its records are removed.
    pub async fn accept_c2d_feedback(&self, batch: FeedbackBatch) -> Result<(), Error> {
        let result = self.store.delete_feedback(batch.ids.clone()).await;
        let mut leased = self.feedback.leased();
        for id in &batch.ids {
            leased.remove(id);
        }
        result.map_err(Error::from)
    }

    /// The reader did not take the batch: its records are read again, oldest first.
    pub fn return_c2d_feedback(&self, batch: FeedbackBatch) {
        let mut leased = self.feedback.leased();
        for id in batch.ids {
            leased.remove(&id);
        }
        drop(leased);
        self.feedback.available.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for st in FeedbackStatus::ALL {
            assert_eq!(FeedbackStatus::from_wire(st.as_str()), Some(st));
        }
        assert_eq!(FeedbackStatus::from_wire("success"), None);
    }

    #[test]
    fn ack_values_select_outcomes() {
        use FeedbackStatus::{Expired, Rejected, Success};
        assert!(Success.requested_by("positive") && Success.requested_by("full"));
        assert!(!Success.requested_by("negative") && !Success.requested_by("none"));
        assert!(Rejected.requested_by("negative") && Expired.requested_by("full"));
        assert!(!Rejected.requested_by("positive"));
    }

    fn hub(dir: &tempfile::TempDir) -> Hub {
        let store = std::sync::Arc::new(
            fleethub_store::sqlite::SqliteStore::open(&dir.path().join("s.db")).unwrap(),
        );
        Hub::new(
            &crate::Shared::with_clock(store, crate::clock::Clock::system()),
            crate::hub::HubConfig {
                host: "myhub.example.com".into(),
                token_skew_secs: 30,
            },
            vec![],
        )
    }

    async fn send(hub: &Hub, id: &str, ack: &str) -> u64 {
        hub.send_c2d(
            "dev",
            crate::hub::C2dSend {
                body: b"hi".to_vec(),
                message_id: Some(id.into()),
                ack: Some(ack.into()),
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .sequence_number
    }

    async fn next(hub: &Hub) -> FeedbackBatch {
        tokio::time::timeout(Duration::from_secs(5), hub.next_c2d_feedback())
            .await
            .expect("a feedback batch")
    }

    #[tokio::test]
    async fn requests_and_records_survive_a_restart_and_are_read_until_accepted() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = {
            let hub = hub(&dir);
            hub.put_device("dev", fleethub_api::Device::default(), None)
                .await
                .unwrap();
            let a = send(&hub, "m-a", "full").await;
            let b = send(&hub, "m-b", "positive").await;
            send(&hub, "m-none", "none").await;
            hub.complete_c2d(a).await.unwrap();
            (a, b)
        };
        // A new hub on the same store: the record of `a` and the request of `b` are there.
        let hub = hub(&dir);
        hub.complete_c2d(b).await.unwrap();
        let batch = next(&hub).await;
        let ids: Vec<_> = batch
            .records
            .iter()
            .map(|r| r.original_message_id.as_str())
            .collect();
        assert_eq!(ids, ["m-a", "m-b"], "{a} {b}");
        assert!(
            batch
                .records
                .iter()
                .all(|r| r.status == FeedbackStatus::Success)
        );
        assert_eq!(batch.records[0].device_id, "dev");
        // Leased: another reader of this hub waits; given back, it is read again.
        assert!(
            tokio::time::timeout(Duration::from_millis(200), hub.next_c2d_feedback())
                .await
                .is_err()
        );
        hub.return_c2d_feedback(batch);
        let again = next(&hub).await;
        assert_eq!(again.records.len(), 2);
        hub.accept_c2d_feedback(again).await.unwrap();
        // Accepted: gone, also after a restart; a purge reports the queued message with a request.
        let hub = self::hub(&dir);
        assert!(
            tokio::time::timeout(Duration::from_millis(200), hub.next_c2d_feedback())
                .await
                .is_err()
        );
        send(&hub, "m-purged", "negative").await;
        hub.purge_c2d("dev").await.unwrap();
        let purged = next(&hub).await;
        assert_eq!(purged.records.len(), 1);
        assert_eq!(purged.records[0].original_message_id, "m-purged");
        assert_eq!(purged.records[0].status, FeedbackStatus::Purged);
    }

    #[tokio::test]
    async fn a_completion_on_another_node_reaches_a_waiting_reader() {
        let c = crate::cluster::test_bus::two_hubs().await;
        c.a.put_device("dev", fleethub_api::Device::default(), None)
            .await
            .unwrap();
        for lost in [false, true] {
            // The service sends on node a and waits for feedback there.
            let seq = send(&c.a, "m", "full").await;
            let a = c.a.clone();
            let reader = tokio::spawn(async move { next(&a).await });
            tokio::time::sleep(Duration::from_millis(50)).await;
            // With `lost`, node a cannot be reached: it finds the record by re-reading.
            let gone = lost.then(|| c.disconnect("a"));
            c.b.complete_c2d(seq).await.unwrap();
            let batch = reader.await.expect("the reader on node a gets the record");
            assert_eq!(batch.records.len(), 1, "lost: {lost}");
            assert_eq!(batch.records[0].status, FeedbackStatus::Success);
            c.a.accept_c2d_feedback(batch).await.unwrap();
            if let Some(h) = gone {
                c.reconnect("a", h);
            }
        }
    }
}
