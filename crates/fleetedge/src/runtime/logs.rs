//! Per-module log files: stdout and stderr appended to `<homedir>/logs/<module>.log`, rotated
//! to `<module>.log.1` when it passes the size bound (so at most twice the bound is kept).

use std::io::Write;
use std::path::{Path, PathBuf};

/// A size-bounded log file.
pub struct LogFile {
    path: PathBuf,
    max_bytes: u64,
    file: Option<std::fs::File>,
    size: u64,
}

impl LogFile {
    pub fn new(path: PathBuf, max_bytes: u64) -> LogFile {
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        LogFile {
            path,
            max_bytes,
            file: None,
            size,
        }
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
            std::fs::rename(&self.path, Self::previous(&self.path))?;
            self.size = 0;
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
        Some(n) => {
            let lines: Vec<&str> = text.lines().collect();
            let start = lines.len().saturating_sub(n);
            let mut out = lines[start..].join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            out
        }
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
}
