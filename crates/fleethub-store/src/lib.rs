//! fleethub's storage backends: the embedded SQLite backend ([`sqlite::SqliteStore`]), which
//! implements every aggregate trait of `fleethub-storage`. The interface is re-exported here
//! so that users of a backend need only this crate.

pub mod sqlite;

pub use fleethub_storage::*;
