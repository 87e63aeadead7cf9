//! The `fleethub` server: configuration, data directory, development PKI, listeners.
//! `main.rs` is the command line on top of it.

pub mod allocation_webhook;
pub mod amqp;
pub mod app;
pub mod backup;
pub mod bench_consume;
pub mod bench_saturate;
pub mod certs;
pub mod cluster;
pub mod config;
pub mod data_dir;
pub mod demo;
pub mod header_case;
pub mod hostnames;
pub mod identity;
pub mod info;
pub mod linked_hubs;
pub mod listener;
pub mod logging;
pub mod metrics_endpoint;
mod mqtt_handler;
pub mod shared_ca;
pub mod store_config;
pub mod tls;
pub mod websocket;
