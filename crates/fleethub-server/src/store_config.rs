//! The `[store]` settings and opening the chosen backend: SQLite in the data directory (the
//! default) or a PostgreSQL database shared by several nodes (docs/scale-out.md). A PostgreSQL
//! server that cannot be reached at start is retried with back-off (a clear log line per
//! attempt) instead of failing the start; a schema from a newer fleethub is refused at once.

use anyhow::{Result, bail};
use fleethub_store::Store;
use fleethub_store::sqlite::{Durability, SqliteStore};
use fleethub_store_postgres::PgStore;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Which backend holds the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// `DATA_DIR/store.db`, one server per data directory.
    #[default]
    Sqlite,
    /// A PostgreSQL database (`url`), which several nodes can share.
    Postgres,
}

impl std::str::FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(format!(
                "unknown store backend '{s}': use sqlite (the data directory) or postgres (with a url)"
            )),
        }
    }
}

/// `[store]` in the configuration file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct StoreConfig {
    pub backend: Backend,
    /// The PostgreSQL connection string (`postgres://user:password@host:5432/database`); only
    /// with `backend = "postgres"`. `fleethub config show` prints it without the password.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "serialize_redacted"
    )]
    pub url: Option<String>,
}

#[allow(
    clippy::ref_option,
    reason = "serde's serialize_with passes the field by reference"
)]
pub(crate) fn serialize_redacted<S: serde::Serializer>(
    url: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(u) => s.serialize_str(&redact(u)),
        None => s.serialize_none(),
    }
}

/// The URL with its password (if any) replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl StoreConfig {
    pub fn validate(&self) -> Result<()> {
        match (self.backend, &self.url) {
            (Backend::Sqlite, Some(_)) => bail!(
                "store url is set but store backend is sqlite: set backend = \"postgres\" in [store] (or FLEETHUB_STORE_BACKEND=postgres, --store-backend postgres)"
            ),
            (Backend::Postgres, None) => bail!(
                "store backend postgres needs a url: set url = \"postgres://user:password@host:5432/database\" in [store] (or FLEETHUB_STORE_URL, --store-url)"
            ),
            (Backend::Postgres, Some(u))
                if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) =>
            {
                bail!(
                    "store url '{}' is not a PostgreSQL URL: it must start with postgres:// or postgresql://",
                    redact(u)
                )
            }
            _ => Ok(()),
        }
    }

    /// Opens the configured store: SQLite at `data_dir/store.db`, or PostgreSQL (retried with
    /// back-off, up to 30 s between attempts, while the server cannot be reached).
    pub async fn open(&self, data_dir: &Path, durability: Durability) -> Result<Arc<dyn Store>> {
        match (self.backend, &self.url) {
            (Backend::Sqlite, _) => Ok(Arc::new(SqliteStore::open_with(
                &data_dir.join("store.db"),
                durability,
            )?)),
            (Backend::Postgres, Some(url)) => Ok(Arc::new(connect_with_retry(url).await?)),
            (Backend::Postgres, None) => bail!("store backend postgres needs a url"),
        }
    }
}

/// Connects, retrying transient failures with exponential back-off (1 s doubling to 30 s).
async fn connect_with_retry(url: &str) -> Result<PgStore> {
    let mut delay = Duration::from_secs(1);
    let mut attempt = 1_u32;
    loop {
        match PgStore::connect(url).await {
            Ok(store) => return Ok(store),
            Err(e) if e.is_transient() => {
                tracing::warn!(
                    error = %e,
                    attempt,
                    retry_in_secs = delay.as_secs(),
                    "the PostgreSQL store cannot be reached yet; retrying"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
                attempt += 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("postgres://fleethub:s3cret@db.local:5432/fleethub"),
            "postgres://fleethub:***@db.local:5432/fleethub"
        );
        assert_eq!(
            redact("postgresql://fleethub@db/fh?host=/run/pg"),
            "postgresql://fleethub@db/fh?host=/run/pg"
        );
        assert_eq!(redact("not a url"), "not a url");
    }

    #[test]
    fn backend_and_url_must_agree() {
        let pg = |url: Option<&str>| StoreConfig {
            backend: Backend::Postgres,
            url: url.map(str::to_string),
        };
        StoreConfig::default().validate().unwrap();
        pg(Some("postgres://u:p@h/db")).validate().unwrap();
        let e = pg(None).validate().unwrap_err().to_string();
        assert!(e.contains("needs a url"), "{e}");
        let e = pg(Some("mysql://u:secret@h/db"))
            .validate()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a PostgreSQL URL") && !e.contains("secret"),
            "{e}"
        );
        let e = StoreConfig {
            backend: Backend::Sqlite,
            url: Some("postgres://h/db".into()),
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("backend = \"postgres\""), "{e}");
        assert_eq!("Postgres".parse::<Backend>(), Ok(Backend::Postgres));
        assert!("oracle".parse::<Backend>().is_err());
    }
}
