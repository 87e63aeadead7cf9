//! Wire types shared by the server, the CLI, the device SDK and the tests.
//!
//! Field names follow the Azure REST specs exactly (camelCase), so the official SDKs
//! (de)serialize them unchanged. Unknown optional fields that the server does not interpret
//! are still kept (`serde_json::Value`) so that what a client stores is what it reads back.

pub mod configuration;
pub mod dps;
pub mod error;
pub mod event_hub;
pub mod hub;
pub mod linked_hub;
pub mod time;

pub use configuration::*;
pub use dps::*;
pub use error::*;
pub use event_hub::*;
pub use hub::*;
pub use linked_hub::*;
