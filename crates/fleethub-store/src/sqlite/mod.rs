//! The embedded SQLite backend: WAL, `synchronous=NORMAL` (a committed write survives a process
//! kill) or `FULL` ([`Durability::Power`]: it also survives a power loss), one writer thread
//! with group commit, a pool of reader connections.

mod auth_failures;
mod backup;
mod c2d;
mod c2d_feedback;
mod cached;
mod configurations;
mod consumer_groups;
mod docs;
mod dps;
mod durability;
mod linked_hubs;
mod partitions;
mod pool;
mod presence;
mod registry;
mod retention;
mod schema;
mod sessions;
mod settings;
mod telemetry;
mod writer;

use crate::{
    Assignment, C2dMessage, DeviceRecord, ModuleRecord, Page, PageRequest, Precondition,
    RegistrationRecord, Result, StoreError, TelemetryMessage,
};
use async_trait::async_trait;
use cached::CachedStatements;
use docs::{check, check_delete, decode, encode, get_doc, get_row, new_etag, upsert};
use fleethub_api::{DeviceRegistrationState, EnrollmentGroup, IndividualEnrollment, time::now_utc};
use pool::Pool;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;

pub use durability::Durability;

const ENROLLMENTS: &str = "enrollments";
const GROUPS: &str = "enrollment_groups";

pub struct SqliteStore {
    pool: Arc<Pool>,
    /// The telemetry log's partition count once a committed write fixed it (0 before): it
    /// never changes afterwards, so appends need not read it.
    partition_count: std::sync::atomic::AtomicU32,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations, with the
    /// default [`Durability::Process`]. The file is made readable by its owner only: it holds
    /// keys.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        Self::open_with(path, Durability::default())
    }

    /// [`SqliteStore::open`] with the given durability.
    pub fn open_with(path: &Path, durability: Durability) -> Result<SqliteStore> {
        let mut conn = pool::open_connection(path, durability)
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        restrict_permissions(path);
        schema::migrate(&mut conn)
            .map_err(|e| StoreError::Backend(format!("migrating {}: {e}", path.display())))?;
        for suffix in ["-wal", "-shm"] {
            let mut p = path.as_os_str().to_owned();
            p.push(suffix);
            restrict_permissions(Path::new(&p));
        }
        Ok(SqliteStore {
            pool: Pool::start(path, durability, conn),
            partition_count: std::sync::atomic::AtomicU32::new(0),
        })
    }
}

#[cfg(unix)]
fn restrict_permissions(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if path.exists() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    }
}
#[cfg(not(unix))]
fn restrict_permissions(_: &Path) {}

fn lower(s: &str) -> String {
    s.to_ascii_lowercase()
}

fn get_registration_row(conn: &Connection, key: &str) -> Result<Option<RegistrationRecord>> {
    let row: Option<(String, String)> = conn
        .query_row_cached(
            "SELECT operation_id, doc FROM registrations WHERE id_lower = ?1",
            params![key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        Some((operation_id, doc)) => Ok(Some(RegistrationRecord {
            state: decode("registration", key, &doc)?,
            operation_id,
        })),
        None => Ok(None),
    }
}

fn get_device_row(conn: &Connection, device_id: &str) -> Result<Option<DeviceRecord>> {
    let row: Option<(String, Option<String>)> = conn
        .query_row_cached(
            "SELECT d.doc, t.doc FROM devices d LEFT JOIN twins t ON t.device_id = d.device_id
             WHERE d.device_id = ?1",
            params![device_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    match row {
        Some((d, t)) => {
            let device: fleethub_api::Device = decode("device", device_id, &d)?;
            let twin = match t {
                Some(t) => decode("twin", device_id, &t)?,
                None => fleethub_api::Twin {
                    device_id: device_id.to_string(),
                    ..Default::default()
                },
            };
            Ok(Some(DeviceRecord { device, twin }))
        }
        None => Ok(None),
    }
}

fn get_module_row(
    conn: &Connection,
    device_id: &str,
    module_id: &str,
) -> Result<Option<ModuleRecord>> {
    let row: Option<(String, String)> = conn
        .query_row_cached(
            "SELECT doc, twin FROM modules WHERE device_id = ?1 AND module_id = ?2",
            params![device_id, module_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let id = format!("{device_id}/{module_id}");
    match row {
        Some((d, t)) => Ok(Some(ModuleRecord {
            module: decode("module", &id, &d)?,
            twin: decode("module twin", &id, &t)?,
        })),
        None => Ok(None),
    }
}

/// The stored etag of a device, if it exists (what a conditional write or delete checks).
pub(super) fn stored_device_etag(conn: &Connection, device_id: &str) -> Result<Option<String>> {
    Ok(conn
        .query_row_cached(
            "SELECT etag FROM devices WHERE device_id = ?1",
            params![device_id],
            |r| r.get(0),
        )
        .optional()?)
}

fn write_device(
    conn: &Connection,
    mut rec: DeviceRecord,
    cond: &Precondition,
) -> Result<DeviceRecord> {
    let id = rec.device.device_id.clone();
    // `Any` holds whatever is stored (a DPS assignment writes the device this way): no need to
    // read the current etag.
    if !matches!(cond, Precondition::Any) {
        check(
            cond,
            "device",
            &id,
            stored_device_etag(conn, &id)?.as_deref(),
        )?;
    }
    let etag = device_etag();
    rec.device.etag = Some(etag.clone());
    rec.twin.device_etag = Some(etag.clone());
    conn.execute_cached(
        "INSERT INTO devices (device_id, etag, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT(device_id) DO UPDATE SET etag = excluded.etag, doc = excluded.doc",
        params![id, etag, encode(&rec.device)?],
    )?;
    conn.execute_cached(
        "INSERT INTO twins (device_id, doc) VALUES (?1, ?2)
         ON CONFLICT(device_id) DO UPDATE SET doc = excluded.doc",
        params![id, encode(&rec.twin)?],
    )?;
    Ok(rec)
}

/// Hub device etags are opaque base64 strings, as Azure's are.
fn device_etag() -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for b in uuid::Uuid::new_v4().as_bytes().iter().take(9) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod append_tests;
#[cfg(test)]
mod tests;
