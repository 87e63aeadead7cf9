//! Configuration errors that point at the offending line and say how to fix it.

use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Where in the file a problem is (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// The line/column of byte offset `at` in `text`.
    pub fn of(text: &str, at: usize) -> Location {
        let at = at.min(text.len());
        let before = &text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(at, |nl| at - nl - 1) + 1;
        Location { line, column }
    }
}

/// An invalid or unreadable configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {reason}\n  fix: {fix}")]
    Read {
        path: PathBuf,
        reason: String,
        fix: String,
    },
    #[error("{}", render(path, location.as_ref(), key.as_deref(), message, fix))]
    Invalid {
        path: PathBuf,
        location: Option<Location>,
        /// Dotted key, e.g. `provisioning.attestation.symmetric_key`.
        key: Option<String>,
        message: String,
        fix: String,
    },
}

fn render(
    path: &Path,
    location: Option<&Location>,
    key: Option<&str>,
    message: &str,
    fix: &str,
) -> String {
    let mut out = format!("invalid configuration {}", path.display());
    if let Some(l) = location {
        let _ = write!(out, ":{}:{}", l.line, l.column);
    }
    out.push_str(": ");
    if let Some(k) = key {
        let _ = write!(out, "`{k}`: ");
    }
    out.push_str(message);
    if !fix.is_empty() {
        out.push_str("\n  fix: ");
        out.push_str(fix);
    }
    out
}

impl ConfigError {
    /// The line number of the problem, when known.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { location, .. } => location.map(|l| l.line),
            ConfigError::Read { .. } => None,
        }
    }

    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => key.as_deref(),
            ConfigError::Read { .. } => None,
        }
    }
}

/// Builds [`ConfigError::Invalid`] values for one file.
pub(crate) struct Reporter<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Reporter<'_> {
    pub fn at(
        &self,
        span: Option<Range<usize>>,
        key: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            location: span.map(|s| Location::of(self.text, s.start)),
            key: (!key.is_empty()).then(|| key.to_string()),
            message: message.into(),
            fix: fix.into(),
        }
    }

    /// A TOML syntax or type error from the parser.
    pub fn parse_error(&self, e: &toml::de::Error) -> ConfigError {
        let location = e.span().map(|s| Location::of(self.text, s.start));
        if let Some((key, expected)) = unknown_field(e.message()) {
            let at = location
                .map(|l| format!(" at line {}", l.line))
                .unwrap_or_default();
            let (message, fix) = match did_you_mean(&key, &expected) {
                Some(s) => (
                    format!("unknown key `{key}`{at}; did you mean `{s}`?"),
                    format!(
                        "rename `{key}` to `{s}` (keys are listed in docs/edge.md, \"Configuration reference\")"
                    ),
                ),
                None => (
                    format!("unknown key `{key}`{at}"),
                    format!(
                        "remove or rename the key; valid keys here: {} (see docs/edge.md, \"Configuration reference\")",
                        expected.join(", ")
                    ),
                ),
            };
            return ConfigError::Invalid {
                path: self.path.to_path_buf(),
                location,
                key: None,
                message,
                fix,
            };
        }
        let message = e.message().trim().to_string();
        let fix = if message.starts_with("unknown field") {
            "remove or rename the key (see docs/edge.md, \"Configuration reference\")".to_string()
        } else if message.starts_with("missing field") {
            "add the key (see docs/edge.md, \"Configuration reference\")".to_string()
        } else if message.contains("invalid type") {
            "give the value the documented type (strings are quoted, numbers are not)".to_string()
        } else {
            "fix the TOML syntax at this position".to_string()
        };
        ConfigError::Invalid {
            path: self.path.to_path_buf(),
            location,
            key: None,
            message,
            fix,
        }
    }
}

/// serde's "unknown field `x`, expected one of `a`, `b`" (or "expected `a`", or "there are
/// no fields") -> (`x`, [`a`, `b`]).
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.trim().strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((key.to_string(), expected))
}

/// Edit distance (insertions, deletions, substitutions) between two short strings.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur.push(sub.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The known key closest to `key` (case, `-`/`_` and spelling differences), if it is close
/// enough to be a typo.
pub(crate) fn did_you_mean<S: AsRef<str>>(key: &str, known: &[S]) -> Option<String> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let k = norm(key);
    known
        .iter()
        .map(|c| (edit_distance(&k, &norm(c.as_ref())), c.as_ref()))
        .filter(|(d, c)| *d <= (c.len().max(k.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations() {
        let t = "a = 1\nbb = 2\n";
        assert_eq!(Location::of(t, 0), Location { line: 1, column: 1 });
        assert_eq!(Location::of(t, 6), Location { line: 2, column: 1 });
        assert_eq!(Location::of(t, 11), Location { line: 2, column: 6 });
        assert_eq!(Location::of(t, 999).line, 3);
    }

    #[test]
    fn suggestions() {
        let known = ["homedir", "hostname", "trust_bundle_cert", "provisioning"];
        assert_eq!(did_you_mean("home_dir", &known).as_deref(), Some("homedir"));
        assert_eq!(
            did_you_mean("trust_bundle_crt", &known).as_deref(),
            Some("trust_bundle_cert")
        );
        assert_eq!(
            did_you_mean("HostName", &known).as_deref(),
            Some("hostname")
        );
        assert_eq!(did_you_mean("zzz", &known), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(
            unknown_field("unknown field `x`, expected one of `a`, `b`"),
            Some(("x".to_string(), vec!["a".to_string(), "b".to_string()]))
        );
        assert_eq!(
            unknown_field("unknown field `x`, expected `a`"),
            Some(("x".to_string(), vec!["a".to_string()]))
        );
        assert_eq!(unknown_field("invalid type: string"), None);
    }

    #[test]
    fn rendering() {
        let r = Reporter {
            path: Path::new("/etc/fleetedge/config.toml"),
            text: "x = 1\ny = 2\n",
        };
        let e = r.at(Some(6..7), "y", "bad y", "set y to 3");
        assert_eq!(
            e.to_string(),
            "invalid configuration /etc/fleetedge/config.toml:2:1: `y`: bad y\n  fix: set y to 3"
        );
        assert_eq!(e.line(), Some(2));
    }
}
