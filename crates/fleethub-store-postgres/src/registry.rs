//! The identity registry: devices with twins, module identities with module twins.

use crate::cached::Cached;
use crate::connect::in_tx;
use crate::docs::{
    check, check_delete, decode, decode_continuation, encode, encode_continuation, page_limit,
};
use crate::{PgStore, Result, db};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use fleethub_storage::{
    DeviceRecord, ModuleRecord, Page, PageRequest, Precondition, RegistryStore, StoreError,
};

/// Hub device etags are opaque strings, as Azure's are.
fn device_etag() -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for b in uuid::Uuid::new_v4().as_bytes().iter().take(9) {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn device_from(device_id: &str, d: &str, t: Option<&str>) -> Result<DeviceRecord> {
    let device: fleethub_api::Device = decode("device", device_id, d)?;
    let twin = match t {
        Some(t) => decode("twin", device_id, t)?,
        None => fleethub_api::Twin {
            device_id: device_id.to_string(),
            ..Default::default()
        },
    };
    Ok(DeviceRecord { device, twin })
}

async fn get_device_row(c: &impl GenericClient, device_id: &str) -> Result<Option<DeviceRecord>> {
    let stmt = c
        .prepare_cached(
            "SELECT d.doc, t.doc FROM devices d LEFT JOIN twins t ON t.device_id = d.device_id
             WHERE d.device_id = $1",
        )
        .await
        .map_err(db)?;
    match c.query_opt(&stmt, &[&device_id]).await.map_err(db)? {
        Some(r) => Ok(Some(device_from(device_id, r.get(0), r.get(1))?)),
        None => Ok(None),
    }
}

/// Creates or replaces a device and its twin after checking `cond` on the locked row.
pub(crate) async fn write_device(
    c: &impl GenericClient,
    mut rec: DeviceRecord,
    cond: &Precondition,
) -> Result<DeviceRecord> {
    let id = rec.device.device_id.clone();
    let current: Option<String> = c
        .query_opt_c(
            "SELECT etag FROM devices WHERE device_id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(db)?
        .map(|r| r.get(0));
    check(cond, "device", &id, current.as_deref())?;
    let etag = device_etag();
    rec.device.etag = Some(etag.clone());
    rec.twin.device_etag = Some(etag.clone());
    let on_conflict = if *cond == Precondition::MustNotExist {
        "DO NOTHING"
    } else {
        "DO UPDATE SET etag = excluded.etag, doc = excluded.doc"
    };
    let n = c
        .execute_c(
            &format!(
                "INSERT INTO devices (device_id, etag, doc) VALUES ($1, $2, $3)
                 ON CONFLICT (device_id) {on_conflict}"
            ),
            &[&id, &etag, &encode(&rec.device)?],
        )
        .await
        .map_err(db)?;
    if n == 0 {
        return Err(StoreError::AlreadyExists { kind: "device", id });
    }
    c.execute_c(
        "INSERT INTO twins (device_id, doc) VALUES ($1, $2)
         ON CONFLICT (device_id) DO UPDATE SET doc = excluded.doc",
        &[&id, &encode(&rec.twin)?],
    )
    .await
    .map_err(db)?;
    Ok(rec)
}

async fn delete_device(c: &impl GenericClient, id: &str, cond: &Precondition) -> Result<()> {
    let etag: Option<String> = c
        .query_opt_c(
            "SELECT etag FROM devices WHERE device_id = $1 FOR UPDATE",
            &[&id],
        )
        .await
        .map_err(db)?
        .map(|r| r.get(0));
    check_delete(cond, "device", id, etag.as_deref())?;
    for table in [
        "twins",
        "c2d",
        "modules",
        "device_manual_content",
        "devices",
    ] {
        c.execute_c(&format!("DELETE FROM {table} WHERE device_id = $1"), &[&id])
            .await
            .map_err(db)?;
    }
    Ok(())
}

async fn put_module(
    c: &impl GenericClient,
    mut rec: ModuleRecord,
    cond: &Precondition,
) -> Result<ModuleRecord> {
    let (d, m) = (rec.module.device_id.clone(), rec.module.module_id.clone());
    let id = format!("{d}/{m}");
    // FOR SHARE: the device cannot be deleted before this commits.
    let device = c
        .query_opt_c(
            "SELECT 1 FROM devices WHERE device_id = $1 FOR SHARE",
            &[&d],
        )
        .await
        .map_err(db)?;
    if device.is_none() {
        return Err(StoreError::NotFound {
            kind: "device",
            id: d,
        });
    }
    let current: Option<String> = c
        .query_opt_c(
            "SELECT etag FROM modules WHERE device_id = $1 AND module_id = $2 FOR UPDATE",
            &[&d, &m],
        )
        .await
        .map_err(db)?
        .map(|r| r.get(0));
    check(cond, "module", &id, current.as_deref())?;
    let etag = device_etag();
    rec.module.etag = Some(etag.clone());
    let on_conflict = if *cond == Precondition::MustNotExist {
        "DO NOTHING"
    } else {
        "DO UPDATE SET etag = excluded.etag, doc = excluded.doc, twin = excluded.twin"
    };
    let n = c
        .execute_c(
            &format!(
                "INSERT INTO modules (device_id, module_id, etag, doc, twin) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (device_id, module_id) {on_conflict}"
            ),
            &[&d, &m, &etag, &encode(&rec.module)?, &encode(&rec.twin)?],
        )
        .await
        .map_err(db)?;
    if n == 0 {
        return Err(StoreError::AlreadyExists { kind: "module", id });
    }
    Ok(rec)
}

async fn delete_module(
    c: &impl GenericClient,
    d: &str,
    m: &str,
    cond: &Precondition,
) -> Result<()> {
    let id = format!("{d}/{m}");
    let etag: Option<String> = c
        .query_opt_c(
            "SELECT etag FROM modules WHERE device_id = $1 AND module_id = $2 FOR UPDATE",
            &[&d, &m],
        )
        .await
        .map_err(db)?
        .map(|r| r.get(0));
    check_delete(cond, "module", &id, etag.as_deref())?;
    c.execute_c(
        "DELETE FROM modules WHERE device_id = $1 AND module_id = $2",
        &[&d, &m],
    )
    .await
    .map_err(db)?;
    Ok(())
}

fn module_from(device_id: &str, module_id: &str, d: &str, t: &str) -> Result<ModuleRecord> {
    let id = format!("{device_id}/{module_id}");
    Ok(ModuleRecord {
        module: decode("module", &id, d)?,
        twin: decode("module twin", &id, t)?,
    })
}

#[async_trait]
impl RegistryStore for PgStore {
    async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        let c = self.conn().await?;
        get_device_row(&c, device_id).await
    }

    async fn put_device(&self, record: DeviceRecord, cond: Precondition) -> Result<DeviceRecord> {
        in_tx!(self, |tx| write_device(&tx, record, &cond))
    }

    async fn delete_device(&self, device_id: &str, cond: Precondition) -> Result<()> {
        in_tx!(self, |tx| delete_device(&tx, device_id, &cond))
    }

    async fn list_devices(&self, page: PageRequest) -> Result<Page<DeviceRecord>> {
        let after = decode_continuation(page.continuation.as_deref())?;
        let limit = page_limit(&page);
        let c = self.conn().await?;
        let rows = c
            .query_c(
                "SELECT d.device_id, d.doc, t.doc FROM devices d
                 LEFT JOIN twins t ON t.device_id = d.device_id
                 WHERE d.device_id > $1 ORDER BY d.device_id LIMIT $2",
                &[&after, &((limit + 1) as i64)],
            )
            .await
            .map_err(db)?;
        let more = rows.len() > limit;
        let mut items = Vec::with_capacity(rows.len().min(limit));
        for r in rows.iter().take(limit) {
            items.push(device_from(r.get(0), r.get(1), r.get(2))?);
        }
        let continuation = if more {
            items
                .last()
                .map(|d| encode_continuation(&d.device.device_id))
        } else {
            None
        };
        Ok(Page {
            items,
            continuation,
        })
    }

    async fn get_module(&self, device_id: &str, module_id: &str) -> Result<Option<ModuleRecord>> {
        let c = self.conn().await?;
        let row = c
            .query_opt_c(
                "SELECT doc, twin FROM modules WHERE device_id = $1 AND module_id = $2",
                &[&device_id, &module_id],
            )
            .await
            .map_err(db)?;
        row.map(|r| module_from(device_id, module_id, r.get(0), r.get(1)))
            .transpose()
    }

    async fn put_module(&self, rec: ModuleRecord, cond: Precondition) -> Result<ModuleRecord> {
        in_tx!(self, |tx| put_module(&tx, rec, &cond))
    }

    async fn delete_module(
        &self,
        device_id: &str,
        module_id: &str,
        cond: Precondition,
    ) -> Result<()> {
        in_tx!(self, |tx| delete_module(&tx, device_id, module_id, &cond))
    }

    async fn list_modules(&self, device_id: &str) -> Result<Vec<ModuleRecord>> {
        let c = self.conn().await?;
        let rows = c
            .query_c(
                "SELECT module_id, doc, twin FROM modules WHERE device_id = $1 ORDER BY module_id",
                &[&device_id],
            )
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| module_from(device_id, r.get(0), r.get(1), r.get(2)))
            .collect()
    }
}
