//! The embedded SQLite backend: WAL, `synchronous=NORMAL` (a committed write survives a process
//! kill), one writer thread with group commit, a pool of reader connections.

mod configurations;
mod docs;
mod pool;
mod schema;

use crate::{
    Assignment, C2dMessage, DeviceRecord, ModuleRecord, Page, PageRequest, Precondition,
    RegistrationRecord, Result, Store, StoreError, TelemetryMessage, etag_matches,
};
use async_trait::async_trait;
use docs::{check, decode, encode, get_doc, get_row, new_etag, upsert};
use fleethub_api::{
    Configuration, ConfigurationContent, DeviceRegistrationState, EnrollmentGroup,
    IndividualEnrollment, time::now_utc,
};
use pool::Pool;
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::Arc;

const ENROLLMENTS: &str = "enrollments";
const GROUPS: &str = "enrollment_groups";

pub struct SqliteStore {
    pool: Arc<Pool>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies migrations.
    /// The file is made readable by its owner only: it holds keys.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        let mut conn = pool::open_connection(path)
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
            pool: Pool::start(path, conn),
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
        .query_row(
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
        .query_row(
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
        .query_row(
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

fn write_device(
    conn: &Connection,
    mut rec: DeviceRecord,
    cond: &Precondition,
) -> Result<DeviceRecord> {
    let id = rec.device.device_id.clone();
    let current: Option<String> = conn
        .query_row(
            "SELECT etag FROM devices WHERE device_id = ?1",
            params![id],
            |r| r.get(0),
        )
        .optional()?;
    check(cond, "device", &id, current.as_deref())?;
    let etag = device_etag();
    rec.device.etag = Some(etag.clone());
    rec.twin.device_etag = Some(etag.clone());
    conn.execute(
        "INSERT INTO devices (device_id, etag, doc) VALUES (?1, ?2, ?3)
         ON CONFLICT(device_id) DO UPDATE SET etag = excluded.etag, doc = excluded.doc",
        params![id, etag, encode(&rec.device)?],
    )?;
    conn.execute(
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

#[async_trait]
impl Store for SqliteStore {
    async fn get_setting(&self, key: &str) -> Result<Option<String>> {
        let key = key.to_string();
        self.pool
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT value FROM settings WHERE key = ?1",
                    params![key],
                    |r| r.get(0),
                )
                .optional()?)
            })
            .await
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        let (key, value) = (key.to_string(), value.to_string());
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
                    params![key, value],
                )?;
                Ok(c.query_row(
                    "SELECT value FROM settings WHERE key = ?1",
                    params![key],
                    |r| r.get(0),
                )?)
            })
            .await
    }

    async fn put_setting(&self, key: &str, value: &str) -> Result<()> {
        let (key, value) = (key.to_string(), value.to_string());
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO settings (key, value) VALUES (?1, ?2)
                     ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    params![key, value],
                )?;
                Ok(())
            })
            .await
    }

    async fn get_enrollment(&self, registration_id: &str) -> Result<Option<IndividualEnrollment>> {
        let key = lower(registration_id);
        self.pool
            .read(move |c| get_doc(c, ENROLLMENTS, "enrollment", &key))
            .await
    }

    async fn put_enrollment(
        &self,
        mut e: IndividualEnrollment,
        cond: Precondition,
    ) -> Result<IndividualEnrollment> {
        let key = lower(&e.registration_id);
        self.pool
            .write(move |c| {
                let current = get_row(c, ENROLLMENTS, "id_lower", &key)?;
                check(
                    &cond,
                    "enrollment",
                    &e.registration_id,
                    current.as_ref().map(|r| r.0.as_str()),
                )?;
                let now = now_utc();
                let created = match &current {
                    Some((_, doc)) => decode::<IndividualEnrollment>("enrollment", &key, doc)?
                        .created_date_time_utc
                        .unwrap_or_else(|| now.clone()),
                    None => now.clone(),
                };
                e.created_date_time_utc = Some(created);
                e.last_updated_date_time_utc = Some(now);
                e.etag = Some(new_etag());
                e.registration_state = None;
                upsert(
                    c,
                    ENROLLMENTS,
                    &key,
                    e.etag.as_deref().unwrap_or(""),
                    &encode(&e)?,
                )?;
                Ok(e)
            })
            .await
    }

    async fn delete_enrollment(&self, registration_id: &str, if_match: Option<&str>) -> Result<()> {
        let key = lower(registration_id);
        let if_match = if_match.map(str::to_string);
        self.pool
            .write(move |c| docs::delete(c, ENROLLMENTS, "enrollment", &key, if_match.as_deref()))
            .await
    }

    async fn list_enrollments(&self, page: PageRequest) -> Result<Page<IndividualEnrollment>> {
        self.pool
            .read(move |c| docs::list(c, ENROLLMENTS, "id_lower", "enrollment", None, &page))
            .await
    }

    async fn get_group(&self, group_id: &str) -> Result<Option<EnrollmentGroup>> {
        let key = lower(group_id);
        self.pool
            .read(move |c| get_doc(c, GROUPS, "enrollment group", &key))
            .await
    }

    async fn put_group(
        &self,
        mut g: EnrollmentGroup,
        cond: Precondition,
    ) -> Result<EnrollmentGroup> {
        let key = lower(&g.enrollment_group_id);
        self.pool
            .write(move |c| {
                let current = get_row(c, GROUPS, "id_lower", &key)?;
                check(
                    &cond,
                    "enrollment group",
                    &g.enrollment_group_id,
                    current.as_ref().map(|r| r.0.as_str()),
                )?;
                let now = now_utc();
                let created = match &current {
                    Some((_, doc)) => decode::<EnrollmentGroup>("enrollment group", &key, doc)?
                        .created_date_time_utc
                        .unwrap_or_else(|| now.clone()),
                    None => now.clone(),
                };
                g.created_date_time_utc = Some(created);
                g.last_updated_date_time_utc = Some(now);
                g.etag = Some(new_etag());
                upsert(
                    c,
                    GROUPS,
                    &key,
                    g.etag.as_deref().unwrap_or(""),
                    &encode(&g)?,
                )?;
                Ok(g)
            })
            .await
    }

    async fn delete_group(&self, group_id: &str, if_match: Option<&str>) -> Result<()> {
        let key = lower(group_id);
        let if_match = if_match.map(str::to_string);
        self.pool
            .write(move |c| docs::delete(c, GROUPS, "enrollment group", &key, if_match.as_deref()))
            .await
    }

    async fn list_groups(&self, page: PageRequest) -> Result<Page<EnrollmentGroup>> {
        self.pool
            .read(move |c| docs::list(c, GROUPS, "id_lower", "enrollment group", None, &page))
            .await
    }

    async fn get_registration(&self, registration_id: &str) -> Result<Option<RegistrationRecord>> {
        let key = lower(registration_id);
        self.pool.read(move |c| get_registration_row(c, &key)).await
    }

    async fn get_registration_by_operation(
        &self,
        operation_id: &str,
    ) -> Result<Option<RegistrationRecord>> {
        let op = operation_id.to_string();
        self.pool
            .read(move |c| {
                let key: Option<String> = c
                    .query_row(
                        "SELECT id_lower FROM registrations WHERE operation_id = ?1",
                        params![op],
                        |r| r.get(0),
                    )
                    .optional()?;
                match key {
                    Some(k) => get_registration_row(c, &k),
                    None => Ok(None),
                }
            })
            .await
    }

    async fn delete_registration(
        &self,
        registration_id: &str,
        if_match: Option<&str>,
    ) -> Result<()> {
        let key = lower(registration_id);
        let if_match = if_match.map(str::to_string);
        self.pool
            .write(move |c| {
                docs::delete(
                    c,
                    "registrations",
                    "registration",
                    &key,
                    if_match.as_deref(),
                )
            })
            .await
    }

    async fn list_registrations(
        &self,
        group_id: Option<&str>,
        page: PageRequest,
    ) -> Result<Page<DeviceRegistrationState>> {
        let group = group_id.map(lower);
        self.pool
            .read(move |c| {
                let filter = group.as_deref().map(|g| ("group_lower", g));
                docs::list(
                    c,
                    "registrations",
                    "id_lower",
                    "registration",
                    filter,
                    &page,
                )
            })
            .await
    }

    async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        let id = device_id.to_string();
        self.pool.read(move |c| get_device_row(c, &id)).await
    }

    async fn put_device(&self, record: DeviceRecord, cond: Precondition) -> Result<DeviceRecord> {
        self.pool
            .write(move |c| write_device(c, record, &cond))
            .await
    }

    async fn delete_device(&self, device_id: &str, if_match: Option<&str>) -> Result<()> {
        let id = device_id.to_string();
        let if_match = if_match.map(str::to_string);
        self.pool
            .write(move |c| {
                let etag: Option<String> = c
                    .query_row(
                        "SELECT etag FROM devices WHERE device_id = ?1",
                        params![id],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(etag) = etag else {
                    return Err(StoreError::NotFound { kind: "device", id });
                };
                if let Some(want) = if_match.as_deref().filter(|s| !s.trim().is_empty())
                    && !etag_matches(want, Some(&etag))
                {
                    return Err(StoreError::EtagMismatch { kind: "device", id });
                }
                c.execute("DELETE FROM twins WHERE device_id = ?1", params![id])?;
                c.execute("DELETE FROM c2d WHERE device_id = ?1", params![id])?;
                c.execute("DELETE FROM modules WHERE device_id = ?1", params![id])?;
                c.execute(
                    "DELETE FROM device_manual_content WHERE device_id = ?1",
                    params![id],
                )?;
                c.execute("DELETE FROM devices WHERE device_id = ?1", params![id])?;
                Ok(())
            })
            .await
    }

    async fn list_devices(&self, page: PageRequest) -> Result<Page<DeviceRecord>> {
        self.pool
            .read(move |c| {
                let ids: Page<String> = {
                    let after = docs::decode_continuation(&page.continuation)?;
                    let limit = docs::page_limit(&page);
                    let mut stmt = c.prepare_cached(
                        "SELECT device_id FROM devices WHERE device_id > ?1 ORDER BY device_id LIMIT ?2",
                    )?;
                    let mut ids: Vec<String> = stmt
                        .query_map(params![after, (limit + 1) as i64], |r| r.get(0))?
                        .collect::<rusqlite::Result<_>>()?;
                    let more = ids.len() > limit;
                    ids.truncate(limit);
                    let continuation = if more {
                        ids.last().map(|k| docs::encode_continuation(k))
                    } else {
                        None
                    };
                    Page { items: ids, continuation }
                };
                let mut items = Vec::with_capacity(ids.items.len());
                for id in &ids.items {
                    if let Some(d) = get_device_row(c, id)? {
                        items.push(d);
                    }
                }
                Ok(Page { items, continuation: ids.continuation })
            })
            .await
    }

    async fn commit_assignment(&self, a: Assignment) -> Result<RegistrationRecord> {
        self.pool
            .write(move |c| {
                if let Some(dev) = a.device {
                    write_device(c, dev, &Precondition::Any)?;
                }
                let mut rec = a.registration;
                let key = lower(&rec.state.registration_id);
                rec.state.etag = Some(new_etag());
                let group = rec.state.enrollment_group_id.as_deref().map(lower);
                c.execute(
                    "INSERT INTO registrations (id_lower, group_lower, operation_id, etag, doc)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(id_lower) DO UPDATE SET group_lower = excluded.group_lower,
                        operation_id = excluded.operation_id, etag = excluded.etag, doc = excluded.doc",
                    params![key, group, rec.operation_id, rec.state.etag, encode(&rec.state)?],
                )?;
                Ok(rec)
            })
            .await
    }

    async fn append_telemetry(
        &self,
        messages: Vec<TelemetryMessage>,
    ) -> Result<Vec<TelemetryMessage>> {
        self.pool
            .write(move |c| {
                let mut out = Vec::with_capacity(messages.len());
                let mut stmt = c.prepare_cached(
                    "INSERT INTO telemetry (device_id, module_id, enqueued_utc, system_properties, properties, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?;
                for mut m in messages {
                    stmt.execute(params![
                        m.device_id,
                        m.module_id,
                        m.enqueued_time_utc,
                        encode(&m.system_properties)?,
                        encode(&m.properties)?,
                        m.body,
                    ])?;
                    m.sequence_number = c.last_insert_rowid() as u64;
                    out.push(m);
                }
                Ok(out)
            })
            .await
    }

    async fn read_telemetry(&self, after: u64, limit: usize) -> Result<Vec<TelemetryMessage>> {
        self.pool
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, device_id, module_id, enqueued_utc, system_properties, properties, body
                     FROM telemetry WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![after as i64, limit.min(10_000) as i64], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, Vec<u8>>(6)?,
                    ))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (seq, device_id, module_id, enq, sys, props, body) = row?;
                    out.push(TelemetryMessage {
                        sequence_number: seq as u64,
                        system_properties: decode("telemetry", &seq.to_string(), &sys)?,
                        properties: decode("telemetry", &seq.to_string(), &props)?,
                        device_id,
                        module_id,
                        enqueued_time_utc: enq,
                        body,
                    });
                }
                Ok(out)
            })
            .await
    }

    async fn enqueue_c2d(&self, mut msg: C2dMessage, max_queued: usize) -> Result<C2dMessage> {
        self.pool
            .write(move |c| {
                let n: i64 = c.query_row(
                    "SELECT COUNT(*) FROM c2d WHERE device_id = ?1",
                    params![msg.device_id],
                    |r| r.get(0),
                )?;
                if n as usize >= max_queued {
                    return Err(StoreError::QueueFull {
                        device_id: msg.device_id,
                        max: max_queued,
                    });
                }
                c.execute(
                    "INSERT INTO c2d (device_id, doc) VALUES (?1, ?2)",
                    params![msg.device_id, encode(&msg)?],
                )?;
                msg.sequence_number = c.last_insert_rowid() as u64;
                Ok(msg)
            })
            .await
    }

    async fn list_c2d(&self, device_id: &str, limit: usize) -> Result<Vec<C2dMessage>> {
        let id = device_id.to_string();
        self.pool
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT seq, doc FROM c2d WHERE device_id = ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows = stmt.query_map(params![id, limit as i64], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
                })?;
                let mut out = Vec::new();
                for row in rows {
                    let (seq, doc) = row?;
                    let mut m: C2dMessage = decode("c2d message", &seq.to_string(), &doc)?;
                    m.sequence_number = seq as u64;
                    out.push(m);
                }
                Ok(out)
            })
            .await
    }

    async fn update_c2d(&self, msg: C2dMessage) -> Result<()> {
        self.pool
            .write(move |c| {
                let n = c.execute(
                    "UPDATE c2d SET doc = ?2 WHERE seq = ?1",
                    params![msg.sequence_number as i64, encode(&msg)?],
                )?;
                if n == 0 {
                    return Err(StoreError::NotFound {
                        kind: "c2d message",
                        id: msg.sequence_number.to_string(),
                    });
                }
                Ok(())
            })
            .await
    }

    async fn delete_c2d(&self, sequence_number: u64) -> Result<()> {
        self.pool
            .write(move |c| {
                c.execute(
                    "DELETE FROM c2d WHERE seq = ?1",
                    params![sequence_number as i64],
                )?;
                Ok(())
            })
            .await
    }

    async fn purge_c2d(&self, device_id: &str) -> Result<u64> {
        let id = device_id.to_string();
        self.pool
            .write(move |c| {
                Ok(c.execute("DELETE FROM c2d WHERE device_id = ?1", params![id])? as u64)
            })
            .await
    }

    async fn prune_telemetry(&self, before_utc: &str) -> Result<u64> {
        let before = before_utc.to_string();
        self.pool
            .write(move |c| {
                Ok(c.execute(
                    "DELETE FROM telemetry WHERE enqueued_utc < ?1",
                    params![before],
                )? as u64)
            })
            .await
    }

    async fn get_checkpoint(&self, group: &str) -> Result<u64> {
        let g = group.to_string();
        self.pool
            .read(move |c| {
                let v: Option<i64> = c
                    .query_row(
                        "SELECT offset_seq FROM consumer_groups WHERE name = ?1",
                        params![g],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(v.unwrap_or(0) as u64)
            })
            .await
    }

    async fn set_checkpoint(&self, group: &str, sequence_number: u64) -> Result<()> {
        let g = group.to_string();
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO consumer_groups (name, offset_seq, updated_utc) VALUES (?1, ?2, ?3)
                     ON CONFLICT(name) DO UPDATE SET offset_seq = excluded.offset_seq, updated_utc = excluded.updated_utc",
                    params![g, sequence_number as i64, now_utc()],
                )?;
                Ok(())
            })
            .await
    }

    async fn get_module(&self, device_id: &str, module_id: &str) -> Result<Option<ModuleRecord>> {
        let (d, m) = (device_id.to_string(), module_id.to_string());
        self.pool.read(move |c| get_module_row(c, &d, &m)).await
    }

    async fn put_module(&self, mut rec: ModuleRecord, cond: Precondition) -> Result<ModuleRecord> {
        self.pool
            .write(move |c| {
                let (d, m) = (rec.module.device_id.clone(), rec.module.module_id.clone());
                let id = format!("{d}/{m}");
                let device: Option<i64> =
                    c.query_row("SELECT 1 FROM devices WHERE device_id = ?1", params![d], |r| r.get(0)).optional()?;
                if device.is_none() {
                    return Err(StoreError::NotFound { kind: "device", id: d });
                }
                let current: Option<String> = c
                    .query_row(
                        "SELECT etag FROM modules WHERE device_id = ?1 AND module_id = ?2",
                        params![d, m],
                        |r| r.get(0),
                    )
                    .optional()?;
                check(&cond, "module", &id, current.as_deref())?;
                let etag = device_etag();
                rec.module.etag = Some(etag.clone());
                c.execute(
                    "INSERT INTO modules (device_id, module_id, etag, doc, twin) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT(device_id, module_id) DO UPDATE SET etag = excluded.etag, doc = excluded.doc, twin = excluded.twin",
                    params![d, m, etag, encode(&rec.module)?, encode(&rec.twin)?],
                )?;
                Ok(rec)
            })
            .await
    }

    async fn delete_module(
        &self,
        device_id: &str,
        module_id: &str,
        if_match: Option<&str>,
    ) -> Result<()> {
        let (d, m) = (device_id.to_string(), module_id.to_string());
        let if_match = if_match.map(str::to_string);
        self.pool
            .write(move |c| {
                let id = format!("{d}/{m}");
                let etag: Option<String> = c
                    .query_row(
                        "SELECT etag FROM modules WHERE device_id = ?1 AND module_id = ?2",
                        params![d, m],
                        |r| r.get(0),
                    )
                    .optional()?;
                let Some(etag) = etag else {
                    return Err(StoreError::NotFound { kind: "module", id });
                };
                if let Some(want) = if_match.as_deref().filter(|s| !s.trim().is_empty())
                    && !etag_matches(want, Some(&etag))
                {
                    return Err(StoreError::EtagMismatch { kind: "module", id });
                }
                c.execute(
                    "DELETE FROM modules WHERE device_id = ?1 AND module_id = ?2",
                    params![d, m],
                )?;
                Ok(())
            })
            .await
    }

    async fn list_modules(&self, device_id: &str) -> Result<Vec<ModuleRecord>> {
        let d = device_id.to_string();
        self.pool
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT module_id FROM modules WHERE device_id = ?1 ORDER BY module_id",
                )?;
                let ids: Vec<String> = stmt
                    .query_map(params![d], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                let mut out = Vec::new();
                for m in ids {
                    if let Some(r) = get_module_row(c, &d, &m)? {
                        out.push(r);
                    }
                }
                Ok(out)
            })
            .await
    }

    async fn get_configuration(&self, id: &str) -> Result<Option<Configuration>> {
        let id = id.to_string();
        self.pool.read(move |c| configurations::get(c, &id)).await
    }

    async fn put_configuration(
        &self,
        cfg: Configuration,
        cond: Precondition,
    ) -> Result<Configuration> {
        self.pool
            .write(move |c| configurations::put(c, cfg, &cond))
            .await
    }

    async fn delete_configuration(&self, id: &str, if_match: Option<&str>) -> Result<()> {
        let id = id.to_string();
        let if_match = if_match.map(str::to_string);
        self.pool
            .write(move |c| configurations::delete(c, &id, if_match.as_deref()))
            .await
    }

    async fn list_configurations(&self, max: usize) -> Result<Vec<Configuration>> {
        self.pool.read(move |c| configurations::list(c, max)).await
    }

    async fn get_manual_content(&self, device_id: &str) -> Result<Option<ConfigurationContent>> {
        let id = device_id.to_string();
        self.pool
            .read(move |c| configurations::get_manual(c, &id))
            .await
    }

    async fn put_manual_content(
        &self,
        device_id: &str,
        content: ConfigurationContent,
    ) -> Result<()> {
        let id = device_id.to_string();
        self.pool
            .write(move |c| configurations::put_manual(c, &id, &content))
            .await
    }

    async fn get_mqtt_session(&self, client_id: &str) -> Result<Option<String>> {
        let id = client_id.to_string();
        self.pool
            .read(move |c| {
                Ok(c.query_row(
                    "SELECT doc FROM mqtt_sessions WHERE client_id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?)
            })
            .await
    }

    async fn put_mqtt_session(&self, client_id: &str, doc: &str) -> Result<()> {
        let (id, doc) = (client_id.to_string(), doc.to_string());
        self.pool
            .write(move |c| {
                c.execute(
                    "INSERT INTO mqtt_sessions (client_id, doc, updated_utc) VALUES (?1, ?2, ?3)
                     ON CONFLICT(client_id) DO UPDATE SET doc = excluded.doc, updated_utc = excluded.updated_utc",
                    params![id, doc, now_utc()],
                )?;
                Ok(())
            })
            .await
    }

    async fn delete_mqtt_session(&self, client_id: &str) -> Result<()> {
        let id = client_id.to_string();
        self.pool
            .write(move |c| {
                c.execute(
                    "DELETE FROM mqtt_sessions WHERE client_id = ?1",
                    params![id],
                )?;
                Ok(())
            })
            .await
    }
}

#[cfg(test)]
mod tests;
