//! Per-module log files: stdout and stderr appended to `<homedir>/logs/<module>.log`, rotated
//! to `<module>.log.1` when it passes the size bound (so at most twice the bound is kept).
//!
//! The log itself is the module's output, unchanged. Beside it, `<module>.log.idx` records
//! when the bytes were written (one `<byte offset> <unix seconds>` line per second with
//! output), so `fleetedge logs --since` can start at the right line; it rotates with the log.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A size-bounded log file.
pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    file: Option<std::fs::File>,
    size: u64,
    index: Option<std::fs::File>,
    last_stamp: i64,
}

impl LogFile {
    pub fn new(path: PathBuf, max_bytes: u64) -> LogFile {
        let size = std::fs::metadata(&path).map_or(0, |m| m.len());
        LogFile {
            path,
            max_bytes,
            file: None,
            size,
            index: None,
            last_stamp: i64::MIN,
        }
    }

    /// The time index beside `path`.
    pub fn index_path(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".idx");
        PathBuf::from(p)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rotated file.
    pub fn previous(path: &Path) -> PathBuf {
        let mut p = path.as_os_str().to_owned();
        p.push(".1");
        PathBuf::from(p)
    }

    /// Appends `data`, rotating first when the file would pass the bound.
    pub fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        if self.size > 0 && self.size + data.len() as u64 > self.max_bytes {
            self.file = None;
            self.index = None;
            std::fs::rename(&self.path, Self::previous(&self.path))?;
            let _ = std::fs::rename(
                Self::index_path(&self.path),
                Self::index_path(&Self::previous(&self.path)),
            );
            self.size = 0;
            self.last_stamp = i64::MIN;
        }
        let now = chrono::Utc::now().timestamp();
        if now != self.last_stamp {
            self.last_stamp = now;
            // The index only serves --since: a failure to write it does not lose output.
            let _ = self.stamp(now);
        }
        if self.file.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            self.file = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(&self.path)?,
            );
        }
        let f = self.file.as_mut().expect("opened above");
        f.write_all(data)?;
        self.size += data.len() as u64;
        Ok(())
    }

    fn stamp(&mut self, now: i64) -> std::io::Result<()> {
        if self.index.is_none() {
            use std::os::unix::fs::OpenOptionsExt;
            self.index = Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .mode(0o600)
                    .open(Self::index_path(&self.path))?,
            );
        }
        let size = self.size;
        let i = self.index.as_mut().expect("opened above");
        writeln!(i, "{size} {now}")
    }
}

/// The part of one log file written at or after `since` (unix seconds), from the start of
/// the line that was being written then. Without an index the whole file is kept.
fn since_in(path: &Path, text: &str, since: i64) -> String {
    let Ok(index) = std::fs::read_to_string(LogFile::index_path(path)) else {
        return text.to_string();
    };
    let start = index
        .lines()
        .filter_map(|l| {
            let (off, t) = l.split_once(' ')?;
            Some((off.parse::<usize>().ok()?, t.parse::<i64>().ok()?))
        })
        .find(|(_, t)| *t >= since)
        .map(|(off, _)| off);
    match start {
        None => String::new(),
        Some(off) => {
            let off = off.min(text.len());
            let line_start = text[..off].rfind('\n').map_or(0, |i| i + 1);
            text[line_start..].to_string()
        }
    }
}

/// Like [`read_tail`], keeping only what was written at or after `since` (unix seconds).
pub fn read_since(path: &Path, since: Option<i64>, tail: Option<usize>) -> std::io::Result<String> {
    let Some(since) = since else {
        return read_tail(path, tail);
    };
    let prev_path = LogFile::previous(path);
    let mut text = String::new();
    if let Ok(prev) = std::fs::read(&prev_path) {
        text.push_str(&since_in(
            &prev_path,
            &String::from_utf8_lossy(&prev),
            since,
        ));
    }
    match std::fs::read(path) {
        Ok(cur) => text.push_str(&since_in(path, &String::from_utf8_lossy(&cur), since)),
        Err(e) if !prev_path.exists() => return Err(e),
        Err(_) => {}
    }
    Ok(match tail {
        None => text,
        Some(n) => last_lines(&text, n),
    })
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    let mut out = lines[start..].join("\n");
    if !out.is_empty() {
        out.push('\n');
    }
    out
}

