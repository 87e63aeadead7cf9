//! Cloud-to-device feedback: when a sender asks for it (`iothub-ack` = `positive`, `negative`
//! or `full`), the outcome of the message (completed, rejected, expired, dead-lettered, purged)
//! becomes a feedback record that the service reads on the AMQP node
//! `/messages/servicebound/feedback` (see `docs/protocol-notes.md`, "C2D feedback").
//!
//! Records are kept in memory, bounded ([`MAX_FEEDBACK_RECORDS`]; the oldest are dropped when
//! nobody reads them): a restart loses the records not yet read and the pending requests, as
//! an expired feedback queue would (Azure keeps feedback for a limited time too).

use super::Hub;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Most records waiting to be read; older ones are dropped first.
pub const MAX_FEEDBACK_RECORDS: usize = 10_000;
/// Most records delivered in one feedback message (a batch).
pub const MAX_FEEDBACK_BATCH: usize = 100;

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

/// What a queued message asked for, by its queue sequence number.
#[derive(Debug, Clone)]
struct Request {
    ack: String,
    message_id: String,
    device_id: String,
    device_generation_id: String,
}

#[derive(Default)]
struct State {
    requests: HashMap<u64, Request>,
    records: VecDeque<FeedbackRecord>,
}

/// The hub's feedback requests and records.
#[derive(Default)]
pub(crate) struct Feedback {
    state: Mutex<State>,
    available: tokio::sync::Notify,
}

impl Feedback {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Hub {
    /// Remembers that the message with this queue sequence number asked for feedback.
    pub(crate) fn feedback_requested(
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
        self.feedback.state().requests.insert(
            sequence_number,
            Request {
                ack: ack.to_string(),
                message_id: message_id.to_string(),
                device_id: device_id.to_string(),
                device_generation_id: device_generation_id.unwrap_or_default().to_string(),
            },
        );
    }

    /// The message left the queue with this outcome: records feedback when it was asked for.
    pub(crate) fn feedback_outcome(&self, sequence_number: u64, status: FeedbackStatus) {
        let mut state = self.feedback.state();
        let Some(req) = state.requests.remove(&sequence_number) else {
            return;
        };
        if !status.requested_by(&req.ack) {
            return;
        }
        if state.records.len() >= MAX_FEEDBACK_RECORDS {
            state.records.pop_front();
            tracing::warn!("C2D feedback queue full: the oldest unread record was dropped");
        }
        state.records.push_back(FeedbackRecord {
            original_message_id: req.message_id,
            device_id: req.device_id,
            device_generation_id: req.device_generation_id,
            status,
            enqueued_time_utc: self.clock.now_utc(),
        });
        drop(state);
        self.feedback.available.notify_waiters();
        self.feedback.available.notify_one();
    }

    /// Every purged message of a device: feedback `Purged` where it was asked for.
    pub(crate) fn feedback_purged(&self, device_id: &str) {
        let purged: Vec<u64> = self
            .feedback
            .state()
            .requests
            .iter()
            .filter(|(_, r)| r.device_id == device_id)
            .map(|(seq, _)| *seq)
            .collect();
        for seq in purged {
            self.feedback_outcome(seq, FeedbackStatus::Purged);
        }
    }

    /// Takes up to [`MAX_FEEDBACK_BATCH`] records, oldest first, waiting until there is one.
    /// A batch the reader did not accept goes back with [`Hub::return_c2d_feedback`].
    pub async fn next_c2d_feedback(&self) -> Vec<FeedbackRecord> {
        loop {
            let notified = self.feedback.available.notified();
            {
                let mut state = self.feedback.state();
                if !state.records.is_empty() {
                    let n = state.records.len().min(MAX_FEEDBACK_BATCH);
                    return state.records.drain(..n).collect();
                }
            }
            notified.await;
        }
    }

    /// Puts an unaccepted batch back in front of the queue.
    pub fn return_c2d_feedback(&self, batch: Vec<FeedbackRecord>) {
        let mut state = self.feedback.state();
        for r in batch.into_iter().rev() {
            state.records.push_front(r);
        }
        state.records.truncate(MAX_FEEDBACK_RECORDS);
        drop(state);
        self.feedback.available.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_values_select_outcomes() {
        use FeedbackStatus::{Expired, Rejected, Success};
        assert!(Success.requested_by("positive") && Success.requested_by("full"));
        assert!(!Success.requested_by("negative") && !Success.requested_by("none"));
        assert!(Rejected.requested_by("negative") && Expired.requested_by("full"));
        assert!(!Rejected.requested_by("positive"));
    }
}
