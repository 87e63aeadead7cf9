//! The daemon's own log lines, also kept in files, so `fleetedge logs edgeAgent|edgeHub`
//! shows them whether the daemon runs under systemd or in the foreground:
//! `<homedir>/logs/edgeAgent.log` gets every line of the daemon (it is the agent), and
//! `<homedir>/logs/edgeHub.log` the lines of the in-process edge hub (target `fleetedge_hub`
//! and [`EDGE_HUB_TARGET`]). Both are size-bounded like module logs (one rotated file) and
//! written without colour codes. Until [`open`] is called (before the configuration is
//! loaded) the lines only go to stderr.

use std::io::Write;
use std::sync::Mutex;

use tracing::Metadata;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::registry::LookupSpan;

use crate::runtime::logs::LogFile;
use crate::state::StateDir;

/// The tracing target of the daemon's own lines about the edge hub (start, bind errors).
pub const EDGE_HUB_TARGET: &str = "fleetedge::edge_hub";
/// The system module names whose logs the daemon writes.
pub const AGENT: &str = "edgeAgent";
pub const EDGE_HUB: &str = "edgeHub";

static AGENT_LOG: Mutex<Option<LogFile>> = Mutex::new(None);
static HUB_LOG: Mutex<Option<LogFile>> = Mutex::new(None);

fn lock(m: &'static Mutex<Option<LogFile>>) -> std::sync::MutexGuard<'static, Option<LogFile>> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts writing the daemon's lines to the state directory's log files.
pub fn open(state: &StateDir, max_bytes: u64) {
    *lock(&AGENT_LOG) = Some(LogFile::new(state.module_log(AGENT), max_bytes));
    *lock(&HUB_LOG) = Some(LogFile::new(state.module_log(EDGE_HUB), max_bytes));
}

/// Whether a line belongs to the edge hub's log.
pub fn is_edge_hub(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with("fleetedge_hub") || meta.target() == EDGE_HUB_TARGET
}

/// Writes into one of the files (a no-op until [`open`]).
#[derive(Clone, Copy)]
pub struct Sink(&'static Mutex<Option<LogFile>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Some(f) = lock(self.0).as_mut() {
            // A full disk must not stop the daemon: the line still goes to stderr.
            let _ = f.write(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = Sink;
    fn make_writer(&'a self) -> Sink {
        *self
    }
}

/// The two file layers, for `tracing_subscriber::registry().with(..)`.
pub fn layers<S>() -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let agent = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(Sink(&AGENT_LOG))
        .with_filter(tracing_subscriber::filter::LevelFilter::INFO);
    let hub = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(Sink(&HUB_LOG))
        .with_filter(filter_fn(|m| {
            is_edge_hub(m) && *m.level() <= tracing::Level::INFO
        }));
    agent.and_then(hub)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::layer::SubscriberExt;

    #[test]
    fn hub_lines_go_to_both_files_and_others_to_the_agent_log_only() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        state.create().unwrap();
        let subscriber = tracing_subscriber::registry().with(layers());
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!("before open: stderr only");
            open(&state, 1 << 20);
            tracing::error!(target: EDGE_HUB_TARGET, error = "cannot listen on 127.0.0.1:8883: Address in use", "the edge hub did not start");
            tracing::info!(target: "fleetedge_hub::listener", "a module connected");
            tracing::info!("agent connected as $edgeAgent");
            tracing::debug!(target: EDGE_HUB_TARGET, "debug is not kept");
        });
        let hub = std::fs::read_to_string(state.module_log(EDGE_HUB)).unwrap();
        let agent = std::fs::read_to_string(state.module_log(AGENT)).unwrap();
        assert!(
            hub.contains("the edge hub did not start") && hub.contains("Address in use"),
            "{hub}"
        );
        assert!(hub.contains("a module connected"), "{hub}");
        assert!(!hub.contains("agent connected"), "{hub}");
        assert!(!hub.contains("debug is not kept"), "{hub}");
        assert!(
            agent.contains("agent connected") && agent.contains("the edge hub did not start"),
            "{agent}"
        );
        assert!(!agent.contains("before open"), "{agent}");
        assert!(
            !agent.contains('\u{1b}'),
            "no colour codes in files: {agent:?}"
        );
    }
}
