//! Schema migrations, applied in order; `PRAGMA user_version` records how many ran.

pub const MIGRATIONS: &[&str] = &[
    // 1: settings, DPS enrollments/groups/registrations, hub devices + twins
    "CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     CREATE TABLE enrollments (id_lower TEXT PRIMARY KEY, etag TEXT NOT NULL, doc TEXT NOT NULL);
     CREATE TABLE enrollment_groups (id_lower TEXT PRIMARY KEY, etag TEXT NOT NULL, doc TEXT NOT NULL);
     CREATE TABLE registrations (
        id_lower TEXT PRIMARY KEY,
        group_lower TEXT,
        operation_id TEXT NOT NULL,
        etag TEXT NOT NULL,
        doc TEXT NOT NULL);
     CREATE INDEX registrations_by_group ON registrations(group_lower, id_lower);
     CREATE UNIQUE INDEX registrations_by_operation ON registrations(operation_id);
     CREATE TABLE devices (device_id TEXT PRIMARY KEY, etag TEXT NOT NULL, doc TEXT NOT NULL);
     CREATE TABLE twins (device_id TEXT PRIMARY KEY REFERENCES devices(device_id) ON DELETE CASCADE, doc TEXT NOT NULL);",
    // 2: the built-in telemetry endpoint, an append-only log
    "CREATE TABLE telemetry (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        module_id TEXT,
        enqueued_utc TEXT NOT NULL,
        system_properties TEXT NOT NULL,
        properties TEXT NOT NULL,
        body BLOB NOT NULL);",
    // 3: cloud-to-device queues
    "CREATE TABLE c2d (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        device_id TEXT NOT NULL,
        doc TEXT NOT NULL);
     CREATE INDEX c2d_by_device ON c2d(device_id, seq);",
    // 4: consumer-group checkpoints of the built-in telemetry endpoint
    "CREATE TABLE consumer_groups (name TEXT PRIMARY KEY, offset_seq INTEGER NOT NULL, updated_utc TEXT NOT NULL);
     CREATE INDEX telemetry_by_time ON telemetry(enqueued_utc);",
    // 5: module identities and module twins
    "CREATE TABLE modules (
        device_id TEXT NOT NULL REFERENCES devices(device_id) ON DELETE CASCADE,
        module_id TEXT NOT NULL,
        etag TEXT NOT NULL,
        doc TEXT NOT NULL,
        twin TEXT NOT NULL,
        PRIMARY KEY (device_id, module_id));",
    // 6: persistent MQTT sessions (subscriptions by client identity)
    "CREATE TABLE mqtt_sessions (client_id TEXT PRIMARY KEY, doc TEXT NOT NULL, updated_utc TEXT NOT NULL);",
    // 7: configurations / IoT Edge deployments at scale, and per-device manual edge content
    // (`applyConfigurationContent`, `set-modules`)
    "CREATE TABLE configurations (
        id TEXT PRIMARY KEY,
        etag TEXT NOT NULL,
        revision INTEGER NOT NULL,
        priority INTEGER NOT NULL,
        created_utc TEXT NOT NULL,
        doc TEXT NOT NULL);
     CREATE TABLE device_manual_content (
        device_id TEXT PRIMARY KEY REFERENCES devices(device_id) ON DELETE CASCADE,
        doc TEXT NOT NULL,
        updated_utc TEXT NOT NULL);",
    // 8: the recent authentication failures (a bounded window, newest = highest seq)
    "CREATE TABLE auth_failures (seq INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL);",
    // 9: the partitioned telemetry log (the Event Hub-compatible endpoint) and its consumer
    // groups. Rows stored before have NULL partitions until `init_partitions` assigns them.
    "ALTER TABLE telemetry ADD COLUMN partition_id INTEGER;
     ALTER TABLE telemetry ADD COLUMN partition_seq INTEGER;
     ALTER TABLE telemetry ADD COLUMN enqueued_ms INTEGER;
     CREATE UNIQUE INDEX telemetry_by_partition ON telemetry(partition_id, partition_seq);
     CREATE TABLE telemetry_partitions (
        partition_id INTEGER PRIMARY KEY,
        next_seq INTEGER NOT NULL,
        last_offset INTEGER NOT NULL,
        last_enqueued_ms INTEGER NOT NULL);
     CREATE TABLE event_hub_consumer_groups (
        name_lower TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        created_utc TEXT NOT NULL);",
    // 10: the hubs linked to the DPS instance (by lower-cased host name)
    "CREATE TABLE linked_hubs (name_lower TEXT PRIMARY KEY, doc TEXT NOT NULL);",
    // 11: which node holds each identity's live connection (a cluster's presence)
    "CREATE TABLE presence (
        identity TEXT PRIMARY KEY,
        node TEXT,
        state_updated_ms INTEGER NOT NULL,
        last_activity_ms INTEGER NOT NULL);",
    // 12: C2D feedback: each message's request by queue sequence number, and the queue of
    // feedback records (oldest = lowest id)
    "CREATE TABLE c2d_feedback_requests (seq INTEGER PRIMARY KEY, doc TEXT NOT NULL);
     CREATE TABLE c2d_feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL);",
    // 13: HTTPS receive locks of C2D messages (token and end in unix milliseconds; NULL: not
    // locked), in the store so that every node sharing it knows them
    "ALTER TABLE c2d ADD COLUMN lock_token TEXT;
     ALTER TABLE c2d ADD COLUMN lock_until_ms INTEGER;",
    // 14: no index on the telemetry's text time: every append paid an index insert with string
    // compares for it; retention now finds its cut-off by the numbering (`retention`)
    "DROP INDEX IF EXISTS telemetry_by_time;",
    // 15: the sender's connection system properties in compact form (`SenderAuth::code`; NULL:
    // a row whose system-properties JSON holds them, as every row before this did)
    "ALTER TABLE telemetry ADD COLUMN sender INTEGER;",
];

pub fn migrate(conn: &mut rusqlite::Connection) -> rusqlite::Result<()> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
        tx.commit()?;
        tracing::info!(version = i + 1, "store migrated");
    }
    Ok(())
}
