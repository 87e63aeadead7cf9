//! Versioned migrations. `schema_version` holds how many of [`MIGRATIONS`] ran; a node
//! applies the missing ones at start (under an advisory lock, so two nodes starting together
//! do not both migrate) and refuses a database with a newer version than it knows: an older
//! node must not write to a schema it does not understand.

use crate::ConnectError;
use deadpool_postgres::GenericClient;

/// Key of the advisory lock that serialises migrations between nodes.
const MIGRATION_LOCK: i64 = 0x666c_6565_7468_7562; // "fleethub"

pub const MIGRATIONS: &[&str] = &[
    // 1: every aggregate, as the SQLite backend's schema after its migration 10. Keys compare
    // byte-wise (`COLLATE "C"`), as SQLite's do, whatever the database's collation is.
    r#"CREATE TABLE settings (key TEXT COLLATE "C" PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE enrollments (id_lower TEXT COLLATE "C" PRIMARY KEY, etag TEXT NOT NULL, doc TEXT NOT NULL);
     CREATE TABLE enrollment_groups (id_lower TEXT COLLATE "C" PRIMARY KEY, etag TEXT NOT NULL, doc TEXT NOT NULL);
     CREATE TABLE registrations (
        id_lower TEXT COLLATE "C" PRIMARY KEY,
        group_lower TEXT COLLATE "C",
        operation_id TEXT COLLATE "C" NOT NULL,
        etag TEXT NOT NULL,
        doc TEXT NOT NULL);
     CREATE INDEX registrations_by_group ON registrations(group_lower, id_lower);
     CREATE UNIQUE INDEX registrations_by_operation ON registrations(operation_id);
     CREATE TABLE devices (device_id TEXT COLLATE "C" PRIMARY KEY, etag TEXT NOT NULL, doc TEXT NOT NULL);
     CREATE TABLE twins (
        device_id TEXT COLLATE "C" PRIMARY KEY REFERENCES devices(device_id) ON DELETE CASCADE,
        doc TEXT NOT NULL);
     CREATE TABLE modules (
        device_id TEXT COLLATE "C" NOT NULL REFERENCES devices(device_id) ON DELETE CASCADE,
        module_id TEXT COLLATE "C" NOT NULL,
        etag TEXT NOT NULL,
        doc TEXT NOT NULL,
        twin TEXT NOT NULL,
        PRIMARY KEY (device_id, module_id));
     CREATE TABLE c2d (seq BIGSERIAL PRIMARY KEY, device_id TEXT COLLATE "C" NOT NULL, doc TEXT NOT NULL);
     CREATE INDEX c2d_by_device ON c2d(device_id, seq);
     CREATE TABLE mqtt_sessions (client_id TEXT COLLATE "C" PRIMARY KEY, doc TEXT NOT NULL, updated_utc TEXT NOT NULL);
     CREATE TABLE configurations (
        id TEXT COLLATE "C" PRIMARY KEY,
        etag TEXT NOT NULL,
        revision BIGINT NOT NULL,
        priority BIGINT NOT NULL,
        created_utc TEXT NOT NULL,
        doc TEXT NOT NULL);
     CREATE TABLE device_manual_content (
        device_id TEXT COLLATE "C" PRIMARY KEY REFERENCES devices(device_id) ON DELETE CASCADE,
        doc TEXT NOT NULL,
        updated_utc TEXT NOT NULL);
     CREATE TABLE auth_failures (seq BIGSERIAL PRIMARY KEY, doc TEXT NOT NULL);
     CREATE TABLE linked_hubs (name_lower TEXT COLLATE "C" PRIMARY KEY, doc TEXT NOT NULL);
     -- The telemetry log. `seq` (the Event Hubs offset) and `partition_seq` are assigned by
     -- the appender under the `telemetry_log` row lock, so both are gapless and commit in order.
     CREATE TABLE telemetry (
        seq BIGINT PRIMARY KEY,
        device_id TEXT COLLATE "C" NOT NULL,
        module_id TEXT COLLATE "C",
        enqueued_utc TEXT NOT NULL,
        enqueued_ms BIGINT NOT NULL,
        system_properties TEXT NOT NULL,
        properties TEXT NOT NULL,
        body BYTEA NOT NULL,
        partition_id INTEGER NOT NULL,
        partition_seq BIGINT NOT NULL);
     CREATE UNIQUE INDEX telemetry_by_partition ON telemetry(partition_id, partition_seq);
     CREATE INDEX telemetry_by_offset ON telemetry(partition_id, seq);
     CREATE INDEX telemetry_by_time ON telemetry(partition_id, enqueued_ms);
     CREATE TABLE telemetry_log (id INTEGER PRIMARY KEY CHECK (id = 1), next_seq BIGINT NOT NULL);
     INSERT INTO telemetry_log (id, next_seq) VALUES (1, 1);
     -- One row per partition: the next per-partition sequence number and the newest message's
     -- offset and enqueued time (kept when retention deletes the messages).
     CREATE TABLE telemetry_partitions (
        partition_id INTEGER PRIMARY KEY,
        next_seq BIGINT NOT NULL,
        last_offset BIGINT NOT NULL,
        last_enqueued_ms BIGINT NOT NULL);
     CREATE TABLE consumer_groups (name TEXT COLLATE "C" PRIMARY KEY, offset_seq BIGINT NOT NULL, updated_utc TEXT NOT NULL);
     CREATE TABLE event_hub_consumer_groups (
        name_lower TEXT COLLATE "C" PRIMARY KEY,
        name TEXT COLLATE "C" NOT NULL,
        created_utc TEXT NOT NULL);"#,
    // 2: which node holds each identity's live connection (a cluster's presence)
    r#"CREATE TABLE presence (
        identity TEXT COLLATE "C" PRIMARY KEY,
        node TEXT COLLATE "C",
        state_updated_ms BIGINT NOT NULL,
        last_activity_ms BIGINT NOT NULL);"#,
    // 3: C2D feedback: each message's request by queue sequence number, and the queue of
    // feedback records (oldest = lowest id), as the SQLite backend's migration 12.
    "CREATE TABLE c2d_feedback_requests (seq BIGINT PRIMARY KEY, doc TEXT NOT NULL);
     CREATE TABLE c2d_feedback (id BIGSERIAL PRIMARY KEY, doc TEXT NOT NULL);",
    // 4: HTTPS receive locks of C2D messages, as the SQLite backend's migration 13.
    r#"ALTER TABLE c2d ADD COLUMN lock_token TEXT COLLATE "C";
     ALTER TABLE c2d ADD COLUMN lock_until_ms BIGINT;"#,
    // 5: the sender's connection system properties in compact form, as the SQLite backend's
    // migration 15 (`SenderAuth::code`; NULL: the system-properties JSON holds them)
    "ALTER TABLE telemetry ADD COLUMN sender SMALLINT;",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The stored schema version (0 for an empty database).
