//! fleethub's REST view of the Event Hub-compatible built-in endpoint: consumer groups and
//! partition properties (Azure manages consumer groups through its resource provider, whose
//! ARM shape does not fit a hub's data plane; these are fleethub's own shapes).

use serde::{Deserialize, Serialize};

/// A consumer group (`GET/PUT /messages/events/consumerGroups/{name}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerGroupInfo {
    pub name: String,
    pub created_time_utc: String,
}

/// One partition (`GET /messages/events/partitions/{id}`), the fields of Event Hubs'
/// `com.microsoft:partition` management read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PartitionInfo {
    pub partition_id: String,
    /// The oldest stored sequence number (-1: nothing was ever stored).
    pub begin_sequence_number: i64,
    /// -1: nothing was ever stored.
    pub last_enqueued_sequence_number: i64,
    /// `"-1"`: nothing was ever stored.
    pub last_enqueued_offset: String,
    /// Absent when nothing was ever stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_enqueued_time_utc: Option<String>,
    pub is_empty: bool,
}

/// The endpoint with its partitions (`GET /messages/events/partitions`), the fields of Event
/// Hubs' `com.microsoft:eventhub` management read plus each partition's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventHubInfo {
    /// The Event Hub-compatible name (the hub's name).
    pub name: String,
    pub created_time_utc: String,
    pub partition_count: u32,
    pub partition_ids: Vec<String>,
    pub partitions: Vec<PartitionInfo>,
}
