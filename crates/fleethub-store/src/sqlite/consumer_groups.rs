//! Consumer groups of the built-in endpoint (names compared case-insensitively) and the
//! removal of a deleted group's checkpoint.

use super::cached::CachedStatements;
use super::{OptionalExtension, Result, lower, params};
use crate::{ConsumerGroupRecord, StoreError};
use rusqlite::Connection;

const KIND: &str = "consumer group";

pub(super) fn list(c: &Connection) -> Result<Vec<ConsumerGroupRecord>> {
    let mut stmt = c.prepare_cached(
        "SELECT name, created_utc FROM event_hub_consumer_groups ORDER BY name_lower",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ConsumerGroupRecord {
            name: r.get(0)?,
            created_utc: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub(super) fn get(c: &Connection, name: &str) -> Result<Option<ConsumerGroupRecord>> {
    Ok(c.query_row_cached(
        "SELECT name, created_utc FROM event_hub_consumer_groups WHERE name_lower = ?1",
        params![lower(name)],
        |r| {
            Ok(ConsumerGroupRecord {
                name: r.get(0)?,
                created_utc: r.get(1)?,
            })
        },
    )
    .optional()?)
}

pub(super) fn create(
    c: &Connection,
    group: ConsumerGroupRecord,
    max: usize,
) -> Result<ConsumerGroupRecord> {
    if get(c, &group.name)?.is_some() {
        return Err(StoreError::AlreadyExists {
            kind: KIND,
            id: group.name,
        });
    }
    let n: i64 = c.query_row_cached("SELECT COUNT(*) FROM event_hub_consumer_groups", [], |r| {
        r.get(0)
    })?;
    if n as usize >= max {
        return Err(StoreError::LimitReached { kind: KIND, max });
    }
    c.execute_cached(
        "INSERT INTO event_hub_consumer_groups (name_lower, name, created_utc) VALUES (?1, ?2, ?3)",
        params![lower(&group.name), group.name, group.created_utc],
    )?;
    Ok(group)
}

pub(super) fn delete(c: &Connection, name: &str) -> Result<()> {
    let key = lower(name);
    let n = c.execute_cached(
        "DELETE FROM event_hub_consumer_groups WHERE name_lower = ?1",
        params![key],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound {
            kind: KIND,
            id: name.to_string(),
        });
    }
    c.execute_cached(
        "DELETE FROM consumer_groups WHERE lower(name) = ?1",
        params![key],
    )?;
    Ok(())
}