pub(crate) async fn stored_version(c: &impl GenericClient) -> Result<i64, tokio_postgres::Error> {
    let exists: bool = c
        .query_one("SELECT to_regclass('schema_version') IS NOT NULL", &[])
        .await?
        .get(0);
    if !exists {
        c.batch_execute("CREATE TABLE schema_version (version BIGINT NOT NULL)")
            .await?;
        return Ok(0);
    }
    let row = c
        .query_opt("SELECT version FROM schema_version", &[])
        .await?;
    Ok(row.map_or(0, |r| r.get(0)))
}

/// Applies the missing migrations, one transaction each; refuses a newer schema.
pub(crate) async fn migrate(c: &mut deadpool_postgres::Object) -> Result<(), ConnectError> {
    let fail = |version: i64| {
        move |e: tokio_postgres::Error| ConnectError::Migration {
            version,
            reason: e.to_string(),
        }
    };
    let tx = c.transaction().await.map_err(fail(0))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(fail(0))?;
    let current = stored_version(&tx).await.map_err(fail(0))?;
    if current > SCHEMA_VERSION {
        return Err(ConnectError::SchemaTooNew {
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = i as i64 + 1;
        tx.batch_execute(sql).await.map_err(fail(version))?;
        tx.execute("DELETE FROM schema_version", &[])
            .await
            .map_err(fail(version))?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES ($1)",
            &[&version],
        )
        .await
        .map_err(fail(version))?;
        tracing::info!(version, "PostgreSQL store migrated");
    }
    tx.commit().await.map_err(fail(SCHEMA_VERSION))?;
    Ok(())
}
