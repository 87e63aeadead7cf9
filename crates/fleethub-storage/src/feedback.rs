//! Cloud-to-device feedback (`/messages/servicebound/feedback`): what each message asked for
//! and the records of the outcomes, kept across restarts.

use crate::Result;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

/// What a queued C2D message asked for (`iothub-ack` other than `none`), by its queue
/// sequence number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct C2dFeedbackRequest {
    pub sequence_number: u64,
    /// `positive`, `negative` or `full`.
    pub ack: String,
    pub message_id: String,
    pub device_id: String,
    pub device_generation_id: String,
}

/// One feedback record, in Azure's JSON shape (DOC `iot-hub/iot-hub-devguide-messages-c2d.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct C2dFeedbackRecord {
    pub original_message_id: String,
    pub device_id: String,
    pub device_generation_id: String,
    /// `Success`, `Expired`, `DeliveryCountExceeded`, `Rejected` or `Purged`.
    pub status_code: String,
    /// When the outcome happened, ISO-8601 UTC.
    pub enqueued_time_utc: String,
}

/// A stored record and its position in the feedback queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredC2dFeedback {
    /// Increases with every record appended.
    pub id: u64,
    pub record: C2dFeedbackRecord,
}

/// The hub's feedback requests and the queue of feedback records.
#[async_trait]
pub trait C2dFeedbackStore: Send + Sync {
    /// Remembers a message's request (replacing one with the same sequence number).
    async fn put_feedback_request(&self, request: C2dFeedbackRequest) -> Result<()>;
    /// Every remembered request, by sequence number.
    async fn list_feedback_requests(&self) -> Result<Vec<C2dFeedbackRequest>>;
    /// Removes and returns the requests of these sequence numbers (their messages left the
    /// queue); numbers without a request are ignored.
    async fn take_feedback_requests(
        &self,
        sequence_numbers: Vec<u64>,
    ) -> Result<Vec<C2dFeedbackRequest>>;
    /// Appends a record and keeps only the newest `keep`; returns its id.
    async fn append_feedback(&self, record: C2dFeedbackRecord, keep: usize) -> Result<u64>;
    /// The oldest `limit` records, oldest first.
    async fn list_feedback(&self, limit: usize) -> Result<Vec<StoredC2dFeedback>>;
    /// Removes records (read and accepted); unknown ids are ignored.
    async fn delete_feedback(&self, ids: Vec<u64>) -> Result<()>;
}
