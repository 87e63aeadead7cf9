//! fleetedge: the IoT Edge device runtime for fleethub.
//!
//! - [`config`]: `/etc/fleetedge/config.toml` (Azure `[provisioning]` blocks verbatim + fleetedge sections);
//! - [`state`]: the state directory layout and private file writes.

pub mod agent;
pub mod certs;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod daemon_log;
pub mod identity;
pub mod mgmt;
pub mod provisioning;
pub mod runtime;
pub mod state;
pub mod uds;
pub mod workload;
