//! The Event Hubs-compatible view of the built-in endpoint, for the AMQP transport (and the
//! REST partition and consumer-group routes): the hub's name and partitions, partition
//! properties, start positions resolved to per-partition sequence numbers, partition reads,
//! a watch per partition that wakes live readers, and consumer groups
//! (`consumer_groups`). Facts: docs/protocol-notes.md, "Event Hub-compatible endpoint".
//!
//! The telemetry log is partitioned by device id (`fleethub_storage::partition_of`); the
//! global sequence number of a message is its Event Hubs offset, and each partition numbers
//! its messages from 0 without gaps. The partition count is fixed when the store first
//! partitions its log ([`Hub::start_event_hub`], which the server calls at start; the first
//! telemetry append or event-hub call does it otherwise).

mod auth_method;
#[cfg(test)]
mod cluster_tests;
mod cluster_watch;
mod consumer_groups;
#[cfg(test)]
mod tests;

pub use auth_method::{AUTH_METHOD_PROPERTY, SenderAuth, sender_auth};
pub use cluster_watch::ADVANCE_COALESCE;
pub use consumer_groups::{
    ConsumerGroup, DEFAULT_CONSUMER_GROUP, DEFAULT_MAX_CONSUMER_GROUPS,
    validate_consumer_group_name,
};

use super::Hub;
use crate::hub::Error;
/// Most partitions a hub can have (Azure's IoT Hub limit).
pub use fleethub_storage::MAX_PARTITION_COUNT;
use fleethub_storage::{DEFAULT_PARTITION_COUNT, TelemetryMessage};
use std::sync::Arc;
use tokio::sync::{OnceCell, watch};

/// Most events one [`Hub::read_partition`] returns.
pub const MAX_PARTITION_READ: usize = 10_000;
/// The setting that records when the event hub was created.
const CREATED_SETTING: &str = "event_hub_created_utc";

/// The endpoint's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHubConfig {
    /// Partitions of a new log (1 to [`MAX_PARTITION_COUNT`]); a store that is already
    /// partitioned keeps its count.
    pub partition_count: u32,
    /// Most consumer groups, `$Default` included.
    pub max_consumer_groups: usize,
}

impl Default for EventHubConfig {
    fn default() -> Self {
        EventHubConfig {
            partition_count: DEFAULT_PARTITION_COUNT,
            max_consumer_groups: DEFAULT_MAX_CONSUMER_GROUPS,
        }
    }
}

/// `com.microsoft:eventhub` of the `$management` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHubProperties {
    pub name: String,
    pub created_at_ms: i64,
    pub partition_ids: Vec<String>,
}

/// `com.microsoft:partition` of the `$management` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionProperties {
    pub event_hub_name: String,
    pub partition_id: String,
    /// The oldest stored sequence number; -1 when nothing was ever stored, last + 1 when
    /// retention removed everything.
    pub begin_sequence_number: i64,
    /// -1 when nothing was ever stored (kept when retention removes the event).
    pub last_enqueued_sequence_number: i64,
    /// `"-1"` when nothing was ever stored.
    pub last_enqueued_offset: String,
    /// 0 when nothing was ever stored.
    pub last_enqueued_time_utc_ms: i64,
    pub is_empty: bool,
}

/// Where a receiver starts: the start positions of Event Hubs' selector filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPosition {
    /// The oldest stored event (offset `"-1"`).
    Start,
    /// `@latest`: only events enqueued after the position is resolved.
    Latest,
    /// By offset (the global sequence number).
    Offset { offset: u64, inclusive: bool },
    /// By per-partition sequence number.
    SequenceNumber {
        sequence_number: i64,
        inclusive: bool,
    },
    /// By enqueued time (Unix ms).
    EnqueuedTime { utc_ms: i64, inclusive: bool },
}

/// One event of a partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionEvent {
    pub partition: u32,
    /// Per-partition sequence number.
    pub sequence_number: i64,
    /// The Event Hubs offset: the message's global sequence number.
    pub offset: u64,
    pub enqueued_time_utc_ms: i64,
    pub message: Arc<TelemetryMessage>,
}

