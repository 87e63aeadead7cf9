//! Progress of long client-side work (imports, load tests): a bar on a terminal
//! (`indicatif`), plain lines otherwise (journald, CI logs, pipes), both on stderr so that
//! stdout stays the command's result.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// Plain-line mode prints at most one line per this interval (and at every tenth of the work).
const LINE_INTERVAL: Duration = Duration::from_secs(5);

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A redrawn bar (stderr is a terminal).
    Bar,
    /// `LABEL: DONE/TOTAL` lines at each tenth and at most every few seconds.
    Lines,
    /// Nothing (tests, `--quiet`).
    Hidden,
}

impl ProgressMode {
    /// A bar when stderr is a terminal, lines otherwise.
    pub fn detect() -> ProgressMode {
        if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

/// Progress of `total` steps of one piece of work.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    bar: Option<ProgressBar>,
    mode: ProgressMode,
    last_line: Option<Instant>,
    last_tenth: u64,
    sink: Box<dyn FnMut(&str) + Send>,
}

impl Progress {
    /// Progress in the mode that suits stderr.
    pub fn new(label: impl Into<String>, total: u64) -> Progress {
        Progress::with_mode(label, total, ProgressMode::detect())
    }

    /// Progress in `mode`; lines go to stderr.
    pub fn with_mode(label: impl Into<String>, total: u64, mode: ProgressMode) -> Progress {
        Progress::with_sink(label, total, mode, Box::new(|l| eprintln!("{l}")))
    }

    /// Progress whose plain lines go to `sink` (tests).
    pub fn with_sink(
        label: impl Into<String>,
        total: u64,
        mode: ProgressMode,
        sink: Box<dyn FnMut(&str) + Send>,
    ) -> Progress {
        let label = label.into();
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{msg} [{elapsed_precise}] {wide_bar} {pos}/{len} ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(label.clone());
            bar
        });
        Progress {
            label,
            total,
            done: 0,
            bar,
            mode,
            last_line: None,
            last_tenth: 0,
            sink,
        }
    }

    /// Steps done so far.
    pub fn done(&self) -> u64 {
        self.done
    }

    /// `n` more steps done.
    pub fn inc(&mut self, n: u64) {
        self.set(self.done.saturating_add(n));
    }

    /// `done` steps done in all.
    pub fn set(&mut self, done: u64) {
        self.done = done.min(self.total.max(done));
        if let Some(bar) = &self.bar {
            bar.set_position(self.done);
            return;
        }
        if self.mode != ProgressMode::Lines {
            return;
        }
        let tenth = self
            .done
            .saturating_mul(10)
            .checked_div(self.total)
            .unwrap_or(10);
        let due = self.last_line.is_none_or(|t| t.elapsed() >= LINE_INTERVAL);
        if tenth > self.last_tenth || (due && self.done < self.total) {
            self.last_tenth = tenth;
            self.last_line = Some(Instant::now());
            let line = format!("{}: {}/{}", self.label, self.done, self.total);
            (self.sink)(&line);
        }
    }

    /// A message above the bar (or a plain line).
    pub fn println(&mut self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.println(msg),
            None if self.mode == ProgressMode::Lines => (self.sink)(msg),
            None => {}
        }
    }

    /// Ends the work: the bar is cleared, plain mode prints the final count once.
    pub fn finish(mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        } else if self.mode == ProgressMode::Lines && self.last_tenth < 10 {
            let line = format!("{}: {}/{}", self.label, self.done, self.total);
            (self.sink)(&line);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn lines(total: u64, steps: u64) -> Vec<String> {
        let out = Arc::new(Mutex::new(Vec::new()));
        let o = out.clone();
        let mut p = Progress::with_sink(
            "import",
            total,
            ProgressMode::Lines,
            Box::new(move |l| o.lock().unwrap().push(l.to_string())),
        );
        for _ in 0..steps {
            p.inc(1);
        }
        p.println("a note");
        p.finish();
        out.lock().unwrap().clone()
    }

    #[test]
    fn plain_lines_at_each_tenth_not_per_step() {
        let l = lines(1000, 1000);
        assert_eq!(l.first().map(String::as_str), Some("import: 1/1000"));
        assert!(l.contains(&"import: 100/1000".to_string()), "{l:?}");
        assert!(l.contains(&"import: 1000/1000".to_string()), "{l:?}");
        assert!(l.len() <= 13, "about one line per tenth: {l:?}");
        assert!(l.contains(&"a note".to_string()));
    }

    #[test]
    fn unfinished_work_ends_with_its_count() {
        let l = lines(10, 3);
        assert_eq!(l.last().map(String::as_str), Some("import: 3/10"), "{l:?}");
    }

    #[test]
    fn hidden_prints_nothing() {
        let out = Arc::new(Mutex::new(Vec::<String>::new()));
        let o = out.clone();
        let mut p = Progress::with_sink(
            "x",
            3,
            ProgressMode::Hidden,
            Box::new(move |l| o.lock().unwrap().push(l.to_string())),
        );
        p.inc(3);
        p.println("n");
        p.finish();
        assert!(out.lock().unwrap().is_empty());
    }
}
