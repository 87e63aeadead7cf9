//! Pure building blocks shared by fleethub crates: identifier rules, SAS
//! tokens, symmetric keys and connection strings. No IO.

pub mod connection_string;
pub mod ids;
pub mod keys;
pub mod redact;
pub mod sas;
pub mod time_util;

mod pct;