impl PartitionEvent {
    fn new(m: TelemetryMessage) -> PartitionEvent {
        PartitionEvent {
            partition: m.partition,
            sequence_number: m.partition_sequence_number,
            offset: m.sequence_number,
            enqueued_time_utc_ms: fleethub_api::time::parse_utc_ms(&m.enqueued_time_utc)
                .unwrap_or(0),
            message: Arc::new(m),
        }
    }
}

/// The endpoint's state inside [`Hub`].
#[derive(Default)]
pub(crate) struct State {
    cfg: EventHubConfig,
    started: OnceCell<Partitions>,
    /// Per partition: the last enqueued sequence number, moved by every node's appends.
    watches: Arc<cluster_watch::Watches>,
}

/// What [`Hub::start_event_hub`] established.
struct Partitions {
    count: u32,
    created_at_ms: i64,
}

impl Hub {
    /// Sets the endpoint's settings; call before the hub is shared.
    #[must_use]
    pub fn with_event_hub(mut self, cfg: EventHubConfig) -> Hub {
        self.endpoint = State {
            cfg,
            started: OnceCell::new(),
            watches: Arc::default(),
        };
        self
    }

    /// Fixes the partition count (the stored one wins over the configured one, with a
    /// warning naming both), records the creation time and makes sure `$Default` exists.
    /// Idempotent; returns the partition count.
    pub async fn start_event_hub(&self) -> Result<u32, Error> {
        Ok(self.partitions().await?.count)
    }

    async fn partitions(&self) -> Result<&Partitions, Error> {
        self.endpoint
            .started
            .get_or_try_init(|| self.load_partitions())
            .await
    }

    async fn load_partitions(&self) -> Result<Partitions, Error> {
        let wanted = self.endpoint.cfg.partition_count;
        if wanted == 0 || wanted > MAX_PARTITION_COUNT {
            return Err(Error::invalid(format!(
                "partition_count must be 1 to {MAX_PARTITION_COUNT}, not {wanted}"
            )));
        }
        let count = self.store.init_partitions(wanted).await?;
        if count != wanted {
            tracing::warn!(
                stored = count,
                configured = wanted,
                "partition_count is fixed when the data directory is created: using the stored {count} partitions, not the configured {wanted}"
            );
        }
        let created = self
            .store
            .init_setting(CREATED_SETTING, &self.clock.now_utc())
            .await?;
        self.ensure_default_consumer_group(&created).await?;
        let mut last = Vec::with_capacity(count as usize);
        for p in 0..count {
            let s = self.store.partition_summary(p).await?;
            last.push(watch::Sender::new(s.last_sequence_number));
        }
        let _ = self.endpoint.watches.last.set(last);
        Ok(Partitions {
            count,
            created_at_ms: fleethub_api::time::parse_utc_ms(&created).unwrap_or(0),
        })
    }

    /// The Event Hubs-compatible name: the hub's name, the first label of its host name.
    pub fn event_hub_name(&self) -> &str {
        event_hub_name(&self.cfg.host)
    }

    pub fn event_hub_properties(&self) -> EventHubProperties {
        let (count, created_at_ms) = self
            .endpoint
            .started
            .get()
            .map_or((self.endpoint.cfg.partition_count, 0), |p| {
                (p.count, p.created_at_ms)
            });
        EventHubProperties {
            name: self.event_hub_name().to_string(),
            created_at_ms,
            partition_ids: (0..count).map(|p| p.to_string()).collect(),
        }
    }

    /// The partition count ([`Hub::start_event_hub`] fixes it; before that, the configured
    /// one).
    pub fn partition_count(&self) -> u32 {
        self.endpoint
            .started
            .get()
            .map_or(self.endpoint.cfg.partition_count, |p| p.count)
    }

    async fn check_partition(&self, partition: u32) -> Result<&Partitions, Error> {
        let parts = self.partitions().await?;
        if partition >= parts.count {
            return Err(Error::PartitionOutOfRange {
                partition,
                count: parts.count,
            });
        }
        Ok(parts)
    }

