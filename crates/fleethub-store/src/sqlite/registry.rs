//! The identity registry: devices with twins, module identities with module twins.

use super::cached::CachedStatements;
use super::{
    DeviceRecord, ModuleRecord, OptionalExtension, Page, PageRequest, Precondition, Result,
    SqliteStore, StoreError, async_trait, check, check_delete, device_etag, docs, encode,
    get_device_row, get_module_row, params, stored_device_etag, write_device,
};
use crate::RegistryStore;

#[async_trait]
impl RegistryStore for SqliteStore {
    async fn get_device(&self, device_id: &str) -> Result<Option<DeviceRecord>> {
        self.pool.lookup(|c| get_device_row(c, device_id))
    }

    async fn put_device(&self, record: DeviceRecord, cond: Precondition) -> Result<DeviceRecord> {
        self.pool
            .write(move |c| write_device(c, record, &cond))
            .await
    }

    async fn delete_device(&self, device_id: &str, cond: Precondition) -> Result<()> {
        let id = device_id.to_string();
        self.pool
            .write(move |c| {
                let etag = stored_device_etag(c, &id)?;
                check_delete(&cond, "device", &id, etag.as_deref())?;
                c.execute_cached("DELETE FROM twins WHERE device_id = ?1", params![id])?;
                c.execute_cached("DELETE FROM c2d WHERE device_id = ?1", params![id])?;
                c.execute_cached("DELETE FROM modules WHERE device_id = ?1", params![id])?;
                c.execute_cached(
                    "DELETE FROM device_manual_content WHERE device_id = ?1",
                    params![id],
                )?;
                c.execute_cached("DELETE FROM devices WHERE device_id = ?1", params![id])?;
                Ok(())
            })
            .await
    }

    async fn list_devices(&self, page: PageRequest) -> Result<Page<DeviceRecord>> {
        self.pool
            .read(move |c| {
                let ids: Page<String> = {
                    let after = docs::decode_continuation(page.continuation.as_deref())?;
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
                    c.query_row_cached("SELECT 1 FROM devices WHERE device_id = ?1", params![d], |r| r.get(0)).optional()?;
                if device.is_none() {
                    return Err(StoreError::NotFound { kind: "device", id: d });
                }
                let current: Option<String> = c
                    .query_row_cached(
                        "SELECT etag FROM modules WHERE device_id = ?1 AND module_id = ?2",
                        params![d, m],
                        |r| r.get(0),
                    )
                    .optional()?;
                check(&cond, "module", &id, current.as_deref())?;
                let etag = device_etag();
                rec.module.etag = Some(etag.clone());
                c.execute_cached(
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
        cond: Precondition,
    ) -> Result<()> {
        let (d, m) = (device_id.to_string(), module_id.to_string());
        self.pool
            .write(move |c| {
                let id = format!("{d}/{m}");
                let etag: Option<String> = c
                    .query_row_cached(
                        "SELECT etag FROM modules WHERE device_id = ?1 AND module_id = ?2",
                        params![d, m],
                        |r| r.get(0),
                    )
                    .optional()?;
                check_delete(&cond, "module", &id, etag.as_deref())?;
                c.execute_cached(
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
}