/// `--since`: an RFC 3339 time, or a duration back from `now` (`90s`, `15m`, `2h`, `1d`).
pub fn parse_since(s: &str, now: chrono::DateTime<chrono::Utc>) -> Result<i64, String> {
    let t = s.trim();
    if let Ok(at) = chrono::DateTime::parse_from_rfc3339(t) {
        return Ok(at.timestamp());
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: i64 = n.parse().map_err(|_| {
        format!("'{s}' is neither a time (2026-01-01T10:00:00Z) nor a duration (15m)")
    })?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(format!("'{s}': use s, m, h or d, e.g. 15m")),
    };
    Ok(now.timestamp() - secs)
}

/// The last `tail` lines (all with `None`) of the module's log, older file first.
pub fn read_tail(path: &Path, tail: Option<usize>) -> std::io::Result<String> {
    let mut text = String::new();
    if let Ok(prev) = std::fs::read(LogFile::previous(path)) {
        text.push_str(&String::from_utf8_lossy(&prev));
    }
    match std::fs::read(path) {
        Ok(cur) => text.push_str(&String::from_utf8_lossy(&cur)),
        Err(e) if text.is_empty() => return Err(e),
        Err(_) => {}
    }
    Ok(match tail {
        None => text,
        Some(n) => last_lines(&text, n),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotates_at_the_bound_and_tails_across_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        let mut log = LogFile::new(path.clone(), 20);
        for i in 0..6 {
            log.write(format!("line {i}\n").as_bytes()).unwrap();
        }
        let cur = std::fs::read_to_string(&path).unwrap();
        let prev = std::fs::read_to_string(LogFile::previous(&path)).unwrap();
        assert!(cur.len() <= 20 && prev.len() <= 20, "{cur:?} {prev:?}");
        assert_eq!(read_tail(&path, Some(2)).unwrap(), "line 4\nline 5\n");
        assert!(read_tail(&path, None).unwrap().ends_with("line 5\n"));
        assert!(read_tail(&dir.path().join("none.log"), Some(1)).is_err());
    }

    #[test]
    fn since_starts_at_the_line_written_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.log");
        // an index as the writer keeps it: offset 0 at t=100, offset 12 (mid-line) at t=200
        std::fs::write(&path, "old line 1\nold2 new part\nnew line\n").unwrap();
        std::fs::write(LogFile::index_path(&path), "0 100\n16 200\n").unwrap();
        assert_eq!(
            read_since(&path, Some(150), None).unwrap(),
            "old2 new part\nnew line\n"
        );
        assert_eq!(read_since(&path, Some(150), Some(1)).unwrap(), "new line\n");
        assert_eq!(read_since(&path, Some(300), None).unwrap(), "");
        assert_eq!(
            read_since(&path, Some(0), None).unwrap(),
            std::fs::read_to_string(&path).unwrap()
        );
        // the writer records the index and the log stays the module's output unchanged
        let live = dir.path().join("live.log");
        let mut log = LogFile::new(live.clone(), 1 << 20);
        log.write(b"hello\n").unwrap();
        assert_eq!(std::fs::read_to_string(&live).unwrap(), "hello\n");
        let idx = std::fs::read_to_string(LogFile::index_path(&live)).unwrap();
        assert!(idx.starts_with("0 "), "{idx}");
        let now = chrono::Utc::now().timestamp();
        assert_eq!(read_since(&live, Some(now - 60), None).unwrap(), "hello\n");
        assert_eq!(read_since(&live, Some(now + 60), None).unwrap(), "");
    }

    #[test]
    fn since_values() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T01:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_since("15m", now).unwrap(), now.timestamp() - 900);
        assert_eq!(parse_since("2h", now).unwrap(), now.timestamp() - 7200);
        assert_eq!(parse_since("30", now).unwrap(), now.timestamp() - 30);
        assert_eq!(
            parse_since("2026-01-01T00:30:00Z", now).unwrap(),
            now.timestamp() - 1800
        );
        assert!(parse_since("yesterday", now).is_err());
        assert!(parse_since("5w", now).is_err());
    }
}