    pub async fn partition_properties(&self, partition: u32) -> Result<PartitionProperties, Error> {
        self.check_partition(partition).await?;
        let s = self.store.partition_summary(partition).await?;
        Ok(PartitionProperties {
            event_hub_name: self.event_hub_name().to_string(),
            partition_id: partition.to_string(),
            begin_sequence_number: s.begin_sequence_number,
            last_enqueued_sequence_number: s.last_sequence_number,
            last_enqueued_offset: if s.last_sequence_number < 0 {
                "-1".to_string()
            } else {
                s.last_offset.to_string()
            },
            last_enqueued_time_utc_ms: s.last_enqueued_utc_ms,
            is_empty: s.is_empty,
        })
    }

    /// Resolves a start position to the first per-partition sequence number to deliver.
    pub async fn resolve_event_position(
        &self,
        partition: u32,
        pos: &EventPosition,
    ) -> Result<i64, Error> {
        self.check_partition(partition).await?;
        let store = &self.store;
        Ok(match *pos {
            EventPosition::Start => store
                .partition_summary(partition)
                .await?
                .begin_sequence_number
                .max(0),
            EventPosition::Latest => {
                store
                    .partition_summary(partition)
                    .await?
                    .last_sequence_number
                    + 1
            }
            EventPosition::Offset { offset, inclusive } => {
                let min = if inclusive {
                    offset
                } else {
                    offset.saturating_add(1)
                };
                store.partition_seq_at_offset(partition, min).await?
            }
            EventPosition::SequenceNumber {
                sequence_number,
                inclusive,
            } => {
                let n = if inclusive {
                    sequence_number
                } else {
                    sequence_number.saturating_add(1)
                };
                n.max(0)
            }
            EventPosition::EnqueuedTime { utc_ms, inclusive } => {
                let min = if inclusive {
                    utc_ms
                } else {
                    utc_ms.saturating_add(1)
                };
                store.partition_seq_at_time(partition, min).await?
            }
        })
    }

    /// Up to `max` events of one partition with `sequence_number >= from`, oldest first
    /// (at most [`MAX_PARTITION_READ`]).
    pub async fn read_partition(
        &self,
        partition: u32,
        from: i64,
        max: usize,
    ) -> Result<Vec<PartitionEvent>, Error> {
        self.check_partition(partition).await?;
        let rows = self
            .store
            .read_partition(partition, from, max.clamp(1, MAX_PARTITION_READ))
            .await?;
        Ok(rows.into_iter().map(PartitionEvent::new).collect())
    }

    /// Wakes live readers: the partition's last enqueued sequence number (-1 when empty).
    /// Fails before the endpoint is started ([`Hub::start_event_hub`]).
    pub fn watch_partition(&self, partition: u32) -> Result<watch::Receiver<i64>, Error> {
        let Some(parts) = self.endpoint.started.get() else {
            return Err(Error::Internal(
                "the event hub endpoint is not started".into(),
            ));
        };
        self.endpoint
            .watches
            .last
            .get()
            .and_then(|l| l.get(partition as usize))
            .map(watch::Sender::subscribe)
            .ok_or(Error::PartitionOutOfRange {
                partition,
                count: parts.count,
            })
    }

    /// Makes sure the endpoint is started before telemetry is appended (so the configured
    /// partition count applies).
    pub(crate) async fn before_append(&self) -> Result<(), Error> {
        self.partitions().await.map(|_| ())
    }

    /// Tells live readers (here and, in a cluster, on the other nodes) about appended
    /// messages.
    pub(crate) fn after_append(&self, stored: &[TelemetryMessage]) {
        for m in stored {
            self.endpoint
                .watches
                .appended(m.partition, m.partition_sequence_number);
        }
    }
}

/// The first label of a host name (`myhub` of `myhub.azure-devices.net`).
pub fn event_hub_name(host: &str) -> &str {
    host.split('.').next().unwrap_or(host)
}
