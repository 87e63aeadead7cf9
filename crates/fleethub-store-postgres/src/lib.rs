//! fleethub's PostgreSQL backend: every aggregate trait of `fleethub-storage` on PostgreSQL
//! (`tokio-postgres` with a `deadpool-postgres` pool), so that several fleethub nodes can share
//! one store (docs/scale-out.md). Records are the same Azure JSON documents beside indexed key
//! columns as in the SQLite backend (`fleethub-store`), and the same test `suite` checks both.
//!
//! Guarantees, as the SQLite backend gives them: every method runs in one transaction and
//! returns once it is committed; etag preconditions are checked on rows locked with
//! `SELECT ... FOR UPDATE` (a create that must not overwrite uses `INSERT ... ON CONFLICT DO
//! NOTHING`), so they hold under concurrent writers on different nodes; telemetry appends are
//! group-committed (`telemetry_writer`: one transaction and one multi-row insert per batch) and
//! numbered under one row lock, so global and per-partition sequence numbers are gapless and
//! become visible in order. Schema versions: `schema`.

mod auth_failures;
mod c2d;
mod configurations;
mod connect;
mod consumer_groups;
mod docs;
mod dps;
mod linked_hubs;
mod partitions;
mod registry;
mod schema;
mod sessions;
mod settings;
mod telemetry;
mod telemetry_writer;
#[cfg(any(test, feature = "throwaway"))]
pub mod throwaway;

pub use connect::{ConnectError, PgStore};
pub use schema::SCHEMA_VERSION;

use fleethub_storage::StoreError;

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

/// A PostgreSQL (or pool) error as a store error. The message says when the server cannot be
/// reached, so that operators see the cause in the log.
pub(crate) fn db(e: impl std::error::Error) -> StoreError {
    let mut msg = format!("PostgreSQL: {e}");
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    StoreError::Backend(msg)
}

#[cfg(test)]
mod tests;
