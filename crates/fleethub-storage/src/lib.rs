//! fleethub's storage interface: one trait per aggregate ([`SettingsStore`], [`RegistryStore`],
//! [`DpsStore`], [`TelemetryStore`], [`C2dStore`], [`SessionStore`], [`ConfigurationStore`],
//! [`AuthFailureStore`], [`LinkedHubStore`], [`PresenceStore`],
//! [`C2dFeedbackStore`]),
//! [`Store`] for all of them together (what `fleethub-services` uses), the records, [`StoreError`]
//! and [`Precondition`]. Backends live elsewhere (`fleethub-store`: SQLite) and implement the
//! traits, one aggregate at a time, checked by the generic `suite` module (feature `suite`).
//! Transports never see this crate: they call the services.
//!
//! Records are kept as the Azure JSON documents (see `fleethub-api`) next to the indexed key
//! columns, so a backend never needs to understand every field.

mod error;
mod feedback;
mod partitions;
mod records;
#[cfg(any(test, feature = "suite"))]
pub mod suite;
mod telemetry_sender;

pub use error::StoreError;
pub use feedback::{C2dFeedbackRecord, C2dFeedbackRequest, C2dFeedbackStore, StoredC2dFeedback};
pub use partitions::{
    ConsumerGroupRecord, DEFAULT_PARTITION_COUNT, MAX_PARTITION_COUNT, PartitionSummary, fnv1a32,
    partition_of,
};
pub use records::*;
pub use telemetry_sender::{
    AUTH_METHOD_PROPERTY, DEVICE_ID_PROPERTY, MESSAGE_SOURCE_PROPERTY, MODULE_ID_PROPERTY,
    SenderAuth, fill_sender_properties, insert_sender_properties,
};

use async_trait::async_trait;
use fleethub_api::{
    Configuration, ConfigurationContent, DeviceRegistrationState, EnrollmentGroup,
    IndividualEnrollment, LinkedHub,
};

pub type Result<T> = std::result::Result<T, StoreError>;

