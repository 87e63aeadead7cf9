//! [`PgStore`]: the pool, the start-up (connect, migrate, check the schema version) and the
//! transaction helper every aggregate uses.

use crate::{Result, db, schema, telemetry_writer};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use thiserror::Error;
use tokio_postgres::NoTls;

/// Connections one node keeps open to PostgreSQL at most.
const POOL_SIZE: usize = 16;

/// Why a store could not be opened.
#[derive(Debug, Error)]
pub enum ConnectError {
    /// The URL is not a PostgreSQL connection string.
    #[error(
        "store url is not a PostgreSQL connection string ({0}): use postgres://user:password@host:5432/database"
    )]
    BadUrl(String),
    /// The server cannot be reached (or refused the login); trying again may help.
    #[error("cannot connect to PostgreSQL at {target}: {reason}")]
    Unreachable { target: String, reason: String },
    /// The database holds a schema this node does not know: it must not write to it.
    #[error(
        "the PostgreSQL store has schema version {found}, but this fleethub knows versions up to {known}: upgrade this node to the version the other nodes run (or point it at another database)"
    )]
    SchemaTooNew { found: i64, known: i64 },
    /// A migration failed.
    #[error("migrating the PostgreSQL store to schema version {version}: {reason}")]
    Migration { version: i64, reason: String },
}

impl ConnectError {
    /// Whether trying again later may succeed (the server is down or still starting).
    pub fn is_transient(&self) -> bool {
        matches!(self, ConnectError::Unreachable { .. })
    }
}

/// The PostgreSQL store. Cheap to share (`Arc`); every method takes a pooled connection.
pub struct PgStore {
    pub(crate) pool: Pool,
    /// The telemetry log's partition count once fixed (0 before); it never changes afterwards.
    pub(crate) partition_count: Arc<AtomicU32>,
    pub(crate) telemetry: telemetry_writer::Writer,
}

/// Where a connection string points, without its password (for messages).
fn describe(cfg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = cfg
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    format!(
        "{} database {}",
        if hosts.is_empty() {
            "localhost".to_string()
        } else {
            hosts.join(",")
        },
        cfg.get_dbname().unwrap_or("(default)")
    )
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/db`, or
    /// `postgresql:///db?host=/run/dir` for a unix socket), applies pending migrations and
    /// checks the schema version. Does not retry: see [`ConnectError::is_transient`].
    pub async fn connect(url: &str) -> std::result::Result<PgStore, ConnectError> {
        let cfg: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| ConnectError::BadUrl(e.to_string()))?;
        let target = describe(&cfg);
        let manager = Manager::from_config(
            cfg,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(std::time::Duration::from_secs(10)))
            .create_timeout(Some(std::time::Duration::from_secs(10)))
            .build()
            .map_err(|e| ConnectError::BadUrl(e.to_string()))?;
        let mut conn = pool.get().await.map_err(|e| ConnectError::Unreachable {
            target: target.clone(),
            reason: e.to_string(),
        })?;
        schema::migrate(&mut conn).await?;
        drop(conn);
        let partition_count = Arc::new(AtomicU32::new(0));
        let telemetry = telemetry_writer::Writer::start(pool.clone(), partition_count.clone());
        tracing::info!(store = %target, schema = schema::SCHEMA_VERSION, "PostgreSQL store open");
        Ok(PgStore {
            pool,
            partition_count,
            telemetry,
        })
    }

    /// A pooled connection.
    pub(crate) async fn conn(&self) -> Result<deadpool_postgres::Object> {
        self.pool.get().await.map_err(db)
    }
}

/// Commits `tx` when `out` is a success; a failure drops (rolls back) it.
pub(crate) async fn finish<T>(tx: deadpool_postgres::Transaction<'_>, out: Result<T>) -> Result<T> {
    match out {
        Ok(v) => {
            tx.commit().await.map_err(db)?;
            Ok(v)
        }
        Err(e) => {
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

/// Runs `$body` (an expression using the transaction `$tx`) in a transaction of `$store`
/// and commits it when it succeeds.
macro_rules! in_tx {
    ($store:expr, |$tx:ident| $body:expr) => {{
        let mut conn = $store.conn().await?;
        let $tx = conn.transaction().await.map_err($crate::db)?;
        let out = $body.await;
        $crate::connect::finish($tx, out).await
    }};
}
pub(crate) use in_tx;
