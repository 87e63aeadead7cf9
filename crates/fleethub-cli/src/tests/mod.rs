//! Unit tests: argument parsing, settings resolution, rendering, and the commands against an
//! in-memory fake of the DPS and hub service APIs.

mod commands;
mod fake;
mod hub_commands;
mod hub_consumer_group;
mod hub_monitor;
mod hub_parse;
mod output;
mod parse;
mod settings;
mod transport;
