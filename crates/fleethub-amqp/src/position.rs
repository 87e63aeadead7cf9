//! Start positions of Event Hubs receivers.
// Replaced by fleethub_services::hub::EventPosition once the event hub service API is merged.

/// Where a receiver starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventPosition {
    Start,
    Latest,
    Offset { offset: u64, inclusive: bool },
    SequenceNumber { sequence_number: i64, inclusive: bool },
    EnqueuedTime { utc_ms: i64, inclusive: bool },
}
