//! What an import did, entry by entry: imported (or would be, with `--dry-run`) or skipped
//! with the reason (already exists, invalid, no keys).

use super::azure::Parsed;
use crate::output::{Column, Outcome, col, col_or};
use anyhow::Result;
use fleethub_service_client::ServiceError;
use serde_json::{Value, json};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Enrollment,
    Group,
    Device,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Enrollment => "enrollment",
            Kind::Group => "enrollmentGroup",
            Kind::Device => "device",
        }
    }
}

/// Why an entry was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    Exists,
    Invalid,
    NoKeys,
}

impl Skip {
    fn as_str(self) -> &'static str {
        match self {
            Skip::Exists => "exists",
            Skip::Invalid => "invalid",
            Skip::NoKeys => "noKeys",
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Report {
    dry_run: bool,
    items: Vec<Value>,
    imported: usize,
    skipped: [usize; 3],
}

const COLUMNS: &[Column] = &[
    col("KIND", "/kind"),
    col("ID", "/id"),
    col("RESULT", "/result"),
    col_or("REASON", "/reason", ""),
];

impl Report {
    pub(crate) fn new(dry_run: bool) -> Report {
        Report {
            dry_run,
            ..Report::default()
        }
    }

    pub(crate) fn imported(&mut self, kind: Kind, id: &str, notes: &[String]) {
        self.imported += 1;
        let result = if self.dry_run {
            "wouldImport"
        } else {
            "imported"
        };
        let mut item = json!({"kind": kind.as_str(), "id": id, "result": result});
        if !notes.is_empty() {
            item["reason"] = Value::String(notes.join("; "));
        }
        self.items.push(item);
    }

    fn skip(&mut self, kind: Kind, id: &str, why: Skip, reason: &str) {
        self.skipped[why as usize] += 1;
        self.items.push(json!({
            "kind": kind.as_str(),
            "id": id,
            "result": "skipped",
            "skip": why.as_str(),
            "reason": reason,
        }));
    }

    pub(crate) fn exists(&mut self, kind: Kind, id: &str) {
        self.skip(kind, id, Skip::Exists, "already exists (left unchanged)");
    }

    pub(crate) fn parsed_failure<T>(&mut self, kind: Kind, p: Parsed<T>) {
        match p {
            Parsed::Invalid { id, reason } => self.skip(kind, &id, Skip::Invalid, &reason),
            Parsed::NoKeys { id, hint } => {
                self.skip(
                    kind,
                    &id,
                    Skip::NoKeys,
                    &format!("no keys in the export; {hint}"),
                );
            }
            Parsed::Ok(..) => {}
        }
    }

    /// The server refused to create `id`: a 4xx is this entry's problem (skipped as invalid,
    /// or as existing on a conflict); anything else stops the import.
    pub(crate) fn refused(&mut self, kind: Kind, id: &str, err: anyhow::Error) -> Result<()> {
        match err.downcast_ref::<ServiceError>() {
            Some(e) if e.status == 409 || e.status == 412 => {
                self.exists(kind, id);
                Ok(())
            }
            Some(e) if (400..500).contains(&e.status) && e.status != 401 && e.status != 403 => {
                let msg = if e.message.is_empty() {
                    format!("refused by the server ({})", e.status)
                } else {
                    format!("refused by the server: {}", e.message)
                };
                self.skip(kind, id, Skip::Invalid, &msg);
                Ok(())
            }
            _ => Err(err.context(format!(
                "import stopped at {} '{id}' (what was imported so far stays; a re-run skips it)",
                kind.as_str()
            ))),
        }
    }

    pub(crate) fn summary(&self) -> String {
        let [exists, invalid, no_keys] = self.skipped;
        format!(
            "{} {}, skipped {} (already exist {exists}, invalid {invalid}, no keys {no_keys})",
            if self.dry_run {
                "would import"
            } else {
                "imported"
            },
            self.imported,
            exists + invalid + no_keys
        )
    }

    pub(crate) fn outcome(&self) -> Outcome {
        Outcome::List(self.items.clone(), COLUMNS)
    }
}
