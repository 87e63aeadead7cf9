//! Storage for fleethub: the [`Store`] interface that DPS and hub logic use, and the embedded
//! SQLite backend ([`sqlite::SqliteStore`]). A PostgreSQL backend implements the same trait.
//!
//! Records are kept as the Azure JSON documents (see `fleethub-api`) next to the indexed key
//! columns, so a backend never needs to understand every field.

mod error;
mod records;
pub mod sqlite;

pub use error::StoreError;
pub use records::*;

use async_trait::async_trait;
use fleethub_api::{
    Configuration, ConfigurationContent, DeviceRegistrationState, EnrollmentGroup,
    IndividualEnrollment,
};

pub type Result<T> = std::result::Result<T, StoreError>;

/// The storage interface. Every method is atomic; writes are durable when they return.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A free-form server setting (ID scope, policy keys, ...).
    async fn get_setting(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` unless the key already has one; returns the value now stored.
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;
    async fn put_setting(&self, key: &str, value: &str) -> Result<()>;

    // ---- DPS individual enrollments (registration IDs are case-insensitive)
    async fn get_enrollment(&self, registration_id: &str) -> Result<Option<IndividualEnrollment>>;
    /// Creates or replaces; sets `etag`, `createdDateTimeUtc`, `lastUpdatedDateTimeUtc`.
    async fn put_enrollment(
        &self,
        enrollment: IndividualEnrollment,
        cond: Precondition,
    ) -> Result<IndividualEnrollment>;
    async fn delete_enrollment(&self, registration_id: &str, if_match: Option<&str>) -> Result<()>;
    async fn list_enrollments(&self, page: PageRequest) -> Result<Page<IndividualEnrollment>>;

    // ---- DPS enrollment groups
    async fn get_group(&self, group_id: &str) -> Result<Option<EnrollmentGroup>>;
    async fn put_group(
        &self,
        group: EnrollmentGroup,
        cond: Precondition,
    ) -> Result<EnrollmentGroup>;
    async fn delete_group(&self, group_id: &str, if_match: Option<&str>) -> Result<()>;
    async fn list_groups(&self, page: PageRequest) -> Result<Page<EnrollmentGroup>>;

    // ---- DPS registration records
    async fn get_registration(&self, registration_id: &str) -> Result<Option<RegistrationRecord>>;
    async fn get_registration_by_operation(
        &self,
        operation_id: &str,
    ) -> Result<Option<RegistrationRecord>>;
    async fn delete_registration(
        &self,
        registration_id: &str,
        if_match: Option<&str>,
    ) -> Result<()>;
    /// Registration records, optionally only those that came through one group.
    async fn list_registrations(
        &self,
        group_id: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<DeviceRegistrationState>>;

    // ---- Hub device registry
    async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRecord>>;
    /// Creates or replaces a device (and its twin). Sets etags as needed.
    async fn put_device(&self, record: DeviceRecord, cond: Precondition) -> Result<DeviceRecord>;
    async fn delete_device(&self, device_id: &str, if_match: Option<&str>) -> Result<()>;
    async fn list_devices(&self, page: PageRequest) -> Result<Page<DeviceRecord>>;

    // ---- Module identities (of a device; removed with it)
    async fn get_module(&self, device_id: &str, module_id: &str) -> Result<Option<ModuleRecord>>;
    /// Creates or replaces a module and its twin; sets the module etag. The device must exist.
    async fn put_module(&self, record: ModuleRecord, cond: Precondition) -> Result<ModuleRecord>;
    async fn delete_module(
        &self,
        device_id: &str,
        module_id: &str,
        if_match: Option<&str>,
    ) -> Result<()>;
    async fn list_modules(&self, device_id: &str) -> Result<Vec<ModuleRecord>>;

    /// The outcome of a DPS registration, in one transaction: the device identity (created or
    /// updated) and the registration record. Nothing is written if any part fails.
    async fn commit_assignment(&self, assignment: Assignment) -> Result<RegistrationRecord>;

    // ---- Built-in telemetry endpoint (append-only log)
    /// Appends messages durably; returns them with their sequence numbers.
    async fn append_telemetry(
        &self,
        messages: Vec<TelemetryMessage>,
    ) -> Result<Vec<TelemetryMessage>>;
    /// Messages with `sequence_number > after`, oldest first.
    async fn read_telemetry(&self, after: u64, limit: usize) -> Result<Vec<TelemetryMessage>>;
    /// Deletes telemetry enqueued before `before_utc` (retention); returns how many.
    async fn prune_telemetry(&self, before_utc: &str) -> Result<u64>;
    /// A consumer group's checkpoint (last sequence number it processed; 0 = none).
    async fn get_checkpoint(&self, group: &str) -> Result<u64>;
    async fn set_checkpoint(&self, group: &str, sequence_number: u64) -> Result<()>;

    // ---- Configurations / IoT Edge deployments at scale (ids are case-sensitive, lowercase)
    async fn get_configuration(&self, id: &str) -> Result<Option<Configuration>>;
    /// Creates or replaces; sets `etag`, keeps `createdTimeUtc`, sets `lastUpdatedTimeUtc`.
    async fn put_configuration(
        &self,
        cfg: Configuration,
        cond: Precondition,
    ) -> Result<Configuration>;
    async fn delete_configuration(&self, id: &str, if_match: Option<&str>) -> Result<()>;
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

    // ---- Persistent MQTT sessions (the subscriptions of CleanSession=0 clients)
    async fn get_mqtt_session(&self, client_id: &str) -> Result<Option<String>>;
    async fn put_mqtt_session(&self, client_id: &str, doc: &str) -> Result<()>;
    async fn delete_mqtt_session(&self, client_id: &str) -> Result<()>;

    // ---- Cloud-to-device queues
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
}

/// Condition on a write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// Create or replace unconditionally.
    Any,
    /// The record must exist with this etag (`*` = must exist). Quotes and `W/` are ignored.
    IfMatch(String),
    /// The record must not exist yet.
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
