//! Consumer groups of the built-in endpoint (names compared case-insensitively) and their
//! checkpoints. A create takes an advisory lock for its transaction, so the limit holds when
//! several nodes create groups at once.

use crate::cached::Cached;
use crate::docs::lower;
use crate::{Result, db};
use deadpool_postgres::GenericClient;
use fleethub_storage::{ConsumerGroupRecord, StoreError};

const KIND: &str = "consumer group";
/// Key of the advisory lock under which groups are created.
const GROUPS_LOCK: i64 = 0x666c_6565_7467_7270;

pub(crate) async fn list(c: &impl GenericClient) -> Result<Vec<ConsumerGroupRecord>> {
    let rows = c
        .query_c(
            "SELECT name, created_utc FROM event_hub_consumer_groups ORDER BY name_lower",
            &[],
        )
        .await
        .map_err(db)?;
    Ok(rows
        .iter()
        .map(|r| ConsumerGroupRecord {
            name: r.get(0),
            created_utc: r.get(1),
        })
        .collect())
}

pub(crate) async fn get(c: &impl GenericClient, name: &str) -> Result<Option<ConsumerGroupRecord>> {
    let row = c
        .query_opt_c(
            "SELECT name, created_utc FROM event_hub_consumer_groups WHERE name_lower = $1",
            &[&lower(name)],
        )
        .await
        .map_err(db)?;
    Ok(row.map(|r| ConsumerGroupRecord {
        name: r.get(0),
        created_utc: r.get(1),
    }))
}

pub(crate) async fn create(
    c: &impl GenericClient,
    group: ConsumerGroupRecord,
    max: usize,
) -> Result<ConsumerGroupRecord> {
    c.execute_c("SELECT pg_advisory_xact_lock($1)", &[&GROUPS_LOCK])
        .await
        .map_err(db)?;
    if get(c, &group.name).await?.is_some() {
        return Err(StoreError::AlreadyExists {
            kind: KIND,
            id: group.name,
        });
    }
    let n: i64 = c
        .query_one_c("SELECT COUNT(*) FROM event_hub_consumer_groups", &[])
        .await
        .map_err(db)?
        .get(0);
    if n as usize >= max {
        return Err(StoreError::LimitReached { kind: KIND, max });
    }
    c.execute_c(
        "INSERT INTO event_hub_consumer_groups (name_lower, name, created_utc) VALUES ($1, $2, $3)",
        &[&lower(&group.name), &group.name, &group.created_utc],
    )
    .await
    .map_err(db)?;
    Ok(group)
}

pub(crate) async fn delete(c: &impl GenericClient, name: &str) -> Result<()> {
    let key = lower(name);
    let n = c
        .execute_c(
            "DELETE FROM event_hub_consumer_groups WHERE name_lower = $1",
            &[&key],
        )
        .await
        .map_err(db)?;
    if n == 0 {
        return Err(StoreError::NotFound {
            kind: KIND,
            id: name.to_string(),
        });
    }
    c.execute_c(
        "DELETE FROM consumer_groups WHERE lower(name) = $1",
        &[&key],
    )
    .await
    .map_err(db)?;
    Ok(())
}
