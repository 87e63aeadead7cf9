//! IoT Hub service REST API (docs/protocol-notes.md, "Service REST API and api-versions"): device and module identities, device and
//! module twins, direct methods, queries, registry statistics, bulk registry operations,
//! cloud-to-device messages and the telemetry read API, authorized with the hub's shared access
//! policies (module identities also with an edge device's own token). Errors carry IoT Hub's
//! names (`ErrorCode:DeviceNotFound;...`).

pub(crate) mod bulk;
pub(crate) mod c2d;
pub(crate) mod configurations;
pub(crate) mod consumer_groups;
pub(crate) mod devices;
pub(crate) mod events;
pub(crate) mod methods;
pub(crate) mod modules;
pub(crate) mod partitions;

pub(crate) mod statistics;
pub(crate) mod twins;
