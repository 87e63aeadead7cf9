//! Statements prepared once per connection: `tokio-postgres` prepares a statement given as text
//! on every call (one more round trip to the server); these calls keep it in the connection's
//! statement cache (`prepare_cached`), so a repeated query costs one round trip.

use async_trait::async_trait;
use deadpool_postgres::GenericClient;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Error, Row};

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

#[async_trait]
pub(crate) trait Cached: GenericClient {
    async fn query_c(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>, Error> {
        let st = self.prepare_cached(sql).await?;
        self.query(&st, params).await
    }

    async fn query_opt_c(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>, Error> {
        let st = self.prepare_cached(sql).await?;
        self.query_opt(&st, params).await
    }

    async fn query_one_c(&self, sql: &str, params: Params<'_>) -> Result<Row, Error> {
        let st = self.prepare_cached(sql).await?;
        self.query_one(&st, params).await
    }

    async fn execute_c(&self, sql: &str, params: Params<'_>) -> Result<u64, Error> {
        let st = self.prepare_cached(sql).await?;
        self.execute(&st, params).await
    }
}

impl<T: GenericClient + ?Sized> Cached for T {}