/// Server settings: free-form key/value pairs (ID scope, policy keys, ...).
#[async_trait]
pub trait SettingsStore: Send + Sync {
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` unless the key already has one; returns the value now stored.
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;
    async fn put_setting(&self, key: &str, value: &str) -> Result<()>;
}

/// The hub's identity registry: devices with their twins, and their module identities with
/// module twins (removed with the device).
#[async_trait]
pub trait RegistryStore: Send + Sync {
    async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRecord>>;
    /// Creates or replaces a device (and its twin). Sets etags as needed.
    async fn put_device(&self, record: DeviceRecord, cond: Precondition) -> Result<DeviceRecord>;
    /// Deletes a device with its twin, modules, cloud-to-device queue and manual content.
    async fn delete_device(&self, device_id: &str, cond: Precondition) -> Result<()>;
    async fn list_devices(&self, page: PageRequest) -> Result<Page<DeviceRecord>>;

    async fn get_module(&self, device_id: &str, module_id: &str) -> Result<Option<ModuleRecord>>;
    /// Creates or replaces a module and its twin; sets the module etag. The device must exist.
    async fn put_module(&self, record: ModuleRecord, cond: Precondition) -> Result<ModuleRecord>;
    async fn delete_module(
        &self,
        device_id: &str,
        module_id: &str,
        cond: Precondition,
    ) -> Result<()>;
    async fn list_modules(&self, device_id: &str) -> Result<Vec<ModuleRecord>>;
}

/// The Device Provisioning Service's records: individual enrollments, enrollment groups
/// (both with case-insensitive IDs) and registration records.
#[async_trait]
pub trait DpsStore: Send + Sync {
    async fn get_enrollment(&self, registration_id: &str) -> Result<Option<IndividualEnrollment>>;
    /// Creates or replaces; sets `etag`, `createdDateTimeUtc`, `lastUpdatedDateTimeUtc`.
    async fn put_enrollment(
        &self,
        enrollment: IndividualEnrollment,
        cond: Precondition,
    ) -> Result<IndividualEnrollment>;
    async fn delete_enrollment(&self, registration_id: &str, cond: Precondition) -> Result<()>;
    async fn list_enrollments(&self, page: PageRequest) -> Result<Page<IndividualEnrollment>>;

    async fn get_group(&self, group_id: &str) -> Result<Option<EnrollmentGroup>>;
    async fn put_group(
        &self,
        group: EnrollmentGroup,
        cond: Precondition,
    ) -> Result<EnrollmentGroup>;
    async fn delete_group(&self, group_id: &str, cond: Precondition) -> Result<()>;
    async fn list_groups(&self, page: PageRequest) -> Result<Page<EnrollmentGroup>>;

    async fn get_registration(&self, registration_id: &str) -> Result<Option<RegistrationRecord>>;
    async fn get_registration_by_operation(
        &self,
        operation_id: &str,
    ) -> Result<Option<RegistrationRecord>>;
    async fn delete_registration(&self, registration_id: &str, cond: Precondition) -> Result<()>;
    /// Registration records, optionally only those that came through one group.
    async fn list_registrations(
        &self,
        group_id: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<DeviceRegistrationState>>;

    /// The outcome of a DPS registration, in one transaction: the device identity (created or
    /// updated, unconditionally) and the registration record. Nothing is written if any part
    /// fails.
    async fn commit_assignment(&self, assignment: Assignment) -> Result<RegistrationRecord>;
}

/// The built-in telemetry endpoint: an append-only log, partitioned by device id
/// ([`partition_of`]), with consumer groups and per-consumer-group checkpoints.
#[async_trait]
pub trait TelemetryStore: Send + Sync {
    /// Appends messages durably; returns them with their sequence numbers, partitions and
    /// per-partition sequence numbers (assigned in the same transaction, gapless).
    async fn append_telemetry(
        &self,
        messages: Vec<TelemetryMessage>,
    ) -> Result<Vec<TelemetryMessage>>;
    /// Fixes the partition count the first time anything asks (this call with `requested`,
    /// or an append with [`DEFAULT_PARTITION_COUNT`]) and returns the stored count, which
    /// later calls cannot change. Messages stored before the log was partitioned get their
    /// partitions and per-partition sequence numbers here, in global order.
    async fn init_partitions(&self, requested: u32) -> Result<u32>;
    /// Messages of one partition with `partition_sequence_number >= from`, oldest first.
    async fn read_partition(
        &self,
        partition: u32,
        from: i64,
        limit: usize,
    ) -> Result<Vec<TelemetryMessage>>;
    /// Begin and last sequence numbers, last offset and enqueued time of one partition.
    async fn partition_summary(&self, partition: u32) -> Result<PartitionSummary>;
    /// The per-partition sequence number of the first stored message of `partition` whose
    /// global sequence number is `>= min_offset`; the next one to be assigned if none is.
    async fn partition_seq_at_offset(&self, partition: u32, min_offset: u64) -> Result<i64>;
    /// The per-partition sequence number of the first stored message of `partition`
    /// enqueued at or after `min_utc_ms` (Unix ms); the next one to be assigned if none was.
    async fn partition_seq_at_time(&self, partition: u32, min_utc_ms: i64) -> Result<i64>;
    /// Messages with `sequence_number > after`, oldest first.
    async fn read_telemetry(&self, after: u64, limit: usize) -> Result<Vec<TelemetryMessage>>;
    /// Deletes telemetry enqueued before `before_utc` (retention); returns how many.
    async fn prune_telemetry(&self, before_utc: &str) -> Result<u64>;
    /// A consumer group's checkpoint (last sequence number it processed; 0 = none).
    async fn get_checkpoint(&self, group: &str) -> Result<u64>;
    async fn set_checkpoint(&self, group: &str, sequence_number: u64) -> Result<()>;

    /// Consumer groups in name order. Names are compared case-insensitively.
    async fn list_consumer_groups(&self) -> Result<Vec<ConsumerGroupRecord>>;
    async fn get_consumer_group(&self, name: &str) -> Result<Option<ConsumerGroupRecord>>;
    /// Creates a group unless one of that name exists (`AlreadyExists`) or `max` groups
    /// exist (`LimitReached`).
    async fn create_consumer_group(
        &self,
        group: ConsumerGroupRecord,
        max: usize,
    ) -> Result<ConsumerGroupRecord>;
    /// Deletes a group and its checkpoint (`NotFound` if there is no such group).
    async fn delete_consumer_group(&self, name: &str) -> Result<()>;
}

/// Cloud-to-device queues, one per device.
#[async_trait]
pub trait C2dStore: Send + Sync {
    /// Enqueues unless the device already has `max_queued` messages (then `QueueFull`).
    async fn enqueue_c2d(&self, msg: C2dMessage, max_queued: usize) -> Result<C2dMessage>;
    /// The device's queued messages, oldest first.
    async fn list_c2d(&self, device_id: &str, limit: usize) -> Result<Vec<C2dMessage>>;
    /// Replaces a queued message (delivery count); `NotFound` if it was completed meanwhile.
    async fn update_c2d(&self, msg: C2dMessage) -> Result<()>;
    /// Removes a message (completed, rejected or expired).
    async fn delete_c2d(&self, sequence_number: u64) -> Result<()>;
    /// Removes all of a device's queued messages; returns how many.
    async fn purge_c2d(&self, device_id: &str) -> Result<u64>;
    /// An HTTPS receive (docs/protocol-notes.md, "C2D over HTTPS: lock tokens"): locks the
    /// message `msg.sequence_number` of `msg.device_id` with `lock` and stores `msg` (its raised
    /// delivery count) in one transaction, unless it holds a lock unexpired at `lock.now_ms`:
    /// then `Ok(false)` and nothing changes. `NotFound` if the message is gone. The lock is in
    /// the store, so every node sharing it sees it.
    async fn lock_c2d(&self, msg: C2dMessage, lock: C2dLock) -> Result<bool>;
    /// Sequence numbers of the device's messages under a lock unexpired at `now_ms`, ascending.
    async fn locked_c2d(&self, device_id: &str, now_ms: i64) -> Result<Vec<u64>>;
    /// Settles the device's message held by the lock `token` if that lock is unexpired at
    /// `now_ms`: removes the message or releases the lock (`how`); returns its sequence number,
    /// `None` (nothing changed) for an unknown, expired or already settled token or one of
    /// another device.
    async fn settle_c2d_lock(
        &self,
        device_id: &str,
        token: &str,
        now_ms: i64,
        how: C2dLockRelease,
    ) -> Result<Option<u64>>;
}

/// Persistent MQTT sessions: an opaque document (the subscriptions of a CleanSession=0
/// client) per client identity.
#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn get_mqtt_session(&self, client_id: &str) -> Result<Option<String>>;
    async fn put_mqtt_session(&self, client_id: &str, doc: &str) -> Result<()>;
    async fn delete_mqtt_session(&self, client_id: &str) -> Result<()>;
}

/// Configurations / IoT Edge deployments at scale (ids are case-sensitive, lowercase) and
/// each edge device's own content.
#[async_trait]
pub trait ConfigurationStore: Send + Sync {
    async fn get_configuration(&self, id: &str) -> Result<Option<Configuration>>;
    /// Creates or replaces; sets `etag`, keeps `createdTimeUtc`, sets `lastUpdatedTimeUtc`.
    async fn put_configuration(
        &self,
        cfg: Configuration,
        cond: Precondition,
    ) -> Result<Configuration>;
    async fn delete_configuration(&self, id: &str, cond: Precondition) -> Result<()>;
    /// Up to `max` configurations in id order (0 = all).
    async fn list_configurations(&self, max: usize) -> Result<Vec<Configuration>>;
    /// A device's own edge content (`applyConfigurationContent`); removed with the device.
    async fn get_manual_content(&self, device_id: &str) -> Result<Option<ConfigurationContent>>;
    /// Stores a device's own edge content; `NotFound` if the device does not exist.
    async fn put_manual_content(
        &self,
        device_id: &str,
        content: ConfigurationContent,
    ) -> Result<()>;
}

/// The recent authentication failures that `GET /diagnostics/authFailures` shows: a bounded
/// window kept across restarts.
#[async_trait]
pub trait AuthFailureStore: Send + Sync {
    /// Appends `entry` and keeps only the newest `keep` entries.
    async fn append_auth_failure(&self, entry: AuthFailureRecord, keep: usize) -> Result<()>;
    /// The newest `limit` entries, newest first.
    async fn recent_auth_failures(&self, limit: usize) -> Result<Vec<AuthFailureRecord>>;
}

/// The hubs linked to the DPS instance, keyed by host name (case-insensitive).
#[async_trait]
pub trait LinkedHubStore: Send + Sync {
    /// Every linked hub, ordered by host name.
    async fn list_linked_hubs(&self) -> Result<Vec<LinkedHub>>;
    /// Creates or replaces the hub named `hub.name`.
    async fn put_linked_hub(&self, hub: LinkedHub) -> Result<LinkedHub>;
    /// Deletes a linked hub; `NotFound` (kind `linked hub`) when there is none.
    async fn delete_linked_hub(&self, name: &str) -> Result<()>;
}

/// Which node of several sharing the store holds an identity's live connection, and when the
/// identity last changed connection state and was last active (docs/scale-out.md). Written only
/// by nodes in a cluster; identities are `device` or `device/module`.
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Records that `node` holds `identity` since `at_ms` (unix milliseconds); returns the node
    /// that held it before, if another one did.
    async fn claim_presence(
        &self,
        identity: &str,
        node: &str,
        at_ms: i64,
    ) -> Result<Option<String>>;
    /// Ends `node`'s hold on `identity` at `at_ms`; returns false (and changes nothing) when
    /// another node holds it now.
    async fn release_presence(&self, identity: &str, node: &str, at_ms: i64) -> Result<bool>;
    async fn get_presence(&self, identity: &str) -> Result<Option<PresenceRecord>>;
    /// The records of those of `identities` the store has (in no particular order).
    async fn get_presences(&self, identities: &[String]) -> Result<Vec<(String, PresenceRecord)>>;
    /// Raises the last activity of each `(identity, unix ms)` (never lowers it).
    async fn touch_presence(&self, entries: Vec<(String, i64)>) -> Result<()>;
    /// Forgets an identity (it was deleted).
    async fn forget_presence(&self, identity: &str) -> Result<()>;
    /// How many identities each node holds (nodes holding none are left out).
    async fn count_presence_by_node(&self) -> Result<Vec<(String, u64)>>;
    /// Ends every hold of `node` at `at_ms` (it starts: its connections are gone); returns how
    /// many identities it held.
    async fn release_node_presence(&self, node: &str, at_ms: i64) -> Result<u64>;
}

/// The whole storage interface the services use: every aggregate. Implemented by every type
/// that implements all aggregate traits; a backend is written (and tested, see the `suite`
/// module) one aggregate at a time. Every method is atomic; writes are durable when
/// they return.
pub trait Store:
    SettingsStore
    + RegistryStore
    + DpsStore
    + TelemetryStore
    + C2dStore
    + SessionStore
    + ConfigurationStore
    + AuthFailureStore
    + LinkedHubStore
    + PresenceStore
    + C2dFeedbackStore
    + 'static
{
}

impl<T> Store for T where
    T: SettingsStore
        + RegistryStore
        + DpsStore
        + TelemetryStore
        + C2dStore
        + SessionStore
        + ConfigurationStore
        + AuthFailureStore
        + LinkedHubStore
        + PresenceStore
        + C2dFeedbackStore
        + 'static
{
}

/// Condition on a write or a delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Create or replace unconditionally; delete whatever is there (it must exist).
    Any,
    /// The record must exist with this etag (`*` = must exist). Quotes and `W/` are ignored.
    IfMatch(String),
    /// The record must not exist yet (a delete with it always fails).
    MustNotExist,
}

impl Precondition {
    /// From an optional `If-Match` header value.
    pub fn from_if_match(v: Option<&str>) -> Self {
        match v {
            Some(s) if !s.trim().is_empty() => Precondition::IfMatch(s.to_string()),
            _ => Precondition::Any,
        }
    }
}

/// Checks a write precondition against the current etag of the record (`None`: no record), as
/// every backend must: `MustNotExist` needs no record, `IfMatch` a record with that etag.
pub fn check_write(
    cond: &Precondition,
    kind: &'static str,
    id: &str,
    current: Option<&str>,
) -> Result<()> {
    match cond {
        Precondition::MustNotExist if current.is_some() => Err(StoreError::AlreadyExists {
            kind,
            id: id.to_string(),
        }),
        Precondition::IfMatch(_) if current.is_none() => Err(StoreError::NotFound {
            kind,
            id: id.to_string(),
        }),
        Precondition::IfMatch(want) if !etag_matches(want, current) => {
            Err(StoreError::EtagMismatch {
                kind,
                id: id.to_string(),
            })
        }
        Precondition::Any | Precondition::MustNotExist | Precondition::IfMatch(_) => Ok(()),
    }
}

/// Checks a delete precondition against the current etag (`None`: no record): the record must
/// exist, and match an `IfMatch` etag.
pub fn check_delete(
    cond: &Precondition,
    kind: &'static str,
    id: &str,
    current: Option<&str>,
) -> Result<()> {
    let id = id.to_string();
    match (cond, current) {
        (_, None) => Err(StoreError::NotFound { kind, id }),
        (Precondition::Any, Some(_)) => Ok(()),
        (Precondition::MustNotExist, Some(_)) => Err(StoreError::AlreadyExists { kind, id }),
        (Precondition::IfMatch(want), current) if etag_matches(want, current) => Ok(()),
        (Precondition::IfMatch(_), Some(_)) => Err(StoreError::EtagMismatch { kind, id }),
    }
}

/// Normalises an etag for comparison: strips `W/` and surrounding quotes.
pub fn normalize_etag(s: &str) -> &str {
    let s = s.trim();
    let s = s.strip_prefix("W/").unwrap_or(s);
    s.trim_matches('"')
}

/// Does an `If-Match` value accept the current etag?
pub fn etag_matches(if_match: &str, current: Option<&str>) -> bool {
    let want = normalize_etag(if_match);
    want == "*" || current.is_some_and(|c| normalize_etag(c) == want)
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PageRequest {
    /// Opaque continuation token from a previous page.
    pub continuation: Option<String>,
    /// Maximum items (0 = backend default).
    pub max_items: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// `None` when there are no more pages.
    pub continuation: Option<String>,
}

/// Copies of the whole store, taken while it serves (`fleethub backup`). Not part of [`Store`]:
/// the services never need it.
#[async_trait]
pub trait BackupStore: Send + Sync {
    /// Writes a consistent snapshot of every aggregate to `dest`, a file that must not exist
    /// yet (or be empty). The file is created readable by its owner only: it holds every key.
    async fn backup_to(&self, dest: &std::path::Path) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags() {
        assert!(etag_matches("\"*\"", None));
        assert!(etag_matches("W/\"abc\"", Some("\"abc\"")));
        assert!(etag_matches("abc", Some("\"abc\"")));
        assert!(!etag_matches("abd", Some("\"abc\"")));
        assert!(!etag_matches("abc", None));
    }
}
