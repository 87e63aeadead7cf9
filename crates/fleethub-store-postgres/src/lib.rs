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
mod c2d_feedback;
mod cached;
mod configurations;
mod connect;
mod consumer_groups;
mod docs;
mod dps;
mod linked_hubs;
mod partitions;
mod presence;
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

/// A PostgreSQL (or pool) error as a store error: [`StoreError::Unavailable`] when the server
/// cannot be reached (no connection, a connection lost, the server shutting down or starting),
/// so that clients are told to retry (HTTP 503 with `Retry-After`); `Backend` otherwise. The
/// message carries the whole cause chain.
pub(crate) fn db(e: impl std::error::Error + 'static) -> StoreError {
    let mut msg = format!("PostgreSQL: {e}");
    let mut unreachable = is_unreachable(&e);
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        unreachable |= is_unreachable(s);
        source = s.source();
    }
    if unreachable {
        StoreError::Unavailable(msg)
    } else {
        StoreError::Backend(msg)
    }
}

fn is_unreachable(e: &(dyn std::error::Error + 'static)) -> bool {
    if let Some(pg) = e.downcast_ref::<tokio_postgres::Error>() {
        // SQLSTATE class 08: connection exception; 57P01-57P03: the server is shutting down,
        // crashed, or cannot accept connections yet.
        let code = pg.code().map(tokio_postgres::error::SqlState::code);
        return pg.is_closed()
            || code
                .is_some_and(|c| c.starts_with("08") || ["57P01", "57P02", "57P03"].contains(&c));
    }
    if let Some(pool) = e.downcast_ref::<deadpool_postgres::PoolError>() {
        return matches!(
            pool,
            deadpool_postgres::PoolError::Timeout(_) | deadpool_postgres::PoolError::Closed
        );
    }
    e.is::<std::io::Error>()
}

#[cfg(test)]
mod tests;
