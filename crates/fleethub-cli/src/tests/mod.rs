//! Unit tests: argument parsing, settings resolution, rendering, and the commands against an
//! in-memory fake of the DPS and hub service APIs.

mod az_names;
mod commands;
mod device;
mod fake;
mod hub_commands;
mod hub_consumer_group;
mod hub_monitor;
mod hub_parse;
mod list_paging;
mod output;
mod parse;
mod settings;
mod transport;
