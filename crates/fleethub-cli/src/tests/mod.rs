//! Unit tests: argument parsing, settings resolution, rendering, and the commands against an
//! in-memory fake of the DPS service API.

mod commands;
mod fake;
mod output;
mod parse;
mod settings;
mod transport;
