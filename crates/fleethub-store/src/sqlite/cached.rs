//! `execute` and `query_row` through the connection's statement cache: rusqlite's own
//! `Connection::execute` and `Connection::query_row` compile the SQL again on every call, which
//! cost a DPS registration more instructions than its whole SQLite work otherwise
//! (docs/benchmarks.md, "DPS registrations"). Every connection keeps up to
//! `pool::STATEMENT_CACHE` statements prepared.

use rusqlite::{Connection, Params, Row};

pub(crate) trait CachedStatements {
    /// [`Connection::execute`] with the statement from the cache.
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;

    /// [`Connection::query_row`] with the statement from the cache.
    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>;
}

impl CachedStatements for Connection {
    fn execute_cached<P: Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }

    fn query_row_cached<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: Params,
        F: FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_statements_run_and_stay_prepared() {
        let c = Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
            .unwrap();
        for i in 0..3 {
            assert_eq!(
                c.execute_cached(
                    "INSERT INTO t (k, v) VALUES (?1, ?2)",
                    rusqlite::params![format!("k{i}"), i]
                )
                .unwrap(),
                1
            );
        }
        let v: i64 = c
            .query_row_cached("SELECT v FROM t WHERE k = ?1", ["k2"], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 2);
        // a missing row is the same error as with query_row
        let missing = c.query_row_cached("SELECT v FROM t WHERE k = ?1", ["nope"], |r| {
            r.get::<_, i64>(0)
        });
        assert!(matches!(missing, Err(rusqlite::Error::QueryReturnedNoRows)));
        // both statements sit in the cache: flushing it is the only way to see, so check that
        // preparing them again does not fail and the cache is in use
        c.flush_prepared_statement_cache();
        assert_eq!(
            c.execute_cached("DELETE FROM t WHERE k = ?1", ["k0"])
                .unwrap(),
            1
        );
    }
}
