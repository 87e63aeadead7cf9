//! What an acknowledged write survives (`docs/operations.md`, "Durability"): the SQLite
//! `synchronous` setting of every connection. Both modes use WAL and the writer's group
//! commit, so one fsync covers every write committed together.

use serde::{Deserialize, Serialize};

/// What a write the store has acknowledged survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// `synchronous=NORMAL`: a committed write survives the process being killed; the last
    /// commits before a power loss or kernel crash may be lost (the database stays
    /// consistent).
    #[default]
    Process,
    /// `synchronous=FULL`: the WAL is fsynced before a commit is acknowledged, so a committed
    /// write also survives a power loss or kernel crash.
    Power,
}

impl Durability {
    /// The `PRAGMA synchronous` value of this mode.
    pub fn synchronous(self) -> &'static str {
        match self {
            Durability::Process => "NORMAL",
            Durability::Power => "FULL",
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Durability::Process => "process",
            Durability::Power => "power",
        })
    }
}

impl std::str::FromStr for Durability {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "process" => Ok(Durability::Process),
            "power" => Ok(Durability::Power),
            _ => Err(format!(
                "unknown durability '{s}': use process (survives a killed process) or power (also survives a power loss)"
            )),
        }
    }
}
